//! One view of the names, PyTorch's.
//!
//! Its reader (caffe2 `PyTorchStreamReader` over miniz) takes the archive folder from the
//! FIRST central-directory name (text before its first `/`) and finds every record with
//! `mz_zip_reader_locate_file(archive + "/" + name, flags 0)`: a binary search over names
//! sorted with `MZ_TOLOWER`, so a lookup matches any name of the same length equal byte by
//! byte after ASCII lower-casing (nothing else is normalised: not `\` vs `/`, not `./`, not
//! Unicode). With two such names which one torch reads is unspecified (heap sort, then binary
//! search), so a zip holding two `data.pkl` (or `data.pkl` and `DATA.PKL`) lets a scanner
//! inspect one while `torch.load` runs the other. Hence, on the central directory: an exact
//! duplicate name, two names equal under ASCII case folding, and a name outside the archive
//! folder are each refused ([`ZipProblem::DuplicateName`], [`ZipProblem::CaseCollision`],
//! [`ZipProblem::OutsidePrefix`]); and records are classified and looked up
//! case-insensitively, as torch does ([`rel_key`]), so the record byom inspects as `data.pkl`
//! is provably the one torch loads. The checks are bounded by `max_records` (one folded name
//! per entry in a hash map).

use std::collections::HashMap;

use super::problems::{CaseCollisions, DuplicateNames, OutsidePrefix, ZipProblem};
use super::records::CentralEntry;

/// Text after the first `/` (the whole name when there is none).
pub fn rel_name(name: &str) -> &str {
    match name.split_once('/') {
        Some((_, r)) => r,
        None => name,
    }
}

/// [`rel_name`], ASCII lower-cased: the name as PyTorch's case-insensitive lookup sees it.
pub fn rel_key(name: &str) -> String {
    rel_name(name).to_ascii_lowercase()
}

/// The names as PyTorch's reader sees them (see the module doc): the archive folder is the
/// text before the first `/` of the first central-directory name; every name must be under it
/// (exactly: `getAllRecords` compares it with `strncmp`); no two names may be equal, or equal
/// after ASCII lower-casing (miniz's lookup). One problem per kind, naming the entries.
/// Memory: one folded copy of each name, bounded by `max_records` and the directory limit.
pub fn check_names(central: &[CentralEntry]) -> Vec<ZipProblem> {
    let mut out = Vec::new();
    let Some(first) = central.first() else {
        return out;
    };
    let mut outside = Vec::new();
    let folder = match first.name.split_once('/') {
        Some((p, _)) => Some(format!("{p}/")),
        None => {
            out.push(
                OutsidePrefix::FirstNotInFolder {
                    name: first.name.clone(),
                }
                .into(),
            );
            None
        }
    };
    let mut seen: HashMap<String, &str> = HashMap::with_capacity(central.len());
    let mut duplicates: Vec<String> = Vec::new();
    let mut collisions: Vec<(String, String)> = Vec::new();
    for c in central {
        if let Some(p) = &folder {
            if !c.name.starts_with(p.as_str()) {
                outside.push(c.name.clone());
            }
        }
        match seen.get(c.name.to_ascii_lowercase().as_str()) {
            Some(&other) if other == c.name => {
                if !duplicates.contains(&c.name) {
                    duplicates.push(c.name.clone());
                }
            }
            Some(&other) => collisions.push((other.to_string(), c.name.clone())),
            None => {
                seen.insert(c.name.to_ascii_lowercase(), c.name.as_str());
            }
        }
    }
    if let (Some(folder), false) = (folder, outside.is_empty()) {
        out.push(
            OutsidePrefix::Outside {
                folder,
                names: outside,
            }
            .into(),
        );
    }
    if !duplicates.is_empty() {
        out.push(DuplicateNames { names: duplicates }.into());
    }
    if !collisions.is_empty() {
        out.push(CaseCollisions { pairs: collisions }.into());
    }
    out
}
