//! Resumable uploads, tus-like: `POST /uploads` with `Upload-Length` opens one,
//! `HEAD`/`GET /uploads/{id}` says how many bytes the server has (`Upload-Offset`), and each
//! `PATCH /uploads/{id}` with `Upload-Offset` appends from exactly there. When the last byte
//! arrives the package is validated and committed like a `PUT` (201 or 422).
//!
//! The offset is the size of `<data>/uploads/<id>.part`: whatever reached the disk counts, so
//! an interrupted request continues from its last written byte. The validator state lives in
//! memory between requests; after a restart it is rebuilt by re-reading the stored prefix
//! (see [`crate::ingest`]).
//!
//! An upload that receives no bytes for `upload_expiry_s` (default a day) is abandoned:
//! [`expire_stale`], run periodically by the server, deletes its row, its bytes and its
//! in-memory state, so clients that never come back hold neither disk nor memory.

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sqlx::Row;

use super::packages::{allowance, clean_name, commit, NameQuery};
use crate::app::{AppState, UploadSlot};
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::ingest::{self, Allowance, IngestState, OverLimit};
use crate::metrics::Metrics;

fn part_path(state: &AppState, id: &str) -> PathBuf {
    state
        .config
        .data_dir
        .join("uploads")
        .join(format!("{id}.part"))
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The upload row of this tenant: (name, declared length).
async fn find(state: &AppState, tenant: &str, id: &str) -> Result<(String, u64), ApiError> {
    let row = sqlx::query("SELECT name, length FROM uploads WHERE id = ? AND tenant_id = ?")
        .bind(id)
        .bind(tenant)
        .fetch_optional(&state.db)
        .await?
        .ok_or(ApiError::NotFound("upload"))?;
    Ok((
        row.get("name"),
        u64::try_from(row.get::<i64, _>("length")).unwrap_or(0),
    ))
}

fn offset_response(status: StatusCode, id: &str, offset: u64, length: u64) -> Response {
    let mut response = (
        status,
        Json(json!({ "upload_id": id, "offset": offset, "length": length })),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert("upload-offset", HeaderValue::from(offset));
    headers.insert("upload-length", HeaderValue::from(length));
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    response
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<NameQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    principal.require(Role::Uploader)?;
    let name = clean_name(q.name.as_deref())?;
    let length = header_u64(&headers, "upload-length").ok_or_else(|| {
        ApiError::BadRequest("Upload-Length header (total bytes) is required".into())
    })?;
    let allowed = allowance(&state, &principal.tenant, 0).await?;
    if length > allowed.max_bytes {
        return Err(match allowed.over {
            OverLimit::Quota { quota, used } => ApiError::QuotaExceeded { quota, used },
            _ => ApiError::TooLarge {
                limit: state.config.max_upload_bytes,
            },
        });
    }
    let id = crate::ids::new_id("up");
    std::fs::File::create(part_path(&state, &id)).map_err(|e| {
        if crate::storage::is_disk_full(&e) {
            ApiError::DiskFull
        } else {
            ApiError::internal(e)
        }
    })?;
    sqlx::query(
        "INSERT INTO uploads (id, tenant_id, name, length, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(&principal.tenant)
    .bind(&name)
    .bind(i64::try_from(length).map_err(ApiError::internal)?)
    .bind(crate::ids::now())
    .execute(&state.db)
    .await?;
    let mut response = offset_response(StatusCode::CREATED, &id, 0, length);
    if let Ok(loc) = HeaderValue::from_str(&format!("/api/v1/uploads/{id}")) {
        response.headers_mut().insert("location", loc);
    }
    Ok(response)
}

pub async fn status(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, length) = find(&state, &principal.tenant, &id).await?;
    let offset = std::fs::metadata(part_path(&state, &id))
        .map(|m| m.len())
        .unwrap_or(0);
    Ok(offset_response(StatusCode::OK, &id, offset, length))
}

pub async fn abort(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Uploader)?;
    find(&state, &principal.tenant, &id).await?;
    sqlx::query("DELETE FROM uploads WHERE id = ?")
        .bind(&id)
        .execute(&state.db)
        .await?;
    state
        .uploads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    super::packages::discard(&state, &part_path(&state, &id));
    Ok(StatusCode::NO_CONTENT)
}

/// Take the upload's validator state for this request (409 while another request holds it).
fn take_slot(state: &AppState, id: &str) -> Result<Option<Box<IngestState>>, ApiError> {
    let mut map = state.uploads.lock().unwrap_or_else(|e| e.into_inner());
    match map.insert(id.to_string(), UploadSlot::Busy) {
        Some(UploadSlot::Busy) => Err(ApiError::Conflict(
            "another request is writing to this upload".into(),
        )),
        Some(UploadSlot::Ready(s)) => Ok(Some(s)),
        None => Ok(None),
    }
}

pub async fn append(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Role::Uploader)?;
    let (name, length) = find(&state, &principal.tenant, &id).await?;
    let claimed = header_u64(&headers, "upload-offset")
        .ok_or_else(|| ApiError::BadRequest("Upload-Offset header is required".into()))?;
    let path = part_path(&state, &id);
    let slot = take_slot(&state, &id)?;
    let release = |s: Option<Box<IngestState>>| {
        let mut map = state.uploads.lock().unwrap_or_else(|e| e.into_inner());
        match s {
            Some(s) => map.insert(id.clone(), UploadSlot::Ready(s)),
            None => map.remove(&id),
        };
    };
    let offset = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) => {
            release(None);
            return Err(ApiError::internal(e));
        }
    };
    if claimed != offset {
        release(slot);
        return Err(ApiError::OffsetMismatch { offset });
    }
    // Reuse the in-memory state if it covers exactly the bytes on disk; else re-read them.
    let ingest_state = match slot {
        Some(s) if s.bytes == offset => *s,
        _ => {
            let settings = state.config.settings.clone();
            let p = path.clone();
            match tokio::task::spawn_blocking(move || IngestState::replay(&settings, &p)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    release(None);
                    return Err(ApiError::internal(e));
                }
                Err(e) => {
                    release(None);
                    return Err(ApiError::internal(e));
                }
            }
        }
    };
    let file = match std::fs::OpenOptions::new().append(true).open(&path) {
        Ok(f) => f,
        Err(e) => {
            release(None);
            return Err(ApiError::internal(e));
        }
    };
    let allowed = Allowance {
        max_bytes: length - offset.min(length),
        over: OverLimit::Declared,
    };
    let idle = std::time::Duration::from_secs(state.config.idle_timeout_s);
    let before = ingest_state.bytes;
    let (ingest_state, outcome) = ingest::receive(
        ingest_state,
        file,
        body,
        idle,
        allowed,
        state.budget.clone(),
    )
    .await;
    Metrics::inc(
        &state.metrics.upload_bytes,
        ingest_state.bytes.saturating_sub(before),
    );
    let now_at = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if let Err(e) = outcome {
        release(Some(Box::new(ingest_state)));
        return Err(e);
    }
    if now_at < length {
        release(Some(Box::new(ingest_state)));
        return Ok(offset_response(StatusCode::OK, &id, now_at, length));
    }
    // Complete: validate, then commit or refuse; the upload is over either way.
    release(None);
    sqlx::query("DELETE FROM uploads WHERE id = ?")
        .bind(&id)
        .execute(&state.db)
        .await?;
    let size = ingest_state.bytes;
    let (report, sha256) = ingest_state.finish();
    let package = commit(&state, &principal, &name, &path, report, &sha256, size).await?;
    Ok((StatusCode::CREATED, Json(json!({ "package": package }))).into_response())
}

