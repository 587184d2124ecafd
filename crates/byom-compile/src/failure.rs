//! Failures a user can act on: what went wrong as one line with the first cause first, what to
//! do when byom knows, and the full error text one field away.
//!
//! libtorch reports a failing forward pass as a TorchScript traceback: the interpreter's frames
//! in the model's own serialized code, then the frames of the *exporter's* Python sources (with
//! the absolute paths of the machine that traced it), and the one useful line — "expected
//! input[1, 224, 224, 3] to have 3 channels, but got 224 channels instead" — last. This module
//! reads that text: the cause, the position in the model's own code, and the same text with
//! source paths cut to what identifies the file (`torch/nn/modules/conv.py`, `train.py`).

use serde::{Deserialize, Serialize};

/// What stage failed, as a closed set the server and the page can key on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The package failed validation; the validator's errors are in the summary.
    InvalidPackage,
    /// The model file is of a kind the server cannot compile (a pickled module, a state dict
    /// of an unknown architecture, ...).
    UnsupportedModel,
    /// libtorch could not load the model file.
    Load,
    /// The model's forward pass on the declared input failed.
    Forward,
    /// The model ran, but its output's shape is not the declared one.
    OutputShape,
    /// Reading or writing the job's own files failed: a server-side problem.
    Io,
    /// The job asked for no target.
    NoTargets,
    /// A target's artifact could not be built (cast, freeze or save failed).
    Build,
    /// A target cannot run the artifact (x86-only ops on arm64, a torch too old).
    TargetRuntime,
    /// A target's artifact did not reload, run, or compute what the original computes.
    Verification,
}

/// A failure of the job or of one target (`failure` in report.json and in the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    /// One line, the first cause first.
    pub summary: String,
    /// What to change, when the error says it.
    pub hint: Option<String>,
    /// Where in the model's own TorchScript code it failed (`code/__torch__/...py:10`), when
    /// the error says so.
    pub model_code: Option<String>,
    /// The whole error text, source paths shortened; at most [`MAX_DETAIL`] bytes.
    pub detail: String,
}

/// Largest `detail` kept (libtorch tracebacks of deep models run to tens of KiB).
pub const MAX_DETAIL: usize = 16 * 1024;

impl Failure {
    /// A failure whose text is byom's own (already one line).
    pub fn new(kind: FailureKind, summary: impl Into<String>) -> Failure {
        let summary = summary.into();
        Failure {
            kind,
            detail: cap(summary.clone()),
            summary: first_line(&summary).to_string(),
            hint: None,
            model_code: None,
        }
    }

    /// A failure whose cause is libtorch's error text `raw`, after byom's `context`
    /// ("the model's forward pass failed").
    pub fn torch(kind: FailureKind, context: &str, raw: &str) -> Failure {
        let t = TorchText::read(raw);
        Failure {
            kind,
            summary: format!("{context}: {}", t.cause),
            hint: hint_for(&t.cause),
            model_code: t.model_code,
            detail: cap(t.detail),
        }
    }
}

impl Failure {
    /// The failure as log lines: `<what>: <summary>`, the hint, then the full text when it
    /// says more than the summary.
    pub fn log_lines(&self, what: &str) -> Vec<String> {
        let mut lines = vec![format!("{what}: {}", self.summary)];
        if let Some(hint) = &self.hint {
            lines.push(format!("hint: {hint}"));
        }
        if let Some(at) = &self.model_code {
            lines.push(format!("in the model's code: {at}"));
        }
        if self.detail != self.summary {
            lines.push(format!("full error:\n{}", self.detail));
        }
        lines
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary)
    }
}

fn first_line(s: &str) -> &str {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

fn cap(mut s: String) -> String {
    if s.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("\n[... cut at 16 KiB]");
    }
    s
}

/// What byom reads out of a libtorch error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorchText {
    /// The error's own message, one line, without the exception class when it says nothing
    /// ("RuntimeError").
    pub cause: String,
    /// The innermost frame in the model's serialized code and the call there.
    pub model_code: Option<String>,
    /// The whole text, tch's prefix and C++ stack frames removed, source paths shortened.
    pub detail: String,
}

/// The first line of a libtorch error text's cause (see [`TorchText::read`]).
pub fn first_cause(raw: &str) -> String {
    TorchText::read(raw).cause
}

