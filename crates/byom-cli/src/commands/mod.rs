//! One module per subcommand; each owns its clap `Args` and a `run` returning the exit code.

pub mod inspect;
pub mod output;
pub mod pack;
pub mod parallel_inflate;
pub mod push;
mod resumable;
pub mod rules;
pub mod validate;
