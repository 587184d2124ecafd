//! The tus 1.0 protocol layer of `/api/v1/uploads` (core + creation, termination, expiration):
//! the version check and headers every request and response carries, `OPTIONS`, and parsing
//! `Upload-Metadata`. What the routes do with the bytes is in [`super::uploads`].
//!
//! See <https://tus.io/protocols/resumable-upload>. Every request but `OPTIONS` and byom's own
//! `GET /uploads/{id}` (the verdict) must carry `Tus-Resumable: 1.0.0` (else 412 with
//! `Tus-Version`); every response carries `Tus-Resumable: 1.0.0`.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::app::AppState;
use crate::error::ApiError;

pub const VERSION: &str = "1.0.0";
/// The extensions served; `creation-with-upload`, `checksum` and `concatenation` are not.
pub const EXTENSIONS: &str = "creation,termination,expiration";
/// The longest `Upload-Metadata` accepted, in bytes: it only names the package.
pub const MAX_METADATA_BYTES: usize = 4096;
/// The PATCH body type tus requires.
pub const PATCH_CONTENT_TYPE: &str = "application/offset+octet-stream";

/// Checks `Tus-Resumable` on requests and adds it to every response of the upload routes.
pub async fn protocol(req: Request, next: Next) -> Response {
    let exempt = matches!(*req.method(), Method::OPTIONS | Method::GET);
    let version = req.headers().get("tus-resumable");
    let mut response = if exempt || version.is_some_and(|v| v == VERSION) {
        next.run(req).await
    } else {
        ApiError::TusVersion.into_response()
    };
    response
        .headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(VERSION));
    response
}

/// `OPTIONS /api/v1/uploads[/{id}]`: what this server speaks (no token needed, as in tus).
pub async fn options(State(state): State<AppState>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert("tus-version", HeaderValue::from_static(VERSION));
    headers.insert("tus-extension", HeaderValue::from_static(EXTENSIONS));
    headers.insert(
        "tus-max-size",
        HeaderValue::from(state.config.max_upload_bytes),
    );
    response
}

/// A `PATCH` must send `Content-Type: application/offset+octet-stream` (415 otherwise).
pub fn require_patch_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = given.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(PATCH_CONTENT_TYPE) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "PATCH bodies must be sent as Content-Type: {PATCH_CONTENT_TYPE} (got {given:?})"
        )))
    }
}

/// The package name from `Upload-Metadata` (`filename`, as tus clients send it, or `name`).
/// The header is `key base64value,key2 base64value2`; a key may have no value.
pub fn metadata_name(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get("upload-metadata") else {
        return Ok(None);
    };
    if raw.len() > MAX_METADATA_BYTES {
        return Err(ApiError::BadRequest(format!(
            "Upload-Metadata is longer than {MAX_METADATA_BYTES} bytes"
        )));
    }
    let raw = raw
        .to_str()
        .map_err(|_| ApiError::BadRequest("Upload-Metadata must be ASCII".into()))?;
    let mut name = None;
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut parts = pair.splitn(2, ' ');
        let key = parts.next().unwrap_or("");
        let value = parts.next().map(str::trim).unwrap_or("");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "Upload-Metadata value of {key:?} is not base64 of UTF-8 text"
                ))
            })?;
        match key {
            "filename" => name = Some(decoded),
            "name" if name.is_none() => name = Some(decoded),
            _ => {}
        }
    }
    Ok(name)
}

/// When an upload whose last byte arrived at `last` expires, as an HTTP date.
pub fn expiry_date(state: &AppState, last: std::time::SystemTime) -> Option<String> {
    let at = last.checked_add(std::time::Duration::from_secs(state.config.upload_expiry_s))?;
    Some(httpdate::fmt_http_date(at))
}

/// `Upload-Expires` for an upload whose last byte arrived at `last`.
pub fn expires(state: &AppState, last: std::time::SystemTime) -> Option<HeaderValue> {
    HeaderValue::from_str(&expiry_date(state, last)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("upload-metadata", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn metadata_gives_the_file_name() {
        // "filename" -> "m.tar.gz", "is_confidential" without a value.
        let h = meta("is_confidential,filename bS50YXIuZ3o=, name eC50YXIuZ3o=");
        assert_eq!(metadata_name(&h).unwrap().as_deref(), Some("m.tar.gz"));
        assert_eq!(
            metadata_name(&meta("name eC50YXIuZ3o="))
                .unwrap()
                .as_deref(),
            Some("x.tar.gz")
        );
        assert_eq!(metadata_name(&HeaderMap::new()).unwrap(), None);
        assert!(metadata_name(&meta("filename !!!")).is_err());
        assert!(metadata_name(&meta(&"a".repeat(MAX_METADATA_BYTES + 1))).is_err());
    }

    #[test]
    fn patch_needs_the_tus_content_type() {
        let mut h = HeaderMap::new();
        assert!(require_patch_type(&h).is_err());
        h.insert(
            "content-type",
            HeaderValue::from_static("application/offset+octet-stream"),
        );
        assert!(require_patch_type(&h).is_ok());
        h.insert(
            "content-type",
            HeaderValue::from_static("application/octet-stream"),
        );
        assert!(require_patch_type(&h).is_err());
    }
}
