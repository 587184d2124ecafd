//! `byom validate --inflate-threads N`: the gzip stream inflated on N threads (two-stage
//! decoding, rapidgzip/pugz) and fed in order to the one sequential validator.
//!
//! The threads and the file reads live here; the decoding and the proof that the stitched
//! stream equals the sequential reader's are the core's ([`byom_core::archive::chunked`]).
//! Every doubt the core raises (corrupt data, a bomb, a multi-member or trailing-data file, no
//! block boundary within a chunk's overlap) returns [`Fallback`]; the
//! caller then validates with the sequential reader from the start, so the report never
//! depends on this path.
//!
//! Memory: at most `in_flight` chunks exist at once (read, decoding, or waiting for their turn),
//! within the core's budget ([`ChunkPlan::bytes_per_chunk`], [`MEMORY_BUDGET`]); a chunk the
//! in-order pass decodes itself (over its cap) is handed on in bounded pieces.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{mpsc, Condvar, Mutex};
use std::thread;

use byom_core::archive::chunk_plan::{ChunkPlan, HEADER_PROBE, MEMORY_BUDGET};
use byom_core::archive::chunked::{decode_chunk, ChunkResult, Stitcher};
use byom_core::{Report, Settings, Validator};

/// How the parallel reader runs.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub threads: usize,
    /// Compressed bytes per chunk.
    pub chunk: u64,
}

/// Why the sequential reader must decide instead.
#[derive(Debug)]
pub struct Fallback(pub String);

/// What the parallel path did (for `BYOM_INFLATE_TRACE`).
#[derive(Debug, Default)]
pub struct Stats {
    pub chunks: usize,
    /// Compressed bytes per chunk (smaller than asked for compressible data).
    pub chunk: u64,
    /// Chunks the in-order pass decoded itself.
    pub in_order: usize,
    pub threads: usize,
    pub in_flight: usize,
}

struct Schedule {
    next: usize,
    permits: usize,
    stop: bool,
}

/// Validate `path` (of `len` bytes) with the parallel inflater; the report has no sha256 yet.
/// `progress` is told the compressed bytes accepted so far, in file order.
pub fn validate(
    path: &Path,
    len: u64,
    settings: &Settings,
    opts: Options,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<Result<(Report, Stats), Fallback>> {
    let mut file = File::open(path)?;
    let mut head = Vec::new();
    (&mut file).take(HEADER_PROBE).read_to_end(&mut head)?;
    let plan = match ChunkPlan::new(len, &head, opts.chunk) {
        Ok(plan) => plan,
        Err(why) => return Ok(Err(Fallback(why.to_string()))),
    };
    let n = plan.chunks;
    let in_flight = plan.in_flight(MEMORY_BUDGET, opts.threads.max(1));
    // No more threads than chunks may be in flight (the memory budget's bound, 6 at 1 MiB):
    // on a 32-core notebook the rest would only wait for a permit.
    let threads = opts.threads.clamp(1, in_flight);

    let sched = (
        Mutex::new(Schedule {
            next: 0,
            permits: in_flight,
            stop: false,
        }),
        Condvar::new(),
    );
    let (tx, rx) = mpsc::channel::<(usize, std::io::Result<ChunkResult>)>();
    let mut stats = Stats {
        chunks: n,
        chunk: plan.chunk,
        in_order: 0,
        threads,
        in_flight,
    };

    let outcome = thread::scope(|s| {
        for _ in 0..threads {
            let tx = tx.clone();
            let sched = &sched;
            let plan = &plan;
            s.spawn(move || worker(path, plan, sched, &tx));
        }
        drop(tx);
        let result = consume(&rx, &sched, path, &plan, settings, progress);
        let (lock, cv) = &sched;
        if let Ok(mut g) = lock.lock() {
            g.stop = true;
        }
        cv.notify_all();
        // Drain so that no worker blocks on a full queue (the channel is unbounded anyway).
        for _ in rx.iter() {}
        result
    });
    Ok(outcome.map(|(report, in_order)| {
        stats.in_order = in_order;
        (report, stats)
    }))
}

/// Decode claimed chunks until told to stop.
fn worker(
    path: &Path,
    plan: &ChunkPlan,
    sched: &(Mutex<Schedule>, Condvar),
    tx: &mpsc::Sender<(usize, std::io::Result<ChunkResult>)>,
) {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.send((0, Err(e)));
            return;
        }
    };
    loop {
        let i = {
            let (lock, cv) = sched;
            let Ok(mut g) = lock.lock() else { return };
            while g.permits == 0 && !g.stop {
                g = match cv.wait(g) {
                    Ok(g) => g,
                    Err(_) => return,
                };
            }
            if g.stop || g.next >= plan.chunks {
                return;
            }
            g.permits -= 1;
            g.next += 1;
            g.next - 1
        };
        let (start, n) = plan.read_range(i);
        let result = read_at(&mut file, start, n).map(|input| decode_chunk(plan.job(i, input)));
        if tx.send((i, result)).is_err() {
            return;
        }
    }
}

/// Stitch chunks in order into the validator.
fn consume(
    rx: &mpsc::Receiver<(usize, std::io::Result<ChunkResult>)>,
    sched: &(Mutex<Schedule>, Condvar),
    path: &Path,
    plan: &ChunkPlan,
    settings: &Settings,
    progress: &mut dyn FnMut(u64),
) -> Result<(Report, usize), Fallback> {
    let (len, n) = (plan.file_len, plan.chunks);
    let mut stitcher = Stitcher::new(&settings.limits, len, plan.deflate_start);
    let mut validator = Validator::new(settings);
    let mut pending: BTreeMap<usize, ChunkResult> = BTreeMap::new();
    let mut expected = 0;
    while expected < n && !stitcher.stream_ended() && !validator.is_finished() {
        let Ok((i, result)) = rx.recv() else {
            return Err(Fallback("a decoding thread stopped".into()));
        };
        let result = result.map_err(|e| Fallback(format!("read error: {e}")))?;
        pending.insert(i, result);
        while let Some(r) = pending.remove(&expected) {
            stitcher
                .accept(r, &mut |bytes| validator.feed_inflated(bytes))
                .map_err(|d| Fallback(d.to_string()))?;
            expected += 1;
            progress((expected as u64 * plan.chunk).min(len));
            let (lock, cv) = sched;
            if let Ok(mut g) = lock.lock() {
                g.permits += 1;
            }
            cv.notify_one();
            if stitcher.stream_ended() || validator.is_finished() {
                break;
            }
        }
    }
    let in_order = stitcher.in_order_chunks();
    if !validator.is_finished() {
        let Some(t) = stitcher.trailer_offset() else {
            return Err(Fallback("the deflate stream does not end".into()));
        };
        let mut file = File::open(path).map_err(|e| Fallback(e.to_string()))?;
        let tail = read_at(&mut file, t.min(len), (len - t.min(len)).min(9))
            .map_err(|e| Fallback(e.to_string()))?;
        stitcher
            .finish(&tail)
            .map_err(|d| Fallback(d.to_string()))?;
    }
    Ok((validator.finish_inflated(len), in_order))
}

fn read_at(file: &mut File, offset: u64, n: u64) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    file.take(n).read_to_end(&mut buf)?;
    if (buf.len() as u64) < n {
        return Err(std::io::Error::other("the file shrank while being read"));
    }
    Ok(buf)
}
