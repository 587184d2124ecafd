//! Knobs of one compilation, as sent in a worker's `job.json` (`options`).

use byom_core::Settings;
use serde::{Deserialize, Serialize};

use crate::zoo::PythonRuntime;

/// How to compile. Every field has a default, so `{}` is a valid `options` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompileOptions {
    /// Limits and torch policy the package is re-validated under (the server's own).
    pub settings: Settings,
    /// Untimed forwards before latency is measured (the TorchScript profiling executor
    /// specialises the graph during the first runs).
    pub warmup_runs: u32,
    /// Timed forwards per latency measurement (p50/p95 are taken over these).
    pub timed_runs: u32,
    /// Intra-op threads for every forward (0: libtorch's default). Fixed so that latencies
    /// of different artifacts in one report compare like for like.
    pub threads: i32,
    /// Keep the scratch directory (`out_dir/.work`) for debugging.
    pub keep_work_dir: bool,
    /// The Python (with torch, torchvision, timm) that rebuilds state dicts with their
    /// library's own constructor (see `zoo`); `None`: state dicts fail with a message saying
    /// so, TorchScript compiles as ever. The server probes it at start (`--python`).
    pub python: Option<PythonRuntime>,
    /// Wall-time limit of that rebuild, in seconds.
    pub zoo_timeout_s: u64,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            settings: Settings::default(),
            warmup_runs: 3,
            timed_runs: 20,
            threads: 1,
            keep_work_dir: false,
            python: None,
            zoo_timeout_s: 600,
        }
    }
}
