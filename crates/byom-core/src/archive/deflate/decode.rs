//! The block decoder. Output symbols are `u8` (window known) or `u16` (window unknown: values
//! ≥ [`MARKER`] stand for byte `v - MARKER` of the 32 KiB that precede the start).

use super::bits::Bits;
use super::huffman::Table;
use super::Error;

/// Size of the DEFLATE window.
pub const WINDOW: usize = 32 * 1024;
/// First marker value in `u16` output: `MARKER + i` is byte `i` of the unknown window.
pub const MARKER: u16 = 0x8000;

/// An output element: a byte, or a byte-or-marker.
pub trait Symbol: Copy + std::fmt::Debug + 'static {
    fn byte(b: u8) -> Self;
}
impl Symbol for u8 {
    #[inline(always)]
    fn byte(b: u8) -> Self {
        b
    }
}
impl Symbol for u16 {
    #[inline(always)]
    fn byte(b: u8) -> Self {
        u16::from(b)
    }
}

/// Where a block ended: its bit offset in the input and the output length (excluding the
/// prefix `out` held on entry) at that point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEnd {
    pub bit: u64,
    pub out: u64,
}

/// How a successful decode ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Bit offset just past the last decoded block.
    pub end_bit: u64,
    /// True when that block was the final one (BFINAL).
    pub stream_end: bool,
    /// Every block end, in order (the last one is `end_bit`).
    pub blocks: Vec<BlockEnd>,
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
const CL_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];
const LIT_PRIMARY: u32 = 10;
const DIST_PRIMARY: u32 = 8;

/// Reusable tables (one set per decoder thread; building them is the per-block cost).
#[derive(Debug, Clone)]
pub(super) struct Tables {
    lit: Table,
    dist: Table,
    cl: Table,
}

impl Tables {
    pub(super) fn new() -> Self {
        Tables {
            lit: Table::empty(),
            dist: Table::empty(),
            cl: Table::empty(),
        }
    }
}

/// Decode from bit `start_bit` of `input`, appending to `out`, until a block ends at or past
/// `stop_bit` or the final block ends. `out` may hold a prefix (the known window, or
/// [`WINDOW`] markers): back-references may reach into it, never before it. At most `max_out`
/// symbols are appended. Output of a failed decode is garbage and must be discarded.
pub fn inflate<T: Symbol>(
    input: &[u8],
    start_bit: u64,
    stop_bit: u64,
    out: &mut Vec<T>,
    max_out: usize,
) -> Result<Outcome, Error> {
    let mut bits = Bits::at(input, start_bit)?;
    let mut tables = Tables::new();
    inflate_with(&mut bits, &mut tables, stop_bit, out, max_out, None)
}

/// [`inflate`] on an existing reader; `first_header` is a dynamic header already parsed into
/// `tables` (the boundary search parses it before committing to a candidate).
pub(super) fn inflate_with<T: Symbol>(
    bits: &mut Bits<'_>,
    tables: &mut Tables,
    stop_bit: u64,
    out: &mut Vec<T>,
    max_out: usize,
    mut first_header: Option<bool>,
) -> Result<Outcome, Error> {
    let prefix = out.len();
    let limit = prefix.saturating_add(max_out);
    let mut blocks = Vec::new();
    loop {
        let last = match first_header.take() {
            Some(last) => {
                block(bits, tables, out, limit)?;
                last
            }
            None => {
                let header = bits.bits(3)?;
                let last = header & 1 == 1;
                match header >> 1 {
                    0 => stored(bits, out, limit)?,
                    1 => {
                        fixed_tables(tables)?;
                        block(bits, tables, out, limit)?;
                    }
                    2 => {
                        dynamic_header(bits, tables)?;
                        block(bits, tables, out, limit)?;
                    }
                    _ => return Err(Error::BadBlockType),
                }
                last
            }
        };
        let end = BlockEnd {
            bit: bits.bit_pos(),
            out: (out.len() - prefix) as u64,
        };
        blocks.push(end);
        if last || end.bit >= stop_bit {
            return Ok(Outcome {
                end_bit: end.bit,
                stream_end: last,
                blocks,
            });
        }
    }
}

