//! Views of resumable uploads (`GET /api/v1/uploads/{id}` and the creation answer).

use serde::Serialize;

use super::packages::PackageView;

/// An upload's state: receiving bytes, or complete with its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadState {
    Receiving,
    Stored,
    Rejected,
}

/// `POST /api/v1/uploads` (201).
#[derive(Debug, Serialize)]
pub struct UploadCreated {
    pub upload_id: String,
    pub offset: u64,
    pub length: u64,
    pub state: UploadState,
}

/// `GET /api/v1/uploads/{id}`: the common fields, then what the state adds.
#[derive(Debug, Serialize)]
pub struct UploadView {
    pub upload_id: String,
    pub name: String,
    pub offset: u64,
    pub length: u64,
    pub state: UploadState,
    #[serde(flatten)]
    pub detail: UploadDetail,
}

/// The fields of one upload state.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum UploadDetail {
    /// When it expires if no more bytes arrive (an HTTP date; null without expiry).
    Receiving { expires: Option<String> },
    /// The package, unless it was deleted since.
    Stored {
        package_id: String,
        package: Option<PackageView>,
    },
    /// The refusal: its HTTP status and the documented error body, as the last PATCH got it.
    Rejected {
        status: u16,
        error: serde_json::Value,
    },
}
