//! `byom rules`: list every rule code, or print the rules documentation (`docs/rules.md`).

use std::process::ExitCode;

use byom_core::{rules, Severity};

use super::output::{self, Format};

#[derive(clap::Args)]
pub struct Args {
    /// Print the full documentation as Markdown (the source of docs/rules.md).
    #[arg(long, conflicts_with = "format")]
    markdown: bool,
    /// Output format: text (one line per rule) or json (every field of every rule).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: Args) -> ExitCode {
    let written = if args.markdown {
        output::write_out("rules", &rules::markdown())
    } else if args.format == Format::Json {
        output::write_json("rules", &rules::all())
    } else {
        let text: String = rules::all()
            .into_iter()
            .map(|r| {
                let sev = match r.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                format!("{}  {:<7}  {:<36} {}\n", r.code, sev, r.name, r.summary)
            })
            .collect();
        // `byom rules | head` closes the pipe early: not an error (write_out says so).
        output::write_out("rules", &text)
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}
