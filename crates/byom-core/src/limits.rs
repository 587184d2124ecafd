//! Every bound the reader enforces, in one place, with the default a user would find sensible.
//!
//! Limits exist so that hostile or broken input always ends in a clear error instead of a hang
//! or unbounded memory. The server serves the limits in force (`GET /api/v1/format-spec`) and
//! the browser validates under exactly those, so the two can never disagree.

use serde::{Deserialize, Serialize};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Bounds on what a package may contain. Every field is a named, documented setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest total size of all files once decompressed (default 8 GiB).
    pub max_uncompressed_bytes: u64,
    /// Largest ratio of decompressed to compressed bytes (default 200). Model weights barely
    /// compress (about 1.1×), so a far higher ratio is a decompression bomb.
    pub max_compression_ratio: u64,
    /// Decompressed bytes allowed before the ratio check starts (default 16 MiB), so that small
    /// packages of highly compressible metadata are never refused.
    pub ratio_grace_bytes: u64,
    /// Largest metadata file (`config.yaml`, `mochi.json`, `manifest.json`) (default 1 MiB).
    pub max_metadata_bytes: u64,
    /// Most archive members (default 1000). A package has four files.
    pub max_entries: u64,
    /// Longest member path in bytes (default 1024).
    pub max_path_bytes: u64,
    /// Deepest nesting of YAML/JSON values (default 64).
    pub max_nesting_depth: u64,
    /// Most YAML alias references (default 64): alias bombs expand exponentially.
    pub max_yaml_aliases: u64,
    /// Largest pickle record (`data.pkl`, `constants.pkl`) kept for inspection (default 32 MiB).
    pub max_pickle_bytes: u64,
    /// Largest total of TorchScript `code/` records kept for inspection (default 16 MiB).
    pub max_code_bytes: u64,
    /// Largest zip central directory (the `.pt` tail) kept for inspection (default 8 MiB).
    pub max_zip_directory_bytes: u64,
    /// Most records in the `.pt` zip (default 200 000).
    pub max_zip_records: u64,
    /// Most pickle opcodes executed by the non-executing walker per pickle (default 50 000 000).
    pub max_pickle_ops: u64,
    /// Most tensors listed in the inventory (default 100 000).
    pub max_tensors: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_uncompressed_bytes: 8 * GIB,
            max_compression_ratio: 200,
            ratio_grace_bytes: 16 * MIB,
            max_metadata_bytes: MIB,
            max_entries: 1000,
            max_path_bytes: 1024,
            max_nesting_depth: 64,
            max_yaml_aliases: 64,
            max_pickle_bytes: 32 * MIB,
            max_code_bytes: 16 * MIB,
            max_zip_directory_bytes: 8 * MIB,
            max_zip_records: 200_000,
            max_pickle_ops: 50_000_000,
            max_tensors: 100_000,
        }
    }
}
