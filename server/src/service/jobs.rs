//! Compile jobs as the API offers them: submit, find, list, cancel, and where a target's
//! bundle is read from. Tenant checks live here: another tenant's job is "not found", never
//! "forbidden".

use std::pin::Pin;

use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use sqlx::Row;

use crate::app::AppState;
use crate::audit::{self, Action};
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::jobs::queue::JobRow;
use crate::jobs::{JobStatus, Target};
use crate::metrics::Metrics;
use crate::views::jobs::JobView;

/// Seconds a client is told to wait when the queue is full.
const RETRY_AFTER_S: u64 = 30;

/// Most jobs `GET /api/v1/jobs` lists (the newest).
const LIST_LIMIT: i64 = 200;

/// The caller's job `id`.
pub async fn find(state: &AppState, tenant: &str, id: &str) -> Result<JobRow, ApiError> {
    state
        .queue
        .get(tenant, id)
        .await?
        .ok_or(ApiError::NotFound("job"))
}

/// Queue a compile of the caller's package `package_id` for `targets` (names as requested).
pub async fn submit(
    state: &AppState,
    principal: &Principal,
    package_id: &str,
    targets: &[String],
) -> Result<JobRow, ApiError> {
    principal.require(Role::Uploader)?;
    crate::service::packages::find(state, &principal.tenant, package_id).await?;
    let targets = crate::jobs::parse_targets(targets).map_err(ApiError::BadRequest)?;
    let Some(job) = state
        .queue
        .enqueue(
            &principal.tenant,
            package_id,
            &targets,
            state.config.queue_size,
        )
        .await?
    else {
        Metrics::inc(&state.metrics.jobs_refused, 1);
        return Err(ApiError::QueueFull {
            retry_after_s: RETRY_AFTER_S,
        });
    };
    let names: Vec<&str> = targets.iter().map(|t| t.as_str()).collect();
    audit::record(
        &state.db,
        Some(principal),
        Action::JobCreate,
        &job.id,
        &format!("package={package_id} targets={}", names.join(",")),
    )
    .await?;
    Metrics::inc(&state.metrics.jobs_enqueued, 1);
    state.runner.wake.notify_one();
    Ok(job)
}

/// The tenant's newest jobs, newest first.
pub async fn list(state: &AppState, tenant: &str) -> Result<Vec<JobRow>, ApiError> {
    let ids: Vec<String> = sqlx::query(
        "SELECT id FROM jobs WHERE tenant_id = $1 ORDER BY created_at DESC, rowid DESC LIMIT $2",
    )
    .bind(tenant)
    .bind(LIST_LIMIT)
    .fetch_all(&state.db)
    .await?
    .iter()
    .map(|r| r.get("id"))
    .collect();
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(job) = state.queue.get(tenant, &id).await? {
            jobs.push(job);
        }
    }
    Ok(jobs)
}

/// Cancel a queued or running job of the caller; the job as it is afterwards.
pub async fn cancel(state: &AppState, principal: &Principal, id: &str) -> Result<JobRow, ApiError> {
    principal.require(Role::Uploader)?;
    let job = find(state, &principal.tenant, id).await?;
    match job.status {
        JobStatus::Queued if state.queue.cancel_queued(id).await? => {}
        JobStatus::Queued | JobStatus::Running => {
            // Running here: stop it now. Running on another node: flag it; that node's next
            // heartbeat (within 2 s) sees the flag and kills the compile.
            if !state.runner.cancel(id) && !state.queue.request_cancel(id).await? {
                return Err(ApiError::Conflict(
                    "the job is just changing state; try again".into(),
                ));
            }
            // Wait briefly for the runner to record the end, so the answer shows it.
            for _ in 0..50 {
                match state.queue.get(&principal.tenant, id).await? {
                    Some(j) if j.status != JobStatus::Running => break,
                    _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                }
            }
        }
        other => return Err(ApiError::Conflict(format!("the job is already {other}"))),
    }
    audit::record(&state.db, Some(principal), Action::JobCancel, id, "").await?;
    find(state, &principal.tenant, id).await
}

/// A bundle's bytes, as a stream of chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// A target's bundle: its length and its bytes.
pub struct Artifact {
    pub len: u64,
    pub bytes: ByteStream,
}

/// The bundle of `target` of the caller's job `id`, if that target succeeded. The path is
/// fixed by the server (`<job>/artifacts/<target>.tar.gz`, where the runner put it), never
/// taken from the worker's output, and must be a regular file (not a symlink a compromised
/// worker could plant).
pub async fn artifact(
    state: &AppState,
    tenant: &str,
    id: &str,
    target: &str,
) -> Result<Artifact, ApiError> {
    let job = find(state, tenant, id).await?;
    let Ok(target) = target.parse::<Target>() else {
        return Err(ApiError::NotFound("artifact"));
    };
    if !job.targets.contains(&target) || !JobView::of(&job).succeeded(target) {
        return Err(ApiError::NotFound("artifact"));
    }
    // With an object store the bundle is streamed from there, through this server and its
    // tenant check above (no presigned URL: see docs/deploy.md).
    match &state.objects {
        Some(objects) => {
            let (len, stream) = objects
                .read(&objects.artifact_key(id, target.as_str()))
                .await
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => ApiError::NotFound("artifact"),
                    _ => ApiError::internal(e),
                })?;
            Ok(Artifact {
                len,
                bytes: Box::pin(stream.map(|chunk| chunk.map_err(std::io::Error::other))),
            })
        }
        None => {
            let path = crate::jobs::sandbox::job_dir(&state.config.data_dir, id)
                .join("artifacts")
                .join(format!("{target}.tar.gz"));
            let file = open_regular(&path).map_err(|_| ApiError::NotFound("artifact"))?;
            let len = file
                .metadata()
                .map(|m| m.len())
                .map_err(ApiError::internal)?;
            Ok(Artifact {
                len,
                bytes: Box::pin(file_stream(tokio::fs::File::from_std(file))),
            })
        }
    }
}

fn open_regular(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// A file as a stream of chunks (what `Body::from_stream` wants).
fn file_stream(file: tokio::fs::File) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    use tokio::io::AsyncReadExt;
    futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}
