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
//!
//! Resources per tenant: an open upload reserves its declared length against the tenant's
//! quota from the moment it is created (the reservation becomes the package's size when it
//! completes, and is freed when it is deleted or expires), and a tenant may have at most
//! `max_open_uploads_per_tenant` open. A `DELETE` while a `PATCH` is sending cancels that
//! `PATCH`: it stops reading, drops its buffers and removes the file. Deleting and expiring
//! remove the bytes first and write the database after, so they work on a full disk.
//! Creation, deletion, expiry and completion are audited (`upload.create`, `upload.abort`,
//! `upload.expire`, `upload.complete`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sqlx::Row;

use super::packages::{
    audit_rejected, clean_name, commit, discard, disk_gate, open_reserved, usage, NameQuery, Source,
};
use crate::app::{AppState, UploadSlot};
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::ingest::{self, Allowance, IngestState, OverLimit};
use crate::metrics::Metrics;

/// The token of one holder of an upload's slot; `send(true)` cancels that holder.
type SlotToken = Arc<tokio::sync::watch::Sender<bool>>;

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
    let row = sqlx::query("SELECT name, length FROM uploads WHERE id = $1 AND tenant_id = $2")
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

pub(super) fn offset_response(status: StatusCode, id: &str, offset: u64, length: u64) -> Response {
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
    let result = open_upload(&state, &principal, &name, &headers).await;
    if let Err(e) = &result {
        audit_rejected(&state, &principal, "", &name, e).await;
    }
    result
}

