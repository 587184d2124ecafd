//! Compile jobs: the queue (behind [`queue::JobQueue`], SQLite today), the runner that hands
//! jobs to sandboxed worker processes, and the API view of a job.

#[allow(unsafe_code)] // the Landlock ABI probe is a raw system call
pub mod confine;
pub mod disk;
pub mod queue;
pub mod runner;
#[allow(unsafe_code)] // pre_exec: setrlimit, setpgid, unshare in the forked child
pub mod sandbox;
pub mod view;

/// The compile targets the server knows (`byom_compile::Target::ALL`, by name).
/// A test checks that the two lists agree.
pub const TARGETS: [&str; 4] = ["x86_64-cpu", "x86_64-cuda", "arm64-cpu", "jetson-xavier"];

/// Job states, exactly as the API spells them.
pub const STATES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

/// Check and normalise requested targets (known names, no duplicates, at least one).
pub fn parse_targets(requested: &[String]) -> Result<Vec<String>, String> {
    if requested.is_empty() {
        return Err("give at least one target".into());
    }
    let mut out: Vec<String> = Vec::new();
    for t in requested {
        if !TARGETS.contains(&t.as_str()) {
            return Err(format!(
                "unknown target {t:?}; known: {}",
                TARGETS.join(", ")
            ));
        }
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn targets_match_the_compile_crate() {
        let names: Vec<&str> = byom_compile::Target::ALL
            .iter()
            .map(|t| t.as_str())
            .collect();
        assert_eq!(names, super::TARGETS);
    }

    #[test]
    fn parse_targets_dedups_and_refuses_unknown() {
        let t =
            |v: &[&str]| super::parse_targets(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            t(&["x86_64-cpu", "x86_64-cpu"]).unwrap(),
            vec!["x86_64-cpu"]
        );
        assert!(t(&[]).is_err());
        assert!(t(&["z80"]).unwrap_err().contains("unknown target"));
    }
}
