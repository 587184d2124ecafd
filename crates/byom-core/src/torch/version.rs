//! The oldest PyTorch that can load a `.pt`, and why.
//!
//! Why it matters: the BYOM guide promises PyTorch 1.8 compatibility, the compile server runs
//! libtorch 2.11, and users learn about a mismatch only when a compile job fails. Evidence used:
//! the archive `version` record (PyTorch 1.8 reads up to 5; libtorch 2.11 up to 10), the pickle
//! globals and dtypes (rebuild functions and dtypes 1.8 lacks), and, for `torch.jit.script`
//! output, debug records in the string-table layout (`FORMAT_WITH_STRING_TABLE`, written since
//! PyTorch 1.11; torch 1.8 cannot read them). The versions given for archive versions 6–9 and
//! for individual globals are the releases that introduced them, per PyTorch's
//! `caffe2/serialize/versions.h` and `torch/_utils.py` history; everything newer than 1.8 was
//! checked against a real torch 1.8.0 (see `tests/torch18/`).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

pub use crate::torch_version::{InvalidTorchVersion, TorchVersion, GUIDE, SERVER};

/// The highest archive version libtorch 2.11 reads.
pub const SERVER_MAX_ARCHIVE_VERSION: u64 = 10;

/// One reason a file needs a given torch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub version: TorchVersion,
    /// The feature, as a user would recognise it (`gelu(approximate=...)`, `dtype uint16`).
    pub feature: String,
}

impl Requirement {
    fn new(major: u32, minor: u32, feature: impl Into<String>) -> Self {
        Requirement {
            version: TorchVersion(major, minor),
            feature: feature.into(),
        }
    }

    /// "gelu(approximate=...) needs PyTorch ≥ 1.12"
    pub fn sentence(&self) -> String {
        format!("{} needs PyTorch ≥ {}", self.feature, self.version)
    }
}

/// What the version is judged from.
#[derive(Debug, Default)]
pub struct Evidence<'a> {
    pub zip: bool,
    pub torchscript: bool,
    pub scripted_string_table: bool,
    pub archive_version: Option<u64>,
    pub globals: &'a [(String, String)],
    pub dtypes: Vec<&'a str>,
    /// TorchScript code text (all `code/` records joined), to name the operator behind a version.
    pub code: &'a str,
}

/// Requirements found, highest first.
pub fn requirements(ev: &Evidence<'_>) -> Vec<Requirement> {
    let mut out = Vec::new();
    if ev.zip {
        out.push(Requirement::new(1, 6, "the zip file format"));
    }
    if let Some(v) = ev.archive_version {
        if ev.torchscript || v > 3 {
            out.push(archive_requirement(v, ev.code));
        }
    }
    if ev.scripted_string_table {
        out.push(Requirement::new(
            1,
            11,
            "torch.jit.script debug records in the string-table layout (FORMAT_WITH_STRING_TABLE)",
        ));
    }
    for (m, n) in ev.globals {
        let r = match (m.as_str(), n.as_str()) {
            ("torch._utils", "_rebuild_tensor_v3") => {
                Requirement::new(2, 1, "torch._utils._rebuild_tensor_v3")
            }
            ("torch.storage", "UntypedStorage") => {
                Requirement::new(2, 0, "torch.storage.UntypedStorage")
            }
            ("torch._tensor", "_rebuild_from_type_v2") => Requirement::new(
                1,
                10,
                "torch._tensor._rebuild_from_type_v2 (tensor subclass)",
            ),
            ("torch._utils", "_rebuild_parameter_with_state") => {
                Requirement::new(1, 13, "torch._utils._rebuild_parameter_with_state")
            }
            ("torch._utils", "_rebuild_wrapper_subclass") => {
                Requirement::new(1, 12, "torch._utils._rebuild_wrapper_subclass")
            }
            ("torch._utils", "_rebuild_meta_tensor_no_storage") => {
                Requirement::new(1, 12, "meta tensors (_rebuild_meta_tensor_no_storage)")
            }
            ("torch._utils", "_rebuild_device_tensor_from_cpu_tensor") => {
                Requirement::new(2, 1, "torch._utils._rebuild_device_tensor_from_cpu_tensor")
            }
            ("torch._utils", "_rebuild_nested_tensor") => Requirement::new(2, 0, "nested tensors"),
            ("torch.nn.parameter", "Buffer") => Requirement::new(2, 5, "torch.nn.Buffer"),
            _ => continue,
        };
        out.push(r);
    }
    for d in &ev.dtypes {
        let r = match *d {
            "uint16" | "uint32" | "uint64" => Requirement::new(2, 3, format!("dtype {d}")),
            "float8_e4m3fn" | "float8_e5m2" => Requirement::new(2, 1, format!("dtype {d}")),
            "float8_e4m3fnuz" | "float8_e5m2fnuz" => Requirement::new(2, 2, format!("dtype {d}")),
            "float8_e8m0fnu" => Requirement::new(2, 7, format!("dtype {d}")),
            "bits1x8" | "bits2x4" | "bits4x2" | "bits8" | "bits16" => {
                Requirement::new(2, 1, format!("dtype {d}"))
            }
            _ => continue,
        };
        out.push(r);
    }
    out.sort_by(|a, b| {
        b.version
            .cmp(&a.version)
            .then_with(|| a.feature.cmp(&b.feature))
    });
    out.dedup();
    out
}

