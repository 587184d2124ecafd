//! How a `.tar.gz` is cut into chunks for parallel inflate: one plan for every shell that runs
//! [`super::chunked`] (the CLI's threads, the page's Web Workers), so that both read the same
//! byte ranges, give each chunk the same output cap and keep the same memory bound.
//!
//! Chunk `i` nominally covers file bytes `[i × chunk, (i + 1) × chunk)`; its job also reads
//! [`OVERLAP`] bytes past that end, because the deflate block that crosses the nominal end
//! finishes somewhere in there. Chunk 0 starts decoding exactly after the gzip header; every
//! other chunk searches for a block boundary (see [`super::chunked::decode_chunk`]).

use super::chunked::{marker_phase_cap, ChunkJob};
use super::deflate::WINDOW;
use super::gzip::member_header_len;

/// Bytes read past a chunk's nominal end: the block that crosses it must end in there (zlib
/// levels 2–9 write blocks of tens of KiB; a longer one makes the chunk a doubt).
pub const OVERLAP: u64 = 256 << 10;
/// Bytes of the file's start a shell reads to find where the deflate data begins.
pub const HEADER_PROBE: u64 = 64 << 10;
/// What all chunks in flight may hold together, in every shell (the whole process, or the
/// page's workers, stay under the 64 MiB goal).
pub const MEMORY_BUDGET: u64 = 44 << 20;
/// Smallest chunk a plan accepts (tests use 4 KiB to force many chunks on small fixtures).
pub const MIN_CHUNK: u64 = 4 << 10;

/// Why a file is read sequentially instead (never a verdict: the sequential reader decides).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotParallel {
    #[error("no complete gzip header in the first {HEADER_PROBE} bytes")]
    NoHeader,
    #[error("the file is a single chunk")]
    SingleChunk,
}

/// The chunks of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkPlan {
    pub file_len: u64,
    /// Compressed bytes per chunk (nominal).
    pub chunk: u64,
    /// File offset of the deflate data (after the gzip member header).
    pub deflate_start: u64,
    /// Number of chunks.
    pub chunks: usize,
    /// Most output symbols one chunk may produce (the per-chunk bomb guard and memory bound).
    pub max_out: usize,
}

impl ChunkPlan {
    /// `head`: the file's first bytes (at least [`HEADER_PROBE`] of them, or the whole file).
    pub fn new(file_len: u64, head: &[u8], chunk: u64) -> Result<Self, NotParallel> {
        let deflate_start = member_header_len(head).ok_or(NotParallel::NoHeader)? as u64;
        let plan = Self::from_parts(file_len, chunk, deflate_start);
        if plan.chunks < 2 {
            return Err(NotParallel::SingleChunk);
        }
        Ok(plan)
    }

    /// The plan [`Self::new`] made, from its three inputs (a decoding worker that was handed
    /// them rebuilds the coordinator's plan exactly).
    pub fn from_parts(file_len: u64, chunk: u64, deflate_start: u64) -> Self {
        let chunk = chunk.max(MIN_CHUNK);
        let chunks = usize::try_from(file_len.div_ceil(chunk)).unwrap_or(usize::MAX);
        // Weights inflate ~1.1×: 2× the chunk plus 1 MiB for the block that crosses its end.
        // A more compressible chunk (a zeroed layer) overflows it and is decoded by the
        // in-order pass instead, in bounded pieces.
        let max_out = usize::try_from(chunk * 2 + (1 << 20)).unwrap_or(usize::MAX);
        ChunkPlan {
            file_len,
            chunk,
            deflate_start,
            chunks,
            max_out,
        }
    }

    /// File byte range `(offset, len)` that chunk `i`'s job reads.
    pub fn read_range(&self, i: usize) -> (u64, u64) {
        let start = i as u64 * self.chunk;
        let end = (start + self.chunk).min(self.file_len);
        (start, (end + OVERLAP).min(self.file_len) - start)
    }

    /// Chunk `i`'s job, given the bytes of [`Self::read_range`].
    pub fn job(&self, i: usize, input: Vec<u8>) -> ChunkJob {
        let start = i as u64 * self.chunk;
        let end = (start + self.chunk).min(self.file_len);
        ChunkJob {
            offset: start,
            input,
            start_bit: (i == 0).then_some(self.deflate_start * 8),
            stop_bit: (end - start) * 8,
            max_out: self.max_out,
        }
    }

