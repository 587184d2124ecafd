//! The audit log: who uploaded, compiled, deleted, which tokens changed, and which requests were
//! refused (401/403). Append-only, except that the oldest refusal rows are pruned past a cap.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use sqlx::Row;

use crate::app::AppState;
use crate::auth::Principal;

/// What an audit record says happened; stored in `audit.action` (TEXT) as [`Action::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    TenantCreate,
    TokenCreate,
    TokenRevoke,
    PackageUpload,
    PackageDelete,
    UploadCreate,
    UploadComplete,
    UploadAbort,
    UploadExpire,
    UploadReject,
    JobCreate,
    JobCancel,
    /// A request refused with 401.
    AuthUnauthorized,
    /// A request refused with 403.
    AuthForbidden,
    /// The count of refusals past the rate limit, recorded as one row.
    AuthSuppressed,
}

impl Action {
    /// The name stored and shown in `GET /api/v1/admin/audit` (documented in docs/api.md).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::TenantCreate => "tenant.create",
            Action::TokenCreate => "token.create",
            Action::TokenRevoke => "token.revoke",
            Action::PackageUpload => "package.upload",
            Action::PackageDelete => "package.delete",
            Action::UploadCreate => "upload.create",
            Action::UploadComplete => "upload.complete",
            Action::UploadAbort => "upload.abort",
            Action::UploadExpire => "upload.expire",
            Action::UploadReject => "upload.reject",
            Action::JobCreate => "job.create",
            Action::JobCancel => "job.cancel",
            Action::AuthUnauthorized => "auth.unauthorized",
            Action::AuthForbidden => "auth.forbidden",
            Action::AuthSuppressed => "auth.suppressed",
        }
    }
}

/// Append one audit record. Runs on the caller's executor so that it commits (or not) with the
/// change it records.
pub async fn record<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    who: Option<&Principal>,
    action: Action,
    subject: &str,
    detail: &str,
) -> Result<(), sqlx::Error> {
    insert(
        db,
        who.map(|p| p.tenant.as_str()),
        who.map(|p| p.token_id.as_str()),
        action,
        subject,
        detail,
    )
    .await
}

async fn insert<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    tenant: Option<&str>,
    token_id: Option<&str>,
    action: Action,
    subject: &str,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit (at, tenant_id, token_id, action, subject, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(crate::ids::now())
    .bind(tenant)
    .bind(token_id)
    .bind(action.as_str())
    .bind(subject)
    .bind(detail)
    .execute(db)
    .await?;
    Ok(())
}

/// The actions of refused requests: the only rows ever pruned.
const REFUSED: [Action; 3] = [
    Action::AuthUnauthorized,
    Action::AuthForbidden,
    Action::AuthSuppressed,
];

/// How long one rate window of refusal records lasts.
const WINDOW: Duration = Duration::from_secs(60);

/// Rate limiter for refusal records. Anyone can send 401s as fast as the network allows, so
/// each key (the refused token's tenant; `None` for requests with no valid token) gets at most
/// `audit_auth_failures_per_minute` rows per minute; the rest are only counted, and the count
/// is written as one `auth.suppressed` row by the first refusal of a later window. The keys are
/// tenants (made by operators) plus `None`, so the map is bounded too.
#[derive(Default)]
pub struct AuthFailures {
    windows: Mutex<HashMap<Option<String>, Window>>,
}

struct Window {
    start: Instant,
    written: u32,
    suppressed: u64,
}

/// What to write for one refusal.
struct Admit {
    /// The refusal itself gets a row.
    write: bool,
    /// Refusals of the previous window(s) that got no row, to summarise first.
    carried: u64,
}

impl AuthFailures {
    fn admit(&self, key: Option<&str>, per_minute: u32, now: Instant) -> Admit {
        let Ok(mut windows) = self.windows.lock() else {
            return Admit {
                write: false,
                carried: 0,
            };
        };
        let window = windows.entry(key.map(str::to_owned)).or_insert(Window {
            start: now,
            written: 0,
            suppressed: 0,
        });
        let mut carried = 0;
        if now.duration_since(window.start) >= WINDOW {
            carried = window.suppressed;
            *window = Window {
                start: now,
                written: 0,
                suppressed: 0,
            };
        }
        let write = window.written < per_minute;
        if write {
            window.written += 1;
        } else {
            window.suppressed += 1;
        }
        Admit { write, carried }
    }
}

/// Record a refused request (called for every 401 and 403 response), within the rate limit and
/// the row cap. `bearer` is the presented secret, used only to find which token was refused;
/// it is never stored. Failures to write are logged, never turned into a different response.
pub async fn auth_failure(
    state: &AppState,
    method: &str,
    path: &str,
    status: StatusCode,
    bearer: Option<&str>,
) {
    if let Err(e) = try_auth_failure(state, method, path, status, bearer).await {
        tracing::warn!(error = %e, "could not audit a refused request");
    }
}

