//! Resumable uploads over HTTP, tus 1.0 (core, creation, termination, expiration; the protocol's
//! version checks and OPTIONS are in [`super::tus`]): the headers in, the tus headers and
//! bodies out. What an upload is and does (slots, quota, validation, commit, expiry) is
//! `service::uploads`.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::packages::NameQuery;
use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::service::uploads::{self, Finished, Patched, UploadStatus};
use crate::views::packages::PackageView;
use crate::views::uploads::{UploadCreated, UploadDetail, UploadState, UploadView};

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The tus headers of an upload: how far it is, its length and when it expires.
fn tus_headers(headers: &mut HeaderMap, offset: u64, length: u64, expires: Option<HeaderValue>) {
    headers.insert("upload-offset", HeaderValue::from(offset));
    headers.insert("upload-length", HeaderValue::from(length));
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    if let Some(at) = expires {
        headers.insert("upload-expires", at);
    }
}

/// The answer to a `PATCH` that left the upload incomplete: 204 with its offset and expiry.
fn progress_response(
    state: &AppState,
    offset: u64,
    length: u64,
    last: std::time::SystemTime,
) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let expires = super::tus::expires(state, last);
    tus_headers(response.headers_mut(), offset, length, expires);
    response
}

/// The answer of a completed upload's last PATCH: 204 with `Byom-Package-Id`, or the refusal
/// with its documented error body. Replayed for a PATCH or HEAD after completion.
fn verdict_response(f: &Finished, head: bool) -> Response {
    let mut response = match (&f.package_id, &f.error) {
        (Some(_), _) => StatusCode::NO_CONTENT.into_response(),
        // HEAD reports the offset (the upload is complete) and only says it was refused.
        (None, _) if head => StatusCode::OK.into_response(),
        (None, error) => (f.status, Json(error.clone().unwrap_or(Value::Null))).into_response(),
    };
    let headers = response.headers_mut();
    tus_headers(headers, f.length, f.length, None);
    match &f.package_id {
        Some(p) => {
            if let Ok(v) = HeaderValue::from_str(p) {
                headers.insert("byom-package-id", v);
            }
        }
        None => {
            headers.insert("byom-upload-state", HeaderValue::from_static("rejected"));
        }
    }
    response
}

/// `POST /uploads` (tus creation): `Upload-Length`, the name in `?name=` (byom's older
/// clients) or the tus metadata's `filename`.
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<NameQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // The role first: a viewer is refused whatever its headers say.
    principal.require(Role::Uploader)?;
    let meta = super::tus::metadata_name(&headers)?;
    let length = header_u64(&headers, "upload-length");
    let name = q.name.as_deref().or(meta.as_deref());
    let id = uploads::create(&state, &principal, name, length).await?;
    // `create` refused a missing length, so it is there.
    let length = length.unwrap_or(0);
    let body = UploadCreated {
        upload_id: id.clone(),
        offset: 0,
        length,
        state: UploadState::Receiving,
    };
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    let expires = super::tus::expires(&state, std::time::SystemTime::now());
    tus_headers(response.headers_mut(), 0, length, expires);
    if let Ok(loc) = HeaderValue::from_str(&format!("/api/v1/uploads/{id}")) {
        response.headers_mut().insert("location", loc);
    }
    Ok(response)
}

/// `HEAD /uploads/{id}`: the tus offset (a completed upload: its length, with its verdict in
/// `Byom-Package-Id` or `Byom-Upload-State: rejected`).
pub async fn status(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match uploads::status(&state, &principal.tenant, &id).await? {
        UploadStatus::Finished(done) => Ok(verdict_response(&done, true)),
        UploadStatus::Open {
            offset,
            length,
            last,
            ..
        } => {
            let mut response = StatusCode::OK.into_response();
            tus_headers(
                response.headers_mut(),
                offset,
                length,
                super::tus::expires(&state, last),
            );
            Ok(response)
        }
    }
}

/// `GET /uploads/{id}` (byom's, not tus'): the upload's state as JSON; once complete, its
/// verdict: `state` "stored" with the package, or "rejected" with the error body (and the
/// report for an invalid package). Kept until the upload expiry after completion.
pub async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let body = match uploads::status(&state, &principal.tenant, &id).await? {
        UploadStatus::Open {
            name,
            offset,
            length,
            last,
        } => UploadView {
            upload_id: id,
            name,
            offset,
            length,
            state: UploadState::Receiving,
            detail: UploadDetail::Receiving {
                expires: super::tus::expiry_date(&state, last),
            },
        },
        UploadStatus::Finished(done) => {
            let (state_now, detail) = match done.package_id {
                Some(package_id) => {
                    // The package itself, unless it was deleted since.
                    let package =
                        crate::service::packages::find(&state, &principal.tenant, &package_id)
                            .await
                            .ok()
                            .map(|row| PackageView::of_row(&row));
                    (
                        UploadState::Stored,
                        UploadDetail::Stored {
                            package_id,
                            package,
                        },
                    )
                }
                None => (
                    UploadState::Rejected,
                    UploadDetail::Rejected {
                        status: done.status.as_u16(),
                        error: done.error.unwrap_or(Value::Null),
                    },
                ),
            };
            UploadView {
                upload_id: id,
                name: done.name,
                offset: done.length,
                length: done.length,
                state: state_now,
                detail,
            }
        }
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `DELETE /uploads/{id}` (tus termination).
pub async fn abort(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    uploads::abort(&state, &principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PATCH /uploads/{id}`: `Upload-Offset` and the bytes from there, as
/// `application/offset+octet-stream`.
pub async fn append(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Role::Uploader)?;
    super::tus::require_patch_type(&headers)?;
    let claimed = header_u64(&headers, "upload-offset");
    Ok(
        match uploads::append(&state, &principal, &id, claimed, body).await? {
            Patched::Progress {
                offset,
                length,
                last,
            } => progress_response(&state, offset, length, last),
            Patched::Done(done) => verdict_response(&done, false),
        },
    )
}
