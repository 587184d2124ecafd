//! Two-stage parallel gunzip, the pure half (rapidgzip / pugz): [`decode_chunk`] inflates one
//! chunk of compressed bytes on any thread without knowing the data before it, and
//! [`Stitcher`] accepts the chunks in order on one thread, resolving their window markers and
//! proving that the result is what the sequential reader ([`super::GzipDecoder`]) would
//! produce. Threads and file reads belong to the caller (the CLI); nothing here does I/O.
//!
//! Why the result equals sequential decoding: chunk 0 starts at the true start of the deflate
//! data; every chunk is decoded up to the first block end at or past the next chunk's nominal
//! start, and the next chunk is accepted only if it started at exactly that bit. By induction
//! every accepted chunk starts at a real block boundary and is decoded by a deterministic
//! decoder, its window markers replaced by the real preceding bytes. A chunk that started
//! elsewhere (a false boundary, or a stored/fixed block the search does not look for) is decoded
//! again here from the right bit with the real window.
//!
//! Anything else is a [`Doubt`]: the caller must discard what it fed and run the sequential
//! reader from the start, which stays the reference for every verdict (corrupt data, bombs,
//! multi-member files, trailing data). For the same reason the sequential reader's limits are
//! proven not to fire: the total size is within `max_uncompressed_bytes`, and at every
//! compressed offset where it checks the ratio, the output of all blocks that end at or after
//! that offset (more than any inflater can have produced there) is within the ratio.

use crc32fast::Hasher;

use super::deflate::{self, inflate_bytes, inflate_markers, BlockEnd, MARKER, WINDOW};
use super::gzip::RATIO_CHECK_INTERVAL;
use crate::Limits;

/// One chunk's work: the compressed bytes from the chunk's nominal start to its nominal end
/// plus an overlap (a block ends somewhere past the nominal end).
#[derive(Debug, Clone)]
pub struct ChunkJob {
    /// File offset of `input[0]` (the chunk's nominal start).
    pub offset: u64,
    pub input: Vec<u8>,
    /// `Some(bit)` for the first chunk: decoding starts exactly there (after the gzip header).
    /// `None`: search for a block boundary from bit 0.
    pub start_bit: Option<u64>,
    /// Bit of `input` where the next chunk nominally starts (stop after the block ending here
    /// or later); the input's end for the last chunk.
    pub stop_bit: u64,
    /// Most output symbols (the per-chunk bomb guard and memory bound).
    pub max_out: usize,
}

/// A decoded chunk (or why it could not be decoded on its own).
#[derive(Debug)]
pub struct ChunkResult {
    pub job: ChunkJob,
    pub decoded: Result<Decoded, deflate::Error>,
}

/// A chunk's output: a head of bytes and window markers (up to the last marker), then plain
/// bytes, narrowed and checksummed on the decoding thread so that the in-order pass only
/// resolves the head.
#[derive(Debug)]
pub struct Decoded {
    pub start_bit: u64,
    pub outcome: deflate::Outcome,
    pub head: Vec<u16>,
    pub tail: Vec<u8>,
    pub tail_crc: Hasher,
}

/// Most symbols the marker phase of one chunk may produce. Weight-like data has a clean window
/// after one or two blocks (tens of KiB); a chunk whose window is still not clean after this
/// much output (long runs copied from before the chunk) is left to the in-order pass, which
/// decodes it with the real window, as any chunk it doubts. Capping the phase on its own, not
/// only with the chunk's output cap, is what keeps the `u16` worst case out of
/// [`super::chunk_plan::ChunkPlan::bytes_per_chunk`]: since zlib-rs writes the rest as bytes,
/// a chunk costs its input, its output and this.
pub const MARKER_PHASE_MAX: usize = 512 << 10;

/// Most symbols the marker phase of a chunk with output cap `max_out` may produce.
pub fn marker_phase_cap(max_out: usize) -> usize {
    max_out.min(MARKER_PHASE_MAX)
}

