//! Bearer tokens: each bound to one tenant and one role, stored only as sha256, revocable.
//!
//! Roles nest: `viewer` reads; `uploader` also uploads and compiles; `admin` also manages its
//! OWN tenant's tokens and reads its own tenant's audit log; `operator` (the bootstrap token and
//! the tokens operators mint, all in the operator tenant `admin`) manages tenants, every token and
//! the whole audit log, and reads `/metrics`. Every package, job and tenant-admin query is scoped
//! by the caller's tenant, so a tenant can neither see nor touch another's data (and gets 404,
//! not 403, for foreign ids: a 403 would confirm the id exists).

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};

use crate::app::AppState;
use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Uploader,
    /// Administers its own tenant: its tokens (up to `admin`) and its audit events.
    Admin,
    /// Administers the server: tenants, every tenant's tokens, operator tokens, the whole audit
    /// log, metrics. Only ever bound to [`ADMIN_TENANT`].
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Uploader => "uploader",
            Role::Admin => "admin",
            Role::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "uploader" => Some(Role::Uploader),
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: String,
    pub role: Role,
    pub token_id: String,
}

impl Principal {
    /// Refuse unless the caller's role is at least `min`.
    pub fn require(&self, min: Role) -> Result<(), ApiError> {
        if self.role >= min {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }

    /// The one tenant a (tenant) admin may administer; `None` for an operator, who may
    /// administer all. Every admin query filters by this, so the scope lives in one place.
    pub fn admin_scope(&self) -> Option<&str> {
        (!self.is_operator()).then_some(self.tenant.as_str())
    }
}

/// Whether a token of `role` may exist in `tenant`: operator tokens only in the operator
/// tenant, and no `admin` tokens there (an admin of the operator tenant would read the
/// operators' audit trail and token list: an operator in all but name).
pub fn check_role_for_tenant(tenant: &str, role: Role) -> Result<(), &'static str> {
    match (tenant == ADMIN_TENANT, role) {
        (false, Role::Operator) => {
            Err("operator tokens belong to the operator tenant \"admin\" only")
        }
        (true, Role::Admin) => {
            Err("the operator tenant \"admin\" has no tenant admins: mint role operator")
        }
        _ => Ok(()),
    }
}

/// sha256 hex of a token secret: what the database stores and looks up.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The secret of an `Authorization: Bearer <secret>` header value.
pub fn bearer_secret(header: &str) -> Option<&str> {
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let secret = bearer_secret(header).ok_or(ApiError::Unauthorized)?;
        let row = sqlx::query(
            "SELECT id, tenant_id, role FROM tokens WHERE token_sha256 = $1 AND revoked_at IS NULL",
        )
        .bind(hash_token(secret))
        .fetch_optional(&state.db)
        .await?
        .ok_or(ApiError::Unauthorized)?;
        let role: String = row.get("role");
        Ok(Principal {
            tenant: row.get("tenant_id"),
            role: Role::parse(&role).ok_or(ApiError::Unauthorized)?,
            token_id: row.get("id"),
        })
    }
}

/// A tenant name: 1–64 of `[a-z0-9_-]`, so it is safe in paths, logs and URLs.
pub fn valid_tenant_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

/// Create the tenant if it does not exist yet.
pub async fn ensure_tenant(
    db: &AnyPool,
    tenant: &str,
    quota: Option<u64>,
) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("INSERT INTO tenants (id, quota_bytes, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(tenant)
            .bind(quota.map(|q| i64::try_from(q).unwrap_or(i64::MAX)))
            .bind(crate::ids::now())
            .execute(db)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// A freshly created token: the secret is shown once and never stored.
#[derive(Debug, serde::Serialize)]
pub struct NewToken {
    pub id: String,
    pub token: String,
    pub tenant: String,
    pub role: &'static str,
    pub created_at: String,
}

/// Create a token for an existing tenant, with an audit record, in one transaction.
pub async fn create_token(
    db: &AnyPool,
    tenant: &str,
    role: Role,
    by: Option<&Principal>,
) -> Result<NewToken, sqlx::Error> {
    let token = NewToken {
        id: crate::ids::new_id("tok"),
        token: format!("byom_{}", crate::ids::random_hex(32)),
        tenant: tenant.to_string(),
        role: role.as_str(),
        created_at: crate::ids::now(),
    };
    insert_token(db, &token, by).await?;
    Ok(token)
}

async fn insert_token(
    db: &AnyPool,
    token: &NewToken,
    by: Option<&Principal>,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO tokens (id, tenant_id, role, token_sha256, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&token.id)
    .bind(&token.tenant)
    .bind(token.role)
    .bind(hash_token(&token.token))
    .bind(&token.created_at)
    .execute(&mut *tx)
    .await?;
    let detail = format!("tenant={} role={}", token.tenant, token.role);
    crate::audit::record(
        &mut *tx,
        by,
        crate::audit::Action::TokenCreate,
        &token.id,
        &detail,
    )
    .await?;
    tx.commit().await
}

/// What a revocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    Done,
    /// No live token with this id in the caller's scope (a foreign id looks the same).
    NotFound,
    /// A tenant admin asked to revoke an operator token.
    OperatorToken,
    /// It is the last live operator token: revoking it would leave nobody able to manage the
    /// server short of the data directory.
    LastOperator,
}

