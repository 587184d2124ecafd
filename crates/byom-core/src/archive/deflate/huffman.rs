//! Canonical Huffman decoding tables: a primary table indexed by the next `log2(N)` bits, with
//! sub-tables for longer codes. Exactly as strict as zlib's `inflate_table`: over-subscribed
//! sets are refused, and so are incomplete ones unless the set is a single code of length 1
//! (or empty); any stricter and the differential test fails, any laxer and a corrupt stream
//! would decode here while the reference refuses it.
//!
//! Entries are pre-decoded (libdeflate / zlib-ng style) so that the hot loop needs one table
//! read per symbol and no side tables:
//!
//! - bits 0–3: bits to consume (the code length; for a literal pair both codes' lengths);
//! - bits 4–7: extra bits that follow (length / distance codes), or a sub-table's index width;
//! - bit 8: [`PAIR`]; bit 12: [`EOB`]; bit 13: [`SUB`]; bit 14: [`EXC`]; bit 15: [`LIT`];
//! - bits 16–31: the literal (and the pair's second literal in bits 24–31), the length or
//!   distance base, a plain symbol (code-length codes), or a sub-table's offset.
//!
//! An entry with [`EXC`] and neither [`EOB`] nor [`SUB`] is an invalid code (no such code, or
//! literal/length symbols 286–287, distance symbols 30–31): zlib refuses those when decoded.

use super::Error;

/// One literal (or two with [`PAIR`]).
pub(super) const LIT: u32 = 1 << 15;
/// Exceptional: end of block, sub-table pointer or invalid code.
pub(super) const EXC: u32 = 1 << 14;
pub(super) const SUB: u32 = 1 << 13;
pub(super) const EOB: u32 = 1 << 12;
/// Two literals in one entry (primary litlen table only).
pub(super) const PAIR: u32 = 1 << 8;

/// What the symbols of a table mean (how their entries are made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Code-length codes: the symbol itself.
    Plain,
    LitLen,
    Dist,
}

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

fn entry(kind: Kind, sym: usize, len: u32) -> u32 {
    match kind {
        Kind::Plain => (sym as u32) << 16 | len,
        Kind::LitLen => match sym {
            0..=255 => LIT | (sym as u32) << 16 | len,
            256 => EXC | EOB | len,
            257..=285 => {
                let i = sym - 257;
                u32::from(LEN_BASE[i]) << 16 | u32::from(LEN_EXTRA[i]) << 4 | len
            }
            _ => EXC | len,
        },
        Kind::Dist => match sym {
            0..=29 => u32::from(DIST_BASE[sym]) << 16 | u32::from(DIST_EXTRA[sym]) << 4 | len,
            _ => EXC | len,
        },
    }
}

/// A decoding table with a primary part of `N` entries (a power of two; the array size lets
/// the compiler drop the bounds check of the primary lookup).
#[derive(Debug, Clone)]
pub(super) struct Table<const N: usize> {
    primary: Box<[u32; N]>,
    sub: Vec<u32>,
}

impl<const N: usize> Table<N> {
    const BITS: u32 = N.trailing_zeros();

    pub(super) fn new() -> Self {
        Table {
            primary: Box::new([EXC; N]),
            sub: Vec::new(),
        }
    }

    /// Build from code lengths (0 = unused symbol). `code_lengths` selects zlib's completeness
    /// rule for code-length codes (always complete); `pairs` packs two literals per entry where
    /// both codes fit the primary index.
    pub(super) fn build(
        &mut self,
        lengths: &[u8],
        code_lengths: bool,
        kind: Kind,
        pairs: bool,
    ) -> Result<(), Error> {
        let mut count = [0u16; 16];
        for &l in lengths {
            count[usize::from(l)] += 1;
        }
        count[0] = 0;
        let max = (1..16).rev().find(|&l| count[l] != 0).unwrap_or(0);
        // The completeness check comes before any table write: the boundary search refuses most
        // candidates here, and clearing 2 K entries for each would cost more than the check.
        let mut left: i32 = 1;
        for &c in &count[1..16] {
            left = (left << 1) - i32::from(c);
            if left < 0 {
                return Err(Error::BadCode);
            }
        }
        if max != 0 && left > 0 && (code_lengths || max != 1) {
            return Err(Error::BadCode);
        }
        self.primary.fill(EXC);
        self.sub.clear();
        if max == 0 {
            // No codes at all: zlib accepts this, and any use is an invalid code.
            return Ok(());
        }
        let mut next = [0u32; 16];
        let mut code = 0u32;
        for len in 1..16 {
            code = (code + u32::from(count[len - 1])) << 1;
            next[len] = code;
        }
        let sub_bits = (max as u32).saturating_sub(Self::BITS);
        for (sym, &len) in lengths.iter().enumerate() {
            if len == 0 {
                continue;
            }
            let len = u32::from(len);
            let code = next[len as usize];
            next[len as usize] += 1;
            let rev = code.reverse_bits() >> (32 - len);
            let e = entry(kind, sym, len);
            if len <= Self::BITS {
                let mut i = rev as usize;
                while i < N {
                    self.primary[i] = e;
                    i += 1 << len;
                }
            } else {
                let prefix = rev as usize & (N - 1);
                if self.primary[prefix] & SUB == 0 {
                    let off = self.sub.len() as u32;
                    self.sub.resize(self.sub.len() + (1 << sub_bits), EXC);
                    self.primary[prefix] = EXC | SUB | off << 16 | sub_bits << 4;
                }
                let off = (self.primary[prefix] >> 16) as usize;
                let mut i = (rev >> Self::BITS) as usize;
                while i < (1 << sub_bits) {
                    self.sub[off + i] = e;
                    i += 1 << (len - Self::BITS);
                }
            }
        }
        if pairs {
            // Descending, so that `i >> l1 < i` still holds the single entry when read.
            for i in (0..N).rev() {
                let e = self.primary[i];
                let l1 = e & 15;
                if e & LIT == 0 || l1 >= Self::BITS {
                    continue;
                }
                let e2 = self.primary[i >> l1];
                let l2 = e2 & 15;
                if e2 & LIT != 0 && l1 + l2 <= Self::BITS {
                    self.primary[i] =
                        LIT | PAIR | (e & 0xFF_0000) | (e2 & 0xFF_0000) << 8 | (l1 + l2);
                }
            }
        }
        Ok(())
    }

    /// The primary entry for the next bits (may be a [`SUB`] pointer: see [`Self::resolve`]).
    #[inline(always)]
    pub(super) fn primary(&self, bits: u64) -> u32 {
        self.primary[bits as usize & (N - 1)]
    }

    /// A primary entry with its sub-table pointer (if any) followed.
    #[inline(always)]
    pub(super) fn resolve(&self, e: u32, bits: u64) -> u32 {
        if e & SUB == 0 {
            return e;
        }
        let w = (e >> 4) & 15;
        let off = (e >> 16) as usize;
        let idx = (bits >> Self::BITS) as usize & ((1 << w) - 1);
        self.sub.get(off + idx).copied().unwrap_or(EXC)
    }

    /// The entry for the next bits (a sub-table pointer resolved; its entry has the full code
    /// length).
    #[inline(always)]
    pub(super) fn get(&self, bits: u64) -> u32 {
        self.resolve(self.primary(bits), bits)
    }
}
