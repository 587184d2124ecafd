//! The compile report (`report.json`, the worker's `result.json`): one entry per target.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::failure::Failure;
use crate::target::{Precision, Target};

/// Outcome of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetStatus {
    Succeeded,
    Failed,
}

/// A graph transformation applied to an artifact, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pass {
    pub name: String,
    pub why: String,
}

/// Latency over `runs` timed forwards, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub runs: u32,
    pub device: String,
}

/// Proof that an artifact loads and computes what the original computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// "verified on <device>", "built, not run: no GPU", "built here, not run on the device".
    pub status: String,
    /// The artifact was loaded back from disk by libtorch.
    pub reloaded: bool,
    /// Where its outputs were compared, when they were.
    pub ran_on: Option<String>,
    pub max_abs_error: Option<f64>,
    /// max |a - b| / max |original|.
    pub max_rel_error: Option<f64>,
    pub tolerance: f64,
    /// Latency of the artifact as shipped (CPU artifacts, and CUDA ones on a GPU).
    pub latency: Option<Latency>,
    /// x86_64-cpu: latency after the load-time step that was kept (see `load_time_steps`),
    /// same run.
    pub latency_after_load_time_steps: Option<Latency>,
    /// Why `latency` is null when it was not measured on purpose ("not measured: no device"):
    /// a time from the build host would say nothing about the target.
    #[serde(default)]
    pub latency_not_measured: Option<String>,
}

/// Result of one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetResult {
    pub target: Target,
    pub status: TargetStatus,
    pub duration_ms: u64,
    /// `failure.summary`, for readers of the one-line reason.
    pub failure_reason: Option<String>,
    /// Why the target failed: kind, one-line summary, hint, full text.
    #[serde(default)]
    pub failure: Option<Failure>,
    /// What byom changed or could not promise for this target, said once here and in
    /// `deployment.json` (e.g. fp16 weights cast to fp32 for a CPU).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// sha256 of `model.pt`.
    pub artifact_sha256: Option<String>,
    /// The `<target>.tar.gz` bundle.
    pub bundle: Option<PathBuf>,
    pub bundle_sha256: Option<String>,
    pub precision: Precision,
    pub passes: Vec<Pass>,
    /// Steps the loader must run on the device (documented in deployment.json).
    pub load_time_steps: Vec<String>,
    /// Oldest torch that loads the artifact (the core's version reader on its bytes).
    pub min_torch_runtime: Option<String>,
    /// Torch the target is assumed to ship.
    pub target_torch: String,
    pub verification: Option<Verification>,
    /// Other targets whose `model.pt` is byte-identical to this one.
    pub identical_artifact_to: Vec<Target>,
    pub log: Vec<String>,
}

impl TargetResult {
    /// A failed result with nothing built yet: the start of every target's result (a build
    /// fills it in and marks it succeeded) and, with the job's reason, the whole of it for a
    /// job that failed before any target was built.
    pub fn failed(target: Target, failure: Option<Failure>) -> Self {
        TargetResult {
            target,
            status: TargetStatus::Failed,
            duration_ms: 0,
            failure_reason: failure.as_ref().map(|f| f.summary.clone()),
            failure,
            warnings: Vec::new(),
            artifact_sha256: None,
            bundle: None,
            bundle_sha256: None,
            precision: target.precision(),
            passes: Vec::new(),
            load_time_steps: Vec::new(),
            min_torch_runtime: None,
            target_torch: target.runtime().torch.to_string(),
            verification: None,
            identical_artifact_to: Vec::new(),
            log: Vec::new(),
        }
    }
}

/// What was compiled.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelSummary {
    /// `torchscript_traced`, `torchscript_scripted`, `state_dict`, ...
    pub kind: String,
    /// The architecture: what a state dict was built as (e.g. "resnet18"); for TorchScript the
    /// root class's library and name as the validator read them (e.g. "timm ConvNeXt").
    pub architecture: Option<String>,
    pub model_file: String,
    pub input_shape: Vec<i64>,
    pub input_dtype: String,
    pub declared_output_shape: Option<Vec<i64>>,
    pub output_shape: Vec<i64>,
    /// Which output was checked: "the output tensor", "element 0 of a tuple of 2", ...
    pub checked_output: String,
    /// Latency of the unfrozen TorchScript module on this host, same run as the artifacts.
    pub eager_latency: Option<Latency>,
    /// Operator libraries the model needs besides libtorch (torchvision), loaded for it here
    /// and named in every bundle's deployment.json.
    #[serde(default)]
    pub operator_libraries: Vec<crate::ops::OperatorLibrary>,
}

/// The whole job.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CompileReport {
    pub byom_version: String,
    pub package_sha256: Option<String>,
    /// Set when the job failed before any target could be built: `failure.summary`.
    pub failure_reason: Option<String>,
    /// The job's failure: kind, one-line summary, hint, full text.
    #[serde(default)]
    pub failure: Option<Failure>,
    pub model: Option<ModelSummary>,
    /// libtorch version and devices of the host that compiled.
    pub host: HostInfo,
    pub targets: Vec<TargetResult>,
    pub duration_ms: u64,
    pub log: Vec<String>,
}

/// The compiling host.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HostInfo {
    pub libtorch: String,
    pub threads: i32,
    pub cuda_device: Option<String>,
}

impl CompileReport {
    /// True when every requested target succeeded.
    pub fn succeeded(&self) -> bool {
        self.failure_reason.is_none()
            && !self.targets.is_empty()
            && self
                .targets
                .iter()
                .all(|t| t.status == TargetStatus::Succeeded)
    }

    /// A report for a job that failed before any target was built: every target fails with
    /// the same reason, so a per-target view (the server's job page) still explains it.
    pub fn job_failed(targets: &[Target], failure: Failure, log: Vec<String>) -> Self {
        CompileReport {
            byom_version: crate::VERSION.to_string(),
            failure_reason: Some(failure.summary.clone()),
            targets: targets
                .iter()
                .map(|&target| TargetResult::failed(target, Some(failure.clone())))
                .collect(),
            failure: Some(failure),
            log,
            ..CompileReport::default()
        }
    }
}
