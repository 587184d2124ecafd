//! `byom validate`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("byom validate: not implemented yet");
    ExitCode::from(2)
}