async fn open_upload(
    state: &AppState,
    principal: &Principal,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let length = header_u64(headers, "upload-length").ok_or_else(|| {
        ApiError::BadRequest("Upload-Length header (total bytes) is required".into())
    })?;
    if length > state.config.max_upload_bytes {
        return Err(ApiError::TooLarge {
            limit: state.config.max_upload_bytes,
        });
    }
    let length_i = i64::try_from(length).map_err(ApiError::internal)?;
    let tenant = &principal.tenant;
    let id = crate::ids::new_id("up");
    let path = part_path(state, &id);
    // Reservation and check in one transaction, serialised with every other reservation and
    // commit (the blob lock), so concurrent creates cannot together pass the quota. The insert
    // comes first so that the transaction holds SQLite's write lock before it reads.
    let _guard = state.database.blob_lock().await?;
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "INSERT INTO uploads (id, tenant_id, name, length, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(tenant)
    .bind(name)
    .bind(length_i)
    .bind(crate::ids::now())
    .execute(&mut *tx)
    .await?;
    let open: i64 = sqlx::query("SELECT COUNT(*) AS n FROM uploads WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await?
        .get("n");
    let limit = state.config.max_open_uploads_per_tenant;
    if u64::try_from(open).unwrap_or(0) > limit {
        return Err(ApiError::TooManyOpenUploads { limit });
    }
    let (stored, quota) = usage(state, tenant).await?;
    let used = stored.saturating_add(open_reserved(&mut *tx, tenant, &id).await?);
    if used.saturating_add(length) > quota {
        return Err(ApiError::QuotaExceeded { quota, used });
    }
    let detail = format!("name={name} length={length}");
    crate::audit::record(&mut *tx, Some(principal), "upload.create", &id, &detail).await?;
    if state.objects.is_none() {
        std::fs::File::create(&path).map_err(|e| {
            if crate::storage::is_disk_full(&e) {
                ApiError::DiskFull
            } else {
                ApiError::internal(e)
            }
        })?;
    }
    if let Err(e) = tx.commit().await {
        discard(state, &path);
        return Err(e.into());
    }
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
    let offset = match &state.objects {
        Some(objects) => super::uploads_s3::offset(objects, &id).await?,
        None => std::fs::metadata(part_path(&state, &id))
            .map(|m| m.len())
            .unwrap_or(0),
    };
    Ok(offset_response(StatusCode::OK, &id, offset, length))
}

pub async fn abort(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Uploader)?;
    find(&state, &principal.tenant, &id).await?;
    // Hold the slot while the upload goes (a PATCH arriving now gets 409, then 404). A PATCH
    // sending now is cancelled: it stops reading, drops its buffers and removes the file once
    // its pipeline has drained; otherwise the file goes here. Bytes first, database after:
    // on a full disk removing the file is what frees space, and it needs none.
    let token = new_token();
    let previous = state
        .uploads
        .slots
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), UploadSlot::Busy(Arc::clone(&token)));
    match previous {
        Some(UploadSlot::Busy(writer)) => {
            writer.send_replace(true);
        }
        _ => remove_bytes(&state, &id).await,
    }
    let deleted = async {
        let mut tx = state.db.begin().await?;
        let n = sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            crate::audit::record(&mut *tx, Some(&principal), "upload.abort", &id, "").await?;
            tx.commit().await?;
        }
        Ok::<u64, sqlx::Error>(n)
    }
    .await;
    end_slot(&state, &id, &token);
    match deleted? {
        0 => Err(ApiError::NotFound("upload")), // completed or expired meanwhile
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

/// Remove every byte of an upload (its `.part` file, or its parts in the object store).
async fn remove_bytes(state: &AppState, id: &str) {
    match &state.objects {
        Some(objects) => super::uploads_s3::remove(objects, id).await,
        None => discard(state, &part_path(state, id)),
    }
}

/// Resolves when the slot's holder is told that its upload was deleted.
fn cancelled(token: &SlotToken) -> impl std::future::Future<Output = ()> {
    let mut cancel = token.subscribe();
    async move {
        let closed = cancel.wait_for(|&c| c).await.is_err();
        if closed {
            std::future::pending::<()>().await; // no sender: never cancelled
        }
    }
}

fn new_token() -> SlotToken {
    Arc::new(tokio::sync::watch::channel(false).0)
}

/// Take the upload's validator state for this request (409 while another request holds it).
fn take_slot(
    state: &AppState,
    id: &str,
) -> Result<(SlotToken, Option<Box<IngestState>>), ApiError> {
    let token = new_token();
    let mut map = state
        .uploads
        .slots
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    match map.insert(id.to_string(), UploadSlot::Busy(Arc::clone(&token))) {
        Some(busy @ UploadSlot::Busy(_)) => {
            map.insert(id.to_string(), busy);
            Err(ApiError::Conflict(
                "another request is writing to this upload".into(),
            ))
        }
        Some(UploadSlot::Ready(s)) => Ok((token, Some(s))),
        None => Ok((token, None)),
    }
}

/// Give the slot back with `kept` as its state (`None`: forget it). False when the slot is no
/// longer this holder's (the upload was deleted meanwhile): then nothing is put back.
fn put_back(state: &AppState, id: &str, token: &SlotToken, kept: Option<Box<IngestState>>) -> bool {
    let mut map = state
        .uploads
        .slots
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    match map.get(id) {
        Some(UploadSlot::Busy(t)) if Arc::ptr_eq(t, token) => {
            match kept {
                Some(s) => map.insert(id.to_string(), UploadSlot::Ready(s)),
                None => map.remove(id),
            };
            true
        }
        _ => false,
    }
}

/// Remove the slot if it is still this holder's.
fn end_slot(state: &AppState, id: &str, token: &SlotToken) -> bool {
    put_back(state, id, token, None)
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
    let _permit = state
        .uploads
        .limiter
        .try_start(&state.config, &principal.tenant)?;
    let (token, slot) = take_slot(&state, &id)?;
    let upload = Upload {
        id: &id,
        name: &name,
        length,
    };
    let (kept, result) = match &state.objects {
        Some(objects) => {
            let patch = super::uploads_s3::Patch {
                id: &id,
                name: &name,
                length,
                claimed,
                idle: std::time::Duration::from_secs(state.config.idle_timeout_s),
            };
            let cancel = cancelled(&token);
            let done =
                super::uploads_s3::write_part(&state, objects, &principal, patch, body, cancel);
            (None, done.await)
        }
        None => write_part(&state, &principal, upload, claimed, (&token, slot), body).await,
    };
    // Whatever happened, the slot is this request's no more. If the upload was deleted
    // meanwhile, this request removes the bytes the DELETE left to it.
    if !put_back(&state, &id, &token, kept) {
        remove_bytes(&state, &id).await;
    }
    if let Err(e) = &result {
        audit_rejected(&state, &principal, &id, &name, e).await;
    }
    result
}

/// How a `PATCH` ended: the state to keep for the next one (`None`: forget it), and the answer.
type Written = (Option<Box<IngestState>>, Result<Response, ApiError>);

/// The upload a `PATCH` writes to, as its row says.
#[derive(Clone, Copy)]
struct Upload<'a> {
    id: &'a str,
    name: &'a str,
    length: u64,
}

