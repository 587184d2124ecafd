//! One pass over an upload: every body chunk is written to a temp file, hashed (sha256) and fed
//! to the same `byom_core::Validator` the browser runs, at the same time.
//!
//! The network side (async, [`receive`]), the disk side (write + sha256) and the validation side
//! (inflate + checks) are pipeline stages joined by small bounded channels, so reading the
//! socket, writing and inflating + checking overlap, and memory stays bounded whatever the
//! upload size. The disk and validation stages are async tasks that borrow a blocking thread
//! only for a batch of chunks that has arrived: a slow client holds no thread while it sends
//! nothing (two threads per upload for its whole life once let ~260 slow uploads of one tenant
//! exhaust the blocking pool and time out everybody else's). How many uploads receive at once
//! is bounded per tenant and in total by the [`Limiter`].
//!
//! Resumable uploads keep the [`IngestState`] in memory between `PATCH` requests. The validator
//! cannot be serialised, so when that state is missing (server restart) or does not match the
//! bytes on disk (a request died mid-write), [`IngestState::replay`] rebuilds it by re-reading
//! the stored prefix from disk before new bytes are accepted. The verdict is identical because
//! the report does not depend on how the bytes were chunked.

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::config::Config;
use crate::error::ApiError;
use crate::storage::DiskGate;

/// Depth of each channel between stages (chunks are ≤ ~64 KiB each).
const PIPE_DEPTH: usize = 32;
/// Most chunks a stage handles in one trip to the blocking pool.
const BATCH: usize = 16;
/// What a client refused for concurrency is told to wait before retrying.
const RETRY_AFTER_S: u64 = 10;

/// Bounds how many upload requests (`PUT`, `PATCH`) receive bytes at once: per tenant, so that
/// one tenant's slow uploads cannot crowd out another's, and in total. Over either limit the
/// request is refused at once with 429 and `Retry-After` rather than queued, since a queued
/// upload would hold its connection anyway.
#[derive(Default)]
pub struct Limiter {
    global: OnceLock<Arc<Semaphore>>,
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Held while an upload request receives; dropping it lets the next one in.
pub struct UploadPermit {
    _tenant: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

impl Limiter {
    pub fn try_start(&self, config: &Config, tenant: &str) -> Result<UploadPermit, ApiError> {
        let per_tenant = config.max_concurrent_uploads_per_tenant;
        let semaphore = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
            // One small entry per tenant that ever uploaded; tenants are created by admins.
            Arc::clone(
                tenants
                    .entry(tenant.to_string())
                    .or_insert_with(|| Arc::new(Semaphore::new(to_usize(per_tenant)))),
            )
        };
        // The tenant's own permit first: a tenant at its limit takes nothing from the others.
        let tenant_permit =
            semaphore
                .try_acquire_owned()
                .map_err(|_| ApiError::TooManyConcurrentUploads {
                    scope: "this tenant",
                    limit: per_tenant,
                    retry_after_s: RETRY_AFTER_S,
                })?;
        let global = self
            .global
            .get_or_init(|| Arc::new(Semaphore::new(to_usize(config.max_concurrent_uploads))));
        let global_permit = Arc::clone(global).try_acquire_owned().map_err(|_| {
            ApiError::TooManyConcurrentUploads {
                scope: "all tenants",
                limit: config.max_concurrent_uploads,
                retry_after_s: RETRY_AFTER_S,
            }
        })?;
        Ok(UploadPermit {
            _tenant: tenant_permit,
            _global: global_permit,
        })
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS)
}

/// Everything learned so far about the bytes of one upload.
pub struct IngestState {
    validator: byom_core::Validator,
    hasher: Sha256,
    /// Bytes fed so far (= bytes on disk when the state is in sync).
    pub bytes: u64,
}

impl IngestState {
    pub fn new(settings: &byom_core::Settings) -> IngestState {
        IngestState {
            validator: byom_core::Validator::new(settings),
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Rebuild the state of a resumable upload from the bytes already stored at `path`.
    pub fn replay(settings: &byom_core::Settings, path: &Path) -> io::Result<IngestState> {
        let mut state = IngestState::new(settings);
        let mut file = File::open(path)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(state);
            }
            state.feed(&buf[..n]);
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.validator.feed(chunk);
        self.bytes += chunk.len() as u64;
    }

    /// The verdict and the sha256 of all bytes fed.
    pub fn finish(self) -> (byom_core::Report, String) {
        let sha256 = hex::encode(self.hasher.finalize());
        let mut report = self.validator.finish();
        report.sha256 = Some(sha256.clone());
        (report, sha256)
    }
}

/// How many bytes a request may still add, and why it would be refused past that.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    pub max_bytes: u64,
    pub over: OverLimit,
}

#[derive(Debug, Clone, Copy)]
pub enum OverLimit {
    /// The upload size limit (`limit` = configured maximum).
    Size { limit: u64 },
    /// The tenant quota.
    Quota { quota: u64, used: u64 },
    /// The declared `Upload-Length` of a resumable upload.
    Declared,
}

impl OverLimit {
    fn error(self) -> ApiError {
        match self {
            OverLimit::Size { limit } => ApiError::TooLarge { limit },
            OverLimit::Quota { quota, used } => ApiError::QuotaExceeded { quota, used },
            OverLimit::Declared => ApiError::BadRequest("more bytes than Upload-Length".into()),
        }
    }
}

/// Receive `body` into `file` (appending), feeding `state`. Returns the state (always, so a
/// resumable upload keeps what it got) and the outcome. Every chunk read has its own
/// `idle` timeout; the upload as a whole has none. When `cancelled` completes (the resumable
/// upload was deleted) reading stops at once and the outcome is a 409.
///
/// Three stages run at once, joined by bounded channels: the socket reader, the disk stage
/// (write + sha256) and the validation stage (inflate, tar walk, `.pt` inspection). Each of the
/// latter two takes the chunks waiting for it to a blocking thread in one batch and gives the
/// thread back when the batch is done. The disk stage hands a chunk on only once it is
/// written, so the validator never sees a byte the disk does not hold: a resumable upload can
/// continue from the state whatever failed. Every chunk passes the [`DiskGate`] first.
pub async fn receive(
    state: IngestState,
    file: File,
    body: Body,
    idle: Duration,
    allowance: Allowance,
    disk: DiskGate,
    cancelled: impl Future<Output = ()>,
) -> (IngestState, Result<(), ApiError>) {
    let sink = FileSink { file, gate: disk };
    let (state, _, outcome) = receive_into(state, sink, body, idle, allowance, cancelled).await;
    (state, outcome)
}

/// Where the disk stage of [`receive_into`] writes: a local file ([`FileSink`]) or an object
/// store's multipart upload (`objects::ObjectWriter`). Called on a blocking thread.
pub trait Sink: Send + 'static {
    /// Write one chunk (all of it, or fail).
    fn write(&mut self, chunk: &[u8]) -> io::Result<()>;
    /// After the last chunk: make what was written durable (fsync; the last part).
    fn flush(&mut self) -> io::Result<()>;
}

