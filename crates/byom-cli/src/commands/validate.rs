//! `byom validate PATH...`: validate packages, print text (cargo/ruff style) or JSON.
//!
//! Exit codes, the worst over all paths: 0 every package valid, 1 any invalid (a broken or
//! hostile file is an invalid package with a report), 2 could not run (a missing or unreadable
//! file, unreadable settings, bad flag). Each path is validated on its own; one that cannot be
//! read is reported in its place and does not stop the others.
//! The package sha256 is computed on a second thread from the same chunks, so hashing never
//! slows the single validation pass.

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use byom_core::{Report, Settings, Validator};

use super::output::{self, Format};
use super::parallel_inflate;
use sha2::{Digest, Sha256};

/// Read size: large enough for full inflate speed, small enough to keep memory flat.
const CHUNK: usize = 1 << 20;
/// Chunks in flight to the hashing thread (bounds memory at a few MiB).
const HASH_QUEUE: usize = 4;
/// Files above this size get a progress bar (on a terminal).
const PROGRESS_MIN_BYTES: u64 = 64 << 20;

#[derive(clap::Args)]
pub struct Args {
    /// Package files (.tar.gz) to validate.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Output format: text for people, json for machines (one report, or an array for several paths, each with its "file").
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Settings (limits, required torch) as JSON, e.g. from a server's /api/v1/format-spec.
    #[arg(long, value_name = "FILE.json")]
    settings: Option<PathBuf>,
    /// Oldest torch that must load the model, "major.minor" (default: the server's 2.11).
    #[arg(long, value_name = "X.Y")]
    required_torch: Option<byom_core::TorchVersion>,
    /// Never show a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Inflate on this many threads (0 = all cores, the default; 1 = the sequential reader
    /// only). Two-stage parallel gunzip: the report is the same byte for byte, a chunk too
    /// compressible for its output cap is decoded in order, and any doubt (corrupt data, a
    /// bomb, several gzip members, trailing data) falls back to the sequential reader, which
    /// decides.
    #[arg(
        long,
        env = "BYOM_INFLATE_THREADS",
        default_value_t = 0,
        value_name = "N"
    )]
    inflate_threads: usize,
    /// Compressed bytes per parallel chunk (files of one chunk or less are read sequentially).
    #[arg(long, env = "BYOM_INFLATE_CHUNK", default_value_t = 1 << 20, value_name = "BYTES")]
    inflate_chunk: u64,
}

pub fn run(args: Args) -> ExitCode {
    let settings = match load_settings(&args) {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("byom validate: {msg}");
            return ExitCode::from(2);
        }
    };
    let stdout_tty = std::io::stdout().is_terminal();
    let color = stdout_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let progress = !args.no_progress && std::io::stderr().is_terminal();
    let threads = match args.inflate_threads {
        0 => thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let parallel = (threads > 1).then_some(parallel_inflate::Options {
        threads,
        chunk: args.inflate_chunk,
    });

    // Every path is validated on its own: one that cannot be read is reported in its place
    // and the others are still validated. The exit code is the worst outcome.
    let outcomes: Vec<(&PathBuf, Result<Report, std::io::Error>)> = args
        .paths
        .iter()
        .map(|p| (p, validate_file(p, &settings, progress, parallel)))
        .collect();
    let code = outcomes
        .iter()
        .map(|(_, r)| match r {
            Ok(r) if r.valid => 0u8,
            Ok(_) => 1,
            Err(_) => 2,
        })
        .max()
        .unwrap_or(0);

    let written = match args.format {
        Format::Json => {
            match outcomes.as_slice() {
                // One path: the core's report as it is (the page's wasm gives the same object).
                [(_, Ok(report))] => output::write_json("validate", report),
                _ => {
                    let items: Vec<serde_json::Value> =
                        outcomes.iter().map(|(p, r)| json_item(p, r)).collect();
                    if items.len() == 1 {
                        output::write_json("validate", &items[0])
                    } else {
                        output::write_json("validate", &items)
                    }
                }
            }
        }
        Format::Text => {
            let mut text = String::new();
            for (i, (path, outcome)) in outcomes.iter().enumerate() {
                if i > 0 {
                    text.push('\n');
                }
                let title = format!("{}", path.display());
                if color {
                    text.push_str(&format!("\x1b[1m{title}\x1b[0m\n"));
                } else {
                    text.push_str(&format!("{title}\n"));
                }
                match outcome {
                    Ok(report) => text.push_str(&report.to_text(color)),
                    Err(e) => text.push_str(&format!("  could not validate: {e}\n")),
                }
            }
            // Unreadable paths also go to stderr, where scripts look for "could not run".
            for (path, outcome) in &outcomes {
                if let Err(e) = outcome {
                    eprintln!("byom validate: {}: {e}", path.display());
                }
            }
            output::write_out("validate", &text)
        }
    };
    if let Err(code) = written {
        return code;
    }
    ExitCode::from(code)
}

/// One of several paths in JSON: the report with its `file`, or `{file, valid: false, error}`
/// when the file could not be read (exact numbers throughout; sizes in bytes).
fn json_item(path: &Path, outcome: &Result<Report, std::io::Error>) -> serde_json::Value {
    let file = serde_json::Value::String(path.display().to_string());
    match outcome {
        Ok(report) => {
            let mut v = serde_json::to_value(report).unwrap_or(serde_json::Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("file".into(), file);
            }
            v
        }
        Err(e) => serde_json::json!({ "file": file, "valid": false, "error": e.to_string() }),
    }
}

