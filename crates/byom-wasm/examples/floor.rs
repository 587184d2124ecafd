//! Native side of the page's speed floor (src/floor.rs; docs/bench-web.md, "The floor"): the
//! validator's inflater alone, and its whole gzip layer, over a package already in memory.
//!
//!   cargo build --release -p byom-wasm --example floor
//!   target/release/examples/floor PACKAGE [RUNS]
//!
//! Prints one JSON line per run: {"stage", "ms", "bytes_out", "load"}.

use std::time::Instant;

use byom_wasm::floor::{gzip_layer, inflate_only};

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: floor PACKAGE [RUNS]")?;
    let runs: usize = args
        .next()
        .map_or(Ok(3), |r| r.parse().map_err(|e| format!("RUNS: {e}")))?;
    let gz = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    type Stage = fn(&[u8]) -> Result<u64, String>;
    let stages: [(&str, Stage); 2] = [("inflate_only", inflate_only), ("gzip_layer", gzip_layer)];
    for (stage, run) in stages {
        for _ in 0..runs {
            let started = Instant::now();
            let bytes_out = run(&gz)?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            let load = load.split(' ').next().unwrap_or("?");
            println!(r#"{{"stage":"{stage}","ms":{ms:.1},"bytes_out":{bytes_out},"load":{load}}}"#);
        }
    }
    Ok(())
}
