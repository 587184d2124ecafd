//! The block decoder. Output symbols are `u8` (window known) or `u16` (window unknown: values
//! ≥ [`MARKER`] stand for byte `v - MARKER` of the 32 KiB that precede the start).

use super::bits::Bits;
use super::huffman::{Kind, Table, EOB, EXC, LIT, PAIR};
use super::Error;

/// Size of the DEFLATE window.
pub const WINDOW: usize = 32 * 1024;
/// First marker value in `u16` output: `MARKER + i` is byte `i` of the unknown window.
pub const MARKER: u16 = 0x8000;

/// An output element: a byte, or a byte-or-marker.
pub trait Symbol: Copy + Default + std::fmt::Debug + 'static {
    /// Elements per 16-byte move in match copies.
    const CHUNK: usize;
    fn byte(b: u8) -> Self;
    /// True for a window marker (never for `u8`).
    fn is_marker(self) -> bool;
}
impl Symbol for u8 {
    const CHUNK: usize = 16;
    #[inline(always)]
    fn byte(b: u8) -> Self {
        b
    }
    #[inline(always)]
    fn is_marker(self) -> bool {
        false
    }
}
impl Symbol for u16 {
    const CHUNK: usize = 8;
    #[inline(always)]
    fn byte(b: u8) -> Self {
        u16::from(b)
    }
    #[inline(always)]
    fn is_marker(self) -> bool {
        self >= 256
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
    /// True when decoding stopped early, before `stop_bit`, because the last [`WINDOW`]
    /// symbols of output hold no marker (only [`inflate_markers`] and the boundary search stop
    /// so): the rest can be decoded as bytes with that window.
    pub window_clean: bool,
}

const CL_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Primary table sizes: 2 K literal/length entries (8 KiB, in L1 with room to spare; room for
/// literal pairs of up to 11 bits), 256 distance entries, 128 code-length entries (all such
/// codes are ≤ 7 bits).
const LIT_N: usize = 1 << 11;
const DIST_N: usize = 1 << 8;
const CL_N: usize = 1 << 7;

/// Reusable tables (one set per decoder thread; building them is the per-block cost).
#[derive(Debug, Clone)]
pub(super) struct Tables {
    lit: Table<LIT_N>,
    dist: Table<DIST_N>,
    cl: Table<CL_N>,
}

impl Tables {
    pub(super) fn new() -> Self {
        Tables {
            lit: Table::new(),
            dist: Table::new(),
            cl: Table::new(),
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
    inflate_with(&mut bits, &mut tables, stop_bit, out, max_out, None, false)
}

/// [`inflate`] with markers, which also stops (`window_clean`) after the first block whose end
/// leaves [`WINDOW`] marker-free symbols behind: from there on, `u8` output with that window is
/// the same decoding at half the memory traffic (rapidgzip's switch).
pub fn inflate_markers(
    input: &[u8],
    start_bit: u64,
    stop_bit: u64,
    out: &mut Vec<u16>,
    max_out: usize,
) -> Result<Outcome, Error> {
    let mut bits = Bits::at(input, start_bit)?;
    let mut tables = Tables::new();
    inflate_with(&mut bits, &mut tables, stop_bit, out, max_out, None, true)
}

/// [`inflate`] on an existing reader; `first_header` is a dynamic header already parsed into
/// `tables` (the boundary search parses it before committing to a candidate); `until_clean` as
/// in [`inflate_markers`].
pub(super) fn inflate_with<T: Symbol>(
    bits: &mut Bits<'_>,
    tables: &mut Tables,
    stop_bit: u64,
    out: &mut Vec<T>,
    max_out: usize,
    mut first_header: Option<bool>,
    until_clean: bool,
) -> Result<Outcome, Error> {
    let prefix = out.len();
    let mut sink = Sink {
        limit: prefix.saturating_add(max_out),
        len: prefix,
        buf: out,
    };
    // out[clean_from..scanned] is known to hold no marker.
    let mut scanned = prefix.saturating_sub(WINDOW);
    let mut clean_from = scanned;
    let mut blocks = Vec::new();
    let result = loop {
        let step = match first_header.take() {
            Some(last) => block(bits, tables, &mut sink).map(|()| last),
            None => block_any(bits, tables, &mut sink),
        };
        let last = match step {
            Ok(last) => last,
            Err(e) => break Err(e),
        };
        let end = BlockEnd {
            bit: bits.bit_pos(),
            out: (sink.len - prefix) as u64,
        };
        blocks.push(end);
        let mut window_clean = false;
        if until_clean && !last && end.bit < stop_bit {
            if let Some(p) = sink.buf[scanned..sink.len]
                .iter()
                .rposition(|s| s.is_marker())
            {
                clean_from = scanned + p + 1;
            }
            scanned = sink.len;
            window_clean = sink.len - clean_from >= WINDOW;
        }
        if last || end.bit >= stop_bit || window_clean {
            break Ok(Outcome {
                end_bit: end.bit,
                stream_end: last,
                blocks,
                window_clean,
            });
        }
    };
    sink.buf.truncate(sink.len);
    result
}

/// Output with a write index: `buf` is kept longer than the output (zero-filled, grown
/// geometrically) so that the hot loop writes by index and copies matches in 16-byte moves that
/// may run past the match's end, instead of a `Vec::push` per symbol. `buf[len..]` is scratch.
struct Sink<'a, T> {
    buf: &'a mut Vec<T>,
    len: usize,
    /// Most symbols the output may hold (prefix included).
    limit: usize,
}

/// Scratch past the output that any fast-loop write stays within.
const SLACK: usize = 64;
/// Most symbols one fast-loop iteration writes: two literal entries (4) and a match (258).
const MAX_STEP: usize = 262;

impl<T: Symbol> Sink<'_, T> {
    /// Make `buf` hold `len + need + SLACK` symbols (never more than `limit + SLACK`).
    /// False when the limit does not allow `need` more.
    fn room(&mut self, need: usize) -> bool {
        if self.len.saturating_add(need) > self.limit {
            return false;
        }
        let want = self.len + need + SLACK;
        if self.buf.len() < want {
            let grown = (self.buf.len() * 2)
                .max(want)
                .max(1 << 16)
                .min(self.limit.saturating_add(SLACK));
            self.buf.resize(grown.max(want), T::default());
        }
        true
    }

    /// Append one symbol (checked path).
    #[inline]
    fn push(&mut self, v: T) -> Result<(), Error> {
        if !self.room(1) {
            return Err(Error::OutputLimit);
        }
        self.buf[self.len] = v;
        self.len += 1;
        Ok(())
    }
}

/// One block with its 3-bit header: `Ok(true)` if it was the final one.
fn block_any<T: Symbol>(
    bits: &mut Bits<'_>,
    tables: &mut Tables,
    sink: &mut Sink<'_, T>,
) -> Result<bool, Error> {
    let header = bits.bits(3)?;
    match header >> 1 {
        0 => stored(bits, sink)?,
        1 => {
            fixed_tables(tables)?;
            block(bits, tables, sink)?;
        }
        2 => {
            dynamic_header(bits, tables)?;
            block(bits, tables, sink)?;
        }
        _ => return Err(Error::BadBlockType),
    }
    Ok(header & 1 == 1)
}

fn stored<T: Symbol>(bits: &mut Bits<'_>, sink: &mut Sink<'_, T>) -> Result<(), Error> {
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
    if !sink.room(len) {
        return Err(Error::OutputLimit);
    }
    for (d, &b) in sink.buf[sink.len..sink.len + len].iter_mut().zip(bytes) {
        *d = T::byte(b);
    }
    sink.len += len;
    bits.seek_byte(at + len);
    Ok(())
}

fn fixed_tables(t: &mut Tables) -> Result<(), Error> {
    let mut lens = [0u8; 288];
    lens[..144].fill(8);
    lens[144..256].fill(9);
    lens[256..280].fill(7);
    lens[280..].fill(8);
    t.lit.build(&lens, false, Kind::LitLen, true)?;
    // 32 codes as zlib builds it (complete); symbols 30 and 31 are refused when decoded.
    t.dist.build(&[5u8; 32], false, Kind::Dist, false)
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
    t.cl.build(&cl, true, Kind::Plain, false)?;
    let mut lens = [0u8; 286 + 30];
    let n = hlit + hdist;
    let mut i = 0;
    while i < n {
        if bits.available() < 16 {
            bits.refill();
        }
        let e = t.cl.get(bits.peek());
        let len = e & 15;
        if len == 0 {
            return Err(Error::BadCode);
        }
        bits.consume(len)?;
        let sym = e >> 16;
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
    t.lit.build(&lens[..hlit], false, Kind::LitLen, true)?;
    t.dist.build(&lens[hlit..n], false, Kind::Dist, false)
}

/// Decode one Huffman block's data up to and including its end-of-block code: the fast loop
/// while at least 16 input bytes and room for a whole step remain, every read checked near
/// either end.
fn block<T: Symbol>(bits: &mut Bits<'_>, t: &Tables, sink: &mut Sink<'_, T>) -> Result<(), Error> {
    loop {
        if bits.pos + 16 > bits.data.len() || !sink.room(MAX_STEP) {
            return block_checked(bits, t, sink);
        }
        // Run until the buffer's end (grown above), then grow it and go on.
        let fast_end = (sink.buf.len() - SLACK - MAX_STEP).min(sink.limit - MAX_STEP);
        if let Some(r) = block_fast(bits, t, sink.buf, &mut sink.len, fast_end) {
            return r;
        }
    }
}

/// Branch-free refill (libdeflate): afterwards at least 56 bits are buffered. Needs 8 bytes
/// at `pos`.
#[inline(always)]
fn refill(data: &[u8], pos: &mut usize, buf: &mut u64, n: &mut u32) {
    let mut w = [0u8; 8];
    w.copy_from_slice(&data[*pos..*pos + 8]);
    *buf |= u64::from_le_bytes(w) << *n;
    *pos += ((63 - *n) >> 3) as usize;
    *n |= 56;
}

/// The hot loop. `None` when it reached `fast_end` (output) or the last 16 input bytes without
/// finishing the block; `Some` when the block ended or the data is invalid.
///
/// Bit budget: a refill leaves ≥ 56 bits; a literal entry takes ≤ 15, so a second entry can
/// be read without a refill; a length/distance pair takes ≤ 48 (15 + 5 + 15 + 13), so it is
/// decoded right after a refill.
#[inline(never)]
fn block_fast<T: Symbol>(
    bits: &mut Bits<'_>,
    t: &Tables,
    out: &mut [T],
    len: &mut usize,
    fast_end: usize,
) -> Option<Result<(), Error>> {
    let data = bits.data;
    let (mut pos, mut buf, mut n) = (bits.pos, bits.buf, bits.n);
    let mut o = *len;
    let result = loop {
        if o > fast_end || pos + 16 > data.len() {
            break None;
        }
        refill(data, &mut pos, &mut buf, &mut n);
        // Literals never sit behind a sub-table pointer in the primary table, so the literal
        // test comes first and the pointer is only followed for the rest.
        let mut e = t.lit.primary(buf);
        if e & LIT != 0 {
            let l = e & 15;
            buf >>= l;
            n -= l;
            out[o] = T::byte((e >> 16) as u8);
            out[o + 1] = T::byte((e >> 24) as u8);
            o += 1 + ((e & PAIR) >> 8) as usize;
            e = t.lit.primary(buf);
            if e & LIT != 0 {
                let l = e & 15;
                buf >>= l;
                n -= l;
                out[o] = T::byte((e >> 16) as u8);
                out[o + 1] = T::byte((e >> 24) as u8);
                o += 1 + ((e & PAIR) >> 8) as usize;
                continue;
            }
            refill(data, &mut pos, &mut buf, &mut n);
        }
        e = t.lit.resolve(e, buf);
        if e & LIT != 0 {
            // A long literal code (from a sub-table).
            let l = e & 15;
            buf >>= l;
            n -= l;
            out[o] = T::byte((e >> 16) as u8);
            o += 1;
            continue;
        }
        if e & EXC != 0 {
            if e & EOB != 0 {
                let l = e & 15;
                buf >>= l;
                n -= l;
                break Some(Ok(()));
            }
            break Some(Err(Error::BadSymbol));
        }
        // A length: base + extra bits.
        let l = e & 15;
        let extra = (e >> 4) & 15;
        buf >>= l;
        let length = (e >> 16) as usize + (buf & ((1 << extra) - 1)) as usize;
        buf >>= extra;
        let d = t.dist.get(buf);
        if d & EXC != 0 {
            break Some(Err(Error::BadSymbol));
        }
        let dl = d & 15;
        let dextra = (d >> 4) & 15;
        buf >>= dl;
        let dist = (d >> 16) as usize + (buf & ((1 << dextra) - 1)) as usize;
        buf >>= dextra;
        n -= l + extra + dl + dextra;
        if dist > o {
            break Some(Err(Error::TooFarBack));
        }
        copy_fast(out, o, dist, length);
        o += length;
    };
    (bits.pos, bits.buf, bits.n) = (pos, buf, n);
    *len = o;
    result
}

/// Copy `length` symbols from `dist` back to `out[o..]`; `out` has [`SLACK`] scratch symbols
/// past the match, which chunked moves may overwrite.
#[inline(always)]
fn copy_fast<T: Symbol>(out: &mut [T], o: usize, dist: usize, length: usize) {
    let from = o - dist;
    if dist >= T::CHUNK {
        // Each move reads symbols written before it (dist ≥ CHUNK), so overlapping matches
        // repeat correctly.
        let mut k = 0;
        while k < length {
            let (a, b) = out.split_at_mut(o + k);
            b[..T::CHUNK].copy_from_slice(&a[from + k..from + k + T::CHUNK]);
            k += T::CHUNK;
        }
    } else if dist == 1 {
        let v = out[from];
        out[o..o + length].fill(v);
    } else {
        for k in 0..length {
            out[o + k] = out[from + k];
        }
    }
}

/// [`block`] with every read checked (the last bytes of the input or of the output cap).
fn block_checked<T: Symbol>(
    bits: &mut Bits<'_>,
    t: &Tables,
    sink: &mut Sink<'_, T>,
) -> Result<(), Error> {
    loop {
        if bits.available() < 48 {
            bits.refill();
        }
        let e = t.lit.get(bits.peek());
        if e & LIT != 0 {
            bits.consume(e & 15)?;
            sink.push(T::byte((e >> 16) as u8))?;
            if e & PAIR != 0 {
                sink.push(T::byte((e >> 24) as u8))?;
            }
            continue;
        }
        if e & EXC != 0 {
            if e & EOB != 0 {
                bits.consume(e & 15)?;
                return Ok(());
            }
            return Err(Error::BadSymbol);
        }
        bits.consume(e & 15)?;
        let length = (e >> 16) as usize + bits.bits((e >> 4) & 15)? as usize;
        let d = t.dist.get(bits.peek());
        if d & EXC != 0 {
            return Err(Error::BadSymbol);
        }
        bits.consume(d & 15)?;
        let dist = (d >> 16) as usize + bits.bits((d >> 4) & 15)? as usize;
        if dist > sink.len {
            return Err(Error::TooFarBack);
        }
        if !sink.room(length) {
            return Err(Error::OutputLimit);
        }
        for _ in 0..length {
            let v = sink.buf[sink.len - dist];
            sink.buf[sink.len] = v;
            sink.len += 1;
        }
    }
}
