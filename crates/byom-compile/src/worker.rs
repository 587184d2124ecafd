//! The worker process entry point: `byom-server worker --job-dir DIR` calls [`worker_main`].
//!
//! libtorch runs only in such workers, never in the server process: a crafted TorchScript file
//! can crash `torch::jit::load`, and then only this process dies.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::options::CompileOptions;
use crate::report::CompileReport;
use crate::target::Target;

/// `DIR/job.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// The package `.tar.gz` (absolute, or relative to the job directory).
    pub package: PathBuf,
    pub targets: Vec<Target>,
    #[serde(default)]
    pub options: CompileOptions,
    /// Where bundles go (default `DIR/out`).
    #[serde(default)]
    pub out_dir: Option<PathBuf>,
}

/// Exit codes of [`worker_main`].
pub mod exit {
    /// Every target succeeded.
    pub const OK: i32 = 0;
    /// The job ran; at least one target failed (see result.json).
    pub const TARGET_FAILED: i32 = 1;
    /// The job failed before any target (invalid package, model does not load, shape mismatch).
    pub const JOB_FAILED: i32 = 2;
    /// job.json unreadable or result.json unwritable: there is no trustworthy result.json.
    pub const NO_RESULT: i32 = 3;
}

/// Reads `DIR/job.json`. On failure it has written `DIR/log.txt` saying why, and the worker's
/// exit code is [`exit::NO_RESULT`].
pub fn read_job(job_dir: &Path) -> Result<Job, String> {
    let job_path = job_dir.join("job.json");
    fs::read(&job_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| {
            let message = format!("cannot read {}: {e}", job_path.display());
            let _ = fs::write(job_dir.join("log.txt"), format!("{message}\n"));
            message
        })
}

/// Reads `DIR/job.json`, runs the job, writes `DIR/result.json` (atomically) and `DIR/log.txt`.
pub fn worker_main(job_dir: &Path) -> i32 {
    match read_job(job_dir) {
        Ok(job) => run_job(job_dir, &job),
        Err(_) => exit::NO_RESULT,
    }
}

/// Runs `job` (read by [`read_job`] from `job_dir`): see [`worker_main`].
pub fn run_job(job_dir: &Path, job: &Job) -> i32 {
    let package = if job.package.is_absolute() {
        job.package.clone()
    } else {
        job_dir.join(&job.package)
    };
    let out_dir = match &job.out_dir {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => job_dir.join(d),
        None => job_dir.join("out"),
    };
    let (report, code) =
        match crate::compile_package(&package, &job.targets, &out_dir, &job.options) {
            Ok(report) => {
                let code = if report.succeeded() {
                    exit::OK
                } else {
                    exit::TARGET_FAILED
                };
                (report, code)
            }
            Err(e) => {
                // compile_package wrote a failure report when it got that far; rebuild it here so
                // result.json exists whatever happened.
                let report = fs::read(out_dir.join("report.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<CompileReport>(&b).ok())
                    .unwrap_or_else(|| {
                        CompileReport::job_failed(&job.targets, e.failure(), vec![e.to_string()])
                    });
                (report, exit::JOB_FAILED)
            }
        };
    let mut text = String::new();
    for line in &report.log {
        text.push_str(line);
        text.push('\n');
    }
    for t in &report.targets {
        for line in &t.log {
            text.push_str(&format!("[{}] {line}\n", t.target));
        }
    }
    let _ = fs::write(job_dir.join("log.txt"), text);
    let json = match serde_json::to_vec_pretty(&report) {
        Ok(j) => j,
        Err(_) => return exit::NO_RESULT,
    };
    if crate::atomic_write(&job_dir.join("result.json"), &json).is_err() {
        return exit::NO_RESULT;
    }
    code
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader sees either nothing or the whole file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), crate::CompileError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut file = fs::File::create(&tmp).map_err(crate::CompileError::io(&tmp))?;
    file.write_all(bytes)
        .map_err(crate::CompileError::io(&tmp))?;
    file.sync_all().map_err(crate::CompileError::io(&tmp))?;
    fs::rename(&tmp, path).map_err(crate::CompileError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("byom-worker-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn unreadable_job_is_no_result() {
        let d = temp_dir("nojob");
        assert_eq!(worker_main(&d), exit::NO_RESULT);
        assert!(!d.join("result.json").exists());
        assert!(fs::read_to_string(d.join("log.txt"))
            .unwrap()
            .contains("job.json"));
    }

    #[test]
    fn missing_package_fails_the_job_with_a_result() {
        let d = temp_dir("nopkg");
        fs::write(
            d.join("job.json"),
            r#"{"package":"nope.tar.gz","targets":["x86_64-cpu"],"options":{}}"#,
        )
        .unwrap();
        assert_eq!(worker_main(&d), exit::JOB_FAILED);
        let report: CompileReport =
            serde_json::from_slice(&fs::read(d.join("result.json")).unwrap()).unwrap();
        assert!(!report.succeeded());
        assert_eq!(report.targets.len(), 1);
        assert!(report.targets[0]
            .failure_reason
            .as_deref()
            .unwrap()
            .contains("nope.tar.gz"));
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let d = temp_dir("atomic");
        let p = d.join("r.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!d.join(".r.json.tmp").exists());
    }
}
