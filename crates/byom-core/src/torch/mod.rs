//! The `.pt` model file: what it is, what it holds, whether it is safe, which torch loads it.
//!
//! Fed in the same streaming pass as the archive, keeping only what it needs (pickles, version
//! records, TorchScript code, the zip tail), never the tensor bytes.

pub mod rules;

use serde::{Deserialize, Serialize};

use crate::report::Issue;
use crate::settings::Settings;

/// What kind of file the `.pt` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PtKind {
    StateDict,
    Checkpoint,
    TorchscriptTraced,
    TorchscriptScripted,
    PickledModule,
    Legacy,
    NotPytorch,
}

/// One tensor of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub bytes: u64,
}

/// What the inspection learned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PtInspection {
    pub kind: PtKind,
    pub file_bytes: u64,
    pub tensors: Vec<TensorInfo>,
    pub parameter_count: u64,
    pub tensor_bytes: u64,
    pub min_torch: Option<String>,
    pub architecture: Option<String>,
}

/// Streaming inspector of one `.pt` file.
#[derive(Debug)]
pub struct PtInspector {
    bytes: u64,
}

impl PtInspector {
    pub fn new(_settings: &Settings, _file: &str) -> Self {
        PtInspector { bytes: 0 }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
    }

    pub fn finish(self) -> (PtInspection, Vec<Issue>) {
        (
            PtInspection {
                kind: PtKind::NotPytorch,
                file_bytes: self.bytes,
                tensors: Vec::new(),
                parameter_count: 0,
                tensor_bytes: 0,
                min_torch: None,
                architecture: None,
            },
            Vec::new(),
        )
    }
}

/// Inspect a whole `.pt` held in memory.
pub fn inspect_bytes(bytes: &[u8], settings: &Settings, file: &str) -> (PtInspection, Vec<Issue>) {
    let mut inspector = PtInspector::new(settings, file);
    inspector.feed(bytes);
    inspector.finish()
}

/// Cross-checks between what the `.pt` holds and what the metadata declares
/// (first convolution's input channels vs `input_shape[1]`, classifier width vs `num_classes`).
pub fn cross_check(
    _inspection: &PtInspection,
    _file: &str,
    _input_shape: Option<&[i64]>,
    _num_classes: Option<u64>,
) -> Vec<Issue> {
    Vec::new()
}