/// Decode one chunk (any thread): with window markers (`u16`) until the last 32 KiB of output
/// hold none (rapidgzip's switch; weight-like data gets there after one or two blocks; at most
/// [`MARKER_PHASE_MAX`] symbols), then as bytes with that window by zlib-rs
/// ([`inflate_bytes`]), straight into [`Decoded::tail`]: most of the chunk is decoded by the
/// sequential reader's own inflater.
pub fn decode_chunk(job: ChunkJob) -> ChunkResult {
    let marker_cap = marker_phase_cap(job.max_out);
    let mut symbols: Vec<u16> = Vec::with_capacity(4 * WINDOW);
    symbols.extend((0..WINDOW as u16).map(|i| MARKER + i));
    let decoded = match job.start_bit {
        Some(bit) => inflate_markers(&job.input, bit, job.stop_bit, &mut symbols, marker_cap)
            .map(|outcome| (bit, outcome)),
        None => deflate::find_and_inflate(
            &job.input,
            0,
            job.stop_bit,
            job.stop_bit,
            &mut symbols,
            marker_cap,
        ),
    }
    .and_then(|(start_bit, mut outcome)| {
        let out = &symbols[WINDOW..];
        let split = out.iter().rposition(|&s| s >= 256).map_or(0, |i| i + 1);
        let head = out[..split].to_vec();
        let mut tail: Vec<u8> = Vec::with_capacity(if outcome.window_clean {
            (job.input.len() * 2).min(job.max_out)
        } else {
            out.len() - split
        });
        tail.extend(out[split..].iter().map(|&s| s as u8));
        if outcome.window_clean {
            // `tail` (≥ 32 KiB, no markers) is the window; the rest is appended to it.
            let used = out.len();
            let rest = inflate_bytes(
                &job.input,
                outcome.end_bit,
                job.stop_bit,
                &mut tail,
                job.max_out - used,
            )?;
            let base = used as u64;
            outcome.blocks.extend(rest.blocks.iter().map(|b| BlockEnd {
                bit: b.bit,
                out: base + b.out,
            }));
            outcome.end_bit = rest.end_bit;
            outcome.stream_end = rest.stream_end;
            outcome.window_clean = false;
        }
        let mut tail_crc = Hasher::new();
        tail_crc.update(&tail);
        Ok(Decoded {
            start_bit,
            outcome,
            head,
            tail,
            tail_crc,
        })
    });
    ChunkResult { job, decoded }
}

/// Why the parallel result cannot be vouched for: the caller runs the sequential reader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Doubt {
    #[error("chunk at offset {0} could not be decoded from its true start: {1}")]
    Undecodable(u64, deflate::Error),
    #[error("a back-reference reaches before the start of the stream")]
    BeforeStart,
    #[error("the sequential reader would check the compression ratio closely here")]
    Ratio,
    #[error("the output exceeds max_uncompressed_bytes")]
    TooLarge,
    #[error("the deflate stream does not end inside the file")]
    NoEnd,
    #[error("the gzip trailer is not exactly the last 8 bytes, or does not match")]
    Trailer,
}

/// Accepts decoded chunks in order and hands out the verified inflated bytes.
#[derive(Debug)]
pub struct Stitcher {
    limits: Limits,
    file_len: u64,
    /// Absolute bit where the next accepted data must start.
    next_bit: u64,
    /// Absolute bit just past the final block, once seen.
    end_bit: Option<u64>,
    window: Vec<u8>,
    total_out: u64,
    crc: Hasher,
    /// Next compressed offset at which the sequential reader checks the ratio.
    next_check: u64,
}

impl Stitcher {
    /// `deflate_start`: file offset after the gzip header (see [`super::gzip::member_header_len`]).
    pub fn new(limits: &Limits, file_len: u64, deflate_start: u64) -> Self {
        Stitcher {
            limits: limits.clone(),
            file_len,
            next_bit: deflate_start * 8,
            end_bit: None,
            window: Vec::with_capacity(WINDOW),
            total_out: 0,
            crc: Hasher::new(),
            next_check: RATIO_CHECK_INTERVAL,
        }
    }

    /// True once the final block was accepted (later chunks are not needed).
    pub fn stream_ended(&self) -> bool {
        self.end_bit.is_some()
    }

