//! The root module's `forward` signature, read from a TorchScript file's code, and whether the
//! server can call it.
//!
//! Why: the compile server (and every bundle's loader) calls `forward` with exactly one tensor
//! of the declared `input_shape`. A scripted torchvision detector declares
//! `forward(self, images: List[Tensor], targets: Optional[List[Dict[str, Tensor]]]=None)`: it
//! loads, passes every metadata check, then fails at compile with a TorchScript type error.
//! The file proves this: `data.pkl`'s root object names its class
//! (`__torch__.torchvision.models.detection.ssd.SSD`), whose code (`code/__torch__/
//! torchvision/models/detection/ssd.py`) prints every parameter with its type.

use serde::{Deserialize, Serialize};

use crate::diagnostics::Issue;
use crate::torch::code_tokens::blank_strings;
use crate::torch::pickle::{Node, Pickle};
use crate::torch::rules;

/// One parameter of `forward` (after `self`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    /// The TorchScript type as printed (`Tensor`, `List[Tensor]`).
    #[serde(rename = "type")]
    pub ty: String,
    /// The default value as printed, when it has one.
    #[serde(default)]
    pub default: Option<String>,
}

/// The root module's `forward`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardSignature {
    /// The root module's class (`__torch__.torchvision.models.detection.ssd.SSD`).
    pub class: String,
    pub params: Vec<Param>,
    /// The return type as printed.
    #[serde(default)]
    pub returns: Option<String>,
}

impl ForwardSignature {
    /// `forward(images: List[Tensor], targets: Optional[...]=None) -> ...`
    pub fn display(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| match &p.default {
                Some(d) => format!("{}: {}={d}", p.name, p.ty),
                None => format!("{}: {}", p.name, p.ty),
            })
            .collect();
        match &self.returns {
            Some(r) => format!("forward({}) -> {r}", params.join(", ")),
            None => format!("forward({})", params.join(", ")),
        }
    }
}

/// The class of the pickle's root object (`module`, `Class`), for a TorchScript `data.pkl`.
pub fn root_class(p: &Pickle) -> Option<(&str, &str)> {
    match p.node(p.root?) {
        Node::Obj(o) => p.global(o.func),
        _ => None,
    }
}

/// The code record holding `module` (`__torch__.a.b` → `code/__torch__/a/b.py`).
pub fn code_record(module: &str) -> String {
    format!("code/{}.py", module.replace('.', "/"))
}

/// `forward` of class `class` in `code` (the text of its module's record).
pub fn parse(code: &str, module: &str, class: &str) -> Option<ForwardSignature> {
    let header = format!("class {class}(");
    let start = code
        .match_indices(&header)
        .find(|(i, _)| *i == 0 || code.as_bytes()[i - 1] == b'\n')?
        .0;
    let body = &code[start + header.len()..];
    // The class body ends at the next line that starts in column 0.
    let end = body
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| {
            body.as_bytes()
                .get(i)
                .is_some_and(|b| !b.is_ascii_whitespace())
        })
        .unwrap_or(body.len());
    let body = &body[..end];
    let def = body.find("\n  def forward(")? + "\n  def forward(".len();
    let rest = &body[def..];
    let close = matching_paren(rest)?;
    let params = super::script_code::split_top(&rest[..close])
        .into_iter()
        .skip(1) // self
        .map(param)
        .collect();
    let after = rest[close + 1..].trim_start();
    let returns = after.strip_prefix("->").and_then(|r| {
        let colon = top_level_colon(r)?;
        Some(r[..colon].trim().to_string())
    });
    Some(ForwardSignature {
        class: format!("{module}.{class}"),
        params,
        returns,
    })
}

/// Index of the `)` closing an argument list whose `(` was just before `s` (brackets inside
/// string literals, such as a default `sep: str="(,"`, do not count).
fn matching_paren(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in blank_strings(s).bytes().enumerate() {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' if depth == 0 => return Some(i),
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// The `:` ending a `def` header on its line, outside brackets and string literals.
fn top_level_colon(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in blank_strings(s).bytes().enumerate() {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b':' if depth == 0 => return Some(i),
            b'\n' => return None,
            _ => {}
        }
    }
    None
}

fn param(p: &str) -> Param {
    let (decl, default) = match split_default(p) {
        Some((d, v)) => (d, Some(v.trim().to_string())),
        None => (p, None),
    };
    let (name, ty) = match decl.split_once(':') {
        Some((n, t)) => (n.trim(), t.trim()),
        None => (decl.trim(), "Tensor"),
    };
    Param {
        name: name.to_string(),
        ty: ty.to_string(),
        default,
    }
}

/// `name: T=default` → (`name: T`, `default`), the `=` at bracket depth 0 outside string
/// literals.
fn split_default(p: &str) -> Option<(&str, &str)> {
    let mut depth = 0usize;
    for (i, c) in blank_strings(p).bytes().enumerate() {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'=' if depth == 0 => return Some((&p[..i], &p[i + 1..])),
            _ => {}
        }
    }
    None
}

