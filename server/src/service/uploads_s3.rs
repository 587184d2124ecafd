//! Resumable uploads with an object store (`--storage s3://…`): no API server keeps any of an
//! upload's bytes, so each `PATCH` may reach a different one.
//!
//! Each `PATCH` sends its body, as it arrives, to one object `uploads/<id>/<offset>` (a
//! multipart upload, one part in memory). What reached the store counts, as on disk: a request
//! that breaks off completes its object with the bytes it got, and the upload continues from
//! there. The offset is the sum of the contiguous parts' sizes, read from a listing, so any
//! server answers `HEAD` the same.
//!
//! The verdict is computed when the last byte has arrived, in one pass that reads the parts in
//! order, feeds them to the validator and sends them on as the package's multipart upload
//! (`tmp/<id>`, completed only if valid, then committed like a `PUT`). Validating at assembly
//! rather than per `PATCH` means no validator state has to travel between servers, and the
//! verdict is always about exactly the bytes that become the package (two servers racing for
//! the same offset cannot make them differ). The parts go once the upload is over.

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use futures_util::StreamExt;

use super::packages::{commit, Source};
use super::uploads::{Finished, Patched};
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::ingest::IngestState;
use crate::metrics::Metrics;
use crate::objects::{contiguous, S3Store};

/// Bytes fed to the validator per trip to the blocking pool during assembly.
const FEED_BATCH: usize = 1 << 20;

/// Bytes the store holds of upload `id`.
pub async fn offset(objects: &S3Store, id: &str) -> Result<u64, ApiError> {
    let parts = objects
        .list(&objects.upload_prefix(id))
        .await
        .map_err(ApiError::internal)?;
    Ok(contiguous(&parts).0)
}

/// Bytes the store holds of upload `id` and when it last grew (its newest part; now without one).
pub async fn progress(
    objects: &S3Store,
    id: &str,
) -> Result<(u64, std::time::SystemTime), ApiError> {
    let parts = objects
        .list(&objects.upload_prefix(id))
        .await
        .map_err(ApiError::internal)?;
    let last = parts
        .iter()
        .map(|p| std::time::SystemTime::from(p.last_modified))
        .max()
        .unwrap_or_else(std::time::SystemTime::now);
    Ok((contiguous(&parts).0, last))
}

/// How long upload `id` (created at `created`, RFC 3339) has not grown: since its newest part,
/// or its creation without one. `None` when the store cannot be asked now.
pub async fn idle(
    objects: &S3Store,
    id: &str,
    created: &str,
) -> Option<Option<std::time::Duration>> {
    let parts = objects.list(&objects.upload_prefix(id)).await.ok()?;
    let since = match parts.iter().map(|p| p.last_modified).max() {
        Some(t) => Some(t),
        None => chrono::DateTime::parse_from_rfc3339(created)
            .ok()
            .map(|t| t.to_utc()),
    };
    Some(since.and_then(|t| (chrono::Utc::now() - t).to_std().ok()))
}

/// Remove every byte of upload `id`.
pub async fn remove(objects: &S3Store, id: &str) {
    if let Err(e) = objects.delete_prefix(&objects.upload_prefix(id)).await {
        tracing::warn!(error = %e, upload = id, "could not remove an upload's parts; the next start removes them");
    }
}

/// The limits of one `PATCH`.
pub struct Patch<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub length: u64,
    pub claimed: u64,
    pub idle: std::time::Duration,
}

