//! The policy a verdict is made under: limits plus the torch version files must load in.
//!
//! The settings hash travels in every report, so a browser verdict and a server verdict can be
//! shown to come from the same policy.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::limits::Limits;

/// The libtorch version the compile server links (tch 0.24 ↔ torch 2.11).
pub const SERVER_TORCH: &str = "2.11";
/// The runtime the BYOM guide promises compatibility with; files it cannot load get a warning.
pub const GUIDE_TORCH: &str = "1.8";

/// Limits and torch policy in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub limits: Limits,
    /// Oldest torch that must load the model (`"major.minor"`). A file needing a newer torch is
    /// an error. Default: the server's libtorch. Set `"1.8"` to deploy to PyTorch 1.8 runtimes.
    pub required_torch: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            required_torch: SERVER_TORCH.to_string(),
        }
    }
}

impl Settings {
    /// `sha256:` of the canonical JSON of these settings (struct field order is fixed).
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("settings serialize");
        format!("sha256:{}", hex::encode(Sha256::digest(&json)))
    }
}
