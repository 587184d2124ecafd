//! The compile pipeline (`byom_compile`, libtorch) as the server calls it: the one place that
//! names it, shared by the sandboxed worker process and `byom-server compile`.

use std::path::{Path, PathBuf};

pub use byom_compile::PythonRuntime;

/// The Python that rebuilds state dicts: `configured`, else `$BYOM_PYTHON`, else `python3` on
/// PATH; an error when that is not a file.
pub fn python_path(configured: Option<&Path>) -> Result<PathBuf, String> {
    let p = configured
        .map(Path::to_path_buf)
        .or_else(byom_compile::default_python)
        .ok_or("no python3 on PATH (set --python / BYOM_PYTHON)")?;
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} is not a file (--python / BYOM_PYTHON)",
            p.display()
        ))
    }
}

/// Directories a confined worker must keep readable to load operator libraries later
/// (see `byom_compile::ops`).
pub fn operator_library_dirs() -> Vec<std::path::PathBuf> {
    byom_compile::ops::read_roots()
}

/// Runs `exe` once to check it imports torch and torchvision; see [`PythonRuntime`].
pub fn probe_python(exe: &Path) -> Result<PythonRuntime, String> {
    byom_compile::probe_python(exe)
}

/// The job a worker was given (`DIR/job.json`): read before the worker confines itself, for
/// the Python directories the sandbox must leave readable.
pub fn read_job(job_dir: &Path) -> Result<byom_compile::Job, String> {
    byom_compile::read_job(job_dir)
}

/// Directories the job's Python reads (none when it has no Python).
pub fn python_read_roots(job: &byom_compile::Job) -> Vec<PathBuf> {
    job.options
        .python
        .as_ref()
        .map(|p| p.read_roots.clone())
        .unwrap_or_default()
}

/// Runs a job read by [`read_job`]: writes `result.json` and `log.txt` into `job_dir` and
/// returns the worker's exit code (see `byom_compile::exit`).
pub fn run_job(job_dir: &Path, job: &byom_compile::Job) -> i32 {
    byom_compile::run_job(job_dir, job)
}

/// The worker's exit code when there is no trustworthy `result.json` (job.json unreadable).
pub const NO_RESULT: i32 = byom_compile::exit::NO_RESULT;

/// `byom-server compile`: compile `package` for `targets` into `out_dir` under `settings`;
/// returns the report and whether every target succeeded. `Err` when the job failed
/// before any target (its `report.json` is written all the same).
pub fn compile_package(
    package: &Path,
    targets: &[byom_compile::Target],
    out_dir: &Path,
    settings: &byom_core::Settings,
) -> Result<(byom_compile::CompileReport, bool), String> {
    let python = match python_path(None).and_then(|p| probe_python(&p)) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("warning: state dicts will not compile: {e}");
            None
        }
    };
    let opts = byom_compile::CompileOptions {
        settings: settings.clone(),
        python,
        ..Default::default()
    };
    let report = byom_compile::compile_package(package, targets, out_dir, &opts)
        .map_err(|e| e.to_string())?;
    let ok = report.succeeded();
    Ok((report, ok))
}
