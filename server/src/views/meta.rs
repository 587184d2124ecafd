//! Views of the meta routes: the format spec and who is signed in.

use serde::Serialize;

use crate::auth::{Principal, Role};

/// `GET /api/v1/format-spec`: the settings (limits, required torch) in force, so the browser
/// validates under exactly these and reaches the same verdict as the server.
#[derive(Debug, Serialize)]
pub struct FormatSpecView<'a> {
    pub settings: &'a byom_core::Settings,
    pub settings_hash: String,
    pub byom_version: &'static str,
    pub max_upload_bytes: u64,
}

/// What a role may do, so the page can disable what the token cannot do before the user tries.
#[derive(Debug, Serialize)]
pub struct Capabilities {
    pub read: bool,
    pub upload: bool,
    pub compile: bool,
    pub delete: bool,
    pub manage_tokens: bool,
    pub operate: bool,
}

/// `GET /api/v1/whoami`.
#[derive(Debug, Serialize)]
pub struct WhoAmIView {
    pub tenant: String,
    pub role: &'static str,
    pub token_id: String,
    pub can: Capabilities,
}

impl WhoAmIView {
    pub fn of(principal: Principal) -> WhoAmIView {
        let role = principal.role;
        WhoAmIView {
            tenant: principal.tenant,
            role: role.as_str(),
            token_id: principal.token_id,
            can: Capabilities {
                read: true,
                upload: role >= Role::Uploader,
                compile: role >= Role::Uploader,
                delete: role >= Role::Uploader,
                manage_tokens: role >= Role::Admin,
                operate: role == Role::Operator,
            },
        }
    }
}