/// Delete every resumable upload that has received no bytes for `upload_expiry_s` (the `.part`
/// file's modification time says when it last grew). Returns how many went.
pub async fn expire_stale(state: &AppState) -> Result<usize, sqlx::Error> {
    let expiry = Duration::from_secs(state.config.upload_expiry_s);
    let rows = sqlx::query("SELECT id, tenant_id FROM uploads")
        .fetch_all(&state.db)
        .await?;
    let mut expired = 0;
    for row in rows {
        let id: String = row.get("id");
        let tenant: String = row.get("tenant_id");
        let path = part_path(state, &id);
        let idle = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        if idle.is_some_and(|d| d < expiry) {
            continue;
        }
        // Hold the upload's slot while it goes, so a PATCH arriving now gets 409 and then
        // 404, never a half-deleted upload. One already writing keeps it (and fresh bytes).
        if take_slot(state, &id).is_err() {
            continue;
        }
        let deleted = async {
            let mut tx = state.db.begin().await?;
            sqlx::query("DELETE FROM uploads WHERE id = ?")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            let detail = format!(
                "tenant {tenant}: no bytes for {} s",
                idle.map_or(0, |d| d.as_secs())
            );
            crate::audit::record(&mut *tx, None, "upload.expire", &id, &detail).await?;
            tx.commit().await
        }
        .await;
        if deleted.is_ok() {
            super::packages::discard(state, &path);
            expired += 1;
        }
        state
            .uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        deleted?;
    }
    Ok(expired)
}
