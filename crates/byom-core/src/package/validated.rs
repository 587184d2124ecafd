//! A package the validator accepted, with what it read, handed forward so that nothing has to
//! read the package again (see [`crate::validate::Validator::finish_package`]).

use super::{Declared, Value};
use crate::report::Report;
use crate::torch::{PtInspection, RecordSpan};

/// The verdict of a valid package and everything the validator parsed to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedPackage {
    /// The report (`valid` is true; its warnings still matter).
    pub report: Report,
    /// What the metadata declare, as the cross-file rules read it.
    pub declared: Declared,
    /// `config.yaml`, parsed.
    pub config: Value,
    /// `mochi.json`, parsed.
    pub mochi: Value,
    /// `export_artifacts/manifest.json`, parsed.
    pub manifest: Value,
    /// Archive path of the model file that was inspected (`export_artifacts/model.pt`).
    pub model_path: String,
    /// Its inspection (the same as `report.model`).
    pub model: PtInspection,
    /// Where its zip records lie in it, as the inspection found them (empty unless a zip).
    pub model_records: Vec<RecordSpan>,
}

impl ValidatedPackage {
    /// File name of the model inside `export_artifacts/` (`model.pt`).
    pub fn model_name(&self) -> &str {
        self.model_path
            .rsplit('/')
            .next()
            .unwrap_or(&self.model_path)
    }
}
