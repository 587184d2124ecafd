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
//! elsewhere (a false boundary, or a stored/fixed block the search does not look for), or that
//! its thread could not decode (over its output cap: a zeroed layer inflates 1000×), is decoded
//! again here from the right bit with the real window, in pieces of bounded size.
//!
//! Anything else is a [`Doubt`]: the caller must discard what it fed and run the sequential
//! reader from the start, which stays the reference for every verdict (corrupt data, bombs,
//! multi-member files, trailing data). For the same reason the sequential reader's limits are
//! proven not to fire: the total size is within `max_uncompressed_bytes`, and at every
//! compressed offset where it checks the ratio, the output of all blocks that end at or after
//! that offset (more than any inflater can have produced there) is within the ratio.

use std::ops::Range;

use crc32fast::Hasher;

use super::deflate::{
    self, inflate_bytes, inflate_markers, BlockEnd, ByteInflater, Fill, MARKER, WINDOW,
};
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

/// Output handed on at a time when the in-order pass decodes a chunk itself (a chunk the
/// decoding threads could not, e.g. over its output cap): its memory, whatever the chunk holds.
pub const IN_ORDER_PIECE: usize = 1 << 20;

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
    #[error("two reads of the same bytes of the file differ (it changed while being read)")]
    Changed,
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
    /// Reused buffer for resolved heads and in-order pieces.
    piece: Vec<u8>,
    /// Most bytes of one in-order piece ([`IN_ORDER_PIECE`] unless a test says otherwise).
    piece_max: usize,
    /// Chunks the in-order pass decoded itself.
    in_order: usize,
    /// [`Self::resolve`]'s table (64 KiB, built per chunk that has markers).
    lut: Box<[u8; 1 << 16]>,
    /// The gzip member header as the plan parsed it (chunk 0's input must start with it).
    header: Vec<u8>,
    /// File offset up to which accepted chunks' inputs supplied the bytes (see
    /// [`Self::accept`]).
    supplied_to: u64,
    /// The byte holding [`Self::next_bit`] when it is not byte-aligned, as the previous chunk's
    /// input had it: `(file offset, value)`. The next chunk decodes its other bits from its
    /// own copy, which must agree.
    boundary: Option<(u64, u8)>,
}

impl Stitcher {
    /// `header`: the gzip member header (the file's first [`super::gzip::member_header_len`]
    /// bytes) as the caller read and parsed it; the deflate data starts after it.
    pub fn new(limits: &Limits, file_len: u64, header: &[u8]) -> Self {
        Stitcher {
            limits: limits.clone(),
            file_len,
            next_bit: header.len() as u64 * 8,
            end_bit: None,
            window: Vec::with_capacity(WINDOW),
            total_out: 0,
            crc: Hasher::new(),
            next_check: RATIO_CHECK_INTERVAL,
            piece: Vec::new(),
            piece_max: IN_ORDER_PIECE,
            in_order: 0,
            lut: Box::new([0; 1 << 16]),
            header: header.to_vec(),
            supplied_to: 0,
            boundary: None,
        }
    }

    /// The same, handing in-order output on in pieces of at most `bytes` (tests and fuzzing
    /// use a few bytes, to resume decoding at every kind of place).
    pub fn with_in_order_piece(mut self, bytes: usize) -> Self {
        self.piece_max = bytes.max(1);
        self
    }

    /// How many chunks this pass decoded itself (their decoding thread's result was an error,
    /// over a cap, or started at the wrong bit), for traces and benchmarks.
    pub fn in_order_chunks(&self) -> usize {
        self.in_order
    }

    /// True once the final block was accepted (later chunks are not needed).
    pub fn stream_ended(&self) -> bool {
        self.end_bit.is_some()
    }