/// Revoke a token by id. `by` is the caller: a tenant admin reaches only its own tenant's
/// non-operator tokens; an operator (or the CLI, `None`, which has the data directory anyway)
/// reaches every token except the last live operator token.
pub async fn revoke_token(
    db: &AnyPool,
    id: &str,
    by: Option<&Principal>,
) -> Result<Revoked, sqlx::Error> {
    let mut tx = db.begin().await?;
    let row =
        sqlx::query("SELECT tenant_id, role FROM tokens WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(row) = row else {
        return Ok(Revoked::NotFound);
    };
    let tenant: String = row.get("tenant_id");
    let role = Role::parse(&row.get::<String, _>("role"));
    if let Some(scope) = by.and_then(Principal::admin_scope) {
        if scope != tenant {
            return Ok(Revoked::NotFound);
        }
        if role == Some(Role::Operator) {
            return Ok(Revoked::OperatorToken);
        }
    }
    // One statement, so two operators revoking each other at once cannot both succeed.
    let done = sqlx::query(
        "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL AND (role != 'operator' \
         OR (SELECT COUNT(*) FROM tokens WHERE role = 'operator' AND revoked_at IS NULL) > 1)",
    )
    .bind(crate::ids::now())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(if role == Some(Role::Operator) {
            Revoked::LastOperator
        } else {
            Revoked::NotFound
        });
    }
    let detail = format!("tenant={tenant}");
    crate::audit::record(&mut *tx, by, crate::audit::Action::TokenRevoke, id, &detail).await?;
    tx.commit().await?;
    Ok(Revoked::Done)
}

/// The operator tenant: the bootstrap token and every operator token belong to it.
pub const ADMIN_TENANT: &str = "admin";

/// Where the first operator token lands when `BYOM_ADMIN_TOKEN` is not set.
pub fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin-token")
}

/// Why the bootstrap token cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("BYOM_ADMIN_TOKEN names a revoked token ({0}); set it to a new secret")]
    EnvRevoked(String),
    #[error("the bootstrap secret is token {id} of tenant {tenant} with role {role}, not an operator token; use another secret")]
    NotOperator {
        id: String,
        tenant: String,
        role: String,
    },
}

/// Make sure an operator can log in: `BYOM_ADMIN_TOKEN` if given, else the token stored in
/// `<data>/admin-token` (generated, mode 0600, on first start). Returns the file path when a
/// file holds the token.
///
/// The data directory is the root of trust (whoever can read it holds the database), so a
/// revoked secret in the file is replaced by a fresh operator token at start: an operator can
/// retire a leaked bootstrap token, and the server stays manageable after a restart. A revoked
/// `BYOM_ADMIN_TOKEN` is refused instead of being brought back to life: the secret may have
/// leaked, and only whoever sets the environment can choose a new one.
pub async fn bootstrap_admin(
    db: &AnyPool,
    data_dir: &Path,
    from_env: Option<String>,
) -> Result<Option<PathBuf>, Box<dyn std::error::Error>> {
    ensure_tenant(db, ADMIN_TENANT, None).await?;
    let (mut secret, file) = match from_env.filter(|s| !s.trim().is_empty()) {
        Some(secret) => (secret.trim().to_string(), None),
        None => {
            let path = admin_token_path(data_dir);
            match std::fs::read_to_string(&path) {
                Ok(s) => (s.trim().to_string(), Some(path)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let secret = format!("byom_{}", crate::ids::random_hex(32));
                    write_secret_file(&path, &secret)?;
                    (secret, Some(path))
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let known =
        sqlx::query("SELECT id, tenant_id, role, revoked_at FROM tokens WHERE token_sha256 = $1")
            .bind(hash_token(&secret))
            .fetch_optional(db)
            .await?;
    if let Some(row) = known {
        let id: String = row.get("id");
        if row.get::<Option<String>, _>("revoked_at").is_some() {
            let Some(path) = &file else {
                return Err(BootstrapError::EnvRevoked(id).into());
            };
            secret = format!("byom_{}", crate::ids::random_hex(32));
            write_secret_file(path, &secret)?;
            tracing::warn!(revoked = %id, file = %path.display(), "the bootstrap operator token was revoked; wrote a new one");
        } else {
            let role: String = row.get("role");
            if Role::parse(&role) != Some(Role::Operator) {
                let tenant = row.get("tenant_id");
                return Err(BootstrapError::NotOperator { id, tenant, role }.into());
            }
            return Ok(file);
        }
    }
    let token = NewToken {
        id: crate::ids::new_id("tok"),
        token: secret,
        tenant: ADMIN_TENANT.to_string(),
        role: Role::Operator.as_str(),
        created_at: crate::ids::now(),
    };
    insert_token(db, &token, None).await?;
    Ok(file)
}

/// Write a secret atomically with mode 0600 (temp file + rename), never world-readable.
fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