    /// Accept the next chunk in file order; its verified bytes replace `out`'s contents
    /// (empty when the chunk was already covered by the previous one).
    pub fn accept(&mut self, result: ChunkResult, out: &mut Vec<u8>) -> Result<(), Doubt> {
        out.clear();
        let job = &result.job;
        let base = job.offset * 8;
        if self.end_bit.is_some() || self.next_bit >= base + job.stop_bit {
            return Ok(());
        }
        let rel = self.next_bit - base;
        let blocks: Vec<BlockEnd>;
        match result.decoded {
            Ok(d) if d.start_bit == rel => {
                self.resolve(&d.head, out)?;
                self.crc.update(out);
                self.crc.combine(&d.tail_crc);
                out.extend_from_slice(&d.tail);
                blocks = d.outcome.blocks;
                self.advance(base, d.outcome.end_bit, d.outcome.stream_end);
            }
            _ => {
                // Decode again from the proven bit, with the real window (zlib-rs).
                let mut buf = self.window.clone();
                let outcome = inflate_bytes(&job.input, rel, job.stop_bit, &mut buf, job.max_out)
                    .map_err(|e| Doubt::Undecodable(job.offset, e))?;
                out.extend_from_slice(&buf[self.window.len()..]);
                self.crc.update(out);
                blocks = outcome.blocks;
                self.advance(base, outcome.end_bit, outcome.stream_end);
            }
        }
        self.check_ratio(base, &blocks)?;
        self.total_out += out.len() as u64;
        if self.total_out > self.limits.max_uncompressed_bytes {
            return Err(Doubt::TooLarge);
        }
        self.slide_window(out);
        Ok(())
    }

    /// After the last chunk: `tail` is everything in the file after the deflate data (it must
    /// be exactly the 8-byte trailer; more members or trailing bytes go to the reference).
    /// `tail` starts at [`Self::trailer_offset`].
    pub fn finish(mut self, tail: &[u8]) -> Result<(), Doubt> {
        let Some(offset) = self.trailer_offset() else {
            return Err(Doubt::NoEnd);
        };
        if offset + 8 != self.file_len || tail.len() != 8 {
            return Err(Doubt::Trailer);
        }
        let crc = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        let isize = u32::from_le_bytes([tail[4], tail[5], tail[6], tail[7]]);
        if crc != self.crc.clone().finalize() || u64::from(isize) != self.total_out & 0xFFFF_FFFF {
            return Err(Doubt::Trailer);
        }
        // Ratio checks after the deflate data (the trailer), bounded by the whole output, and
        // the final one at the end of the file.
        let total = self.total_out;
        let end = [BlockEnd {
            bit: self.file_len * 8,
            out: 0,
        }];
        self.check_ratio(0, &end)?;
        if self.ratio_exceeded(total, self.file_len) {
            return Err(Doubt::Ratio);
        }
        Ok(())
    }

    /// File offset of the gzip trailer (the byte after the final block), once known.
    pub fn trailer_offset(&self) -> Option<u64> {
        self.end_bit.map(|b| b.div_ceil(8))
    }

    fn advance(&mut self, base: u64, end_bit: u64, stream_end: bool) {
        self.next_bit = base + end_bit;
        if stream_end {
            self.end_bit = Some(self.next_bit);
        }
    }

    fn ratio_exceeded(&self, out: u64, at: u64) -> bool {
        out > self.limits.ratio_grace_bytes
            && out > self.limits.max_compression_ratio.saturating_mul(at)
    }

    /// Every ratio check point up to each block end, bounded by that block's output.
    /// `blocks` are relative to bit `base` and to the output before this chunk.
    fn check_ratio(&mut self, base: u64, blocks: &[BlockEnd]) -> Result<(), Doubt> {
        for b in blocks {
            let bound = self.total_out + b.out;
            while self.next_check * 8 <= base + b.bit && self.next_check <= self.file_len {
                if self.ratio_exceeded(bound, self.next_check) {
                    return Err(Doubt::Ratio);
                }
                self.next_check += RATIO_CHECK_INTERVAL;
            }
        }
        Ok(())
    }

    fn resolve(&self, symbols: &[u16], out: &mut Vec<u8>) -> Result<(), Doubt> {
        // Markers index a 32 KiB window; only its last `window.len()` bytes exist.
        let missing = WINDOW - self.window.len();
        out.reserve(symbols.len());
        for &s in symbols {
            if s < 256 {
                out.push(s as u8);
            } else {
                let i = usize::from(s - MARKER);
                let Some(j) = i.checked_sub(missing) else {
                    return Err(Doubt::BeforeStart);
                };
                out.push(self.window[j]);
            }
        }
        Ok(())
    }

    fn slide_window(&mut self, out: &[u8]) {
        if out.len() >= WINDOW {
            self.window.clear();
            self.window.extend_from_slice(&out[out.len() - WINDOW..]);
        } else {
            let keep = (WINDOW - out.len()).min(self.window.len());
            self.window.drain(..self.window.len() - keep);
            self.window.extend_from_slice(out);
        }
    }
}
