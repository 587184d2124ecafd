//! The one report type: the single contract between the core and its faces (browser, CLI,
//! server). Rendered as JSON by serde and as text by [`Report::to_text`].

use serde::{Deserialize, Serialize};

pub use crate::diagnostics::{Category, Code, Issue, Severity};
use crate::torch::PtInspection;

/// Something the validator learned while streaming; faces show these progressively.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An archive member was seen (its path as normalised, its size).
    Entry { path: String, size: u64 },
    /// An error or warning, as soon as it is known.
    Issue(Issue),
}

/// What the package declares, for display.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub model_type: Option<String>,
    pub input_shape: Option<Vec<i64>>,
    pub output_shape: Option<Vec<i64>>,
    pub num_classes: Option<u64>,
    pub class_names: Option<Vec<String>>,
    pub model_file: Option<String>,
    pub model_file_bytes: Option<u64>,
    /// Bytes fed to the validator (the `.tar.gz` as uploaded).
    pub compressed_bytes: u64,
    /// Sum of member sizes once decompressed.
    pub uncompressed_bytes: u64,
    /// Every member path, normalised, in archive order.
    pub entries: Vec<String>,
}

/// The verdict on one package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub valid: bool,
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
    pub summary: Summary,
    /// What the `.pt` is, when one was found and read.
    pub model: Option<PtInspection>,
    /// Hash of the [`crate::Settings`] the verdict was made under.
    pub settings_hash: String,
    /// sha256 of the package bytes, filled in by the face that read them (never by the core).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256: Option<String>,
    /// byom-core version that produced this report.
    pub byom_version: String,
}

impl Report {
    /// Human-readable rendering in the style of cargo and ruff:
    /// `error[BYOM501]: message`, `  --> file`, `  = hint: …`, then a summary block.
    /// `color` adds ANSI colours (the face decides: TTY and no `NO_COLOR`).
    pub fn to_text(&self, color: bool) -> String {
        let paint = |code: &str, s: &str| {
            if color {
                format!("\x1b[{code}m{s}\x1b[0m")
            } else {
                s.to_string()
            }
        };
        let mut out = String::new();
        for issue in self.errors.iter().chain(&self.warnings) {
            let (label, c) = match issue.severity {
                Severity::Error => ("error", "1;31"),
                Severity::Warning => ("warning", "1;33"),
            };
            let mut lines = issue.message.lines();
            let first = lines.next().unwrap_or("");
            out.push_str(&format!(
                "{}{} {}\n",
                paint(c, &format!("{label}[{}]", issue.code)),
                paint("1", ":"),
                paint("1", first)
            ));
            for line in lines {
                out.push_str(&format!("  {line}\n"));
            }
            if let Some(file) = &issue.file {
                out.push_str(&format!("  {} {file}\n", paint("1;34", "-->")));
            }
            let mut hint = issue.hint.lines();
            out.push_str(&format!(
                "  {} {}\n",
                paint("1;34", "= hint:"),
                hint.next().unwrap_or("")
            ));
            for line in hint {
                out.push_str(&format!("          {line}\n"));
            }
            out.push('\n');
        }
        let s = &self.summary;
        let row = |out: &mut String, k: &str, v: String| {
            out.push_str(&format!("  {:<15}{v}\n", format!("{k}:")))
        };
        let shape = |v: &[i64]| {
            format!(
                "[{}]",
                v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            )
        };
        if let Some(t) = &s.model_type {
            row(&mut out, "model type", t.clone());
        }
        if let Some(v) = &s.input_shape {
            row(&mut out, "input shape", shape(v));
        }
        if let Some(v) = &s.output_shape {
            row(&mut out, "output shape", shape(v));
        }
        match (&s.num_classes, &s.class_names) {
            (Some(n), Some(names)) => {
                row(&mut out, "classes", format!("{n} ({})", names.join(", ")))
            }
            (Some(n), None) => row(&mut out, "classes", n.to_string()),
            (None, Some(names)) => row(&mut out, "classes", names.join(", ")),
            (None, None) => {}
        }
        if let Some(f) = &s.model_file {
            let size = s
                .model_file_bytes
                .map(|b| format!(" ({})", human_bytes(b)))
                .unwrap_or_default();
            row(&mut out, "model file", format!("{f}{size}"));
        }
        if let Some(m) = &self.model {
            let kind = serde_json::to_value(m.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let mut desc = kind.replace('_', " ");
            if let Some(a) = &m.architecture {
                desc.push_str(&format!(", {a}"));
            }
            if m.parameter_count > 0 {
                desc.push_str(&format!(", {} parameters", m.parameter_count));
            }
            row(&mut out, "model", desc);
        }
        row(
            &mut out,
            "size",
            format!(
                "{} compressed, {} uncompressed",
                human_bytes(s.compressed_bytes),
                human_bytes(s.uncompressed_bytes)
            ),
        );
        if let Some(sha) = &self.sha256 {
            row(&mut out, "sha256", sha.clone());
        }
        let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let tally = format!(
            "{}, {}",
            count(self.errors.len(), "error"),
            count(self.warnings.len(), "warning")
        );
        let verdict = if self.valid {
            paint("1;32", "valid")
        } else {
            paint("1;31", "invalid")
        };
        out.push_str(&format!("  {:<15}{verdict} ({tally})\n", "result:"));
        out
    }
}

/// `1.5 MiB`-style sizes for people (the text report, the CLI); JSON keeps exact bytes.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
