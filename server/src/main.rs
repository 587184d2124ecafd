//! `byom-server`: receives BYOM packages, validates them with the same core as the browser and
//! the CLI while they stream in, stores them per tenant and compiles them with libtorch in
//! sandboxed worker processes.
//!
//! Subcommands: `serve` (the HTTP server), `worker` (a cluster node that only runs compile
//! jobs; with the hidden `--job-dir`, the sandboxed process the runner spawns for each job),
//! `token create|revoke` (operator access without the HTTP API) and `compile` (the compile
//! pipeline without a server, for scripts). See docs/deploy.md.

mod app;
mod audit;
mod auth;
mod backend;
mod cli;
mod config;
mod db;
mod error;
mod extract;
mod ids;
mod ingest;
mod jobs;
mod metrics;
mod objects;
mod routes;
mod service;
mod storage;
mod views;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A compile worker's isolated run of a load-time candidate re-executes this binary
    // (byom_compile::isolate): no CLI parsing for it.
    if let Some(code) = byom_compile::isolate::serve_probe_if_asked() {
        return code;
    }
    let args = cli::Cli::parse();
    match args.command {
        cli::Command::Serve(serve) => cli::serve::run(*serve),
        cli::Command::Token(token) => cli::token::run(token),
        cli::Command::Compile(compile) => cli::compile::run(compile),
        cli::Command::Worker(worker) => cli::worker::run(worker),
    }
}