/// A local file, every chunk first passing the [`DiskGate`].
pub struct FileSink {
    pub file: File,
    pub gate: DiskGate,
}

impl Sink for FileSink {
    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        // Unbuffered: the free space the gate reads is then the space really left.
        self.gate.take(chunk.len() as u64)?;
        self.file.write_all(chunk)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}

/// [`receive`] into any [`Sink`], which is handed back (`None` only if a stage panicked) so
/// that the caller can complete or abort what it wrote.
pub async fn receive_into<S: Sink>(
    state: IngestState,
    sink: S,
    body: Body,
    idle: Duration,
    allowance: Allowance,
    cancelled: impl Future<Output = ()>,
) -> (IngestState, Option<S>, Result<(), ApiError>) {
    let IngestState {
        validator,
        hasher,
        bytes: start,
    } = state;
    let (tx, mut rx) = mpsc::channel::<Bytes>(PIPE_DEPTH);
    let (to_validator, mut validate_rx) = mpsc::channel::<Bytes>(PIPE_DEPTH);
    let validation = tokio::spawn(async move {
        let mut validator = Box::new(validator);
        let mut fed = 0u64;
        while let Some(batch) = next_batch(&mut validate_rx).await {
            let (back, n) = blocking(move || {
                let mut n = 0u64;
                for chunk in &batch {
                    validator.feed(chunk);
                    n += chunk.len() as u64;
                }
                (validator, n)
            })
            .await;
            validator = back;
            fed += n;
        }
        (*validator, fed)
    });
    let sink = tokio::spawn(async move {
        let mut io = Box::new((sink, hasher));
        let mut outcome: io::Result<()> = Ok(());
        while let Some(batch) = next_batch(&mut rx).await {
            if outcome.is_err() {
                continue; // keep draining so the reader never blocks; nothing more is written
            }
            let (back, result, written) = blocking(move || {
                let (sink, hasher) = &mut *io;
                let mut written = Vec::with_capacity(batch.len());
                let mut result = Ok(());
                for chunk in batch {
                    result = sink.write(&chunk);
                    if result.is_err() {
                        break;
                    }
                    hasher.update(&chunk);
                    written.push(chunk);
                }
                (io, result, written)
            })
            .await;
            io = back;
            outcome = result;
            for chunk in written {
                // A closed validator channel means that stage died; the join below says so.
                if to_validator.send(chunk).await.is_err() {
                    break;
                }
            }
        }
        drop(to_validator);
        let (mut sink, hasher) = *io;
        let sink = if outcome.is_ok() {
            let (sink, flushed) = blocking(move || {
                let r = sink.flush();
                (sink, r)
            })
            .await;
            outcome = flushed;
            sink
        } else {
            sink
        };
        (sink, hasher, outcome)
    });

    let deleted = || {
        ApiError::Conflict(
            "the upload was deleted while this request was sending it; nothing more is kept".into(),
        )
    };
    tokio::pin!(cancelled);
    let mut stream = body.into_data_stream();
    let mut received: u64 = 0;
    let read_result: Result<(), ApiError> = loop {
        let next = tokio::select! {
            biased;
            () = &mut cancelled => break Err(deleted()),
            next = tokio::time::timeout(idle, stream.next()) => next,
        };
        match next {
            Err(_) => break Err(ApiError::IdleTimeout(idle.as_secs())),
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => {
                break Err(ApiError::BadRequest(format!("upload interrupted: {e}")))
            }
            Ok(Some(Ok(chunk))) => {
                received += chunk.len() as u64;
                if received > allowance.max_bytes {
                    break Err(allowance.over.error());
                }
                tokio::select! {
                    biased;
                    () = &mut cancelled => break Err(deleted()),
                    sent = tx.send(chunk) => if sent.is_err() {
                        break Ok(()); // the sink ended early; its own error is reported below
                    },
                }
            }
        }
    };
    drop(tx);
    let (sunk, validated) = (sink.await, validation.await);
    let (state, sink, written) = match (sunk, validated) {
        (Ok((sink, hasher, written)), Ok((validator, fed))) => (
            IngestState {
                validator,
                hasher,
                bytes: start + fed,
            },
            sink,
            written,
        ),
        (Err(e), _) | (_, Err(e)) => {
            // A stage panicked: the state is lost. A state that matches no offset makes a
            // resumable upload rebuild it from disk on the next request.
            let mut lost = IngestState::new(&byom_core::Settings::default());
            lost.bytes = u64::MAX;
            return (
                lost,
                None,
                Err(ApiError::internal(format!("upload pipeline panicked: {e}"))),
            );
        }
    };
    let outcome = match (read_result, written) {
        (_, Err(e)) if crate::storage::is_disk_full(&e) => Err(ApiError::DiskFull),
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) => Err(ApiError::internal(format!("writing upload: {e}"))),
        (Ok(()), Ok(())) => Ok(()),
    };
    (state, Some(sink), outcome)
}

