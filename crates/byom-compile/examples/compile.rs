//! Runs the compile pipeline without the server:
//!
//!     cargo run -p byom-compile --example compile -- PKG.tar.gz --target x86_64-cpu [--target ...] -o OUT
//!
//! `--target all` builds every target. Prints report.json; exits 0 when every target succeeded,
//! 1 when one failed, 2 when the job failed. `--worker DIR` runs `worker_main(DIR)` instead.
//! State dicts are rebuilt by `--python PATH` (default `$BYOM_PYTHON`, else `python3` on PATH).
use std::path::PathBuf;
use std::process::ExitCode;

use byom_compile::{
    compile_package, default_python, probe_python, worker_main, CompileOptions, Target,
};

fn usage() -> ExitCode {
    eprintln!("usage: compile PKG.tar.gz --target T [--target T ...] -o OUT [--runs N] [--keep-work] [--python PATH]\n       compile --worker JOB_DIR");
    ExitCode::from(64)
}

fn main() -> ExitCode {
    // A load-time candidate's isolated run (byom_compile::isolate) re-executes this binary.
    if let Some(code) = byom_compile::isolate::serve_probe_if_asked() {
        return code;
    }
    let mut args = std::env::args().skip(1);
    let (mut package, mut out, mut targets) = (None, None, Vec::new());
    let mut opts = CompileOptions::default();
    let mut python = None;
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
            "--python" => python = args.next().map(PathBuf::from),
            _ if package.is_none() && !arg.starts_with('-') => package = Some(PathBuf::from(arg)),
            _ => return usage(),
        }
    }
    let (Some(package), Some(out)) = (package, out) else {
        return usage();
    };
    match python.or_else(default_python).map(|p| probe_python(&p)) {
        Some(Ok(runtime)) => opts.python = Some(runtime),
        Some(Err(e)) => eprintln!("warning: state dicts will not compile: {e}"),
        None => eprintln!("warning: state dicts will not compile: no python3 on PATH (--python)"),
    }
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
