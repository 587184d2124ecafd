//! The one error type of the HTTP API, turned into a response in one place.
//!
//! Every error body is `{"error": "<code>", "message": "<human text>"}` (plus `report` for an
//! invalid package and `offset` for an upload offset conflict), as the OpenAPI document says.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("this token's role may not do that")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("upload offset mismatch: the server has {offset} bytes")]
    OffsetMismatch { offset: u64 },
    #[error("upload exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("upload would exceed the tenant's quota of {quota} bytes ({used} bytes in use or reserved by open resumable uploads)")]
    QuotaExceeded { quota: u64, used: u64 },
    #[error("the package is invalid")]
    InvalidPackage(Box<byom_core::Report>),
    #[error("no data received for {0} seconds")]
    IdleTimeout(u64),
    #[error("the server's disk is full; nothing was stored")]
    DiskFull,
    #[error("the job queue is full; retry later")]
    QueueFull { retry_after_s: u64 },
    #[error("this tenant has {limit} resumable uploads open (the most allowed); finish or delete one first")]
    TooManyOpenUploads { limit: u64 },
    #[error("{limit} uploads of {scope} are already in progress (the most allowed); retry later")]
    TooManyConcurrentUploads {
        scope: &'static str,
        limit: u64,
        retry_after_s: u64,
    },
    /// A tus request without `Tus-Resumable: 1.0.0` (the only version served).
    #[error("this endpoint speaks tus 1.0.0: send the header Tus-Resumable: 1.0.0")]
    TusVersion,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) | ApiError::OffsetMismatch { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } | ApiError::QuotaExceeded { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::InvalidPackage(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::IdleTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::QueueFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyOpenUploads { .. } | ApiError::TooManyConcurrentUploads { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::TusVersion => StatusCode::PRECONDITION_FAILED,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Conflict(_) => "conflict",
            ApiError::OffsetMismatch { .. } => "offset_mismatch",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::QuotaExceeded { .. } => "quota_exceeded",
            ApiError::InvalidPackage(_) => "invalid_package",
            ApiError::IdleTimeout(_) => "idle_timeout",
            ApiError::DiskFull => "disk_full",
            ApiError::QueueFull { .. } => "queue_full",
            ApiError::TooManyOpenUploads { .. } => "too_many_open_uploads",
            ApiError::TooManyConcurrentUploads { .. } => "too_many_concurrent_uploads",
            ApiError::TusVersion => "tus_version",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Internal(_) => "internal",
        }
    }

    /// An internal error: logged with its detail, answered without it.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(detail.to_string())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(format!("database: {e}"))
    }
}

/// The documented error body: `{"error", "message"}` plus `report` (an invalid package) or
/// `offset` (an upload offset conflict).
#[derive(Debug, serde::Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<&'a byom_core::Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

impl ApiError {
    /// The error body ([`ErrorBody`]). A completed resumable upload keeps it as its verdict
    /// (see `service::uploads`).
    pub fn body(&self) -> ErrorBody<'_> {
        let mut body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
            report: None,
            offset: None,
        };
        match self {
            ApiError::InvalidPackage(report) => {
                let errors = report.errors.len();
                body.message =
                    format!("the package is invalid ({errors} error(s)); nothing was stored");
                body.report = Some(report);
            }
            ApiError::OffsetMismatch { offset } => body.offset = Some(*offset),
            _ => {}
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let body = self.body();
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::QueueFull { retry_after_s }
            | ApiError::TooManyConcurrentUploads { retry_after_s, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::OffsetMismatch { offset } => {
                headers.insert("upload-offset", HeaderValue::from(*offset));
            }
            ApiError::TusVersion => {
                headers.insert("tus-version", HeaderValue::from_static("1.0.0"));
            }
            _ => {}
        }
        response
    }
}
