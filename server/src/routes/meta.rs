//! Meta routes: health, the format spec the browser validates under and the OpenAPI document
//! (unauthenticated), and metrics (operator token only).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::views::meta::{FormatSpecView, WhoAmIView};

/// The OpenAPI 3.1 document of this API (kept next to the code in `server/openapi.json`).
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub async fn healthz() -> &'static str {
    "ok"
}

/// Prometheus metrics. They are server-wide (every tenant's upload counts and bytes, queue
/// depth), so only an operator token reads them: a tenant admin gets 403, no token 401.
pub async fn metrics(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(Role::Operator)?;
    let counts = state.queue.counts().await.unwrap_or_default();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&counts),
    ))
}

/// The settings (limits, required torch) in force, so the browser validates under exactly
/// these and reaches the same verdict as the server.
pub async fn format_spec(State(state): State<AppState>) -> Response {
    let settings = &state.config.settings;
    Json(FormatSpecView {
        settings,
        settings_hash: settings.hash(),
        byom_version: byom_core::VERSION,
        max_upload_bytes: state.config.max_upload_bytes,
    })
    .into_response()
}

/// `GET /api/v1/whoami`: the caller's tenant and role, and what the role may do, so the page
/// can say who is signed in and disable what the token cannot do (with the reason) before the
/// user tries it. A missing or wrong token is 401 like every other authenticated route.
pub async fn whoami(principal: Principal) -> Json<WhoAmIView> {
    Json(WhoAmIView::of(principal))
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
