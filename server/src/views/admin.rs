//! Views of the admin routes: tenants, tokens, audit events.

use serde::Serialize;

/// A tenant, with its quota and the bytes its packages use.
#[derive(Debug, Serialize)]
pub struct TenantView {
    pub name: String,
    pub quota_bytes: u64,
    pub used_bytes: u64,
    pub created_at: String,
}

/// `{"tenant": Tenant}`.
#[derive(Debug, Serialize)]
pub struct TenantResponse {
    pub tenant: TenantView,
}

/// `{"tenants": [Tenant]}`.
#[derive(Debug, Serialize)]
pub struct TenantList {
    pub tenants: Vec<TenantView>,
}

/// A token as listed: never its secret (only [`crate::auth::NewToken`] shows that, once).
#[derive(Debug, Serialize)]
pub struct TokenView {
    pub id: String,
    pub tenant: String,
    pub role: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// `{"tokens": [Token]}`.
#[derive(Debug, Serialize)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// One row of the audit log.
#[derive(Debug, Serialize)]
pub struct AuditEventView {
    pub id: i64,
    pub at: String,
    pub tenant: Option<String>,
    pub token_id: Option<String>,
    pub action: String,
    pub subject: Option<String>,
    pub detail: Option<String>,
}

/// `{"events": [AuditEvent]}`, newest first.
#[derive(Debug, Serialize)]
pub struct AuditList {
    pub events: Vec<AuditEventView>,
}
