//! The one report type: the single contract between the core and its faces (browser, CLI,
//! server). Rendered as JSON by serde and as text by [`Report::to_text`].

use serde::{Deserialize, Serialize};

use crate::torch::PtInspection;

/// How bad an issue is. An error means "this package cannot work as declared"; a warning
/// means "it can, but something is likely wrong".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding, with a stable code (`BYOM###`), the file it concerns and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    pub code: String,
    pub severity: Severity,
    pub message: String,
    /// Package-relative path of the file concerned (`None` for the archive as a whole).
    pub file: Option<String>,
    pub hint: String,
}

/// Something the validator learned while streaming; faces show these progressively.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An archive member was seen (its path as normalised, its size).
    Entry { path: String, size: u64 },
    /// An error or warning, as soon as it is known.
    Issue(Issue),
}

/// What the package declares, for display.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub model_type: Option<String>,
    pub input_shape: Option<Vec<i64>>,
    pub output_shape: Option<Vec<i64>>,
    pub num_classes: Option<u64>,
    pub class_names: Option<Vec<String>>,
    pub model_file: Option<String>,
    pub model_file_bytes: Option<u64>,
    /// Bytes fed to the validator (the `.tar.gz` as uploaded).
    pub compressed_bytes: u64,
    /// Sum of member sizes once decompressed.
    pub uncompressed_bytes: u64,
    /// Every member path, normalised, in archive order.
    pub entries: Vec<String>,
}

/// The verdict on one package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub valid: bool,
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
    pub summary: Summary,
    /// What the `.pt` is, when one was found and read.
    pub model: Option<PtInspection>,
    /// Hash of the [`crate::Settings`] the verdict was made under.
    pub settings_hash: String,
    /// sha256 of the package bytes, filled in by the face that read them (never by the core).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256: Option<String>,
    /// byom-core version that produced this report.
    pub byom_version: String,
}
