//! Single-core speed of the parallel-gunzip decoder against zlib-rs, on the first 128 MiB of a
//! gzip file (weight-like data) and on generated text (highly compressible).
//!
//! `cargo run --release -p byom-core --example deflate_speed -- FILE.tar.gz [CHUNK_BYTES]`
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
    let mut st = Stitcher::new(&Limits::default(), gz.len() as u64, header as u64);
    let mut out = Vec::new();
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
        if let Err(e) = st.accept(r, &mut out) {
            eprintln!("stitch stopped at chunk {start}: {e}");
            break;
        }
        stitch += t.elapsed().as_secs_f64();
        total += out.len() as u64;
        start = end;
    }
    (total, dec, stitch)
}

fn report(label: &str, gz: &[u8], chunk: usize) {
    let header = member_header_len(gz).expect("gzip");
    let t = Instant::now();
    let z = zlib(&gz[header..]);
    let tz = t.elapsed().as_secs_f64();
    let (o, dec, stitch) = ours(gz, header, chunk);
    let mb = 1e6;
    println!(
        "{label}: {:.0} MB in; zlib-rs {:.0} MB/s out; byom chunks {:.0} MB/s out per core ({:.0} MB checked), stitch {:.0} MB/s",
        gz.len() as f64 / mb,
        z as f64 / mb / tz,
        o as f64 / mb / dec,
        o as f64 / mb,
        o as f64 / mb / stitch
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: deflate_speed FILE [CHUNK]");
    let chunk: usize = args.next().map_or(1 << 20, |c| c.parse().expect("chunk"));
    let mut gz = Vec::new();
    File::open(&path)
        .expect("open")
        .take(128 << 20)
        .read_to_end(&mut gz)
        .expect("read");
    report("weights (file prefix)", &gz, chunk);
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
    report("text (generated)", &e.finish().expect("compress"), chunk);
}
