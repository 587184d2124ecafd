//! Compilation of BYOM packages with libtorch (tch), for `x86_64-cpu`, `x86_64-cuda`,
//! `arm64-cpu` and `jetson-xavier`.
//!
//! The server runs this in a separate worker process ([`worker_main`]): loading TorchScript is
//! running code, and a crafted file can crash libtorch. One job:
//!
//! 1. re-validates the package with byom-core, which in the same single pass hands the `.pt` to
//!    a file in the work directory and, at the end, the metadata it parsed and its inspection of
//!    the `.pt` (no second tar, YAML/JSON or zip reader: see package.rs);
//! 2. loads the model: TorchScript as is (after loading torchvision's operator library when
//!    the validator found the model calling `torchvision::` operators, see [`ops`]); a state
//!    dict by rebuilding the architecture the validator recognised with its own library's
//!    constructor (torchvision, timm) in a Python child of this sandboxed process, loading its
//!    weights with torch's weights-only loader and tracing it ([`zoo`]), after which it is
//!    TorchScript like any other;
//! 3. runs it on a fixed input and checks the declared output shape;
//! 4. per target, applies the passes its runtime can use (see [`plan`]);
//! 5. reloads and re-runs every artifact and compares it with the original;
//! 6. writes a bundle per target (docs/deployment-json.md) and `report.json`.

mod bundle;
mod compile;
mod detections;
mod error;
mod failure;
mod forward;
pub mod isolate;
mod metadata;
pub mod ops;
mod options;
mod package;
pub mod plan;
mod prepare;
pub mod progress;
mod report;
mod shim;
mod target;
mod verify;
mod worker;
mod zoo;

use std::path::Path;

pub use error::CompileError;
pub use failure::{Failure, FailureKind};
pub use options::CompileOptions;
pub use report::{
    CompileReport, HostInfo, Latency, ModelSummary, Pass, TargetResult, TargetStatus, Verification,
};
pub use target::{Precision, Target, TargetRuntime, UnknownTarget};
pub use worker::{atomic_write, exit, read_job, run_job, worker_main, Job};
pub use zoo::{default_python, probe as probe_python, PythonRuntime};

/// Version of this crate, carried in reports and bundles.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The libtorch this crate is built against (tch 0.24 requires exactly this one).
pub const LIBTORCH_VERSION: &str = "2.11.0";

/// Compiles `package` for `targets` into `out_dir`: `out_dir/<target>/` bundle directories,
/// `out_dir/<target>.tar.gz` bundles and `out_dir/report.json`.
///
/// A failure of one target is reported in its [`TargetResult`]; an `Err` means the job failed
/// before any target could be built (invalid package, model does not load, output shape
/// mismatch) — `report.json` is still written then, with every target failed for that reason.
pub fn compile_package(
    package: &Path,
    targets: &[Target],
    out_dir: &Path,
    opts: &CompileOptions,
) -> Result<CompileReport, CompileError> {
    compile::run(package, targets, out_dir, opts)
}