    /// Worst-case bytes one chunk holds in flight: its input and overlap, its output as bytes
    /// (`max_out`), and the marker phase as `u16` twice over (the decoding buffer with its
    /// window of markers, and the head copied out of it; see [`marker_phase_cap`]).
    pub fn bytes_per_chunk(&self) -> u64 {
        let marker_phase = (marker_phase_cap(self.max_out) + WINDOW) as u64;
        self.chunk + OVERLAP + self.max_out as u64 + 4 * marker_phase
    }

    /// How many chunks may be in flight at once within `budget` bytes, for `decoders` decoding
    /// at once (one more than the decoders keeps each busy while the in-order pass catches up).
    pub fn in_flight(&self, budget: u64, decoders: usize) -> usize {
        usize::try_from(budget / self.bytes_per_chunk())
            .unwrap_or(1)
            .clamp(1, decoders.max(1) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal gzip member header (10 bytes, no optional fields) and some deflate bytes.
    fn head() -> Vec<u8> {
        let mut h = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        h.extend([0u8; 100]);
        h
    }

    #[test]
    fn a_decoding_worker_rebuilds_the_coordinators_plan_from_its_three_numbers() {
        let plan = ChunkPlan::new(10 << 20, &head(), 1 << 20).unwrap();
        assert_eq!(plan.deflate_start, 10);
        assert_eq!(plan.chunks, 10);
        assert_eq!(
            ChunkPlan::from_parts(plan.file_len, plan.chunk, plan.deflate_start),
            plan
        );
    }

    #[test]
    fn read_ranges_tile_the_file_and_reach_past_each_end_by_the_overlap() {
        let len = (5 << 20) + 12345;
        let plan = ChunkPlan::new(len, &head(), 1 << 20).unwrap();
        assert_eq!(plan.chunks, 6);
        for i in 0..plan.chunks {
            let (start, n) = plan.read_range(i);
            assert_eq!(start, i as u64 * plan.chunk);
            assert_eq!(start + n, (start + plan.chunk + OVERLAP).min(len));
            let job = plan.job(i, vec![0; n as usize]);
            assert_eq!(job.offset, start);
            assert_eq!(job.stop_bit, (plan.chunk.min(len - start)) * 8);
            // Only the first chunk knows where its deflate data starts; the others search.
            assert_eq!(job.start_bit, (i == 0).then_some(80));
        }
    }

    #[test]
    fn tiny_chunks_are_raised_to_the_minimum_and_small_files_are_not_worth_it() {
        assert_eq!(ChunkPlan::from_parts(1 << 20, 1, 10).chunk, MIN_CHUNK);
        assert_eq!(
            ChunkPlan::new(MIN_CHUNK, &head(), MIN_CHUNK),
            Err(NotParallel::SingleChunk)
        );
        assert_eq!(
            ChunkPlan::new(1 << 20, b"PK\x03\x04 not gzip", MIN_CHUNK),
            Err(NotParallel::NoHeader)
        );
    }

    #[test]
    fn chunks_in_flight_stay_within_the_budget_but_never_stall() {
        let plan = ChunkPlan::from_parts(100 << 20, 1 << 20, 10);
        let per = plan.bytes_per_chunk();
        assert_eq!(plan.in_flight(per * 3, 8), 3);
        // One more than the decoders at most: each stays busy, no more is held.
        assert_eq!(plan.in_flight(per * 100, 2), 3);
        // A budget smaller than one chunk still lets one through.
        assert_eq!(plan.in_flight(1, 4), 1);
        // The marker phase is counted at its own cap, not as the whole chunk in `u16`: three
        // chunks of 3 MiB (the page's parallel chunk, 2 decoders + 1) fit the budget.
        let page = ChunkPlan::from_parts(100 << 20, 3 << 20, 10);
        assert_eq!(page.in_flight(MEMORY_BUDGET, 2), 3);
        assert!(
            plan.bytes_per_chunk() < 7 << 20,
            "{}",
            plan.bytes_per_chunk()
        );
    }
}
