//! Unauthenticated routes: health, metrics, the format spec the browser validates under, and
//! the OpenAPI document.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::app::AppState;

/// The OpenAPI 3.1 document of this API (kept next to the code in `server/openapi.json`).
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let counts = state.queue.counts().await.unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&counts),
    )
}

/// The settings (limits, required torch) in force, so the browser validates under exactly
/// these and reaches the same verdict as the server.
pub async fn format_spec(State(state): State<AppState>) -> Json<serde_json::Value> {
    let settings = &state.config.settings;
    Json(json!({
        "settings": settings,
        "settings_hash": settings.hash(),
        "byom_version": byom_core::VERSION,
        "max_upload_bytes": state.config.max_upload_bytes,
    }))
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