/// Receive one `PATCH` body at `claimed` (which must be the bytes stored); complete the upload
/// with its last byte.
pub async fn write_part(
    state: &AppState,
    objects: &S3Store,
    principal: &Principal,
    patch: Patch<'_>,
    body: Body,
    cancelled: impl std::future::Future<Output = ()>,
) -> Result<Patched, ApiError> {
    let Patch {
        id,
        name,
        length,
        claimed,
        idle,
    } = patch;
    let stored = offset(objects, id).await?;
    if claimed != stored {
        return Err(ApiError::OffsetMismatch { offset: stored });
    }
    let max = length - stored.min(length);
    let mut writer = objects
        .writer(&objects.upload_part_key(id, stored))
        .await
        .map_err(ApiError::internal)?;
    let deleted = || {
        ApiError::Conflict(
            "the upload was deleted while this request was sending it; nothing more is kept".into(),
        )
    };
    tokio::pin!(cancelled);
    let mut stream = body.into_data_stream();
    let read: Result<(), ApiError> = loop {
        let next = tokio::select! {
            biased;
            () = &mut cancelled => break Err(deleted()),
            next = tokio::time::timeout(idle, stream.next()) => next,
        };
        let chunk = match next {
            Err(_) => break Err(ApiError::IdleTimeout(idle.as_secs())),
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => {
                break Err(ApiError::BadRequest(format!("upload interrupted: {e}")))
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        if writer.written() + chunk.len() as u64 > max {
            break Err(ApiError::BadRequest("more bytes than Upload-Length".into()));
        }
        if let Err(e) = writer.write_async(&chunk).await {
            break Err(ApiError::internal(format!(
                "writing to the object store: {e}"
            )));
        }
    };
    let got = writer.written();
    Metrics::inc(&state.metrics.upload_bytes, got);
    // What arrived counts (as on disk), unless the upload was deleted meanwhile or the store
    // itself failed (then the part may be incomplete: drop it, the client resends).
    let keep = got > 0 && !matches!(&read, Err(ApiError::Conflict(_) | ApiError::Internal(_)));
    let now_at = if keep {
        match writer.complete().await {
            Ok(()) => stored + got,
            Err(e) => return Err(ApiError::internal(e)),
        }
    } else {
        writer.abort().await;
        stored
    };
    read?;
    if now_at < length {
        return Ok(Patched::Progress {
            offset: now_at,
            length,
            last: std::time::SystemTime::now(),
        });
    }
    complete(state, objects, principal, id, name).await
}

/// All bytes are in: validate while assembling the package object, then commit or refuse it.
async fn complete(
    state: &AppState,
    objects: &S3Store,
    principal: &Principal,
    id: &str,
    name: &str,
) -> Result<Patched, ApiError> {
    let key = objects.tmp_key(id);
    let (ingest_state, writer) = assemble(state, objects, id, &key).await?;
    let size = ingest_state.bytes;
    let (report, sha256) = ingest_state.finish();
    if report.valid {
        writer.complete().await.map_err(ApiError::internal)?;
    } else {
        writer.abort().await;
    }
    let source = Source::Object {
        key: &key,
        upload_id: Some(id),
    };
    let committed = commit(state, principal, name, source, report, &sha256, size).await;
    // The upload is over when its row is (committed, refused, or deleted meanwhile).
    let open = sqlx::query("SELECT 1 FROM uploads WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db)
        .await?;
    if open.is_none() {
        remove(objects, id).await;
    }
    committed.map(|package| {
        Patched::Done(Finished {
            name: name.to_string(),
            length: size,
            package_id: Some(package.id),
            status: StatusCode::CREATED,
            error: None,
        })
    })
}

/// Read the parts in order into a new multipart upload to `key`, validating on the way.
async fn assemble(
    state: &AppState,
    objects: &S3Store,
    id: &str,
    key: &object_store::path::Path,
) -> Result<(IngestState, crate::objects::ObjectWriter), ApiError> {
    let parts = objects
        .list(&objects.upload_prefix(id))
        .await
        .map_err(ApiError::internal)?;
    let (_, chain) = contiguous(&parts);
    let mut writer = objects.writer(key).await.map_err(ApiError::internal)?;
    let fresh = Box::new(IngestState::new(&state.config.settings));
    match pump(objects, &chain, &mut writer, fresh).await {
        Ok(s) => Ok((*s, writer)),
        Err(e) => {
            writer.abort().await;
            Err(e)
        }
    }
}

/// Copy `chain` into `writer`, feeding every byte to `ingest_state`.
async fn pump(
    objects: &S3Store,
    chain: &[&object_store::ObjectMeta],
    writer: &mut crate::objects::ObjectWriter,
    mut ingest_state: Box<IngestState>,
) -> Result<Box<IngestState>, ApiError> {
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batched = 0usize;
    for part in chain {
        let (_, mut stream) = objects
            .read(&part.location)
            .await
            .map_err(ApiError::internal)?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(ApiError::internal)?;
            writer
                .write_async(&chunk)
                .await
                .map_err(ApiError::internal)?;
            batched += chunk.len();
            batch.push(chunk);
            if batched >= FEED_BATCH {
                ingest_state = feed(ingest_state, std::mem::take(&mut batch)).await?;
                batched = 0;
            }
        }
    }
    feed(ingest_state, batch).await
}

async fn feed(mut s: Box<IngestState>, batch: Vec<Bytes>) -> Result<Box<IngestState>, ApiError> {
    tokio::task::spawn_blocking(move || {
        for chunk in &batch {
            s.feed(chunk);
        }
        s
    })
    .await
    .map_err(ApiError::internal)
}
