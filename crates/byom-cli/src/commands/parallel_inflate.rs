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
use std::ops::Range;
use std::path::Path;
use std::sync::{mpsc, Condvar, Mutex};
use std::thread;

use byom_core::archive::chunk_plan::{ChunkPlan, HEADER_PROBE, MEMORY_BUDGET};
use byom_core::archive::chunked::{decode_chunk, ChunkResult, Stitcher};
use byom_core::{Report, Settings, Validator};
use sha2::{Digest, Sha256};

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
    /// Compressed bytes per chunk.
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

/// Validate `path` (of `len` bytes) with the parallel inflater, and hash it: the report's
/// sha256 is of the very copies of the bytes that were validated (each accepted chunk's input
/// goes on to the hashing thread; the file is not read a second time). `progress` is told the
/// compressed bytes accepted so far, in file order.
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
    let (hash_tx, hash_rx) = mpsc::sync_channel::<ToHash>(HASH_QUEUE);
    let mut stats = Stats {
        chunks: n,
        chunk: plan.chunk,
        in_order: 0,
        threads,
        in_flight,
    };

    let outcome = thread::scope(|s| -> std::io::Result<Result<(Report, usize), Fallback>> {
        for _ in 0..threads {
            let tx = tx.clone();
            let sched = &sched;
            let plan = &plan;
            s.spawn(move || worker(path, plan, sched, &tx));
        }
        drop(tx);
        let hasher = s.spawn(move || hash(path, &hash_rx));
        let header = &head[..plan.deflate_start as usize];
        let pipes = Pipes {
            decoded: &rx,
            sched: &sched,
            hash: &hash_tx,
        };
        let result = consume(&pipes, path, &plan, header, settings, progress);
        let (lock, cv) = &sched;
        if let Ok(mut g) = lock.lock() {
            g.stop = true;
        }
        cv.notify_all();
        // Drain so that no worker blocks on a full queue (the channel is unbounded anyway).
        for _ in rx.iter() {}
        // After a fallback the hasher gets no final message and stops at the channel's end.
        drop(hash_tx);
        let sha = hasher
            .join()
            .map_err(|_| std::io::Error::other("hashing thread panicked"))??;
        Ok(result.map(|(mut report, in_order)| {
            report.sha256 = sha;
            (report, in_order)
        }))
    })?;
    Ok(outcome.map(|(report, in_order)| {
        stats.in_order = in_order;
        (report, stats)
    }))
}

/// What the hashing thread is handed, in file order.
enum ToHash {
    /// `bytes[range]` are the file's next bytes.
    Bytes(Vec<u8>, Range<usize>),
    /// Read the rest of the file from where the hash has got to (validation stopped early at
    /// a fatal error; the package's hash is still of the whole file), then finish.
    Rest,
    /// Everything was handed; finish.
    Done,
}

/// Most pieces waiting for the hashing thread (each an accepted chunk's input, ~1.25 MiB, beside
/// the chunks in flight; SHA-256 runs ~4× faster than one core inflates, so it rarely waits).
const HASH_QUEUE: usize = 2;

/// The hashing thread: the package's sha256 from the pieces it is handed, `None` if it was
/// not told to finish (the parallel path fell back).
fn hash(path: &Path, rx: &mpsc::Receiver<ToHash>) -> std::io::Result<Option<String>> {
    let mut h = Sha256::new();
    let mut at = 0u64;
    for piece in rx {
        match piece {
            ToHash::Bytes(bytes, range) => {
                h.update(&bytes[range.clone()]);
                at += range.len() as u64;
            }
            ToHash::Rest => {
                let mut file = File::open(path)?;
                file.seek(SeekFrom::Start(at))?;
                std::io::copy(&mut file, &mut h)?;
                return Ok(Some(hex::encode(h.finalize())));
            }
            ToHash::Done => return Ok(Some(hex::encode(h.finalize()))),
        }
    }
    Ok(None)
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

/// How the in-order consumer talks to the other threads.
struct Pipes<'a> {
    /// Decoded chunks from the workers, in any order.
    decoded: &'a mpsc::Receiver<(usize, std::io::Result<ChunkResult>)>,
    /// Permits for the workers (one back per accepted chunk).
    sched: &'a (Mutex<Schedule>, Condvar),
    /// Accepted chunks' inputs, in file order, to the hashing thread.
    hash: &'a mpsc::SyncSender<ToHash>,
}

/// Stitch chunks in order into the validator.
fn consume(
    pipes: &Pipes,
    path: &Path,
    plan: &ChunkPlan,
    header: &[u8],
    settings: &Settings,
    progress: &mut dyn FnMut(u64),
) -> Result<(Report, usize), Fallback> {
    let Pipes {
        decoded: rx,
        sched,
        hash: hash_tx,
    } = *pipes;
    let (len, n) = (plan.file_len, plan.chunks);
    let mut stitcher = Stitcher::new(&settings.limits, len, header);
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
            let supplied = stitcher
                .accept(&r, &mut |bytes| validator.feed_inflated(bytes))
                .map_err(|d| Fallback(d.to_string()))?;
            hash_tx
                .send(ToHash::Bytes(r.job.input, supplied))
                .map_err(|_| Fallback("the hashing thread stopped".into()))?;
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
        // The trailer is hashed from the copy its checks read.
        let n = tail.len();
        hash_tx
            .send(ToHash::Bytes(tail, 0..n))
            .and_then(|()| hash_tx.send(ToHash::Done))
            .map_err(|_| Fallback("the hashing thread stopped".into()))?;
    } else {
        hash_tx
            .send(ToHash::Rest)
            .map_err(|_| Fallback("the hashing thread stopped".into()))?;
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