    /// Accept the next chunk in file order, handing its verified bytes to `sink` in order (none
    /// when the chunk was already covered by the previous one). Every check on a piece runs
    /// before it is handed on; after a [`Doubt`] the caller discards all it was handed.
    ///
    /// Returns the range of `result.job.input` whose bytes this chunk supplied to the validated
    /// stream (its part of the gzip header, the deflate data, the byte its last block ends
    /// in), so that a caller hashing the package hashes exactly the copies that were validated:
    /// over all chunks, the file from 0 to [`Self::trailer_offset`], in order, once. Where two
    /// copies of the file meet (the header read before planning and chunk 0's; the byte a chunk
    /// ends inside and the next chunk's copy of it) they must agree, else [`Doubt::Changed`].
    pub fn accept(
        &mut self,
        result: &ChunkResult,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<Range<usize>, Doubt> {
        let job = &result.job;
        let base = job.offset * 8;
        if self.end_bit.is_some() || self.next_bit >= base + job.stop_bit {
            return Ok(0..0);
        }
        // Index of file offset `at` in this chunk's input (its end included).
        let within = |at: u64| {
            at.checked_sub(job.offset)
                .and_then(|i| usize::try_from(i).ok())
                .filter(|&i| i <= job.input.len())
        };
        if job.offset == 0 && !job.input.starts_with(&self.header) {
            return Err(Doubt::Changed);
        }
        if let Some((at, byte)) = self.boundary {
            if within(at).and_then(|i| job.input.get(i)) != Some(&byte) {
                return Err(Doubt::Changed);
            }
        }
        let rel = self.next_bit - base;
        let mut piece = std::mem::take(&mut self.piece);
        piece.clear();
        let done = match &result.decoded {
            Ok(d) if d.start_bit == rel => self.accept_decoded(base, d, &mut piece, sink),
            _ => self.decode_in_order(job, rel, &mut piece, sink),
        };
        self.piece = piece;
        done?;
        let end = self.next_bit.div_ceil(8);
        // Both ends lie in this chunk's input: it starts at or before where the previous chunk
        // stopped and its decoding read up to `end`.
        let supplied = within(self.supplied_to)
            .zip(within(end))
            .map(|(from, to)| from..to)
            .ok_or(Doubt::Changed)?;
        self.supplied_to = end;
        // Inside this chunk's input: its decoding read that byte.
        let at = self.next_bit / 8;
        self.boundary = (!self.next_bit.is_multiple_of(8))
            .then(|| within(at))
            .flatten()
            .and_then(|i| job.input.get(i))
            .map(|&byte| (at, byte));
        Ok(supplied)
    }

    /// A chunk its thread decoded from the proven bit: resolve its markers, check, hand on.
    fn accept_decoded(
        &mut self,
        base: u64,
        d: &Decoded,
        piece: &mut Vec<u8>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), Doubt> {
        let before = self.total_out;
        self.resolve(&d.head, piece)?;
        let out = piece.len() as u64 + d.tail.len() as u64;
        self.check_total(before + out)?;
        self.check_ratio(base, before, &d.outcome.blocks)?;
        self.crc.update(piece);
        self.crc.combine(&d.tail_crc);
        self.total_out += out;
        self.slide_window(piece);
        self.slide_window(&d.tail);
        sink(piece);
        sink(&d.tail);
        self.advance(base, d.outcome.end_bit, d.outcome.stream_end);
        Ok(())
    }

    /// Decode `job` from its bit `rel` with the real window (zlib-rs), in pieces of at most
    /// [`IN_ORDER_PIECE`] bytes, each checked and handed on before the next is decoded: a
    /// chunk far over the decoding threads' output cap costs time here, not memory.
    fn decode_in_order(
        &mut self,
        job: &ChunkJob,
        rel: u64,
        piece: &mut Vec<u8>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), Doubt> {
        self.in_order += 1;
        let undecodable = |e| Doubt::Undecodable(job.offset, e);
        let base = job.offset * 8;
        let before = self.total_out;
        let mut inflater = ByteInflater::new(&job.input, rel, &self.window).map_err(undecodable)?;
        let mut blocks = Vec::new();
        loop {
            piece.clear();
            let fill = inflater
                .fill(&job.input, job.stop_bit, piece, self.piece_max, &mut blocks)
                .map_err(undecodable)?;
            let out = self.total_out + piece.len() as u64;
            self.check_total(out)?;
            self.check_ratio(base, before, &blocks)?;
            blocks.clear();
            // Inside one long block no block end bounds the output yet: the sequential reader
            // checks at the next interval at the latest, and it would already have this much.
            let reached = (base + inflater.bit()).div_ceil(8);
            if self.ratio_exceeded(out, reached + RATIO_CHECK_INTERVAL) {
                return Err(Doubt::Ratio);
            }
            self.crc.update(piece);
            self.total_out = out;
            self.slide_window(piece);
            sink(piece);
            if let Fill::Stopped {
                end_bit,
                stream_end,
            } = fill
            {
                self.advance(base, end_bit, stream_end);
                return Ok(());
            }
        }
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
        self.check_ratio(0, total, &end)?;
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

    fn check_total(&self, out: u64) -> Result<(), Doubt> {
        if out > self.limits.max_uncompressed_bytes {
            return Err(Doubt::TooLarge);
        }
        Ok(())
    }

    /// Every ratio check point up to each block end, bounded by that block's output.
    /// `blocks` are relative to bit `base` and to `before`, the output before this chunk.
    fn check_ratio(&mut self, base: u64, before: u64, blocks: &[BlockEnd]) -> Result<(), Doubt> {
        for b in blocks {
            let bound = before + b.out;
            while self.next_check * 8 <= base + b.bit && self.next_check <= self.file_len {
                if self.ratio_exceeded(bound, self.next_check) {
                    return Err(Doubt::Ratio);
                }
                self.next_check += RATIO_CHECK_INTERVAL;
            }
        }
        Ok(())
    }

    /// Symbols to bytes, markers replaced from the window: one table lookup per symbol, no
    /// branch (a chunk whose window never cleans holds markers all through its head, and this
    /// runs on the one in-order thread; on the quantized benchmark package it took half the
    /// time of a branch per symbol). The table maps a literal to itself and marker
    /// `MARKER + i` to window byte `i`; the values between never come out of the decoder (a
    /// malformed message from the page's decoding worker could hold them: they become 0, and
    /// the stream's CRC-32 refuses the result).
    fn resolve(&mut self, symbols: &[u16], out: &mut Vec<u8>) -> Result<(), Doubt> {
        if symbols.is_empty() {
            return Ok(());
        }
        // Markers index a 32 KiB window; only its last `window.len()` bytes exist (fewer at
        // the stream's start), and a marker before them is a back-reference before the start.
        let missing = WINDOW - self.window.len();
        if missing > 0 {
            let before = u16::try_from(missing).map_or(u16::MAX, |m| MARKER.saturating_add(m));
            if symbols.iter().any(|&s| (MARKER..before).contains(&s)) {
                return Err(Doubt::BeforeStart);
            }
        }
        let lut = &mut *self.lut;
        for (i, b) in lut[..256].iter_mut().enumerate() {
            *b = i as u8;
        }
        let markers = usize::from(MARKER);
        lut[markers + missing..markers + WINDOW].copy_from_slice(&self.window);
        let start = out.len();
        out.resize(start + symbols.len(), 0);
        for (d, &s) in out[start..].iter_mut().zip(symbols) {
            *d = lut[usize::from(s)];
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
