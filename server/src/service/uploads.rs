//! Resumable uploads, tus 1.0 (core, creation, termination, expiration; the protocol's headers
//! and checks are in `routes::tus`; the HTTP side is `routes::uploads`): `POST /uploads` with `Upload-Length` (and the name in
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

use std::collections::HashMap;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::StatusCode;
use serde_json::Value;
use sqlx::Row;

use super::packages::{
    audit_rejected, clean_name, commit, discard, disk_gate, open_reserved, usage, Source,
};
use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::ingest::{self, Allowance, IngestState, OverLimit};
use crate::metrics::Metrics;

/// What the holder of an upload's slot is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Go on.
    Running,
    /// The upload was deleted (termination).
    Deleted,
    /// A newer PATCH to the same upload takes over: a client whose connection died unseen
    /// (a proxy or NAT dropped it) retries, and the old request would hold the slot until its
    /// idle timeout.
    Superseded,
}

/// A resumable upload's in-memory state between requests.
pub enum UploadSlot {
    /// A PATCH is writing to it now. Sending a [`Stop`] other than `Running` makes it stop
    /// reading and drain what it has (a deleted upload's bytes then go). The `Arc` is the
    /// PATCH's own, so it can tell its slot from a later one.
    Busy(Arc<tokio::sync::watch::Sender<Stop>>),
    /// Idle, with the validator state for the bytes on disk.
    Ready(Box<IngestState>),
}

/// Uploads in memory: the resumable uploads' slots and the limits on uploads receiving at once.
#[derive(Default)]
pub struct Uploads {
    pub slots: std::sync::Mutex<HashMap<String, UploadSlot>>,
    pub limiter: crate::ingest::Limiter,
}

/// Where an upload stands, for `HEAD` and `GET`.
pub enum UploadStatus {
    /// Receiving: its name, the bytes stored, its declared length and when it last grew.
    Open {
        name: String,
        offset: u64,
        length: u64,
        last: SystemTime,
    },
    /// Complete, with its verdict.
    Finished(Finished),
}

/// What a `PATCH` achieved.
pub enum Patched {
    /// Bytes stored, the upload not complete yet: how far it is and when it last grew.
    Progress {
        offset: u64,
        length: u64,
        last: SystemTime,
    },
    /// The last byte arrived and the package was stored (or, replayed, the earlier verdict).
    Done(Finished),
}

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

/// Bytes stored of upload `id` and when it last grew: its `.part` file, or its parts in the
/// object store.
async fn progress(state: &AppState, id: &str) -> Result<(u64, SystemTime), ApiError> {
    if let Some(objects) = &state.objects {
        return super::uploads_s3::progress(objects, id).await;
    }
    let offset = std::fs::metadata(part_path(state, id))
        .map(|m| m.len())
        .unwrap_or(0);
    Ok((offset, last_write(state, id)))
}

/// When the upload's bytes last grew (its `.part` file's modification time).
fn last_write(state: &AppState, id: &str) -> SystemTime {
    std::fs::metadata(part_path(state, id))
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| std::time::SystemTime::now())
}

