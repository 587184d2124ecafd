//! The command line: one module per subcommand.

pub mod compile;
pub mod serve;
pub mod token;
pub mod worker;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "byom-server", version, about = "The byom compile server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the HTTP server (API, portal page, and compile workers unless --workers 0).
    Serve(Box<crate::config::ServeArgs>),
    /// Create or revoke API tokens directly in the data directory.
    Token(token::Args),
    /// Validate a package and compile it for the given targets, without a server.
    Compile(compile::Args),
    /// Run compile jobs only, from a shared queue (`--database postgres://…`); no HTTP.
    Worker(worker::Args),
}
