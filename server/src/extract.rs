//! Request-body extractors whose rejections are [`ApiError`]s, so a malformed body gets the
//! documented `{"error": "bad_request", "message": ...}` like every other error (axum's own
//! `Json` answers plain text, and 422 for JSON of the wrong shape).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// axum's default body limit, which `Json` (and so this extractor) applies: 2 MiB.
const JSON_BODY_LIMIT: u64 = 2 * 1024 * 1024;

/// A JSON request body, like `axum::Json`, rejected through [`ApiError`].
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(rejection_to_error(rejection)),
        }
    }
}

fn rejection_to_error(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "send the body as JSON, with the header Content-Type: application/json".into(),
        ),
        JsonRejection::BytesRejection(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge {
                limit: JSON_BODY_LIMIT,
            }
        }
        // Syntax (not JSON at all) and data (JSON of the wrong shape: a missing field, a
        // string where a list belongs) errors: axum's text says which and where, in serde's
        // words ("Failed to parse the request body as JSON: expected value at line 1 column 1").
        other => ApiError::BadRequest(other.body_text()),
    }
}
