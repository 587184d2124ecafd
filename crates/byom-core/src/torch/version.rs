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
//! checked against a real torch 1.8.0 (see `tests/torch18/`). The operators TorchScript code
//! calls ([`aten_calls`]) are dated by the table generated from the releases' own schema lists
//! ([`op_history`](super::op_history)), not by hand.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use crate::torch_version::{InvalidTorchVersion, TorchVersion, GUIDE, SERVER};

use super::code_tokens::{self, Token};
use super::op_history::{self, OpTable};

/// The highest archive version libtorch 2.11 reads.
pub const SERVER_MAX_ARCHIVE_VERSION: u64 = 10;

/// One reason a file needs a given torch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub version: TorchVersion,
    /// The feature, as a user would recognise it (`torch.gelu(approximate=...)`, `dtype uint16`).
    pub feature: String,
    /// Where the version comes from.
    #[serde(default)]
    pub basis: Basis,
}

/// Where a requirement's version comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// PyTorch's history of the file format, pickle globals and dtypes (this module).
    #[default]
    History,
    /// The operator is first in that release's operator list (the generated table).
    FirstOperator,
    /// Some overload of the operator first takes the argument in that release.
    FirstArgument,
    /// Some overload of the operator first takes that many positional arguments in that release.
    FirstArity,
}

impl Requirement {
    fn new(major: u32, minor: u32, feature: impl Into<String>) -> Self {
        Requirement {
            version: TorchVersion(major, minor),
            feature: feature.into(),
            basis: Basis::History,
        }
    }

    /// "dtype uint16 needs PyTorch ≥ 2.3", "torch.scaled_dot_product_attention needs
    /// PyTorch ≥ 2.0 (first in the 2.0 release)"
    pub fn sentence(&self) -> String {
        let v = self.version;
        let why = match self.basis {
            Basis::History => String::new(),
            Basis::FirstOperator => format!(" (first in the {v} release)"),
            Basis::FirstArgument => format!(" (argument first in the {v} release)"),
            Basis::FirstArity => format!(" (first accepted in the {v} release)"),
        };
        format!("{} needs PyTorch ≥ {v}{why}", self.feature)
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
    out.extend(operator_requirements(op_history::table(), ev.code));
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
    // Highest first; at one version the operator named before the file-format fact it caused.
    out.sort_by(|a, b| {
        b.version
            .cmp(&a.version)
            .then_with(|| (a.basis == Basis::History).cmp(&(b.basis == Basis::History)))
            .then_with(|| a.feature.cmp(&b.feature))
    });
    out.dedup();
    out
}

/// The torch an archive version needs. Version 8–9 readers differ from older ones in how they
/// upgrade `linspace`/`logspace` without `steps`, so those calls are named; the operators and
/// arguments a release added (`gelu(approximate=...)`, the reason for version 10) are named by
/// [`operator_requirements`].
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
        10 => Requirement::new(1, 12, "archive version 10"),
        _ => Requirement::new(
            2,
            12,
            format!("archive version {v} (libtorch 2.11 reads up to {SERVER_MAX_ARCHIVE_VERSION})"),
        ),
    }
}

/// Brackets [`aten_calls`] follows; deeper ones are counted, not kept (real TorchScript code
/// nests a few levels; this bounds the memory a hostile file can make it use).
const MAX_CALL_DEPTH: usize = 256;

/// What the code's calls of one `aten::` operator use, over all its call sites.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AtenCall {
    /// The most positional arguments one call passes.
    pub positional: usize,
    /// Keyword arguments any call passes (`approximate` in `torch.gelu(x, approximate="tanh")`).
    pub keywords: BTreeSet<String>,
}

