//! The audit log: who uploaded, compiled, deleted, and which tokens changed. Append-only.

use sqlx::SqliteExecutor;

use crate::auth::Principal;

/// Append one audit record. Runs on the caller's executor so that it commits (or not) with the
/// change it records.
pub async fn record<'e>(
    db: impl SqliteExecutor<'e>,
    who: Option<&Principal>,
    action: &str,
    subject: &str,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit (at, tenant_id, token_id, action, subject, detail) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(crate::ids::now())
    .bind(who.map(|p| p.tenant.clone()))
    .bind(who.map(|p| p.token_id.clone()))
    .bind(action)
    .bind(subject)
    .bind(detail)
    .execute(db)
    .await?;
    Ok(())
}
