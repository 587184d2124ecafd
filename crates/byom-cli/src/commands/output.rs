//! What every command shares about output: the one `--format text|json` flag, writing to a
//! stdout that may be a closed pipe, sizes and counts in words people read.
//!
//! Why: Rust ignores SIGPIPE, so `println!` panics with "Broken pipe" when the reader of
//! `byom inspect --format json | head` goes away. Every command writes through [`write_out`],
//! which treats a closed pipe as "the reader has seen enough" (not an error) and any other
//! write error as "could not run" (exit 2).

use std::io::{ErrorKind, Write};
use std::process::ExitCode;

/// `--format`: text for people (sizes in KiB/MiB), JSON for machines (exact numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Write `text` to stdout. A closed pipe is fine (`| head`); another error is reported as
/// `byom <command>: ...` and becomes exit code 2.
pub fn write_out(command: &str, text: &str) -> Result<(), ExitCode> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(e) => {
            eprintln!("byom {command}: cannot write the output: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// `value` as pretty JSON and a newline, through [`write_out`].
pub fn write_json<T: serde::Serialize + ?Sized>(command: &str, value: &T) -> Result<(), ExitCode> {
    match serde_json::to_string_pretty(value) {
        Ok(s) => write_out(command, &(s + "\n")),
        Err(e) => {
            eprintln!("byom {command}: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// A size for people: `812 B`, `4.2 KiB`, `39.5 MiB` (JSON keeps exact bytes); the core's, so
/// the CLI and the text report word sizes alike.
pub use byom_core::report::human_bytes;

/// `no warnings`, `1 warning`, `3 warnings`.
pub fn count(n: usize, what: &str) -> String {
    match n {
        0 => format!("no {what}s"),
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_counts_read_as_words() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(41_410_301), "39.5 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(count(0, "warning"), "no warnings");
        assert_eq!(count(1, "warning"), "1 warning");
        assert_eq!(count(2, "error"), "2 errors");
    }

    /// Every argument of every command says what it is for (`byom x --help` has no blank
    /// lines), and every command that prints a result takes the one `--format` flag.
    #[test]
    fn every_flag_has_help_and_every_command_has_format() {
        use clap::CommandFactory;
        let cli = crate::Cli::command();
        let mut missing = Vec::new();
        for sub in cli.get_subcommands() {
            assert!(sub.get_about().is_some(), "{} has no about", sub.get_name());
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                if help.trim().is_empty() && !arg.is_hide_set() {
                    missing.push(format!("{} --{id}", sub.get_name()));
                }
            }
            assert!(
                sub.get_arguments().any(|a| a.get_id() == "format"),
                "{} has no --format",
                sub.get_name()
            );
        }
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }
}
