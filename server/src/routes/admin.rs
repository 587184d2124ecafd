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
use serde_json::{json, Value};
use sqlx::Row;

use crate::app::AppState;
use crate::auth::{self, Principal, Revoked, Role};
use crate::error::ApiError;

#[derive(Deserialize)]
pub struct TenantRequest {
    pub name: String,
    pub quota_bytes: Option<u64>,
}

pub async fn create_tenant(
    State(state): State<AppState>,
    principal: Principal,
    Json(req): Json<TenantRequest>,
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
        "tenant.create",
        &req.name,
        &detail,
    )
    .await?;
    let tenant = tenant_json(&state, &req.name).await?;
    Ok((StatusCode::CREATED, Json(json!({ "tenant": tenant }))).into_response())
}

async fn tenant_json(state: &AppState, id: &str) -> Result<Value, ApiError> {
    let row = sqlx::query("SELECT id, quota_bytes, created_at FROM tenants WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    let (used, quota) = super::packages::usage(state, id).await?;
    Ok(json!({
        "name": row.get::<String, _>("id"),
        "quota_bytes": quota,
        "used_bytes": used,
        "created_at": row.get::<String, _>("created_at"),
    }))
}

pub async fn list_tenants(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
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
        tenants.push(tenant_json(&state, &id).await?);
    }
    Ok(Json(json!({ "tenants": tenants })))
}

#[derive(Deserialize)]
pub struct TokenRequest {
    pub tenant: String,
    pub role: String,
}

pub async fn create_token(
    State(state): State<AppState>,
    principal: Principal,
    Json(req): Json<TokenRequest>,
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
    Ok((StatusCode::CREATED, Json(json!(token))).into_response())
}

pub async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Role::Admin)?;
    let rows = sqlx::query(
        "SELECT id, tenant_id, role, created_at, revoked_at FROM tokens \
         WHERE $1 IS NULL OR tenant_id = $1 ORDER BY created_at",
    )
    .bind(principal.admin_scope())
    .fetch_all(&state.db)
    .await?;
    let tokens: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.get::<String, _>("id"),
                "tenant": r.get::<String, _>("tenant_id"),
                "role": r.get::<String, _>("role"),
                "created_at": r.get::<String, _>("created_at"),
                "revoked_at": r.get::<Option<String>, _>("revoked_at"),
            })
        })
        .collect();
    Ok(Json(json!({ "tokens": tokens })))
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
) -> Result<Json<Value>, ApiError> {
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
    let events: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.get::<i64, _>("id"),
                "at": r.get::<String, _>("at"),
                "tenant": r.get::<Option<String>, _>("tenant_id"),
                "token_id": r.get::<Option<String>, _>("token_id"),
                "action": r.get::<String, _>("action"),
                "subject": r.get::<Option<String>, _>("subject"),
                "detail": r.get::<Option<String>, _>("detail"),
            })
        })
        .collect();
    Ok(Json(json!({ "events": events })))
}