/// A completed upload's kept verdict (`upload_results`), of this tenant.
pub struct Finished {
    pub name: String,
    pub length: u64,
    /// The package it became; `None`: refused, with `status` and the error body `error`.
    pub package_id: Option<String>,
    pub status: StatusCode,
    pub error: Option<Value>,
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

/// Open a resumable upload of `length` bytes named `name` (as the client gave it); its id.
pub async fn create(
    state: &AppState,
    principal: &Principal,
    name: Option<&str>,
    length: Option<u64>,
) -> Result<String, ApiError> {
    principal.require(Role::Uploader)?;
    let name = clean_name(name)?;
    let result = open_upload(state, principal, &name, length).await;
    if let Err(e) = &result {
        audit_rejected(state, principal, "", &name, e).await;
    }
    result
}

async fn open_upload(
    state: &AppState,
    principal: &Principal,
    name: &str,
    length: Option<u64>,
) -> Result<String, ApiError> {
    // Upload-Defer-Length is not offered (the length reserves quota up front).
    let length = length.ok_or_else(|| {
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
    crate::audit::record(
        &mut *tx,
        Some(principal),
        crate::audit::Action::UploadCreate,
        &id,
        &detail,
    )
    .await?;
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
    Ok(id)
}

/// Where the tenant's upload `id` stands: receiving, or complete with its verdict (kept until
/// the upload expiry after completion).
pub async fn status(state: &AppState, tenant: &str, id: &str) -> Result<UploadStatus, ApiError> {
    match find(state, tenant, id).await {
        Ok((name, length)) => {
            let (offset, last) = progress(state, id).await?;
            Ok(UploadStatus::Open {
                name,
                offset,
                length,
                last,
            })
        }
        Err(ApiError::NotFound(_)) => {
            Ok(UploadStatus::Finished(finished(state, tenant, id).await?))
        }
        Err(e) => Err(e),
    }
}

/// Terminate the caller's upload `id`: an open one's bytes and row go (a PATCH sending now is
/// cancelled); a completed one's verdict is forgotten (its package stays).
pub async fn abort(state: &AppState, principal: &Principal, id: &str) -> Result<(), ApiError> {
    principal.require(Role::Uploader)?;
    if let Err(ApiError::NotFound(_)) = find(state, &principal.tenant, id).await {
        let gone = sqlx::query("DELETE FROM upload_results WHERE id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(&principal.tenant)
            .execute(&state.db)
            .await?
            .rows_affected();
        return match gone {
            0 => Err(ApiError::NotFound("upload")),
            _ => Ok(()),
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
        .insert(id.to_string(), UploadSlot::Busy(Arc::clone(&token)));
    match previous {
        Some(UploadSlot::Busy(writer)) => {
            writer.send_replace(Stop::Deleted);
        }
        _ => remove_bytes(state, id).await,
    }
    let deleted = async {
        let mut tx = state.db.begin().await?;
        let n = sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            crate::audit::record(
                &mut *tx,
                Some(principal),
                crate::audit::Action::UploadAbort,
                id,
                "",
            )
            .await?;
            tx.commit().await?;
        }
        Ok::<u64, sqlx::Error>(n)
    }
    .await;
    end_slot(state, id, &token);
    match deleted? {
        0 => Err(ApiError::NotFound("upload")), // completed or expired meanwhile
        _ => Ok(()),
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

/// Append `body` to the caller's upload `id` at `claimed` (the client's `Upload-Offset`, which
/// must be the bytes stored); with the last byte the package is validated and committed.
pub async fn append(
    state: &AppState,
    principal: &Principal,
    id: &str,
    claimed: Option<u64>,
    body: Body,
) -> Result<Patched, ApiError> {
    principal.require(Role::Uploader)?;
    let claimed =
        claimed.ok_or_else(|| ApiError::BadRequest("Upload-Offset header is required".into()))?;
    let (name, length) = match find(state, &principal.tenant, id).await {
        // Already complete: a client whose last answer was lost gets the same answer again.
        Err(ApiError::NotFound(_)) => {
            let done = finished(state, &principal.tenant, id).await?;
            if claimed != done.length {
                return Err(ApiError::OffsetMismatch {
                    offset: done.length,
                });
            }
            return Ok(Patched::Done(done));
        }
        other => other?,
    };
    let _permit = state
        .uploads
        .limiter
        .try_start(&state.config, &principal.tenant)?;
    let (token, slot) = take_slot_over(state, id).await?;
    let held = HeldSlot {
        state,
        id,
        token: &token,
    };
    let upload = Upload {
        id,
        name: &name,
        length,
    };
    let (kept, result) = match &state.objects {
        Some(objects) => {
            let patch = super::uploads_s3::Patch {
                id,
                name: &name,
                length,
                claimed,
                idle: std::time::Duration::from_secs(state.config.idle_timeout_s),
            };
            let cancel = cancelled(&token);
            let done =
                super::uploads_s3::write_part(state, objects, principal, patch, body, cancel);
            (None, done.await)
        }
        None => write_part(state, principal, upload, claimed, (&token, slot), body).await,
    };
    // Whatever happened, the slot is this request's no more. If the upload was deleted
    // meanwhile, this request removes the bytes the DELETE left to it.
    std::mem::forget(held);
    if !put_back(state, id, &token, kept) {
        remove_bytes(state, id).await;
    }
    let result = match result {
        Err(_) if *token.borrow() == Stop::Superseded => Err(ApiError::Conflict(
            "a newer request to this upload took it over; what this one sent so far is kept".into(),
        )),
        other => other,
    };
    if let Err(e) = &result {
        audit_rejected(state, principal, id, &name, e).await;
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
type Written = (Option<Box<IngestState>>, Result<Patched, ApiError>);

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
        let progress = Patched::Progress {
            offset: now_at,
            length,
            last: last_write(state, id),
        };
        return (Some(Box::new(ingest_state)), Ok(progress));
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
        Patched::Done(Finished {
            name: name.to_string(),
            length,
            package_id: Some(package.id),
            status: StatusCode::CREATED,
            error: None,
        })
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
            crate::audit::record(
                &mut *tx,
                None,
                crate::audit::Action::UploadExpire,
                &id,
                &detail,
            )
            .await?;
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
