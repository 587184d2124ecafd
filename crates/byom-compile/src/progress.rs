//! What the compile is doing now, on stderr, so that a crash says where it happened.
//!
//! libtorch runs the model's own code; a file can crash it (SIGSEGV, SIGABRT) and then no
//! report is written and the job's log is empty. byom-server keeps the worker's stderr
//! (`worker.log`), so each step that runs libtorch on the model announces itself there first,
//! and the server's failure reason names the last one ("killed by signal 11 (SIGSEGV) while
//! running the model on its declared input"): [`last_step`] reads it back.

use std::io::Write;

/// The prefix of a step line on stderr.
const PREFIX: &str = "byom-compile step: ";

/// Announce `what` (a phrase completing "while …") before doing it.
pub fn step(what: &str) {
    // stderr is unbuffered: the line is out before libtorch runs.
    let _ = writeln!(std::io::stderr(), "{PREFIX}{what}");
}

/// The last step announced in `stderr_text`, if any.
pub fn last_step(stderr_text: &str) -> Option<&str> {
    stderr_text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(PREFIX))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_step_line_wins_and_other_lines_are_ignored() {
        let text = format!("{PREFIX}loading\nlibtorch warning\n{PREFIX}running x\nnoise\n");
        assert_eq!(last_step(&text), Some("running x"));
        assert_eq!(last_step("nothing here\n"), None);
    }
}
