//! The policy a verdict is made under: limits plus the torch version files must load in.
//!
//! The settings hash travels in every report, so a browser verdict and a server verdict can be
//! shown to come from the same policy.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::limits::Limits;
use crate::operators::OperatorNamespaces;
use crate::torch_version::{self as version, TorchVersion};

/// The libtorch version the compile server links (tch 0.24 ↔ torch 2.11).
pub const SERVER_TORCH: TorchVersion = version::SERVER;
/// The runtime the BYOM guide promises compatibility with; files it cannot load get a warning.
pub const GUIDE_TORCH: TorchVersion = version::GUIDE;

/// Limits and torch policy in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub limits: Limits,
    /// Oldest torch that must load the model (`"major.minor"` in JSON; anything else is refused
    /// when the settings are read). A file needing a newer torch is an error. Default: the
    /// server's libtorch. Set `"1.8"` to deploy to PyTorch 1.8 runtimes.
    pub required_torch: TorchVersion,
    /// Operator namespaces the compile server runs (`torchvision` of `torchvision::nms`). A
    /// TorchScript file calling an operator of another namespace (a custom C++ extension) is an
    /// error, BYOM630. Default: libtorch's own namespaces plus `torchvision`.
    pub operator_namespaces: OperatorNamespaces,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            required_torch: SERVER_TORCH,
            operator_namespaces: OperatorNamespaces::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_torch_is_validated_when_read() {
        let s: Settings = serde_json::from_str(r#"{"required_torch": "1.8"}"#).unwrap();
        assert_eq!(s.required_torch, TorchVersion(1, 8));
        for bad in [r#""banana""#, r#""2""#, "2.11", "null"] {
            let json = format!("{{\"required_torch\": {bad}}}");
            assert!(serde_json::from_str::<Settings>(&json).is_err(), "{json}");
        }
        let e = serde_json::from_str::<Settings>(r#"{"required_torch": "banana"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"banana\" is not a torch version: expected major.minor"),
            "{e}"
        );
    }

    #[test]
    fn the_hash_of_the_defaults_is_unchanged_by_the_typed_version() {
        // The JSON shape (and so every settings hash a server or page has published) is the one
        // the string field had.
        let json = serde_json::to_value(Settings::default()).unwrap();
        assert_eq!(json["required_torch"], "2.11");
        let round: Settings = serde_json::from_value(json).unwrap();
        assert_eq!(round, Settings::default());
    }
}
