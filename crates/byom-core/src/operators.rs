//! The operator namespaces the compile server provides: a setting, so the browser (which gets
//! the server's settings from `GET /api/v1/format-spec`) and the server judge a TorchScript
//! file's operators against the same list.
//!
//! A leaf module (imports nothing from the crate) so that [`crate::settings`] can hold the list
//! and [`crate::torch`] can check files against it without the two importing each other.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Namespaces of the operators registered in a libtorch 2.11 process (`torch::jit::
/// getAllOperators()` in C++, no Python: a Python process has more, registered from Python),
/// plus `torchvision` (its operator library, which the compile worker loads when a model needs
/// it) and `xnnpack` (libtorch's custom classes for XNNPACK op contexts). `cuda` is left out: it
/// exists only where libtorch_cuda is loaded, and no CPU target could run it.
/// `byom-compile`'s test `operator_namespaces_are_the_workers` fails when this list and the
/// worker's registry disagree.
pub const SERVER_NAMESPACES: &[&str] = &[
    "_c10d_functional",
    "_c10d_functional_autograd",
    "_dtensor",
    "_quantized",
    "_test",
    "aten",
    "c10d",
    "inductor",
    "mkl",
    "mkldnn",
    "mkldnn_prepacked",
    "onednn",
    "onnx",
    "prepacked",
    "prim",
    "profiler",
    "quantization",
    "quantized",
    "sparse",
    "static_runtime",
    "symm_mem",
    "torchvision",
    "xnnpack",
];

/// Namespaces that are part of libtorch itself; the others in [`SERVER_NAMESPACES`] come from
/// an operator library the worker loads (today only `torchvision`).
pub const LIBRARY_NAMESPACES: &[&str] = &["torchvision"];

/// Most namespaces a settings file may list (a policy, not data: a few dozen at most).
pub const MAX_NAMESPACES: usize = 256;
/// Longest namespace name accepted.
pub const MAX_NAMESPACE_LEN: usize = 64;

/// The operator namespaces (`torchvision` of `torchvision::nms`) the server can run. Read from
/// JSON as a list of identifiers; anything else is refused when the settings are read (a typo
/// in a policy must not silently become another policy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct OperatorNamespaces(Vec<String>);

/// A namespace list that cannot be a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidNamespaces {
    #[error("operator namespace {0:?} is not an identifier (letters, digits, _; at most {MAX_NAMESPACE_LEN} characters)")]
    Name(String),
    #[error("operator_namespaces lists {0} namespaces, more than {MAX_NAMESPACES}")]
    TooMany(usize),
    #[error(
        "operator_namespaces must include \"aten\" and \"prim\": every TorchScript file calls them"
    )]
    MissingCore,
}

impl Default for OperatorNamespaces {
    fn default() -> Self {
        OperatorNamespaces(SERVER_NAMESPACES.iter().map(|s| s.to_string()).collect())
    }
}

impl OperatorNamespaces {
    /// A checked list (sorted, duplicates removed).
    pub fn new(names: Vec<String>) -> Result<Self, InvalidNamespaces> {
        if names.len() > MAX_NAMESPACES {
            return Err(InvalidNamespaces::TooMany(names.len()));
        }
        if let Some(bad) = names.iter().find(|n| !is_identifier(n)) {
            return Err(InvalidNamespaces::Name(bad.clone()));
        }
        let mut names = names;
        names.sort();
        names.dedup();
        if !(names.iter().any(|n| n == "aten") && names.iter().any(|n| n == "prim")) {
            return Err(InvalidNamespaces::MissingCore);
        }
        Ok(OperatorNamespaces(names))
    }

    /// Whether operators of `namespace` can run on the server.
    pub fn provides(&self, namespace: &str) -> bool {
        self.0.iter().any(|n| n == namespace)
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for OperatorNamespaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

impl<'de> Deserialize<'de> for OperatorNamespaces {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        OperatorNamespaces::new(names).map_err(serde::de::Error::custom)
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`, at most [`MAX_NAMESPACE_LEN`] bytes: how TorchScript prints a
/// namespace (`ops.<namespace>.<name>`).
pub fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    s.len() <= MAX_NAMESPACE_LEN
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_sorted_and_valid() {
        let d = OperatorNamespaces::default();
        let again = OperatorNamespaces::new(d.as_slice().to_vec()).unwrap();
        assert_eq!(again, d, "SERVER_NAMESPACES must be sorted and unique");
        assert!(d.provides("torchvision") && d.provides("aten") && !d.provides("my_ext"));
        for n in LIBRARY_NAMESPACES {
            assert!(d.provides(n));
        }
    }

    #[test]
    fn bad_lists_are_refused_when_read() {
        for (json, want) in [
            (r#"["aten", "prim", "my ext"]"#, "not an identifier"),
            (r#"["aten", "prim", ""]"#, "not an identifier"),
            (r#"["aten"]"#, "must include"),
            (r#""aten""#, "sequence"),
        ] {
            let e = serde_json::from_str::<OperatorNamespaces>(json)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{json}: {e}");
        }
        let ok: OperatorNamespaces = serde_json::from_str(r#"["prim", "aten", "aten"]"#).unwrap();
        assert_eq!(ok.as_slice(), ["aten", "prim"]);
    }
}
