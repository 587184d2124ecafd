//! What a scan produces: the entries as local headers and the central directory announced
//! them, the few records kept for inspection, and the problems found. The public face of the
//! zip reader ([`super::ZipScanner::finish`] returns a [`ZipView`]); `analyze` judges it and
//! `PtInspector::finish_with_spans` turns `local`/`central` into record spans.

use std::collections::BTreeMap;

use super::names::{rel_key, rel_name};
use super::problems::ZipProblem;
use super::records::CentralEntry;

/// Budgets of the scanner, from [`crate::Limits`].
#[derive(Debug, Clone, Copy)]
pub struct ZipLimits {
    pub max_pickle_bytes: u64,
    pub max_code_bytes: u64,
    pub max_directory_bytes: u64,
    pub max_records: u64,
}

/// One entry as its local header announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEntry {
    pub name: String,
    pub header_offset: u64,
    pub data_offset: u64,
    pub method: u16,
    pub flags: u16,
    /// Compressed size as measured (bit-3 entries) or declared (others); `None` until known.
    pub size: Option<u64>,
}

/// A record kept for inspection (decompressed when it was deflated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub data: Vec<u8>,
    /// The record was larger than what was kept.
    pub truncated: bool,
}

/// The result of a scan.
#[derive(Debug, Clone, Default)]
pub struct ZipView {
    /// Text before the first `/` of the first entry (`archive`, the file stem, ...).
    pub prefix: Option<String>,
    pub local: Vec<LocalEntry>,
    pub central: Vec<CentralEntry>,
    /// Records kept, by full entry name.
    pub records: BTreeMap<String, Record>,
    /// Later records whose name is already in `records` (a duplicate, refused as BYOM613).
    pub shadowed: Vec<(String, Record)>,
    pub problems: Vec<ZipProblem>,
}

impl ZipView {
    /// Name relative to the top folder.
    pub fn rel<'n>(&self, name: &'n str) -> &'n str {
        rel_name(name)
    }

    /// A name as PyTorch looks it up: relative to the top folder, ASCII lower-cased (miniz
    /// compares names with `MZ_TOLOWER`). Compare it with lower-case constants.
    pub fn key(&self, name: &str) -> String {
        rel_key(name)
    }

    /// A kept record by its name relative to the top folder, found as PyTorch finds it
    /// (ASCII case-insensitively; names that collide so are refused, so at most one matches).
    pub fn record(&self, rel: &str) -> Option<&Record> {
        self.records
            .iter()
            .find(|(k, _)| rel_name(k).eq_ignore_ascii_case(rel))
            .map(|(_, v)| v)
    }

    /// Sizes of every entry, from the central directory (authoritative), by full name.
    pub fn sizes(&self) -> impl Iterator<Item = (&str, u64)> {
        self.central
            .iter()
            .map(|c| (c.name.as_str(), c.uncompressed_size))
    }
}
