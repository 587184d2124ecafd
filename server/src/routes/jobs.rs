//! Compile jobs: start, show, list, cancel, and download a target's bundle.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;

use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::jobs::queue::JobRow;
use crate::jobs::view::job_json;
use crate::metrics::Metrics;

/// The caller's job `id`; another tenant's job is "not found", never "forbidden".
async fn find_job(state: &AppState, principal: &Principal, id: &str) -> Result<JobRow, ApiError> {
    state
        .queue
        .get(&principal.tenant, id)
        .await?
        .ok_or(ApiError::NotFound("job"))
}

/// Seconds a client is told to wait when the queue is full.
const RETRY_AFTER_S: u64 = 30;

#[derive(Deserialize)]
pub struct CompileRequest {
    pub targets: Vec<String>,
}

pub async fn compile(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Json(req): Json<CompileRequest>,
) -> Result<Response, ApiError> {
    principal.require(Role::Uploader)?;
    super::packages::find(&state, &principal.tenant, &id).await?;
    let targets = crate::jobs::parse_targets(&req.targets).map_err(ApiError::BadRequest)?;
    let Some(job) = state
        .queue
        .enqueue(&principal.tenant, &id, &targets, state.config.queue_size)
        .await?
    else {
        Metrics::inc(&state.metrics.jobs_refused, 1);
        return Err(ApiError::QueueFull {
            retry_after_s: RETRY_AFTER_S,
        });
    };
    crate::audit::record(
        &state.db,
        Some(&principal),
        "job.create",
        &job.id,
        &format!("package={id} targets={}", targets.join(",")),
    )
    .await?;
    Metrics::inc(&state.metrics.jobs_enqueued, 1);
    state.runner.wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({ "job": job_json(&job) }))).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = find_job(&state, &principal, &id).await?;
    Ok(Json(json!({ "job": job_json(&job) })))
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let ids: Vec<String> = sqlx::query(
        "SELECT id FROM jobs WHERE tenant_id = $1 ORDER BY created_at DESC, rowid DESC LIMIT 200",
    )
    .bind(&principal.tenant)
    .fetch_all(&state.db)
    .await?
    .iter()
    .map(|r| r.get("id"))
    .collect();
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(job) = state.queue.get(&principal.tenant, &id).await? {
            jobs.push(job_json(&job));
        }
    }
    Ok(Json(json!({ "jobs": jobs })))
}

pub async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Role::Uploader)?;
    let job = find_job(&state, &principal, &id).await?;
    match job.status.as_str() {
        "queued" if state.queue.cancel_queued(&id).await? => {}
        "queued" | "running" => {
            // Running here: stop it now. Running on another node: flag it; that node's next
            // heartbeat (within 2 s) sees the flag and kills the compile.
            if !state.runner.cancel(&id) && !state.queue.request_cancel(&id).await? {
                return Err(ApiError::Conflict(
                    "the job is just changing state; try again".into(),
                ));
            }
            // Wait briefly for the runner to record the end, so the answer shows it.
            for _ in 0..50 {
                match state.queue.get(&principal.tenant, &id).await? {
                    Some(j) if j.status != "running" => break,
                    _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                }
            }
        }
        other => return Err(ApiError::Conflict(format!("the job is already {other}"))),
    }
    crate::audit::record(&state.db, Some(&principal), "job.cancel", &id, "").await?;
    let job = find_job(&state, &principal, &id).await?;
    Ok(Json(json!({ "job": job_json(&job) })))
}

/// `GET /api/v1/jobs/{id}/log`: the job's whole log as plain text (what the job's `failure`
/// and `log_tail` abbreviate). Built from the stored report, so it is bounded by the report's
/// own cap (the runner reads at most 16 MiB of result.json).
pub async fn log(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = find_job(&state, &principal, &id).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        crate::jobs::view::full_log(&job),
    )
        .into_response())
}

/// `GET /api/v1/jobs/{id}/artifacts/{target}`: the target's bundle. The path is fixed by the
/// server (`<job>/artifacts/<target>.tar.gz`, where the runner put it), never taken from the worker's output, and must be a
/// regular file (not a symlink a compromised worker could plant).
pub async fn artifact(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, target)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let job = find_job(&state, &principal, &id).await?;
    if !job.targets.contains(&target) {
        return Err(ApiError::NotFound("artifact"));
    }
    let view = job_json(&job);
    let succeeded = view["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["target"] == target.as_str()))
        .is_some_and(|t| t["status"] == "succeeded");
    if !succeeded {
        return Err(ApiError::NotFound("artifact"));
    }
    // With an object store the bundle is streamed from there, through this server and its
    // tenant check above (no presigned URL: see docs/deploy.md).
    let (len, body) = match &state.objects {
        Some(objects) => {
            let (len, stream) = objects
                .read(&objects.artifact_key(&id, &target))
                .await
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => ApiError::NotFound("artifact"),
                    _ => ApiError::internal(e),
                })?;
            (len, Body::from_stream(stream))
        }
        None => {
            let path = crate::jobs::sandbox::job_dir(&state.config.data_dir, &id)
                .join("artifacts")
                .join(format!("{target}.tar.gz"));
            let file = open_regular(&path).map_err(|_| ApiError::NotFound("artifact"))?;
            let len = file
                .metadata()
                .map(|m| m.len())
                .map_err(ApiError::internal)?;
            let stream = tokio_util_stream(tokio::fs::File::from_std(file));
            (len, Body::from_stream(stream))
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}-{target}.tar.gz\""),
            ),
        ],
        body,
    )
        .into_response())
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
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> {
    use tokio::io::AsyncReadExt;
    futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(axum::body::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}
