//! Canonical Huffman decoding tables: a primary table indexed by the next `primary` bits, with
//! sub-tables for longer codes. Exactly as strict as zlib's `inflate_table`: over-subscribed
//! sets are refused, and so are incomplete ones unless the set is a single code of length 1
//! (or empty); any stricter and the differential test fails, any laxer and a corrupt stream
//! would decode here while the reference refuses it.

use super::Error;

const SUB: u32 = 1 << 31;
const LEN_SHIFT: u32 = 16;

/// A decoding table. Entry: symbol (bits 0–15) and code length (bits 16–19); with `SUB` set,
/// bits 0–15 are the sub-table offset and bits 16–19 its index width. Zero means "no code".
#[derive(Debug, Clone)]
pub(super) struct Table {
    entries: Vec<u32>,
    primary: u32,
}

impl Table {
    pub(super) fn empty() -> Self {
        Table {
            entries: Vec::new(),
            primary: 0,
        }
    }

    /// Build from code lengths (0 = unused symbol). `kind` selects zlib's completeness rule.
    pub(super) fn build(
        &mut self,
        lengths: &[u8],
        primary: u32,
        code_lengths: bool,
    ) -> Result<(), Error> {
        let mut count = [0u16; 16];
        for &l in lengths {
            count[usize::from(l)] += 1;
        }
        count[0] = 0;
        let max = (1..16).rev().find(|&l| count[l] != 0).unwrap_or(0);
        self.primary = primary;
        self.entries.clear();
        self.entries.resize(1 << primary, 0);
        if max == 0 {
            // No codes at all: zlib accepts this, and any use is an invalid code.
            return Ok(());
        }
        let mut left: i32 = 1;
        for &c in &count[1..16] {
            left = (left << 1) - i32::from(c);
            if left < 0 {
                return Err(Error::BadCode);
            }
        }
        if left > 0 && (code_lengths || max != 1) {
            return Err(Error::BadCode);
        }
        let mut next = [0u32; 16];
        let mut code = 0u32;
        for len in 1..16 {
            code = (code + u32::from(count[len - 1])) << 1;
            next[len] = code;
        }
        let sub_bits = (max as u32).saturating_sub(primary);
        for (sym, &len) in lengths.iter().enumerate() {
            if len == 0 {
                continue;
            }
            let len = u32::from(len);
            let code = next[len as usize];
            next[len as usize] += 1;
            let rev = code.reverse_bits() >> (32 - len);
            let entry = sym as u32 | (len << LEN_SHIFT);
            if len <= primary {
                let mut i = rev as usize;
                while i < (1 << primary) {
                    self.entries[i] = entry;
                    i += 1 << len;
                }
            } else {
                let prefix = (rev & ((1 << primary) - 1)) as usize;
                if self.entries[prefix] & SUB == 0 {
                    let off = self.entries.len() as u32;
                    self.entries.resize(self.entries.len() + (1 << sub_bits), 0);
                    self.entries[prefix] = SUB | off | (sub_bits << LEN_SHIFT);
                }
                let off = (self.entries[prefix] & 0xFFFF) as usize;
                let mut i = (rev >> primary) as usize;
                while i < (1 << sub_bits) {
                    self.entries[off + i] = entry;
                    i += 1 << (len - primary);
                }
            }
        }
        Ok(())
    }

    /// Decode one symbol from the peeked bits: `(symbol, code length)`; length 0 = invalid.
    #[inline(always)]
    pub(super) fn lookup(&self, bits: u64) -> (u32, u32) {
        let mut e = self.entries[(bits & ((1 << self.primary) - 1)) as usize];
        if e & SUB != 0 {
            let w = (e >> LEN_SHIFT) & 0xF;
            let off = (e & 0xFFFF) as usize;
            let idx = ((bits >> self.primary) & ((1 << w) - 1)) as usize;
            e = self.entries[off + idx];
        }
        (e & 0xFFFF, (e >> LEN_SHIFT) & 0xF)
    }
}
