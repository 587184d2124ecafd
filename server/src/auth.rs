//! Bearer tokens: each bound to one tenant and one role, stored only as sha256, revocable.
//!
//! Roles nest: `viewer` reads; `uploader` also uploads and compiles; `admin` also manages
//! tenants and tokens. Every package and job query is scoped by the caller's tenant, so a
//! tenant can neither see nor touch another's data (and gets 404, not 403, for foreign ids:
//! a 403 would confirm the id exists).

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use sqlx::{Row, SqlitePool};

use crate::app::AppState;
use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Uploader,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Uploader => "uploader",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "uploader" => Some(Role::Uploader),
            "admin" => Some(Role::Admin),
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
}

/// sha256 hex of a token secret: what the database stores and looks up.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let secret = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let row = sqlx::query(
            "SELECT id, tenant_id, role FROM tokens WHERE token_sha256 = ? AND revoked_at IS NULL",
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
    db: &SqlitePool,
    tenant: &str,
    quota: Option<u64>,
) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("INSERT OR IGNORE INTO tenants (id, quota_bytes, created_at) VALUES (?, ?, ?)")
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
    db: &SqlitePool,
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
    db: &SqlitePool,
    token: &NewToken,
    by: Option<&Principal>,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO tokens (id, tenant_id, role, token_sha256, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&token.id)
    .bind(&token.tenant)
    .bind(token.role)
    .bind(hash_token(&token.token))
    .bind(&token.created_at)
    .execute(&mut *tx)
    .await?;
    let detail = format!("tenant={} role={}", token.tenant, token.role);
    crate::audit::record(&mut *tx, by, "token.create", &token.id, &detail).await?;
    tx.commit().await
}

/// Revoke a token by id; `false` when no such live token exists.
pub async fn revoke_token(
    db: &SqlitePool,
    id: &str,
    by: Option<&Principal>,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let done = sqlx::query("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
        .bind(crate::ids::now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    crate::audit::record(&mut *tx, by, "token.revoke", id, "").await?;
    tx.commit().await?;
    Ok(true)
}

/// The tenant that the bootstrap admin token belongs to.
pub const ADMIN_TENANT: &str = "admin";

/// Where the first admin token lands when `BYOM_ADMIN_TOKEN` is not set.
pub fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin-token")
}

/// Make sure an admin can log in: `BYOM_ADMIN_TOKEN` if given, else the token stored in
/// `<data>/admin-token` (generated, mode 0600, on first start). Returns the file path when a
/// file holds the token.
pub async fn bootstrap_admin(
    db: &SqlitePool,
    data_dir: &Path,
    from_env: Option<String>,
) -> Result<Option<PathBuf>, Box<dyn std::error::Error>> {
    ensure_tenant(db, ADMIN_TENANT, None).await?;
    let (secret, file) = match from_env.filter(|s| !s.trim().is_empty()) {
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
    let known = sqlx::query("SELECT 1 FROM tokens WHERE token_sha256 = ?")
        .bind(hash_token(&secret))
        .fetch_optional(db)
        .await?;
    if known.is_none() {
        let token = NewToken {
            id: crate::ids::new_id("tok"),
            token: secret,
            tenant: ADMIN_TENANT.to_string(),
            role: Role::Admin.as_str(),
            created_at: crate::ids::now(),
        };
        insert_token(db, &token, None).await?;
    }
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
