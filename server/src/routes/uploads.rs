//! Resumable uploads, tus 1.0 (core, creation, termination, expiration; the protocol's headers
//! and checks are in [`super::tus`]): `POST /uploads` with `Upload-Length` (and the name in
//! `Upload-Metadata`) opens one, `HEAD /uploads/{id}` says how many bytes the server has
//! (`Upload-Offset`), and each `PATCH /uploads/{id}` with `Upload-Offset` appends from exactly
//! there (204). When the last byte arrives the package is validated and committed like a
//! `PUT`: the last PATCH answers 204 with `Byom-Package-Id`, or the refusal (422 with the
//! report, 413 over quota, ...). The verdict is kept (`upload_results`, swept with the expired
//! uploads): `GET /uploads/{id}` and `HEAD` report it to a client whose last answer was lost.
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
use serde_json::{json, Value};
use sqlx::Row;

use super::packages::{
    audit_rejected, clean_name, commit, discard, disk_gate, open_reserved, usage, NameQuery, Source,
};
use crate::app::{AppState, Stop, UploadSlot};
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::ingest::{self, Allowance, IngestState, OverLimit};
use crate::metrics::Metrics;

/// The token of one holder of an upload's slot; sending a [`Stop`] stops that holder.
type SlotToken = Arc<tokio::sync::watch::Sender<Stop>>;

/// How long a PATCH waits for the one it supersedes to drain and give the slot back.
const TAKEOVER_WAIT: Duration = Duration::from_secs(10);

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

/// The tus headers of an upload: how far it is, its length and when it expires.
fn tus_headers(headers: &mut HeaderMap, offset: u64, length: u64, expires: Option<HeaderValue>) {
    headers.insert("upload-offset", HeaderValue::from(offset));
    headers.insert("upload-length", HeaderValue::from(length));
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    if let Some(at) = expires {
        headers.insert("upload-expires", at);
    }
}

/// When the upload's bytes last grew (its `.part` file's modification time).
/// Bytes stored of upload `id` and when it last grew: its `.part` file, or its parts in the
/// object store.
async fn progress(state: &AppState, id: &str) -> Result<(u64, std::time::SystemTime), ApiError> {
    if let Some(objects) = &state.objects {
        return super::uploads_s3::progress(objects, id).await;
    }
    let offset = std::fs::metadata(part_path(state, id))
        .map(|m| m.len())
        .unwrap_or(0);
    Ok((offset, last_write(state, id)))
}

/// The answer to a `PATCH` that left the upload incomplete: 204 with its offset and expiry.
pub(super) fn progress_response(
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

fn last_write(state: &AppState, id: &str) -> std::time::SystemTime {
    std::fs::metadata(part_path(state, id))
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| std::time::SystemTime::now())
}

/// A completed upload's kept verdict (`upload_results`), of this tenant.
pub(super) struct Finished {
    pub(super) name: String,
    pub(super) length: u64,
    pub(super) package_id: Option<String>,
    pub(super) status: StatusCode,
    pub(super) error: Option<Value>,
}

async fn finished(state: &AppState, tenant: &str, id: &str) -> Result<Finished, ApiError> {
    let row = sqlx::query(
        "SELECT name, length, package_id, status, error_json FROM upload_results WHERE id = $1 AND tenant_id = $2",
    )
    .bind(id)
    .bind(tenant)
    .fetch_optional(&state.db)
    .await?
    .ok_or(ApiError::NotFound("upload"))?;
    let status = u16::try_from(row.get::<i64, _>("status")).unwrap_or(500);
    Ok(Finished {
        name: row.get("name"),
        length: u64::try_from(row.get::<i64, _>("length")).unwrap_or(0),
        package_id: row.get("package_id"),
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        error: row
            .get::<Option<String>, _>("error_json")
            .and_then(|e| serde_json::from_str(&e).ok()),
    })
}

