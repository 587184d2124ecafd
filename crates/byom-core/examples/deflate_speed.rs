//! Single-core speed of the parallel-gunzip decoder against zlib-rs, on the first 128 MiB of a
//! gzip file (weight-like data) and on generated text (highly compressible).
//!
//! `cargo run --release -p byom-core --example deflate_speed -- FILE.tar.gz [CHUNK_BYTES] [MODE]`
//!
//! MODE `zlib` or `chunks` runs only that decoder on the file prefix (for `perf stat`: CPU time
//! and instruction counts per decoder, which a loaded machine does not distort as it does wall
//! time); the default `all` runs both on both inputs.
//!
//! "chunks" is the work of one parallel worker: search a block boundary, decode with window
//! markers (u16), per chunk of CHUNK_BYTES (default 1 MiB); "stitch" is the in-order pass
//! (marker resolution, CRC-32) on the consumer thread.

use std::fs::File;
use std::io::{Read, Write};
use std::time::Instant;

use byom_core::archive::chunked::{decode_chunk, ChunkJob, Stitcher};
use byom_core::archive::gzip::member_header_len;
use byom_core::Limits;
use flate2::{Decompress, FlushDecompress};

/// CPU seconds (user + sys) of this thread so far, from /proc (Linux; 0 elsewhere): the box
/// these figures come from is shared, so wall time alone says little.
fn cpu() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which ends with ')'): utime and stime are the 12th and
    // 13th, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

fn zlib(input: &[u8]) -> u64 {
    let mut d = Decompress::new(false);
    let mut out = vec![0u8; 64 << 10];
    let mut pos = 0;
    loop {
        let (bi, bo) = (d.total_in(), d.total_out());
        let r = d.decompress(&input[pos..], &mut out, FlushDecompress::None);
        pos += (d.total_in() - bi) as usize;
        if r.is_err() || (d.total_out() == bo && d.total_in() == bi) {
            return d.total_out();
        }
    }
}

fn ours(gz: &[u8], header: usize, chunk: usize) -> (u64, f64, f64) {
    let mut st = Stitcher::new(&Limits::default(), gz.len() as u64, &gz[..header]);
    let (mut total, mut dec, mut stitch) = (0u64, 0f64, 0f64);
    let mut start = 0;
    while start + chunk < gz.len() {
        let end = start + chunk;
        let t = Instant::now();
        let r = decode_chunk(ChunkJob {
            offset: start as u64,
            input: gz[start..(end + (256 << 10)).min(gz.len())].to_vec(),
            start_bit: (start == 0).then_some(header as u64 * 8),
            stop_bit: ((end - start) * 8) as u64,
            max_out: chunk * 2 + (1 << 20),
        });
        dec += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut n = 0;
        if let Err(e) = st.accept(&r, &mut |b| n += b.len()) {
            eprintln!("stitch stopped at chunk {start}: {e}");
            break;
        }
        stitch += t.elapsed().as_secs_f64();
        total += n as u64;
        start = end;
    }
    (total, dec, stitch)
}

fn report(label: &str, gz: &[u8], chunk: usize, mode: &str) {
    let header = member_header_len(gz).expect("gzip");
    let (t, c) = (Instant::now(), cpu());
    let z = if mode == "chunks" {
        0
    } else {
        zlib(&gz[header..])
    };
    let (tz, cz) = (t.elapsed().as_secs_f64(), cpu() - c);
    let c = cpu();
    let (o, dec, stitch) = if mode == "zlib" {
        (0, 1.0, 1.0)
    } else {
        ours(gz, header, chunk)
    };
    let co = cpu() - c;
    let mb = 1e6;
    println!(
        "{label}: {:.0} MB in; zlib-rs {:.0} MB/s out ({:.0} MB/s per CPU second); byom chunks {:.0} MB/s out per core, {:.0} MB/s per CPU second with the stitch ({:.0} MB checked), stitch alone {:.0} MB/s; load {}",
        gz.len() as f64 / mb,
        z as f64 / mb / tz,
        z as f64 / mb / cz,
        o as f64 / mb / dec,
        o as f64 / mb / co,
        o as f64 / mb,
        o as f64 / mb / stitch,
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: deflate_speed FILE [CHUNK]");
    let chunk: usize = args.next().map_or(1 << 20, |c| c.parse().expect("chunk"));
    let mode = args.next().unwrap_or_else(|| "all".into());
    let mut gz = Vec::new();
    File::open(&path)
        .expect("open")
        .take(128 << 20)
        .read_to_end(&mut gz)
        .expect("read");
    report("weights (file prefix)", &gz, chunk, &mode);
    if mode != "all" {
        return;
    }
    let mut text = Vec::new();
    let mut x = 1u64;
    while text.len() < 64 << 20 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        text.extend_from_slice(
            format!("layer{}.weight {}\n", x >> 60, (x >> 40) % 1000).as_bytes(),
        );
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(&text).expect("compress");
    report(
        "text (generated)",
        &e.finish().expect("compress"),
        chunk,
        &mode,
    );
}