/// Append `body` at `claimed` (which must be the bytes on disk), holding the upload's slot
/// (its token and the state it held); complete the upload with its last byte.
async fn write_part(
    state: &AppState,
    principal: &Principal,
    upload: Upload<'_>,
    claimed: u64,
    (token, slot): (&SlotToken, Option<Box<IngestState>>),
    body: Body,
) -> Written {
    let Upload { id, name, length } = upload;
    let path = part_path(state, id);
    let file = match std::fs::OpenOptions::new().append(true).open(&path) {
        Ok(f) => f,
        // Deleted between the lookup and now (its bytes go first).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (None, Err(ApiError::NotFound("upload")))
        }
        Err(e) => return (None, Err(ApiError::internal(e))),
    };
    // The slot keeps out other requests to this server; the file lock keeps out those to other
    // servers of a cluster sharing the data directory. Two writers interleaving bytes would
    // make the file differ from what the validator saw and hashed.
    if let Err(e) = crate::storage::lock_exclusive(&file) {
        return (
            slot,
            Err(if e.kind() == std::io::ErrorKind::WouldBlock {
                ApiError::Conflict("another request is writing to this upload".into())
            } else {
                ApiError::internal(e)
            }),
        );
    }
    let offset = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => return (None, Err(ApiError::internal(e))),
    };
    if claimed != offset {
        return (slot, Err(ApiError::OffsetMismatch { offset }));
    }
    // Reuse the in-memory state if it covers exactly the bytes on disk; else re-read them.
    let ingest_state = match slot {
        Some(s) if s.bytes == offset => *s,
        _ => {
            let settings = state.config.settings.clone();
            let p = path.clone();
            match tokio::task::spawn_blocking(move || IngestState::replay(&settings, &p)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return (None, Err(ApiError::internal(e))),
                Err(e) => return (None, Err(ApiError::internal(e))),
            }
        }
    };
    let allowed = Allowance {
        max_bytes: length - offset.min(length),
        over: OverLimit::Declared,
    };
    let idle = std::time::Duration::from_secs(state.config.idle_timeout_s);
    let before = ingest_state.bytes;
    let mut cancel = token.subscribe();
    let cancelled = async move {
        let closed = cancel.wait_for(|&c| c).await.is_err();
        if closed {
            std::future::pending::<()>().await; // no sender: never cancelled
        }
    };
    let (ingest_state, outcome) = ingest::receive(
        ingest_state,
        file,
        body,
        idle,
        allowed,
        disk_gate(state),
        cancelled,
    )
    .await;
    Metrics::inc(
        &state.metrics.upload_bytes,
        ingest_state.bytes.saturating_sub(before),
    );
    let now_at = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if let Err(e) = outcome {
        return (Some(Box::new(ingest_state)), Err(e));
    }
    if now_at < length {
        let response = offset_response(StatusCode::OK, id, now_at, length);
        return (Some(Box::new(ingest_state)), Ok(response));
    }
    // Complete: validate, then commit or refuse; the upload is over either way. The row (and
    // its quota reservation) ends in the commit's transaction; the slot stays held till then.
    let size = ingest_state.bytes;
    let (report, sha256) = ingest_state.finish();
    let source = Source::Resumable { id, path: &path };
    let committed = commit(state, principal, name, source, report, &sha256, size).await;
    if committed.is_err() && !path.exists() {
        // Failed at commit with its bytes gone (e.g. 507 at the rename): so is the upload.
        let gone = sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&state.db)
            .await;
        if let Err(e) = gone {
            tracing::warn!(error = %e, upload = id, "could not end a failed upload; expiry will");
        }
    }
    let answer = committed
        .map(|package| (StatusCode::CREATED, Json(json!({ "package": package }))).into_response());
    (None, answer)
}