/// The torch an archive version needs, naming the operator when the code shows it.
fn archive_requirement(v: u64, code: &str) -> Requirement {
    let has = |s: &str| code.contains(s);
    match v {
        0..=3 => Requirement::new(1, 0, format!("archive version {v}")),
        4 => Requirement::new(1, 6, "archive version 4 (div semantics)"),
        5 => Requirement::new(1, 7, "archive version 5 (torch.full semantics)"),
        6 => Requirement::new(1, 9, "archive version 6 (.data/ layout)"),
        7 => Requirement::new(
            1,
            10,
            "archive version 7 (operators with default and out arguments)",
        ),
        8 | 9 => {
            if has("linspace(") || has("logspace(") {
                Requirement::new(
                    1,
                    11,
                    format!("linspace/logspace without steps (archive version {v})"),
                )
            } else {
                Requirement::new(1, 11, format!("archive version {v}"))
            }
        }
        10 => {
            if has("gelu(") {
                Requirement::new(1, 12, "gelu(approximate=...)")
            } else {
                Requirement::new(1, 12, "archive version 10")
            }
        }
        _ => Requirement::new(
            2,
            12,
            format!("archive version {v} (libtorch 2.11 reads up to {SERVER_MAX_ARCHIVE_VERSION})"),
        ),
    }
}

/// The highest requirement's version, if any.
pub fn minimum(reqs: &[Requirement]) -> Option<TorchVersion> {
    reqs.iter()
        .map(|r| r.version)
        .max_by(|a, b| a.cmp(b).then(Ordering::Equal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_is_the_string_form_and_validates() {
        assert_eq!(
            serde_json::to_string(&TorchVersion(2, 11)).unwrap(),
            "\"2.11\""
        );
        let v: TorchVersion = serde_json::from_str("\"1.8\"").unwrap();
        assert_eq!(v, GUIDE);
        let e = serde_json::from_str::<TorchVersion>("\"banana\"").unwrap_err();
        assert!(e.to_string().contains("expected major.minor"), "{e}");
        // A number is refused: 2.10 would read as 2.1.
        assert!(serde_json::from_str::<TorchVersion>("2.10").is_err());
    }

    #[test]
    fn parse_versions() {
        assert_eq!(TorchVersion::parse("2.11"), Some(TorchVersion(2, 11)));
        assert_eq!(TorchVersion::parse("1.8.0"), Some(TorchVersion(1, 8)));
        assert_eq!(TorchVersion::parse(" 1.13 "), Some(TorchVersion(1, 13)));
        for bad in [
            "x",
            "banana",
            "2",
            "2.",
            ".8",
            "v1.8",
            "1.8.0+cu128",
            "2.x",
            "1.8.0.1",
            "-1.8",
            "1.-8",
            "4294967296.0",
            "",
        ] {
            assert_eq!(TorchVersion::parse(bad), None, "{bad:?}");
        }
        let e = "banana".parse::<TorchVersion>().unwrap_err().to_string();
        assert!(e.contains("\"banana\" is not a torch version"), "{e}");
        assert!(TorchVersion(1, 12) > TorchVersion(1, 8));
        assert!(TorchVersion(2, 0) > TorchVersion(1, 13));
    }

    #[test]
    fn gelu_is_named() {
        let ev = Evidence {
            zip: true,
            torchscript: true,
            archive_version: Some(10),
            code: "torch.gelu(x, \"tanh\")",
            ..Default::default()
        };
        let r = requirements(&ev);
        assert_eq!(
            r[0].sentence(),
            "gelu(approximate=...) needs PyTorch ≥ 1.12"
        );
        assert_eq!(minimum(&r), Some(TorchVersion(1, 12)));
    }

    #[test]
    fn uint16_needs_2_3() {
        let g = vec![("torch._utils".to_string(), "_rebuild_tensor_v3".to_string())];
        let ev = Evidence {
            zip: true,
            archive_version: Some(3),
            globals: &g,
            dtypes: vec!["uint16"],
            ..Default::default()
        };
        assert_eq!(minimum(&requirements(&ev)), Some(TorchVersion(2, 3)));
    }
}
