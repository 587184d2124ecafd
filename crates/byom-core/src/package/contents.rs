//! What the archive walk found, in the form the rules read: the regular files, the three
//! metadata files parsed, and the `.pt` candidates.

use super::{MetaError, Value};
use crate::report::Issue;
use crate::torch::{PtInspection, RecordSpan};

pub const CONFIG: &str = "config.yaml";
pub const MOCHI: &str = "mochi.json";
pub const MANIFEST: &str = "export_artifacts/manifest.json";
pub const EXPORT_DIR: &str = "export_artifacts/";

/// One metadata file as read.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum MetaFile {
    #[default]
    Absent,
    /// Over `max_metadata_bytes`; already reported (BYOM012) and not parsed.
    TooLarge,
    Parsed(Result<Value, MetaError>),
}

impl MetaFile {
    /// The parsed value when the file is present and well-formed.
    pub fn value(&self) -> Option<&Value> {
        match self {
            MetaFile::Parsed(Ok(v)) => Some(v),
            _ => None,
        }
    }

    /// The parsed value, taken.
    pub fn into_value(self) -> Option<Value> {
        match self {
            MetaFile::Parsed(Ok(v)) => Some(v),
            _ => None,
        }
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, MetaFile::Absent)
    }
}

/// Everything the rules look at.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    /// Accepted regular files (no AppleDouble, no duplicates), archive order, with sizes.
    pub files: Vec<(String, u64)>,
    pub config: MetaFile,
    pub mochi: MetaFile,
    pub manifest: MetaFile,
    /// `.pt` files directly in `export_artifacts/`, archive order. The first is inspected.
    pub pt_files: Vec<String>,
    /// The inspection of the first `.pt` (absent when there is none or the walk failed).
    pub inspection: Option<PtInspection>,
    /// Issues the `.pt` inspection itself raised.
    pub inspection_issues: Vec<Issue>,
    /// Where the inspected `.pt`'s zip records lie (for the compile server's tensor reads).
    pub model_records: Vec<RecordSpan>,
}

impl Contents {
    /// The `.pt` that was inspected: the first in `export_artifacts/`.
    pub fn pt_path(&self) -> Option<&str> {
        self.pt_files.first().map(String::as_str)
    }

    pub fn size_of(&self, path: &str) -> Option<u64> {
        self.files.iter().find(|(p, _)| p == path).map(|(_, s)| *s)
    }

    pub fn has(&self, path: &str) -> bool {
        self.files.iter().any(|(p, _)| p == path)
    }

    /// `Some(folder)` when every file sits under one top-level folder (none at the root).
    pub fn single_top_folder(&self) -> Option<&str> {
        let mut top: Option<&str> = None;
        for (path, _) in &self.files {
            let (first, rest) = path.split_once('/')?;
            if rest.is_empty() {
                return None;
            }
            match top {
                None => top = Some(first),
                Some(t) if t == first => {}
                Some(_) => return None,
            }
        }
        top.filter(|t| *t != "export_artifacts")
    }
}

/// `.pt` directly inside `export_artifacts/` (not in a sub-folder).
pub fn is_export_pt(path: &str) -> bool {
    path.strip_prefix(EXPORT_DIR)
        .is_some_and(|name| !name.contains('/') && name.ends_with(".pt") && name.len() > 3)
}
