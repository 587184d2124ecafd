//! Admin routes: tenants, tokens, the audit log.
//!
//! Two scopes (see `auth`): an operator manages every tenant and token; a tenant admin manages
//! only its own tenant's tokens (up to `admin`) and reads only its own tenant's audit events.
//! Every query below filters by `Principal::admin_scope`, and a foreign tenant or token id
//! answers 404 exactly like an unknown one.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use sqlx::Row;

use crate::app::AppState;
use crate::auth::{self, Principal, Revoked, Role};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::views::admin::{
    AuditEventView, AuditList, TenantList, TenantResponse, TenantView, TokenList, TokenView,
};

#[derive(Deserialize)]
pub struct TenantRequest {
    pub name: String,
    pub quota_bytes: Option<u64>,
}

pub async fn create_tenant(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<TenantRequest>,
) -> Result<Response, ApiError> {
    principal.require(Role::Operator)?;
    if !auth::valid_tenant_name(&req.name) {
        return Err(ApiError::BadRequest(
            "tenant name: 1 to 64 of a-z, 0-9, - and _".into(),
        ));
    }
    if !auth::ensure_tenant(&state.db, &req.name, req.quota_bytes).await? {
        return Err(ApiError::Conflict(format!("tenant {} exists", req.name)));
    }
    let detail = format!("quota_bytes={:?}", req.quota_bytes);
    crate::audit::record(
        &state.db,
        Some(&principal),
        crate::audit::Action::TenantCreate,
        &req.name,
        &detail,
    )
    .await?;
    let tenant = tenant_view(&state, &req.name).await?;
    Ok((StatusCode::CREATED, Json(TenantResponse { tenant })).into_response())
}

async fn tenant_view(state: &AppState, id: &str) -> Result<TenantView, ApiError> {
    let row = sqlx::query("SELECT id, quota_bytes, created_at FROM tenants WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    let (used, quota) = crate::service::packages::usage(state, id).await?;
    Ok(TenantView {
        name: row.get("id"),
        quota_bytes: quota,
        used_bytes: used,
        created_at: row.get("created_at"),
    })
}

pub async fn list_tenants(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<TenantList>, ApiError> {
    principal.require(Role::Admin)?;
    let ids: Vec<String> =
        sqlx::query("SELECT id FROM tenants WHERE $1 IS NULL OR id = $1 ORDER BY id")
            .bind(principal.admin_scope())
            .fetch_all(&state.db)
            .await?
            .iter()
            .map(|r| r.get("id"))
            .collect();
    let mut tenants = Vec::new();
    for id in ids {
        tenants.push(tenant_view(&state, &id).await?);
    }
    Ok(Json(TenantList { tenants }))
}

#[derive(Deserialize)]
pub struct TokenRequest {
    pub tenant: String,
    pub role: String,
}

pub async fn create_token(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Response, ApiError> {
    principal.require(Role::Admin)?;
    let role = Role::parse(&req.role)
        .ok_or_else(|| ApiError::BadRequest("role: viewer, uploader, admin or operator".into()))?;
    // A tenant admin names only its own tenant: another tenant, existing or not, is 404.
    if principal
        .admin_scope()
        .is_some_and(|scope| scope != req.tenant)
    {
        return Err(ApiError::NotFound("tenant"));
    }
    // Nobody mints a role above their own: a tenant admin never makes an operator.
    principal.require(role)?;
    let exists = sqlx::query("SELECT 1 FROM tenants WHERE id = $1")
        .bind(&req.tenant)
        .fetch_optional(&state.db)
        .await?;
    if exists.is_none() {
        return Err(ApiError::NotFound("tenant"));
    }
    auth::check_role_for_tenant(&req.tenant, role)
        .map_err(|why| ApiError::BadRequest(why.into()))?;
    let token = auth::create_token(&state.db, &req.tenant, role, Some(&principal)).await?;
    Ok((StatusCode::CREATED, Json(token)).into_response())
}

pub async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<TokenList>, ApiError> {
    principal.require(Role::Admin)?;
    let rows = sqlx::query(
        "SELECT id, tenant_id, role, created_at, revoked_at FROM tokens \
         WHERE $1 IS NULL OR tenant_id = $1 ORDER BY created_at",
    )
    .bind(principal.admin_scope())
    .fetch_all(&state.db)
    .await?;
    let tokens = rows
        .iter()
        .map(|r| TokenView {
            id: r.get("id"),
            tenant: r.get("tenant_id"),
            role: r.get("role"),
            created_at: r.get("created_at"),
            revoked_at: r.get("revoked_at"),
        })
        .collect();
    Ok(Json(TokenList { tokens }))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Admin)?;
    match auth::revoke_token(&state.db, &id, Some(&principal)).await? {
        Revoked::Done => Ok(StatusCode::NO_CONTENT),
        Revoked::NotFound => Err(ApiError::NotFound("token")),
        Revoked::OperatorToken => Err(ApiError::Forbidden),
        Revoked::LastOperator => Err(ApiError::Conflict(
            "this is the last live operator token; mint another operator token first".into(),
        )),
    }
}

#[derive(Deserialize)]
pub struct AuditQuery {
    pub limit: Option<u32>,
}

pub async fn audit(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    principal.require(Role::Admin)?;
    let limit = q.limit.unwrap_or(200).clamp(1, 10_000);
    // A tenant admin sees the events its own tenant's tokens caused (including refused
    // attempts with them); events without a tenant (anonymous 401s) are the operator's.
    let rows = sqlx::query(
        "SELECT id, at, tenant_id, token_id, action, subject, detail FROM audit \
         WHERE $1 IS NULL OR tenant_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(principal.admin_scope())
    .bind(i64::from(limit))
    .fetch_all(&state.db)
    .await?;
    let events = rows
        .iter()
        .map(|r| AuditEventView {
            id: r.get("id"),
            at: r.get("at"),
            tenant: r.get("tenant_id"),
            token_id: r.get("token_id"),
            action: r.get("action"),
            subject: r.get("subject"),
            detail: r.get("detail"),
        })
        .collect();
    Ok(Json(AuditList { events }))
}