fn load_settings(args: &Args) -> Result<Settings, String> {
    let mut settings = match &args.settings {
        None => Settings::default(),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            // Accept the bare Settings object or the server's format-spec envelope.
            let inner = value.get("settings").cloned().unwrap_or(value);
            serde_json::from_value(inner)
                .map_err(|e| format!("{}: invalid settings: {e}", path.display()))?
        }
    };
    // Parsed (and refused when not a version) by clap through TorchVersion's FromStr.
    if let Some(v) = args.required_torch {
        settings.required_torch = v;
    }
    Ok(settings)
}

/// Validate one file: with the parallel inflater when asked and the file is more than one
/// chunk, falling back to the sequential reader on any doubt.
fn validate_file(
    path: &Path,
    settings: &Settings,
    progress: bool,
    parallel: Option<parallel_inflate::Options>,
) -> std::io::Result<Report> {
    let trace = std::env::var_os("BYOM_INFLATE_TRACE").is_some_and(|v| !v.is_empty());
    let len = std::fs::metadata(path)?.len();
    if let Some(opts) = parallel.filter(|o| len > o.chunk) {
        let mut bar = Progress::when(progress, len);
        let outcome = parallel_inflate::validate(path, len, settings, opts, &mut |done| {
            if let Some(bar) = &mut bar {
                bar.update(done);
            }
        });
        if let Some(bar) = bar {
            bar.clear();
        }
        match outcome? {
            Ok((report, stats)) => {
                if trace {
                    eprintln!(
                        "byom: parallel inflate: {} chunks of {} bytes on {} threads ({} in flight), {} decoded in order",
                        stats.chunks, stats.chunk, stats.threads, stats.in_flight, stats.in_order
                    );
                }
                return Ok(report);
            }
            Err(parallel_inflate::Fallback(why)) => {
                if trace {
                    eprintln!("byom: parallel inflate: sequential instead: {why}");
                }
            }
        }
    }
    validate_sequential(path, settings, progress)
}

/// Validate one file in 1 MiB chunks, hashing the same chunks on a second thread.
fn validate_sequential(
    path: &Path,
    settings: &Settings,
    progress: bool,
) -> std::io::Result<Report> {
    let mut file = File::open(path)?;
    let total = file.metadata()?.len();
    let mut bar = Progress::when(progress, total);

    let (tx, rx) = mpsc::sync_channel::<Arc<Vec<u8>>>(HASH_QUEUE);
    let hasher = thread::spawn(move || {
        let mut h = Sha256::new();
        for chunk in rx {
            h.update(chunk.as_slice());
        }
        hex::encode(h.finalize())
    });

    let mut validator = Validator::new(settings);
    let mut read = 0u64;
    let result = loop {
        // A fresh buffer per chunk (the hasher thread holds the last ones); read_to_end fills
        // it without zeroing it first.
        let mut buf = Vec::with_capacity(CHUNK);
        let n = match (&mut file).take(CHUNK as u64).read_to_end(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        let chunk = Arc::new(buf);
        if tx.send(Arc::clone(&chunk)).is_err() {
            break Err(std::io::Error::other("hashing thread stopped"));
        }
        validator.feed(&chunk);
        read += n as u64;
        if let Some(bar) = &mut bar {
            bar.update(read);
        }
    };
    drop(tx);
    let sha = hasher
        .join()
        .map_err(|_| std::io::Error::other("hashing thread panicked"))?;
    if let Some(bar) = bar {
        bar.clear();
    }
    result?;
    let mut report = validator.finish();
    report.sha256 = Some(sha);
    Ok(report)
}

/// A one-line progress bar on stderr, redrawn at most every 100 ms.
struct Progress {
    total: u64,
    start: Instant,
    last: Option<Instant>,
}

impl Progress {
    /// A bar when one was asked for and the file is large enough to be worth one.
    fn when(asked: bool, total: u64) -> Option<Self> {
        (asked && total > PROGRESS_MIN_BYTES).then(|| Progress::new(total))
    }

    fn new(total: u64) -> Self {
        Progress {
            total,
            start: Instant::now(),
            last: None,
        }
    }

    fn update(&mut self, done: u64) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|l| now.duration_since(l).as_millis() < 100)
            && done < self.total
        {
            return;
        }
        self.last = Some(now);
        const WIDTH: u64 = 30;
        let filled = (done.min(self.total) * WIDTH)
            .checked_div(self.total)
            .unwrap_or(WIDTH);
        let secs = self.start.elapsed().as_secs_f64().max(1e-6);
        let mib = done as f64 / (1024.0 * 1024.0);
        eprint!(
            "\r  validating [{}{}] {:>5.1}% {:>7.0} MiB  {:>5.0} MiB/s",
            "#".repeat(filled as usize),
            " ".repeat((WIDTH - filled) as usize),
            done as f64 * 100.0 / self.total.max(1) as f64,
            mib,
            mib / secs
        );
    }

    fn clear(self) {
        eprint!("\r{}\r", " ".repeat(72));
    }
}
