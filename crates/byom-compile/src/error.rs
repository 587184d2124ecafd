//! Job-level failures: the package or model cannot be compiled for any target.

use std::path::PathBuf;

/// Why a whole compile job failed (per-target failures are in the report instead).
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the package is not valid: {0}")]
    InvalidPackage(String),
    #[error("the model cannot be compiled: {0}")]
    Unsupported(String),
    #[error("the model failed to load: {0}")]
    Load(String),
    #[error("the model's operators are not available on this server: {0}")]
    Operators(String),
    #[error("the model's forward pass failed: {0}")]
    Forward(String),
    #[error("output shape mismatch: the package declares output_shape {declared:?} but the model returned {actual:?} ({which})")]
    OutputShape {
        declared: Vec<i64>,
        actual: Vec<i64>,
        which: String,
    },
    #[error("no targets requested")]
    NoTargets,
}

impl CompileError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CompileError {
        let path = path.into();
        move |source| CompileError::Io { path, source }
    }
}