/// The answer of a completed upload's last PATCH: 204 with `Byom-Package-Id`, or the refusal
/// with its documented error body. Replayed for a PATCH or HEAD after completion.
pub(super) fn verdict_response(f: &Finished, head: bool) -> Response {
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

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<NameQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    principal.require(Role::Uploader)?;
    // `?name=` (byom's older clients) or the tus metadata's `filename`.
    let meta = super::tus::metadata_name(&headers)?;
    let name = clean_name(q.name.as_deref().or(meta.as_deref()))?;
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
    // Upload-Defer-Length is not offered (the length reserves quota up front).
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
    let body = json!({ "upload_id": id, "offset": 0, "length": length, "state": "receiving" });
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    let expires = super::tus::expires(state, std::time::SystemTime::now());
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
    let (_, length) = match find(&state, &principal.tenant, &id).await {
        Err(ApiError::NotFound(_)) => {
            let done = finished(&state, &principal.tenant, &id).await?;
            return Ok(verdict_response(&done, true));
        }
        other => other?,
    };
    let (offset, at) = progress(&state, &id).await?;
    let mut response = StatusCode::OK.into_response();
    tus_headers(
        response.headers_mut(),
        offset,
        length,
        super::tus::expires(&state, at),
    );
    Ok(response)
}

/// `GET /uploads/{id}` (byom's, not tus'): the upload's state as JSON; once complete, its
/// verdict: `state` "stored" with the package, or "rejected" with the error body (and the
/// report for an invalid package). Kept until the upload expiry after completion.
pub async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let body = match find(&state, &principal.tenant, &id).await {
        Ok((name, length)) => {
            let (offset, at) = progress(&state, &id).await?;
            let expires = super::tus::expiry_date(&state, at);
            json!({ "upload_id": id, "name": name, "offset": offset, "length": length,
                    "state": "receiving", "expires": expires })
        }
        Err(ApiError::NotFound(_)) => {
            let done = finished(&state, &principal.tenant, &id).await?;
            let mut body = json!({ "upload_id": id, "name": done.name, "offset": done.length,
                                   "length": done.length });
            match &done.package_id {
                Some(pkg) => {
                    body["state"] = json!("stored");
                    body["package_id"] = json!(pkg);
                    // The package itself, unless it was deleted since.
                    body["package"] =
                        match super::packages::find(&state, &principal.tenant, pkg).await {
                            Ok(row) => super::packages::package_json(&row),
                            Err(_) => Value::Null,
                        };
                }
                None => {
                    body["state"] = json!("rejected");
                    body["status"] = json!(done.status.as_u16());
                    body["error"] = done.error.clone().unwrap_or(Value::Null);
                }
            }
            body
        }
        Err(e) => return Err(e),
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    Ok(response)
}

pub async fn abort(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Uploader)?;
    if let Err(ApiError::NotFound(_)) = find(&state, &principal.tenant, &id).await {
        // Terminating a completed upload forgets its verdict (its package stays).
        let gone = sqlx::query("DELETE FROM upload_results WHERE id = $1 AND tenant_id = $2")
            .bind(&id)
            .bind(&principal.tenant)
            .execute(&state.db)
            .await?
            .rows_affected();
        return match gone {
            0 => Err(ApiError::NotFound("upload")),
            _ => Ok(StatusCode::NO_CONTENT),
        };
    }
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
            writer.send_replace(Stop::Deleted);
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

/// Resolves when the slot's holder is told to stop (its upload deleted, or superseded).
fn cancelled(token: &SlotToken) -> impl std::future::Future<Output = ()> {
    let mut cancel = token.subscribe();
    async move {
        let closed = cancel.wait_for(|&c| c != Stop::Running).await.is_err();
        if closed {
            std::future::pending::<()>().await; // no sender: never cancelled
        }
    }
}

fn new_token() -> SlotToken {
    Arc::new(tokio::sync::watch::channel(Stop::Running).0)
}

fn busy() -> ApiError {
    ApiError::Conflict("another request is writing to this upload".into())
}

/// Take the upload's validator state for this request; `Err(holder)` while another request
/// holds it.
fn try_take_slot(
    state: &AppState,
    id: &str,
) -> Result<(SlotToken, Option<Box<IngestState>>), SlotToken> {
    let token = new_token();
    let mut map = state
        .uploads
        .slots
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    match map.insert(id.to_string(), UploadSlot::Busy(Arc::clone(&token))) {
        Some(UploadSlot::Busy(holder)) => {
            map.insert(id.to_string(), UploadSlot::Busy(Arc::clone(&holder)));
            Err(holder)
        }
        Some(UploadSlot::Ready(s)) => Ok((token, Some(s))),
        None => Ok((token, None)),
    }
}

/// [`try_take_slot`], 409 while another request holds it.
fn take_slot(
    state: &AppState,
    id: &str,
) -> Result<(SlotToken, Option<Box<IngestState>>), ApiError> {
    try_take_slot(state, id).map_err(|_| busy())
}

