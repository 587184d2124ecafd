//! Compile jobs: start, show, list, cancel, the whole log, and download a target's bundle.
//! The work is in `service::jobs`; these turn requests into calls and answers into views.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::service::jobs;
use crate::views::jobs::{full_log, JobList, JobResponse, JobView};

#[derive(Deserialize)]
pub struct CompileRequest {
    pub targets: Vec<String>,
}

fn respond(job: &crate::jobs::queue::JobRow) -> Json<JobResponse> {
    Json(JobResponse {
        job: JobView::of(job),
    })
}

pub async fn compile(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CompileRequest>,
) -> Result<Response, ApiError> {
    let job = jobs::submit(&state, &principal, &id, &req.targets).await?;
    Ok((StatusCode::ACCEPTED, respond(&job)).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<JobResponse>, ApiError> {
    Ok(respond(&jobs::find(&state, &principal.tenant, &id).await?))
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<JobList>, ApiError> {
    let jobs = jobs::list(&state, &principal.tenant).await?;
    Ok(Json(JobList {
        jobs: jobs.iter().map(JobView::of).collect(),
    }))
}

pub async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<JobResponse>, ApiError> {
    Ok(respond(&jobs::cancel(&state, &principal, &id).await?))
}

/// `GET /api/v1/jobs/{id}/log`: the job's whole log as plain text (what the job's `failure`
/// and `log_tail` abbreviate). Built from the stored report, so it is bounded by the report's
/// own cap (the runner reads at most 16 MiB of result.json).
pub async fn log(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = jobs::find(&state, &principal.tenant, &id).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        full_log(&job),
    )
        .into_response())
}

/// `GET /api/v1/jobs/{id}/artifacts/{target}`: the target's bundle (see
/// `service::jobs::artifact` for where it is read from).
pub async fn artifact(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, target)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let artifact = jobs::artifact(&state, &principal.tenant, &id, &target).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (header::CONTENT_LENGTH, artifact.len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}-{target}.tar.gz\""),
            ),
        ],
        Body::from_stream(artifact.bytes),
    )
        .into_response())
}