fn stored<T: Symbol>(bits: &mut Bits<'_>, out: &mut Vec<T>, limit: usize) -> Result<(), Error> {
    bits.align_to_byte()?;
    let len = bits.bits(16)?;
    let nlen = bits.bits(16)?;
    if len != !nlen & 0xFFFF {
        return Err(Error::BadStoredLength);
    }
    let len = len as usize;
    let at = bits.byte_pos();
    let data = bits.data();
    let bytes = data.get(at..at + len).ok_or(Error::Truncated)?;
    if out.len() + len > limit {
        return Err(Error::OutputLimit);
    }
    out.extend(bytes.iter().map(|&b| T::byte(b)));
    bits.seek_byte(at + len);
    Ok(())
}

fn fixed_tables(t: &mut Tables) -> Result<(), Error> {
    let mut lens = [0u8; 288];
    lens[..144].fill(8);
    lens[144..256].fill(9);
    lens[256..280].fill(7);
    lens[280..].fill(8);
    t.lit.build(&lens, LIT_PRIMARY, false)?;
    // 32 codes as zlib builds it (complete); symbols 30 and 31 are refused when decoded.
    t.dist.build(&[5u8; 32], DIST_PRIMARY, false)
}

/// Parse a dynamic block header (after BFINAL/BTYPE) into `t`.
pub(super) fn dynamic_header(bits: &mut Bits<'_>, t: &mut Tables) -> Result<(), Error> {
    let hlit = bits.bits(5)? as usize + 257;
    let hdist = bits.bits(5)? as usize + 1;
    let hclen = bits.bits(4)? as usize + 4;
    // zlib: "too many length or distance symbols".
    if hlit > 286 || hdist > 30 {
        return Err(Error::BadCode);
    }
    let mut cl = [0u8; 19];
    for &i in &CL_ORDER[..hclen] {
        cl[i] = bits.bits(3)? as u8;
    }
    t.cl.build(&cl, 7, true)?;
    let mut lens = [0u8; 286 + 30];
    let n = hlit + hdist;
    let mut i = 0;
    while i < n {
        if bits.available() < 16 {
            bits.refill();
        }
        let (sym, len) = t.cl.lookup(bits.peek());
        if len == 0 {
            return Err(Error::BadCode);
        }
        bits.consume(len)?;
        let (value, repeat) = match sym {
            0..=15 => (sym as u8, 1),
            16 => {
                if i == 0 {
                    return Err(Error::BadCode);
                }
                (lens[i - 1], 3 + bits.bits(2)? as usize)
            }
            17 => (0, 3 + bits.bits(3)? as usize),
            _ => (0, 11 + bits.bits(7)? as usize),
        };
        if i + repeat > n {
            return Err(Error::BadCode);
        }
        lens[i..i + repeat].fill(value);
        i += repeat;
    }
    // zlib: "invalid code -- missing end-of-block".
    if lens[256] == 0 {
        return Err(Error::BadCode);
    }
    t.lit.build(&lens[..hlit], LIT_PRIMARY, false)?;
    t.dist.build(&lens[hlit..n], DIST_PRIMARY, false)
}

