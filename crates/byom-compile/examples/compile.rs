//! Runs the compile pipeline without the server:
//!
//!     cargo run -p byom-compile --example compile -- PKG.tar.gz --target x86_64-cpu [--target ...] -o OUT
//!
//! `--target all` builds every target. Prints report.json; exits 0 when every target succeeded,
//! 1 when one failed, 2 when the job failed. `--worker DIR` runs `worker_main(DIR)` instead.
use std::path::PathBuf;
use std::process::ExitCode;

use byom_compile::{compile_package, worker_main, CompileOptions, Target};

fn usage() -> ExitCode {
    eprintln!("usage: compile PKG.tar.gz --target T [--target T ...] -o OUT [--runs N] [--keep-work]\n       compile --worker JOB_DIR");
    ExitCode::from(64)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut package, mut out, mut targets) = (None, None, Vec::new());
    let mut opts = CompileOptions::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--worker" => {
                let Some(dir) = args.next() else {
                    return usage();
                };
                let code = worker_main(&PathBuf::from(dir));
                return ExitCode::from(u8::try_from(code).unwrap_or(3));
            }
            "--target" | "-t" => {
                let Some(t) = args.next() else { return usage() };
                if t == "all" {
                    targets.extend(Target::ALL);
                    continue;
                }
                match t.parse::<Target>() {
                    Ok(t) => targets.push(t),
                    Err(e) => {
                        eprintln!("{e}");
                        return usage();
                    }
                }
            }
            "-o" | "--out" => out = args.next().map(PathBuf::from),
            "--runs" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) => opts.timed_runs = n,
                None => return usage(),
            },
            "--keep-work" => opts.keep_work_dir = true,
            _ if package.is_none() && !arg.starts_with('-') => package = Some(PathBuf::from(arg)),
            _ => return usage(),
        }
    }
    let (Some(package), Some(out)) = (package, out) else {
        return usage();
    };
    match compile_package(&package, &targets, &out, &opts) {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            if report.succeeded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("compile failed: {e}");
            ExitCode::from(2)
        }
    }
}
