//! `byom`: validate, inspect and pack BYOM model packages, and push them to a byom server.
//!
//! A thin face over `byom-core`; it never links libtorch, so it fits into CI pipelines and
//! notebooks. Exit codes, the worst over every path given: 0 all valid, 1 any invalid, 2 could
//! not run (a missing file, a bad flag). Every command takes `--format text|json`.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "byom",
    version,
    about = "Check, inspect and pack BYOM model packages"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once per process; boxing the larger argument structs would only add noise.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Validate one or more model.tar.gz packages.
    Validate(commands::validate::Args),
    /// Show what a .pt file (or the .pt inside a package) is.
    Inspect(commands::inspect::Args),
    /// Build a valid package from a bare .pt and its metadata.
    Pack(commands::pack::Args),
    /// Validate locally, then upload to a byom server (and optionally compile).
    Push(commands::push::Args),
    /// List the rules, or print their documentation.
    Rules(commands::rules::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version itself; any real usage error is "could not run" (2).
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Validate(args) => commands::validate::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Pack(args) => commands::pack::run(args),
        Command::Push(args) => commands::push::run(args),
        Command::Rules(args) => commands::rules::run(args),
    }
}