impl TorchText {
    pub fn read(raw: &str) -> TorchText {
        let text = raw.trim_start_matches("Internal torch error: ");
        // libtorch may append the C++ stack ("Exception raised from ... frame #0: ..."):
        // nothing in it is about the model.
        let text = text
            .find("Exception raised from ")
            .map_or(text, |i| &text[..i]);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("frame #"))
            .collect();
        let cause = exception_line(&lines)
            .or_else(|| {
                // Not a traceback (a load error, "Unknown builtin op: ..."): its first line.
                lines
                    .iter()
                    .map(|l| l.trim())
                    .find(|l| !l.is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "libtorch gave no message".to_string());
        let detail = lines
            .iter()
            .map(|l| shorten_paths(l))
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_string();
        TorchText {
            cause: shorten_paths(cause.trim_end_matches('.'))
                .trim()
                .to_string(),
            model_code: model_code(&lines),
            detail,
        }
    }
}

/// The last `Name: message` line at column 0 whose name is an exception class
/// (`RuntimeError`, `builtins.ValueError`, `torch.jit.Error`): the interpreter's final line.
fn exception_line(lines: &[&str]) -> Option<String> {
    lines.iter().rev().find_map(|line| {
        let (name, message) = line.split_once(": ")?;
        let is_class = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            && (name.ends_with("Error") || name.ends_with("Exception"));
        if !is_class || message.trim().is_empty() {
            return None;
        }
        let short = name.rsplit('.').next().unwrap_or(name);
        Some(if short == "RuntimeError" || short == "Error" {
            message.trim().to_string()
        } else {
            format!("{short}: {}", message.trim())
        })
    })
}

/// The innermost `File "code/…", line N` frame of the serialized-code traceback, with the
/// call it points at (the line above the `~~~ <--- HERE` marker).
fn model_code(lines: &[&str]) -> Option<String> {
    let mut found = None;
    let mut frame: Option<String> = None;
    let mut previous = "";
    for line in lines {
        let t = line.trim();
        if t.starts_with("Traceback of TorchScript, original code") {
            break;
        }
        if let Some(rest) = t.strip_prefix("File \"code/") {
            if let Some((file, after)) = rest.split_once("\", line ") {
                let n: String = after.chars().take_while(char::is_ascii_digit).collect();
                frame = Some(format!("code/{file}:{n}"));
            }
        } else if t.contains("<--- HERE") {
            if let Some(f) = &frame {
                // The marker's tildes sit under the call: the text above them at that column.
                let col = line.find('~').unwrap_or(0);
                let width = line.matches('~').count();
                let call: String = previous.chars().skip(col).take(width).collect();
                let call = call.trim();
                found = Some(if call.is_empty() {
                    f.clone()
                } else {
                    format!("{f} ({call})")
                });
            }
        }
        previous = line;
    }
    found.or(frame)
}

/// Cuts absolute source paths down to what identifies the file: the part after
/// `site-packages/` (a library's file) or the file name (the exporter's own script). The paths
/// are those of the machine that traced the model: noise to the reader, and private.
pub fn shorten_paths(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = path_start(rest) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c == '"' || c == '(' || c == '\'' || c.is_whitespace())
            .unwrap_or(tail.len());
        out.push_str(&short_path(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Where an absolute path starts in `s`: a `/` at the start of the text or after a quote or a
/// space, followed by a name (not `//`, not a lone `/`), or a Windows drive (`C:\`).
fn path_start(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (0..b.len()).find(|&i| {
        let boundary = i == 0 || matches!(b[i - 1], b'"' | b'\'' | b' ' | b'(');
        if !boundary {
            return false;
        }
        let unix = b[i] == b'/'
            && b.get(i + 1)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.');
        let windows = b[i].is_ascii_alphabetic()
            && b.get(i + 1) == Some(&b':')
            && b.get(i + 2) == Some(&b'\\');
        (unix && s[i + 1..].contains('/')) || windows
    })
}

fn short_path(path: &str) -> String {
    for marker in ["site-packages/", "dist-packages/", "site-packages\\"] {
        if let Some(i) = path.rfind(marker) {
            return path[i + marker.len()..].to_string();
        }
    }
    path.rsplit(['/', '\\']).next().unwrap_or(path).to_string()
}

/// What to change, for causes whose fix the message proves.
fn hint_for(cause: &str) -> Option<String> {
    // "Given groups=1, weight of size [64, 3, 7, 7], expected input[1, 224, 224, 3] to have 3
    // channels, but got 224 channels instead": a channels-last input_shape.
    let after = cause.split_once("expected input[")?.1;
    let (shape, rest) = after.split_once(']')?;
    let dims: Vec<i64> = shape
        .split(',')
        .map(|d| d.trim().parse().ok())
        .collect::<Option<_>>()?;
    let channels: i64 = rest
        .trim_start()
        .strip_prefix("to have ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    match dims.as_slice() {
        [n, h, w, c] if *c == channels && *h != channels => Some(format!(
            "the input reaches the first convolution channels-last (NHWC); the model takes \
             channels first: write input_shape [{n}, {c}, {h}, {w}] in mochi.json"
        )),
        _ => Some(format!(
            "the model's convolution takes {channels} channels: check input_shape's channel axis \
             (dimension 1 of [N, C, H, W])"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What libtorch 2.11 says for a traced torchvision resnet18 given an NHWC input (the text
    /// of tests/test_compile_failures.py's model, paths of the tracing machine included).
    const NHWC: &str = "Internal torch error: The following operation failed in the TorchScript interpreter.
Traceback of TorchScript, serialized code (most recent call last):
  File \"code/__torch__/torchvision/models/resnet.py\", line 28, in forward
    bn1 = self.bn1
    conv1 = self.conv1
    _0 = (bn1).forward((conv1).forward(x, ), )
                        ~~~~~~~~~~~~~~ <--- HERE
    _1 = (maxpool).forward((relu).forward(_0, ), )
  File \"code/__torch__/torch/nn/modules/conv.py\", line 10, in forward
    weight = self.weight
    input = torch._convolution(x, weight, None, [2, 2], [3, 3], [1, 1], False, [0, 0], 1, False, False, True, True)
            ~~~~~~~~~~~~~~~~~~ <--- HERE
    return input

Traceback of TorchScript, original code (most recent call last):
/home/alice/venv/lib/python3.11/site-packages/torch/nn/modules/conv.py(548): _conv_forward
/home/alice/venv/lib/python3.11/site-packages/torchvision/models/resnet.py(285): forward
/home/alice/secret-project/export.py(5): <module>
RuntimeError: Given groups=1, weight of size [64, 3, 7, 7], expected input[1, 224, 224, 3] to have 3 channels, but got 224 channels instead
";

    #[test]
    fn nhwc_traceback_becomes_one_line_with_the_fix() {
        let f = Failure::torch(FailureKind::Forward, "the forward pass failed", NHWC);
        assert_eq!(
            f.summary,
            "the forward pass failed: Given groups=1, weight of size [64, 3, 7, 7], expected \
             input[1, 224, 224, 3] to have 3 channels, but got 224 channels instead"
        );
        assert!(
            f.hint.as_deref().unwrap().contains("[1, 3, 224, 224]"),
            "{:?}",
            f.hint
        );
        assert_eq!(
            f.model_code.as_deref(),
            Some("code/__torch__/torch/nn/modules/conv.py:10 (torch._convolution)")
        );
        assert!(!f.detail.contains("/home/alice"), "{}", f.detail);
        assert!(f
            .detail
            .contains("torch/nn/modules/conv.py(548): _conv_forward"));
        assert!(f.detail.contains("\nexport.py(5): <module>"));
        assert!(f.detail.starts_with("The following operation failed"));
    }

    #[test]
    fn scripted_raise_keeps_its_class_and_drops_the_path() {
        let raw = "The following operation failed in the TorchScript interpreter.
Traceback of TorchScript (most recent call last):
  File \"/tmp/work/net.py\", line 19, in forward
        if x.shape[1] != 3:
            raise ValueError(\"expected 3 channels\")
            ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~ <--- HERE
builtins.ValueError: expected 3 channels
";
        let t = TorchText::read(raw);
        assert_eq!(t.cause, "ValueError: expected 3 channels");
        assert!(
            t.detail.contains("File \"net.py\", line 19"),
            "{}",
            t.detail
        );
        assert_eq!(t.model_code, None);
        assert_eq!(hint_for(&t.cause), None);
    }

    #[test]
    fn plain_errors_and_cpp_frames() {
        let t = TorchText::read(
            "Unknown builtin op: torchvision::nms.\nCould not find any similar ops to torchvision::nms.\n\
             Exception raised from findOp at /pytorch/torch/csrc/jit/frontend/ir_emitter.cpp:1:\n\
             frame #0: c10::Error::Error() + 0x1 (0x7f in /x/libc10.so)\n",
        );
        assert_eq!(t.cause, "Unknown builtin op: torchvision::nms");
        assert!(!t.detail.contains("frame #") && !t.detail.contains("libc10"));
        assert_eq!(first_cause(""), "libtorch gave no message");
    }

    #[test]
    fn paths_shortened_only_where_they_are_paths() {
        assert_eq!(
            shorten_paths("see \"/a/b/site-packages/timm/x.py\", 1/2 and /tmp/my.py(3)"),
            "see \"timm/x.py\", 1/2 and my.py(3)"
        );
        assert_eq!(shorten_paths("C:\\Users\\bob\\train.py(4)"), "train.py(4)");
        assert_eq!(shorten_paths("ratio 1/2, a / b"), "ratio 1/2, a / b");
    }

    #[test]
    fn detail_is_capped() {
        let f = Failure::new(FailureKind::Io, "x".repeat(MAX_DETAIL * 2));
        assert!(f.detail.len() < MAX_DETAIL + 64);
    }
}