/// The `aten::` operators TorchScript code calls: `torch.NAME(…)` (how the TorchScript printer
/// writes every `aten::` operator) and `ops.aten.NAME(…)`, keyed by `NAME`. Module-qualified
/// functions (`__torch__.torch.nn.functional.layer_norm(…)`), other namespaces (`ops.prim.…`)
/// and text inside string literals are not operator calls. One pass over the shared tokenizer
/// ([`code_tokens`], which the operator scan reads too), no backtracking: the cost is linear in
/// the code's length whatever its nesting.
pub fn aten_calls(code: &str) -> BTreeMap<String, AtenCall> {
    /// One open bracket: for a call of an aten operator, its name and what it has seen.
    struct Frame<'a> {
        op: Option<&'a str>,
        positional: usize,
        keywords: Vec<&'a str>,
        /// The current argument has text.
        filled: bool,
        /// The current argument is `name=value`.
        keyword: bool,
    }
    let mut out: BTreeMap<String, AtenCall> = BTreeMap::new();
    let mut stack: Vec<Frame<'_>> = Vec::new();
    // Brackets nested deeper than the stack keeps (counted so that they still close).
    let mut too_deep = 0usize;
    let mut toks = code_tokens::tokens(code).peekable();
    // The free dotted name just before the current token (`torch.gelu`): a callee if `(` follows.
    let mut callee: Option<&str> = None;
    while let Some(t) = toks.next() {
        let before = callee.take();
        match t {
            Token::Name { text, member } => {
                if let Some(f) = stack.last_mut() {
                    // `name=` opening an argument of a call: a keyword argument.
                    if f.op.is_some() && !f.filled && toks.peek() == Some(&Token::Assign) {
                        f.keyword = true;
                        f.keywords.push(text);
                    }
                    f.filled = true;
                }
                if !member {
                    callee = Some(text);
                }
            }
            Token::Open(c) => {
                if let Some(f) = stack.last_mut() {
                    f.filled = true;
                }
                if stack.len() >= MAX_CALL_DEPTH {
                    too_deep += 1;
                    continue;
                }
                let op = before
                    .filter(|_| c == b'(')
                    .and_then(|s| {
                        s.strip_prefix("torch.")
                            .or_else(|| s.strip_prefix("ops.aten."))
                    })
                    .filter(|n| !n.contains('.'));
                stack.push(Frame {
                    op,
                    positional: 0,
                    keywords: Vec::new(),
                    filled: false,
                    keyword: false,
                });
            }
            Token::Comma | Token::Close(_) if too_deep > 0 => {
                if t != Token::Comma {
                    too_deep -= 1;
                }
            }
            Token::Comma | Token::Close(_) => {
                if let Some(f) = stack.last_mut() {
                    if f.filled && !f.keyword {
                        f.positional += 1;
                    }
                    f.filled = false;
                    f.keyword = false;
                }
                if t != Token::Comma {
                    if let Some(f) = stack.pop() {
                        if let Some(op) = f.op {
                            let e = out.entry(op.to_string()).or_default();
                            e.positional = e.positional.max(f.positional);
                            e.keywords.extend(f.keywords.iter().map(|k| k.to_string()));
                        }
                    }
                    if let Some(f) = stack.last_mut() {
                        f.filled = true;
                    }
                }
            }
            // A literal, a number, an operator: it fills the current argument.
            Token::Str | Token::Assign | Token::Other => {
                if let Some(f) = stack.last_mut() {
                    f.filled = true;
                }
            }
        }
    }
    out
}

