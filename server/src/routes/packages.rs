//! Packages: upload (streamed, validated in the same pass), list, show, delete. The work is in
//! `service::packages`; these turn requests into calls and answers into views.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::service::packages;
use crate::views::jobs::JobView;
use crate::views::packages::{PackageDetail, PackageList, PackageResponse};

#[derive(Deserialize)]
pub struct NameQuery {
    pub name: Option<String>,
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// `PUT /api/v1/packages?name=…`: the raw `.tar.gz` as the body.
pub async fn upload(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<NameQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let length = content_length(&headers);
    let package = packages::upload(&state, &principal, q.name.as_deref(), length, body).await?;
    Ok((StatusCode::CREATED, Json(PackageResponse { package })).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<PackageList>, ApiError> {
    let packages = packages::list(&state, &principal.tenant).await?;
    Ok(Json(PackageList { packages }))
}

pub async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<PackageDetail>, ApiError> {
    let (package, jobs) = packages::get_with_jobs(&state, &principal.tenant, &id).await?;
    Ok(Json(PackageDetail {
        package,
        jobs: jobs.iter().map(JobView::of).collect(),
    }))
}

/// `DELETE /api/v1/packages/{id}`: removes the package, its finished jobs and their
/// artifacts; the bytes go only when no package of any tenant references them any more.
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    packages::delete(&state, &principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
