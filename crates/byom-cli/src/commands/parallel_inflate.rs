//! `byom validate --inflate-threads N`: the gzip stream inflated on N threads (two-stage
//! decoding, rapidgzip/pugz) and fed in order to the one sequential validator.
//!
//! The threads and the file reads live here; the decoding and the proof that the stitched
//! stream equals the sequential reader's are the core's ([`byom_core::archive::chunked`]).
//! Every doubt the core raises (corrupt data, a bomb, a multi-member or trailing-data file, a
//! chunk too compressible for the memory bound, no block boundary) returns [`Fallback`]; the
//! caller then validates with the sequential reader from the start, so the report never
//! depends on this path.
//!
//! Memory: at most `in_flight` chunks exist at once (read, decoding, or waiting for their turn),
//! each its compressed bytes plus at most `max_out` 16-bit symbols, sized to stay near 48 MiB.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{mpsc, Condvar, Mutex};
use std::thread;

use byom_core::archive::chunked::{decode_chunk, ChunkJob, ChunkResult, Stitcher};
use byom_core::archive::gzip::member_header_len;
use byom_core::{Report, Settings, Validator};

/// Bytes read past a chunk's nominal end: the block that crosses it must end in there
/// (zlib levels 2–9 write blocks of tens of KiB; a longer one makes the chunk a doubt).
const OVERLAP: u64 = 256 << 10;
/// Header bytes read to find where the deflate data starts.
const HEADER_PROBE: u64 = 64 << 10;
/// What all chunks in flight may hold together (the whole process stays under 64 MiB).
const MEMORY_BUDGET: u64 = 44 << 20;

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
    pub threads: usize,
    pub in_flight: usize,
}

struct Schedule {
    next: usize,
    permits: usize,
    stop: bool,
}

/// Validate `path` (of `len` bytes) with the parallel inflater; the report has no sha256 yet.
pub fn validate(
    path: &Path,
    len: u64,
    settings: &Settings,
    opts: Options,
) -> std::io::Result<Result<(Report, Stats), Fallback>> {
    let chunk = opts.chunk.max(4 << 10);
    let mut file = File::open(path)?;
    let mut head = Vec::new();
    (&mut file).take(HEADER_PROBE).read_to_end(&mut head)?;
    let Some(header) = member_header_len(&head) else {
        return Ok(Err(Fallback("no complete gzip header".into())));
    };
    let n = usize::try_from(len.div_ceil(chunk)).unwrap_or(usize::MAX);
    if n < 2 {
        return Ok(Err(Fallback("the file is a single chunk".into())));
    }
    // Output cap: weights inflate ~1.1×, so 2× the chunk plus 1 MiB for the block that crosses
    // its end. More compressible data overflows it and goes to the sequential reader.
    let max_out = usize::try_from(chunk * 2 + (1 << 20)).unwrap_or(usize::MAX);
    // Each chunk at worst: its input and overlap, `max_out` u16 symbols, the same as bytes.
    let per_chunk = chunk + OVERLAP + 3 * max_out as u64;
    let threads = opts.threads.max(1);
    let in_flight = usize::try_from(MEMORY_BUDGET / per_chunk)
        .unwrap_or(1)
        .clamp(1, threads + 1);

    let sched = (
        Mutex::new(Schedule {
            next: 0,
            permits: in_flight,
            stop: false,
        }),
        Condvar::new(),
    );
    let (tx, rx) = mpsc::channel::<(usize, std::io::Result<ChunkResult>)>();
    let stats = Stats {
        chunks: n,
        threads,
        in_flight,
    };

    let outcome = thread::scope(|s| {
        for _ in 0..threads {
            let tx = tx.clone();
            let sched = &sched;
            s.spawn(move || worker(path, len, chunk, header as u64, max_out, n, sched, &tx));
        }
        drop(tx);
        let result = consume(&rx, &sched, path, len, header as u64, settings, n);
        let (lock, cv) = &sched;
        if let Ok(mut g) = lock.lock() {
            g.stop = true;
        }
        cv.notify_all();
        // Drain so that no worker blocks on a full queue (the channel is unbounded anyway).
        for _ in rx.iter() {}
        result
    });
    Ok(outcome.map(|report| (report, stats)))
}

/// Decode claimed chunks until told to stop.
#[allow(clippy::too_many_arguments)]
fn worker(
    path: &Path,
    len: u64,
    chunk: u64,
    header: u64,
    max_out: usize,
    n: usize,
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
            if g.stop || g.next >= n {
                return;
            }
            g.permits -= 1;
            g.next += 1;
            g.next - 1
        };
        let start = i as u64 * chunk;
        let end = (start + chunk).min(len);
        let result = read_at(&mut file, start, (end + OVERLAP).min(len) - start).map(|input| {
            decode_chunk(ChunkJob {
                offset: start,
                input,
                start_bit: (i == 0).then_some(header * 8),
                stop_bit: (end - start) * 8,
                max_out,
            })
        });
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
    len: u64,
    header: u64,
    settings: &Settings,
    n: usize,
) -> Result<Report, Fallback> {
    let mut stitcher = Stitcher::new(&settings.limits, len, header);
    let mut validator = Validator::new(settings);
    let mut pending: BTreeMap<usize, ChunkResult> = BTreeMap::new();
    let mut out = Vec::new();
    let mut expected = 0;
    while expected < n && !stitcher.stream_ended() && !validator.is_finished() {
        let Ok((i, result)) = rx.recv() else {
            return Err(Fallback("a decoding thread stopped".into()));
        };
        let result = result.map_err(|e| Fallback(format!("read error: {e}")))?;
        pending.insert(i, result);
        while let Some(r) = pending.remove(&expected) {
            stitcher
                .accept(r, &mut out)
                .map_err(|d| Fallback(d.to_string()))?;
            validator.feed_inflated(&out);
            expected += 1;
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
    Ok(validator.finish_inflated(len))
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
