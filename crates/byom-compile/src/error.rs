//! Job-level failures: the package or model cannot be compiled for any target.

use std::path::PathBuf;

use crate::failure::{first_cause, Failure, FailureKind};

/// Why a whole compile job failed (per-target failures are in the report instead).
///
/// `Load` and `Forward` carry libtorch's whole error text; their `Display` is its first cause,
/// on one line, and [`CompileError::failure`] has the rest.
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
    #[error("the model failed to load: {}", first_cause(.0))]
    Load(String),
    #[error("the model's operators are not available on this server: {0}")]
    Operators(String),
    #[error("the model's forward pass failed: {}", first_cause(.0))]
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

    /// The structured failure the report, the server and the page show.
    pub fn failure(&self) -> Failure {
        match self {
            CompileError::Load(raw) => {
                Failure::torch(FailureKind::Load, "the model failed to load", raw)
            }
            CompileError::Forward(raw) => {
                Failure::torch(FailureKind::Forward, "the model's forward pass failed", raw)
            }
            other => {
                let kind = match other {
                    CompileError::Io { .. } => FailureKind::Io,
                    CompileError::InvalidPackage(_) => FailureKind::InvalidPackage,
                    CompileError::Unsupported(_) => FailureKind::UnsupportedModel,
                    CompileError::OutputShape { .. } => FailureKind::OutputShape,
                    _ => FailureKind::NoTargets,
                };
                Failure::new(kind, other.to_string())
            }
        }
    }
}
