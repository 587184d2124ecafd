//! `byom rules`: list every rule code, or print the rules documentation (`docs/rules.md`).

use std::io::Write;
use std::process::ExitCode;

use byom_core::{rules, Severity};

#[derive(clap::Args)]
pub struct Args {
    /// Print the full documentation as Markdown (the source of docs/rules.md).
    #[arg(long)]
    markdown: bool,
}

pub fn run(args: Args) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let written = if args.markdown {
        write!(out, "{}", rules::markdown())
    } else {
        rules::all().into_iter().try_for_each(|r| {
            let sev = match r.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            writeln!(out, "{}  {:<7}  {:<36} {}", r.code, sev, r.name, r.summary)
        })
    };
    match written {
        // `byom rules | head` closes the pipe early: not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("byom rules: {e}");
            ExitCode::from(2)
        }
        _ => ExitCode::SUCCESS,
    }
}
