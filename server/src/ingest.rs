//! One pass over an upload: every body chunk is written to a temp file, hashed (sha256) and fed
//! to the same `byom_core::Validator` the browser runs, at the same time.
//!
//! The network side (async, [`receive`]), the disk side (write + sha256) and the validation side
//! (two blocking threads) are pipeline stages joined by small bounded channels, so reading the
//! socket, writing and inflating + checking overlap, and memory stays bounded whatever the
//! upload size.
//!
//! Resumable uploads keep the [`IngestState`] in memory between `PATCH` requests. The validator
//! cannot be serialised, so when that state is missing (server restart) or does not match the
//! bytes on disk (a request died mid-write), [`IngestState::replay`] rebuilds it by re-reading
//! the stored prefix from disk before new bytes are accepted. The verdict is identical because
//! the report does not depend on how the bytes were chunked.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::storage::DiskBudget;

/// Depth of each channel between stages (chunks are ≤ ~64 KiB each).
const PIPE_DEPTH: usize = 32;
/// Write buffer of the temp file.
const WRITE_BUFFER: usize = 1 << 20;

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

    fn feed(&mut self, chunk: &[u8]) {
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
/// `idle` timeout; the upload as a whole has none.
///
/// Three stages run at once, joined by bounded channels: the socket reader (async), the disk
/// stage (write + sha256, a blocking thread) and the validation stage (inflate, tar walk,
/// `.pt` inspection, another blocking thread). The disk stage hands a chunk on only once it is
/// written, so the validator never sees a byte the disk does not hold: a resumable upload can
/// continue from the state whatever failed.
pub async fn receive(
    state: IngestState,
    file: File,
    body: Body,
    idle: Duration,
    allowance: Allowance,
    budget: Arc<DiskBudget>,
) -> (IngestState, Result<(), ApiError>) {
    let IngestState {
        mut validator,
        mut hasher,
        bytes: start,
    } = state;
    let (tx, mut rx) = mpsc::channel::<Bytes>(PIPE_DEPTH);
    let (to_validator, mut validate_rx) = mpsc::channel::<Bytes>(PIPE_DEPTH);
    let validation = tokio::task::spawn_blocking(move || {
        let mut fed = 0u64;
        while let Some(chunk) = validate_rx.blocking_recv() {
            validator.feed(&chunk);
            fed += chunk.len() as u64;
        }
        (validator, fed)
    });
    let sink = tokio::task::spawn_blocking(move || {
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut outcome: io::Result<()> = Ok(());
        while let Some(chunk) = rx.blocking_recv() {
            if outcome.is_err() {
                continue; // keep draining so the reader never blocks; nothing more is written
            }
            outcome = budget
                .reserve(chunk.len() as u64)
                .and_then(|()| out.write_all(&chunk));
            if outcome.is_ok() {
                hasher.update(&chunk);
                // A closed validator channel means that stage died; the join below says so.
                let _ = to_validator.blocking_send(chunk);
            }
        }
        drop(to_validator);
        if outcome.is_ok() {
            outcome = out
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all());
        }
        (hasher, outcome)
    });

    let mut stream = body.into_data_stream();
    let mut received: u64 = 0;
    let read_result: Result<(), ApiError> = loop {
        match tokio::time::timeout(idle, stream.next()).await {
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
                if tx.send(chunk).await.is_err() {
                    break Ok(()); // the sink ended early; its own error is reported below
                }
            }
        }
    };
    drop(tx);
    let (sunk, validated) = (sink.await, validation.await);
    let (state, written) = match (sunk, validated) {
        (Ok((hasher, written)), Ok((validator, fed))) => (
            IngestState {
                validator,
                hasher,
                bytes: start + fed,
            },
            written,
        ),
        (Err(e), _) | (_, Err(e)) => {
            // A stage panicked: the state is lost. A state that matches no offset makes a
            // resumable upload rebuild it from disk on the next request.
            let mut lost = IngestState::new(&byom_core::Settings::default());
            lost.bytes = u64::MAX;
            return (
                lost,
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
    (state, outcome)
}