/// What the operator table says the code's operator calls need: the operator itself, each
/// keyword argument, and the number of positional arguments, each when later than the table's
/// oldest release. Operators the table does not date add nothing.
fn operator_requirements(table: &OpTable, code: &str) -> Vec<Requirement> {
    let mut out = Vec::new();
    for (name, call) in aten_calls(code) {
        let Some(h) = table.op(&name) else { continue };
        let req = |version, feature, basis| Requirement {
            version,
            feature,
            basis,
        };
        if let Some(v) = h.since {
            out.push(req(v, format!("torch.{name}"), Basis::FirstOperator));
        }
        for k in &call.keywords {
            if let Some(v) = h.arg_since(k) {
                out.push(req(
                    v,
                    format!("torch.{name}({k}=...)"),
                    Basis::FirstArgument,
                ));
            }
        }
        if let Some(v) = h.arity_since(call.positional) {
            let n = call.positional;
            out.push(req(
                v,
                format!("torch.{name} with {n} positional arguments"),
                Basis::FirstArity,
            ));
        }
    }
    out
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

    /// Code as torch 2.11 writes it for `F.gelu(x, approximate="tanh")` (archive version 10).
    #[test]
    fn gelu_approximate_is_named_from_the_table() {
        let ev = Evidence {
            zip: true,
            torchscript: true,
            archive_version: Some(10),
            code: "    y0 = torch.gelu(_8, approximate=\"tanh\")\n",
            ..Default::default()
        };
        let r: Vec<String> = requirements(&ev)
            .iter()
            .map(Requirement::sentence)
            .collect();
        assert_eq!(
            r[..2],
            [
                "torch.gelu(approximate=...) needs PyTorch ≥ 1.12 (argument first in the 1.12 release)",
                "archive version 10 needs PyTorch ≥ 1.12",
            ]
        );
        assert_eq!(minimum(&requirements(&ev)), Some(TorchVersion(1, 12)));
    }

    /// Code as torch 2.11 writes it for `F.scaled_dot_product_attention(q, k, v)`.
    #[test]
    fn scaled_dot_product_attention_needs_2_0() {
        let code = "    _7 = torch.unbind(torch.permute(_6, [2, 0, 3, 1, 4]))\n    q, k, v, = _7\n    y = torch.scaled_dot_product_attention(q, k, v, None, 0., False)\n    return torch.linear(y, weight, bias)\n";
        let ev = Evidence {
            zip: true,
            torchscript: true,
            archive_version: Some(3),
            code,
            ..Default::default()
        };
        let r = requirements(&ev);
        assert_eq!(
            r[0].sentence(),
            "torch.scaled_dot_product_attention needs PyTorch ≥ 2.0 (first in the 2.0 release)"
        );
        assert_eq!(r[0].basis, Basis::FirstOperator);
        assert_eq!(minimum(&r), Some(TorchVersion(2, 0)));
        // A later keyword argument raises it: scale= is first in 2.1.
        let code = "y = torch.scaled_dot_product_attention(q, k, v, None, 0., False, scale=0.125)";
        let r = requirements(&Evidence { code, ..ev });
        assert_eq!(
            r[0].sentence(),
            "torch.scaled_dot_product_attention(scale=...) needs PyTorch ≥ 2.1 (argument first in the 2.1 release)"
        );
    }

    #[test]
    fn aten_calls_reads_operators_keywords_and_positional_counts() {
        let code = r#"def forward(self: __torch__.M, x: Tensor) -> Tensor:
    _0 = __torch__.torch.nn.functional.layer_norm
    a = torch.add(torch.mul(x, 2), x, alpha=2)
    b = ops.aten.gelu(a, approximate="tanh")
    c = ops.prim.NumToTensor(torch.size(x, 0))
    d = torch.div(b, [1, 2], rounding_mode="floor") if x == y else torch.div(b, 1, )
    s = "torch.fake_op(1, 2)"
    e = self.torch.not_me(x)
    return _0(torch.cat([a, b, (c, d)], 1), [16], w=None)
"#;
        let calls = aten_calls(code);
        let names: Vec<&str> = calls.keys().map(String::as_str).collect();
        assert_eq!(names, ["add", "cat", "div", "gelu", "mul", "size"]);
        assert_eq!(calls["add"].positional, 2);
        assert_eq!(calls["add"].keywords, BTreeSet::from(["alpha".to_string()]));
        assert_eq!(
            calls["gelu"].keywords,
            BTreeSet::from(["approximate".to_string()])
        );
        assert_eq!(calls["div"].positional, 2);
        assert_eq!(
            calls["div"].keywords,
            BTreeSet::from(["rounding_mode".to_string()])
        );
        assert_eq!(calls["cat"].positional, 2);
        assert!(calls["size"].keywords.is_empty() && calls["size"].positional == 2);
    }

    #[test]
    fn aten_calls_is_bounded_on_hostile_nesting() {
        let deep = format!(
            "{}torch.pad(x, [1]){}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        assert!(
            aten_calls(&deep).is_empty(),
            "past the depth limit nothing is kept"
        );
        let unclosed = "torch.pad(".repeat(50_000);
        assert!(aten_calls(&unclosed).is_empty());
        let ok = format!("{}torch.pad(x, [1]){}", "(".repeat(10), ")".repeat(10));
        assert_eq!(aten_calls(&ok)["pad"].positional, 2);
        assert!(aten_calls("\"unterminated torch.pad(x)").is_empty());
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
