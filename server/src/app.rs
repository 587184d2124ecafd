//! Shared state and the router: which handler serves which route, plus the access log.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use axum::Router;
use sqlx::AnyPool;
use tower_http::services::ServeDir;

use crate::config::Config;
use crate::jobs::queue::JobQueue;
use crate::jobs::runner::Runner;
use crate::metrics::Metrics;
use crate::routes;
use crate::storage::{BlobStore, DiskBudget};

#[derive(Clone)]
pub struct AppState {
    /// The pool every query runs on (SQLite or Postgres; see `db`).
    pub db: AnyPool,
    /// The same database with its engine and the cluster-wide blob lock.
    pub database: crate::db::Db,
    pub config: Arc<Config>,
    pub store: Arc<dyn BlobStore>,
    /// The shared object store (`--storage s3://…`); `None` with `file:` storage.
    pub objects: Option<Arc<crate::objects::S3Store>>,
    pub budget: Arc<DiskBudget>,
    pub metrics: Arc<Metrics>,
    pub queue: Arc<dyn JobQueue>,
    pub runner: Arc<Runner>,
    pub uploads: Arc<crate::service::uploads::Uploads>,
    /// Rate limits the audit rows of refused (401/403) requests.
    pub auth_failures: Arc<crate::audit::AuthFailures>,
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/format-spec", get(routes::meta::format_spec))
        .route("/openapi.json", get(routes::meta::openapi))
        .route("/whoami", get(routes::meta::whoami))
        .route(
            "/packages",
            put(routes::packages::upload).get(routes::packages::list),
        )
        .route(
            "/packages/{id}",
            get(routes::packages::show).delete(routes::packages::remove),
        )
        .route("/packages/{id}/compile", post(routes::jobs::compile))
        .merge(uploads_router())
        .route("/jobs", get(routes::jobs::list))
        .route("/jobs/{id}", get(routes::jobs::show))
        .route("/jobs/{id}/cancel", post(routes::jobs::cancel))
        .route("/jobs/{id}/log", get(routes::jobs::log))
        .route("/jobs/{id}/artifacts/{target}", get(routes::jobs::artifact))
        .route(
            "/admin/tenants",
            post(routes::admin::create_tenant).get(routes::admin::list_tenants),
        )
        .route(
            "/admin/tokens",
            post(routes::admin::create_token).get(routes::admin::list_tokens),
        )
        .route("/admin/tokens/{id}", delete(routes::admin::revoke_token))
        .route("/admin/audit", get(routes::admin::audit));
    let web = ServeDir::new(&state.config.web_dir).append_index_html_on_directories(true);
    Router::new()
        .route("/healthz", get(routes::meta::healthz))
        .route("/metrics", get(routes::meta::metrics))
        .nest("/api/v1", api)
        .fallback_service(web)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access_log,
        ))
        .with_state(state)
}

/// The tus 1.0 upload routes, behind the tus protocol check (see `routes::tus`).
fn uploads_router() -> Router<AppState> {
    use routes::{tus, uploads};
    Router::new()
        .route("/uploads", post(uploads::create).options(tus::options))
        .route(
            "/uploads/{id}",
            get(uploads::show)
                .head(uploads::status)
                .patch(uploads::append)
                .delete(uploads::abort)
                .options(tus::options),
        )
        .route_layer(axum::middleware::from_fn(tus::protocol))
}

/// One log line per request (`target: byom_server::access`), which tests assert on, the
/// request counters, and an audit record (rate limited) for every refused request.
async fn access_log(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    // Kept only to say which token a 401/403 refused; never logged.
    let bearer = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer_secret)
        .map(str::to_owned);
    let started = Instant::now();
    let response = next.run(req).await;
    if matches!(
        response.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) {
        crate::audit::auth_failure(&state, &method, &path, response.status(), bearer.as_deref())
            .await;
    }
    let status = response.status().as_u16();
    state.metrics.request(&method, status);
    tracing::info!(
        target: "byom_server::access",
        method = %method,
        path = %path,
        status,
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}