/// Decode one Huffman block's data up to and including its end-of-block code.
///
/// The hot loop of the parallel reader: the bit buffer lives in locals, and while at least 16
/// input bytes and 258 output slots remain, one refill per symbol guarantees the bits for a
/// whole length/distance pair (≤ 48), so only the table's "no such code" needs a check. Near
/// either end every read is checked.
#[inline(never)]
fn block<T: Symbol>(
    bits: &mut Bits<'_>,
    t: &Tables,
    out: &mut Vec<T>,
    limit: usize,
) -> Result<(), Error> {
    let data = bits.data;
    let (mut pos, mut buf, mut n) = (bits.pos, bits.buf, bits.n);
    let result = loop {
        if pos + 16 > data.len() || out.len() + 258 > limit {
            break None;
        }
        if n < 48 {
            let mut w = [0u8; 8];
            w.copy_from_slice(&data[pos..pos + 8]);
            buf |= u64::from_le_bytes(w) << n;
            pos += ((63 - n) >> 3) as usize;
            n |= 56;
        }
        let (sym, len) = t.lit.lookup(buf);
        if len == 0 {
            break Some(Err(Error::BadSymbol));
        }
        buf >>= len;
        n -= len;
        if sym < 256 {
            out.push(T::byte(sym as u8));
            // A second literal without a refill when the bits are there (weights are mostly
            // literals).
            let (sym2, len2) = t.lit.lookup(buf);
            if sym2 < 256 && len2 != 0 && len2 <= n {
                buf >>= len2;
                n -= len2;
                out.push(T::byte(sym2 as u8));
            }
            continue;
        }
        if sym == 256 {
            break Some(Ok(()));
        }
        let li = (sym - 257) as usize;
        if li >= 29 {
            break Some(Err(Error::BadSymbol));
        }
        let e = u32::from(LEN_EXTRA[li]);
        let length = usize::from(LEN_BASE[li]) + (buf & ((1 << e) - 1)) as usize;
        buf >>= e;
        n -= e;
        let (dsym, dlen) = t.dist.lookup(buf);
        if dlen == 0 || dsym >= 30 {
            break Some(Err(Error::BadSymbol));
        }
        buf >>= dlen;
        n -= dlen;
        let di = dsym as usize;
        let e = u32::from(DIST_EXTRA[di]);
        let dist = usize::from(DIST_BASE[di]) + (buf & ((1 << e) - 1)) as usize;
        buf >>= e;
        n -= e;
        if let Err(e) = copy(out, dist, length) {
            break Some(Err(e));
        }
    };
    (bits.pos, bits.buf, bits.n) = (pos, buf, n);
    match result {
        Some(r) => r,
        None => block_checked(bits, t, out, limit),
    }
}

/// Append `length` symbols copied from `dist` back.
#[inline(always)]
fn copy<T: Symbol>(out: &mut Vec<T>, dist: usize, length: usize) -> Result<(), Error> {
    let at = out.len();
    if dist > at {
        return Err(Error::TooFarBack);
    }
    let from = at - dist;
    if dist >= length && length >= 16 {
        out.extend_from_within(from..from + length);
    } else {
        for k in 0..length {
            let v = out[from + k];
            out.push(v);
        }
    }
    Ok(())
}

/// [`block`] with every read checked (the last bytes of the input or of the output cap).
fn block_checked<T: Symbol>(
    bits: &mut Bits<'_>,
    t: &Tables,
    out: &mut Vec<T>,
    limit: usize,
) -> Result<(), Error> {
    loop {
        if bits.available() < 48 {
            bits.refill();
        }
        let (sym, len) = t.lit.lookup(bits.peek());
        if len == 0 {
            return Err(Error::BadSymbol);
        }
        bits.consume(len)?;
        if sym < 256 {
            if out.len() >= limit {
                return Err(Error::OutputLimit);
            }
            out.push(T::byte(sym as u8));
            continue;
        }
        if sym == 256 {
            return Ok(());
        }
        let li = (sym - 257) as usize;
        if li >= 29 {
            return Err(Error::BadSymbol);
        }
        let length = usize::from(LEN_BASE[li]) + bits.bits(u32::from(LEN_EXTRA[li]))? as usize;
        let (dsym, dlen) = t.dist.lookup(bits.peek());
        if dlen == 0 || dsym >= 30 {
            return Err(Error::BadSymbol);
        }
        bits.consume(dlen)?;
        let di = dsym as usize;
        let dist = usize::from(DIST_BASE[di]) + bits.bits(u32::from(DIST_EXTRA[di]))? as usize;
        if out.len() + length > limit {
            return Err(Error::OutputLimit);
        }
        copy(out, dist, length)?;
    }
}
