//! A bare streaming gzip inflate: the physical lower bound `byom validate` is measured against.
//!
//! `cargo run --release -p byom-core --example inflate -- FILE [zlib-rs|miniz]`
//!
//! Reads FILE in 1 MiB chunks and inflates it into a 64 KiB buffer that is thrown away — the
//! same reads, the same inflater and the same output buffer as the validator, and nothing else.
//! `miniz` uses miniz_oxide instead, to compare the two pure-Rust inflaters that build for wasm.

use std::fs::File;
use std::io::Read;
use std::time::Instant;

use byom_core::archive::gzip::member_header_len;
use flate2::{Decompress, FlushDecompress, Status};
use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZFlush, MZStatus};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: inflate FILE [zlib-rs|miniz]");
    let engine = args.next().unwrap_or_else(|| "zlib-rs".into());
    let mut file = File::open(&path).expect("open");
    let mut input = vec![0u8; 1 << 20];
    let mut out = vec![0u8; 64 << 10];
    let start = Instant::now();
    let mut first = true;
    let mut total_out = 0u64;
    let mut z = Decompress::new(false);
    let mut m = InflateState::new_boxed(DataFormat::Raw);
    let mut done = false;
    while !done {
        let n = file.read(&mut input).expect("read");
        if n == 0 {
            break;
        }
        let mut chunk = &input[..n];
        if first {
            chunk = &chunk[member_header_len(chunk).expect("not a gzip member header")..];
            first = false;
        }
        while !chunk.is_empty() || !done {
            let (used, produced, end) = if engine == "miniz" {
                let r = inflate(&mut m, chunk, &mut out, MZFlush::None);
                let end = matches!(r.status, Ok(MZStatus::StreamEnd));
                assert!(
                    r.status.is_ok() || r.bytes_written > 0 || r.bytes_consumed > 0,
                    "{:?}",
                    r.status
                );
                (r.bytes_consumed, r.bytes_written, end)
            } else {
                let (i, o) = (z.total_in(), z.total_out());
                let s = z
                    .decompress(chunk, &mut out, FlushDecompress::None)
                    .expect("inflate");
                (
                    (z.total_in() - i) as usize,
                    (z.total_out() - o) as usize,
                    s == Status::StreamEnd,
                )
            };
            chunk = &chunk[used..];
            total_out += produced as u64;
            std::hint::black_box(&out[..produced]);
            if end {
                done = true;
                break;
            }
            if produced < out.len() && chunk.is_empty() {
                break;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{engine}: {total_out} bytes out in {secs:.3} s ({:.0} MiB/s of output)",
        total_out as f64 / secs / (1024.0 * 1024.0)
    );
}