/// The slot for a PATCH: a PATCH already writing to this upload on this server is told to stop
/// (as tusd does: the client retrying is the one that is alive; the old request keeps what it
/// wrote and drains), then its slot is taken once given back, within [`TAKEOVER_WAIT`]. A
/// DELETE under way is not superseded (409, then 404).
async fn take_slot_over(
    state: &AppState,
    id: &str,
) -> Result<(SlotToken, Option<Box<IngestState>>), ApiError> {
    let deadline = tokio::time::Instant::now() + TAKEOVER_WAIT;
    loop {
        let holder = match try_take_slot(state, id) {
            Ok(taken) => return Ok(taken),
            Err(holder) => holder,
        };
        if *holder.borrow() == Stop::Deleted || tokio::time::Instant::now() >= deadline {
            return Err(busy());
        }
        holder.send_if_modified(|stop| {
            let running = *stop == Stop::Running;
            if running {
                *stop = Stop::Superseded;
            }
            running
        });
        tokio::time::sleep(Duration::from_millis(25)).await;
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
    super::tus::require_patch_type(&headers)?;
    let claimed = header_u64(&headers, "upload-offset")
        .ok_or_else(|| ApiError::BadRequest("Upload-Offset header is required".into()))?;
    let (name, length) = match find(&state, &principal.tenant, &id).await {
        // Already complete: a client whose last answer was lost gets the same answer again.
        Err(ApiError::NotFound(_)) => {
            let done = finished(&state, &principal.tenant, &id).await?;
            if claimed != done.length {
                return Err(ApiError::OffsetMismatch {
                    offset: done.length,
                });
            }
            return Ok(verdict_response(&done, false));
        }
        other => other?,
    };
    let _permit = state
        .uploads
        .limiter
        .try_start(&state.config, &principal.tenant)?;
    let (token, slot) = take_slot_over(&state, &id).await?;
    let held = HeldSlot {
        state: &state,
        id: &id,
        token: &token,
    };
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
    std::mem::forget(held);
    if !put_back(&state, &id, &token, kept) {
        remove_bytes(&state, &id).await;
    }
    let result = match result {
        Err(_) if *token.borrow() == Stop::Superseded => Err(ApiError::Conflict(
            "a newer request to this upload took it over; what this one sent so far is kept".into(),
        )),
        other => other,
    };
    if let Err(e) = &result {
        audit_rejected(&state, &principal, &id, &name, e).await;
    }
    result
}

/// A PATCH's hold on its upload's slot while it runs. hyper drops a handler's future when the
/// client's connection closes mid-request (a browser reloading during an upload does that), so
/// the code after the write never runs: without this the slot would stay busy for good and
/// every later PATCH would answer 409. Dropped, it gives the slot back without a state (the
/// next PATCH re-reads the bytes on disk); a deleted upload's bytes go. The normal end
/// `forget`s it and puts the slot back itself.
struct HeldSlot<'a> {
    state: &'a AppState,
    id: &'a str,
    token: &'a SlotToken,
}

impl Drop for HeldSlot<'_> {
    fn drop(&mut self) {
        tracing::info!(
            upload = self.id,
            "a PATCH ended with its connection; its slot is given back"
        );
        if !end_slot(self.state, self.id, self.token) && self.state.objects.is_none() {
            discard(self.state, &part_path(self.state, self.id));
        }
    }
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
    let cancelled = cancelled(token);
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
        let response = progress_response(state, now_at, length, last_write(state, id));
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
    let answer = committed.map(|package| {
        let done = Finished {
            name: name.to_string(),
            length,
            package_id: package["id"].as_str().map(str::to_owned),
            status: StatusCode::CREATED,
            error: None,
        };
        verdict_response(&done, false)
    });
    (None, answer)
}

/// Delete every resumable upload that has received no bytes for `upload_expiry_s` (the `.part`
/// file's modification time says when it last grew). Returns how many went. Also forgets the
/// in-memory state of uploads whose row is gone, whatever removed it.
pub async fn expire_stale(state: &AppState) -> Result<usize, sqlx::Error> {
    let expiry = Duration::from_secs(state.config.upload_expiry_s);
    // Verdicts of completed uploads are kept as long as an idle upload is.
    let cutoff = crate::jobs::queue::unix_now()
        .saturating_sub(i64::try_from(expiry.as_secs()).unwrap_or(i64::MAX));
    sqlx::query("DELETE FROM upload_results WHERE finished_at < $1")
        .bind(cutoff)
        .execute(&state.db)
        .await?;
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
