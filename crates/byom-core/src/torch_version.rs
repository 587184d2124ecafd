//! The `major.minor` torch version type, on its own so that settings (which holds the policy)
//! and the `.pt` inspection (which derives a file's minimum) can both use it without the one
//! importing the other: a leaf module, it imports nothing from the crate.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `major.minor` torch version: the one parser of that notation (settings' `required_torch`,
/// the CLI's and the server's `--required-torch`, version comparisons).
///
/// Written and read as the string `"2.11"`, so settings JSON (and its hash) keeps the shape it
/// always had; reading refuses anything that is not a version instead of falling back to a
/// default (a typo in a policy must not silently become another policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TorchVersion(pub u32, pub u32);

/// Text that is not a `major.minor` version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a torch version: expected major.minor, e.g. 1.8 or 2.11")]
pub struct InvalidTorchVersion(pub String);

impl TorchVersion {
    /// Parse `"2.11"` or `"1.8.0"` (a patch number is allowed and ignored); `None` when it is
    /// not a version. See [`FromStr`](std::str::FromStr) for the error with a message.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

impl std::str::FromStr for TorchVersion {
    type Err = InvalidTorchVersion;

    /// `major.minor` or `major.minor.patch`, decimal digits only (surrounding blanks ignored).
    /// `"2"`, `"v2.1"`, `"2.1.0+cu128"`, `"2.x"` and numbers beyond `u32` are refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidTorchVersion(s.to_string());
        let number = |p: &str| -> Result<u32, InvalidTorchVersion> {
            if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let mut parts = s.trim().split('.');
        let major = number(parts.next().unwrap_or_default())?;
        let minor = number(parts.next().ok_or_else(bad)?)?;
        if let Some(patch) = parts.next() {
            number(patch)?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(TorchVersion(major, minor))
    }
}

impl fmt::Display for TorchVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl Serialize for TorchVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TorchVersion {
    /// From a string only: a JSON number `2.10` would read as 2.1.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// PyTorch 1.8, the runtime the guide names.
pub const GUIDE: TorchVersion = TorchVersion(1, 8);
/// The libtorch the compile server links (tch 0.24 ↔ torch 2.11).
pub const SERVER: TorchVersion = TorchVersion(2, 11);
