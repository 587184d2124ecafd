//! The three metadata files (`config.yaml`, `mochi.json`, `export_artifacts/manifest.json`) as
//! parsed values.
//!
//! Both formats parse into one [`Value`] tree that keeps what the guide cares about and plain
//! serde/YAML loaders lose: `224`, `224.0`, `"224"` and `true` stay distinct (the guide wants
//! positive integers, not strings, floats or booleans), and duplicate keys, depth and YAML aliases
//! are caught while parsing, under the [`crate::Limits`] in force.

pub mod contents;
pub mod declared;
pub mod json;
pub mod post_processing;
pub mod validated;
pub mod value;
pub mod yaml;

pub use contents::{Contents, MetaFile};
pub use declared::Declared;
pub use post_processing::PostProcessing;
pub use validated::ValidatedPackage;
pub use value::Value;

/// Why a metadata file could not be turned into a [`Value`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// Nothing but whitespace (or, for YAML, comments / an empty document).
    #[error("the file is empty")]
    Empty,
    /// Not UTF-8; `offset` is the first bad byte.
    #[error("not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { offset: usize },
    /// The same key twice in one mapping; `path` is where (`dataset.image_width`).
    #[error("duplicate key '{path}'")]
    DuplicateKey { path: String },
    /// Nested deeper than `max_nesting_depth`.
    #[error("nested deeper than {limit} levels")]
    TooDeep { limit: u64 },
    /// More alias references (or a larger alias expansion) than allowed.
    #[error("{0}")]
    AliasBomb(String),
    /// A syntax error, with the parser's own words.
    #[error("{0}")]
    Syntax(String),
}

/// Check UTF-8 and drop a leading byte-order mark (editors on Windows add one).
pub(crate) fn as_text(bytes: &[u8]) -> Result<&str, MetaError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| MetaError::NotUtf8 {
        offset: e.valid_up_to(),
    })
}
