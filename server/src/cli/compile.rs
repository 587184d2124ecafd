//! `byom-server compile PKG --target T -o OUT`: the server's compile pipeline without a
//! server, for operators' scripts. Exit 0 when every target succeeded, 1 otherwise, 2 when it
//! could not run.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The package (.tar.gz).
    pub package: PathBuf,
    /// Target to build (repeat for several): x86_64-cpu, x86_64-cuda, arm64-cpu, jetson-xavier.
    #[arg(long = "target", required = true)]
    pub targets: Vec<String>,
    /// Output directory (one bundle per target, plus report.json).
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    /// Oldest torch the model must load in (validation setting).
    #[arg(long, value_name = "X.Y")]
    pub required_torch: Option<byom_core::TorchVersion>,
}

pub fn run(args: Args) -> ExitCode {
    let targets = match crate::jobs::parse_targets(&args.targets) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("byom-server compile: {e}");
            return ExitCode::from(2);
        }
    };
    let mut settings = byom_core::Settings::default();
    if let Some(t) = args.required_torch {
        settings.required_torch = t;
    }
    let report = match validate_file(&args.package, &settings) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "byom-server compile: cannot read {}: {e}",
                args.package.display()
            );
            return ExitCode::from(2);
        }
    };
    if !report.valid {
        eprintln!("{}: invalid package, not compiled", args.package.display());
        for issue in &report.errors {
            eprintln!("  {} {}", issue.code, issue.message);
        }
        return ExitCode::from(1);
    }
    match crate::backend::compile_package(&args.package, &targets, &args.out, &settings) {
        Ok((report, ok)) => {
            for t in &report.targets {
                let status = match t.status {
                    byom_compile::TargetStatus::Succeeded => "succeeded",
                    byom_compile::TargetStatus::Failed => "failed",
                };
                println!(
                    "{:<14} {:<10} {:>7} ms  {}",
                    t.target.as_str(),
                    status,
                    t.duration_ms,
                    t.failure_reason.as_deref().unwrap_or(""),
                );
            }
            println!("report: {}", args.out.join("report.json").display());
            ExitCode::from(if ok { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("byom-server compile: failed: {e}");
            eprintln!("report: {}", args.out.join("report.json").display());
            ExitCode::from(1)
        }
    }
}

/// Validate a package file with the core, streaming it in 1 MiB chunks.
pub fn validate_file(
    path: &std::path::Path,
    settings: &byom_core::Settings,
) -> std::io::Result<byom_core::Report> {
    let mut file = std::fs::File::open(path)?;
    let mut validator = byom_core::Validator::new(settings);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(validator.finish());
        }
        validator.feed(&buf[..n]);
    }
}