async fn try_auth_failure(
    state: &AppState,
    method: &str,
    path: &str,
    status: StatusCode,
    bearer: Option<&str>,
) -> Result<(), sqlx::Error> {
    let config = &state.config;
    let forbidden = status == StatusCode::FORBIDDEN;
    // Which token was it? A 403 always has a live one (the key is its tenant); for a 401 the
    // lookup runs only once the row is admitted, so a flood of bad tokens costs no extra query.
    let lookup = |secret: &str| {
        sqlx::query("SELECT id, tenant_id, role, revoked_at FROM tokens WHERE token_sha256 = $1")
            .bind(crate::auth::hash_token(secret))
            .fetch_optional(&state.db)
    };
    let mut token = None;
    if forbidden {
        if let Some(secret) = bearer {
            token = lookup(secret).await?;
        }
    }
    let tenant: Option<String> = token.as_ref().map(|r| r.get("tenant_id"));
    let admit = state.auth_failures.admit(
        tenant.as_deref(),
        config.audit_auth_failures_per_minute,
        Instant::now(),
    );
    if admit.carried > 0 {
        let detail = format!(
            "count={} window_s={} (refused requests not recorded one by one)",
            admit.carried,
            WINDOW.as_secs()
        );
        insert(
            &state.db,
            tenant.as_deref(),
            None,
            Action::AuthSuppressed,
            "",
            &detail,
        )
        .await?;
    }
    if admit.write {
        if !forbidden {
            if let Some(secret) = bearer {
                token = lookup(secret).await?;
            }
        }
        let reason = match (&token, bearer) {
            (Some(row), _) if forbidden => format!("role={}", row.get::<String, _>("role")),
            (Some(row), _) if row.get::<Option<String>, _>("revoked_at").is_some() => {
                "reason=revoked token".to_string()
            }
            (_, None) => "reason=no bearer token".to_string(),
            _ => "reason=unknown token".to_string(),
        };
        let detail = format!("status={} {reason}", status.as_u16());
        let tenant: Option<String> = token.as_ref().map(|r| r.get("tenant_id"));
        let token_id: Option<String> = token.as_ref().map(|r| r.get("id"));
        let action = if forbidden {
            Action::AuthForbidden
        } else {
            Action::AuthUnauthorized
        };
        // The path is the client's: bounded so that a long URL is not a long row.
        let subject = format!("{method} {}", truncate(path, 256));
        insert(
            &state.db,
            tenant.as_deref(),
            token_id.as_deref(),
            action,
            &subject,
            &detail,
        )
        .await?;
    }
    if admit.write || admit.carried > 0 {
        prune(state).await?;
    }
    Ok(())
}

/// Keep only the newest `audit_auth_failures_max_rows` refusal rows, so refusals can never
/// fill the disk however long they go on; every other audit row is kept forever.
async fn prune(state: &AppState) -> Result<(), sqlx::Error> {
    let keep = i64::try_from(state.config.audit_auth_failures_max_rows).unwrap_or(i64::MAX);
    let sql = "DELETE FROM audit WHERE action IN ($1, $2, $3) AND id <= \
               (SELECT id FROM audit WHERE action IN ($1, $2, $3) ORDER BY id DESC LIMIT 1 OFFSET $4)";
    sqlx::query(sql)
        .bind(REFUSED[0].as_str())
        .bind(REFUSED[1].as_str())
        .bind(REFUSED[2].as_str())
        .bind(keep)
        .execute(&state.db)
        .await?;
    Ok(())
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_rate_limited_per_key_and_summarised() {
        let limiter = AuthFailures::default();
        let t0 = Instant::now();
        let writes = (0..10).filter(|_| limiter.admit(None, 3, t0).write).count();
        assert_eq!(writes, 3);
        // another tenant has its own budget
        assert!(limiter.admit(Some("c"), 3, t0).write);
        // next window: the 7 suppressed are carried into one summary
        let next = limiter.admit(None, 3, t0 + WINDOW);
        assert!(next.write);
        assert_eq!(next.carried, 7);
        assert_eq!(limiter.admit(None, 3, t0 + WINDOW).carried, 0);
    }

    /// Every action keeps the name docs/api.md documents and rows already hold.
    #[test]
    fn action_names_are_the_stored_ones() {
        use Action::*;
        let all = [
            TenantCreate,
            TokenCreate,
            TokenRevoke,
            PackageUpload,
            PackageDelete,
            UploadCreate,
            UploadComplete,
            UploadAbort,
            UploadExpire,
            UploadReject,
            JobCreate,
            JobCancel,
            AuthUnauthorized,
            AuthForbidden,
            AuthSuppressed,
        ];
        let names: Vec<&str> = all.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            names,
            [
                "tenant.create",
                "token.create",
                "token.revoke",
                "package.upload",
                "package.delete",
                "upload.create",
                "upload.complete",
                "upload.abort",
                "upload.expire",
                "upload.reject",
                "job.create",
                "job.cancel",
                "auth.unauthorized",
                "auth.forbidden",
                "auth.suppressed",
            ]
        );
    }

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