/// The next chunk, waiting for it, plus whatever else has already arrived (up to [`BATCH`]);
/// `None` once the sender is gone and everything was taken.
async fn next_batch(rx: &mut mpsc::Receiver<Bytes>) -> Option<Vec<Bytes>> {
    let first = rx.recv().await?;
    let mut batch = vec![first];
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(chunk) => batch.push(chunk),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Run `f` on the blocking pool and wait for it. A panic there is raised again here, so the
/// stage's task ends with it and its join reports it.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking task cancelled: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServeArgs;

    #[test]
    fn the_limiter_bounds_each_tenant_and_all_tenants() {
        let mut config = Config::resolve(ServeArgs::default()).unwrap();
        config.max_concurrent_uploads_per_tenant = 2;
        config.max_concurrent_uploads = 3;
        let limiter = Limiter::default();
        let a1 = limiter.try_start(&config, "a").unwrap();
        let _a2 = limiter.try_start(&config, "a").unwrap();
        let refused = limiter.try_start(&config, "a").err();
        assert!(matches!(
            refused,
            Some(ApiError::TooManyConcurrentUploads {
                scope: "this tenant",
                limit: 2,
                ..
            })
        ));
        // a tenant refused for its own limit took nothing from the total
        let _b1 = limiter.try_start(&config, "b").unwrap();
        let refused = limiter.try_start(&config, "b").err();
        assert!(matches!(
            refused,
            Some(ApiError::TooManyConcurrentUploads {
                scope: "all tenants",
                limit: 3,
                ..
            })
        ));
        drop(a1);
        assert!(limiter.try_start(&config, "b").is_ok());
    }
}