/// Delete every resumable upload that has received no bytes for `upload_expiry_s` (the `.part`
/// file's modification time says when it last grew). Returns how many went. Also forgets the
/// in-memory state of uploads whose row is gone, whatever removed it.
pub async fn expire_stale(state: &AppState) -> Result<usize, sqlx::Error> {
    let expiry = Duration::from_secs(state.config.upload_expiry_s);
    let rows = sqlx::query("SELECT id, tenant_id, created_at FROM uploads")
        .fetch_all(&state.db)
        .await?;
    forget_orphans(
        state,
        rows.iter().map(|r| r.get::<String, _>("id")).collect(),
    );
    let mut expired = 0;
    for row in rows {
        let id: String = row.get("id");
        let tenant: String = row.get("tenant_id");
        let path = part_path(state, &id);
        let idle = match &state.objects {
            Some(objects) => {
                let created: String = row.get("created_at");
                match super::uploads_s3::idle(objects, &id, &created).await {
                    Some(idle) => idle,
                    None => continue, // the store is unreachable: not now
                }
            }
            None => std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok()),
        };
        if idle.is_some_and(|d| d < expiry) {
            continue;
        }
        // Hold the upload's slot while it goes, so a PATCH arriving now gets 409 and then
        // 404, never a half-deleted upload. One already writing keeps it (and fresh bytes).
        let Ok((token, _state)) = take_slot(state, &id) else {
            continue;
        };
        // A PATCH on another server of a cluster holds the file's lock while it writes: that
        // upload is not idle. (The lock, held till the end of this pass, also keeps a PATCH
        // from starting on the file being removed.)
        let _writing = match std::fs::File::open(&path) {
            Ok(f) => match crate::storage::lock_exclusive(&f) {
                Ok(()) => Some(f),
                Err(_) => {
                    end_slot(state, &id, &token);
                    continue;
                }
            },
            Err(_) => None,
        };
        // Bytes first: that needs no space on a full disk, and frees some for the row. If
        // the row cannot go now, the next sweep finds it without a file and tries again.
        remove_bytes(state, &id).await;
        let deleted = async {
            let mut tx = state.db.begin().await?;
            let gone = sqlx::query("DELETE FROM uploads WHERE id = $1")
                .bind(&id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // Another API server of a cluster expired it first: its record is the one.
            if gone == 0 {
                return Ok(());
            }
            let detail = format!(
                "tenant {tenant}: no bytes for {} s",
                idle.map_or(0, |d| d.as_secs())
            );
            crate::audit::record(&mut *tx, None, "upload.expire", &id, &detail).await?;
            tx.commit().await
        }
        .await;
        if deleted.is_ok() {
            expired += 1;
        }
        end_slot(state, &id, &token);
        deleted?;
    }
    Ok(expired)
}

/// Drop idle in-memory states that belong to no upload row any more.
fn forget_orphans(state: &AppState, ids: std::collections::HashSet<String>) {
    state
        .uploads
        .slots
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|id, slot| matches!(slot, UploadSlot::Busy(_)) || ids.contains(id));
}