/// Types a single input tensor can be passed as.
fn takes_a_tensor(ty: &str) -> bool {
    matches!(ty, "Tensor" | "Optional[Tensor]" | "Any")
}

/// BYOM631 when `forward` cannot be called with one tensor.
pub fn check(sig: &ForwardSignature, file: &str) -> Option<Issue> {
    let shown = sig.display();
    let detector = sig
        .class
        .starts_with("__torch__.torchvision.models.detection.");
    let why = match sig.params.first() {
        None => "it takes no input".to_string(),
        Some(p) if !takes_a_tensor(&p.ty) => {
            format!("its first input {:?} is a {}, not a Tensor", p.name, p.ty)
        }
        Some(_) => {
            let required: Vec<&str> = sig
                .params
                .iter()
                .skip(1)
                .filter(|p| p.default.is_none())
                .map(|p| p.name.as_str())
                .collect();
            if required.is_empty() {
                return None;
            }
            format!(
                "it needs {} inputs ({} besides {:?}) without defaults",
                required.len() + 1,
                required.join(", "),
                sig.params[0].name
            )
        }
    };
    let fix = if detector {
        "this is a torchvision detector as scripted, whose forward takes a list of images: \
         wrap it in a module whose forward(x: Tensor) returns tensors (docs/detectors.md) and \
         export the wrapper"
    } else {
        "export a module whose forward takes one Tensor [B, C, H, W]"
    };
    Some(rules::FORWARD_SIGNATURE.issue(
        Some(file),
        format!(
            "the model's {shown} cannot be called with one tensor of the declared input_shape, \
             as the server and every bundle call it: {why}; {fix}"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSD: &str = "class SSD(Module):\n  __parameters__ = []\n  training : bool\n  def forward(self: __torch__.torchvision.models.detection.ssd.SSD,\n    images: List[Tensor],\n    targets: Optional[List[Dict[str, Tensor]]]=None) -> Tuple[Dict[str, Tensor], List[Dict[str, Tensor]]]:\n    _0 = \"x\"\n    return (losses, detections)\n  def eager_outputs(self: __torch__.X) -> int:\n    return 1\n";

    #[test]
    fn reads_a_scripted_detector_and_refuses_it() {
        let module = "__torch__.torchvision.models.detection.ssd";
        let sig = parse(SSD, module, "SSD").unwrap();
        assert_eq!(sig.params.len(), 2);
        assert_eq!(sig.params[0].ty, "List[Tensor]");
        assert_eq!(sig.params[1].default.as_deref(), Some("None"));
        assert_eq!(
            sig.returns.as_deref(),
            Some("Tuple[Dict[str, Tensor], List[Dict[str, Tensor]]]")
        );
        let issue = check(&sig, "model.pt").unwrap();
        assert_eq!(issue.code, rules::FORWARD_SIGNATURE.code);
        assert!(
            issue
                .message
                .contains("\"images\" is a List[Tensor], not a Tensor")
                && issue.message.contains("docs/detectors.md"),
            "{}",
            issue.message
        );
    }

    #[test]
    fn one_tensor_passes_and_extra_required_inputs_fail() {
        let code = "class M(Module):\n  def forward(self: __torch__.M,\n    x: Tensor) -> Tensor:\n    return x\nclass N(Module):\n  def forward(self: __torch__.N,\n    x: Tensor,\n    y: Tensor,\n    scale: float=1.) -> Tensor:\n    return x\nclass O(Module):\n  def forward(self: __torch__.O) -> Tensor:\n    return x\n";
        let m = parse(code, "__torch__", "M").unwrap();
        assert_eq!(m.display(), "forward(x: Tensor) -> Tensor");
        assert!(check(&m, "f.pt").is_none());
        let n = parse(code, "__torch__", "N").unwrap();
        let e = check(&n, "f.pt").unwrap().message;
        assert!(e.contains("needs 2 inputs (y besides \"x\")"), "{e}");
        assert!(
            e.contains("; export a module whose forward takes one Tensor"),
            "{e}"
        );
        let o = parse(code, "__torch__", "O").unwrap();
        assert!(check(&o, "f.pt")
            .unwrap()
            .message
            .contains("takes no input"));
        assert!(parse(code, "__torch__", "Missing").is_none());
        // A class whose forward is not in its own body is not read from the next class.
        assert!(parse(
            "class A(Module):\n  x : int\nclass B(Module):\n  def forward(self, x: int):\n",
            "m",
            "A"
        )
        .is_none());
    }
}
