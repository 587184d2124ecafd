//! The compile pipeline (`byom_compile`, libtorch) as the server calls it: the one place that
//! names it, shared by the sandboxed worker process and `byom-server compile`.

use std::path::Path;

use serde_json::Value;

/// Run the job in `job_dir` (reads `job.json`, writes `result.json` and `log.txt`) and return
/// the process exit code (see `byom_compile::exit`).
pub fn worker_main(job_dir: &Path) -> i32 {
    byom_compile::worker_main(job_dir)
}

/// Directories a confined worker must keep readable to load operator libraries later
/// (see `byom_compile::ops`).
pub fn operator_library_dirs() -> Vec<std::path::PathBuf> {
    byom_compile::ops::read_roots()
}

/// `byom-server compile`: compile `package` for `targets` into `out_dir` under `settings`;
/// returns the report as JSON and whether every target succeeded. `Err` when the job failed
/// before any target (its `report.json` is written all the same).
pub fn compile_package(
    package: &Path,
    targets: &[String],
    out_dir: &Path,
    settings: &byom_core::Settings,
) -> Result<(Value, bool), String> {
    let targets = targets
        .iter()
        .map(|t| t.parse::<byom_compile::Target>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let opts = byom_compile::CompileOptions {
        settings: settings.clone(),
        ..Default::default()
    };
    let report = byom_compile::compile_package(package, &targets, out_dir, &opts)
        .map_err(|e| e.to_string())?;
    let ok = report.succeeded();
    Ok((
        serde_json::to_value(&report).map_err(|e| e.to_string())?,
        ok,
    ))
}
