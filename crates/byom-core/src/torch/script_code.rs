//! What a TorchScript file's own code proves about the layers its input enters and its output
//! leaves: read from the archive's `code/**.py` (the Python subset TorchScript serialises),
//! never run.
//!
//! Why code and not the inventory: parameters are stored in registration order, which need not
//! be the order `forward` uses them. The code is the graph libtorch runs: when the root
//! module's `forward` passes its input straight to a child's `forward` (through wrappers such as
//! `Sequential` or ultralytics' `Conv`) until a `Conv2d`, that convolution's weight decides the
//! channels the model accepts; when it returns a child's output straight (down to a `Linear`),
//! that layer's width is the model's output width. Anything else (an operation on the input
//! before the first layer, a branch, an output built by `torch.cat`) proves nothing and is
//! reported as not found, so the checks fall back to what is only likely.
//!
//! Handled: the code `torch.jit.trace` writes (`conv1 = self.conv1` then
//! `(conv1).forward(x, )`, `getattr(self, "0")`) and what `torch.jit.script` writes
//! (`(self.stem).forward(x, )`, calls of the module's own methods, `Final` constants such as
//! `in_channels`). Bounds: the code is already capped by `max_code_bytes`; following calls stops
//! after [`MAX_HOPS`] modules or methods.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::code_tokens::blank_strings;
use super::script_class::python_name;

/// Calls followed at most from the root module's `forward` to a layer.
pub const MAX_HOPS: usize = 32;

/// The two layer kinds a proof ends at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    Conv2d,
    Linear,
}

/// A layer the code proves, with what its own code says about its convolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeLayer {
    /// Module path from the root: `conv1`, `stem.0`, `model.0.conv`, `fc`.
    pub path: String,
    pub kind: LayerKind,
    /// `groups` of a convolution, when its code says it (a constant or the traced call).
    pub groups: Option<u64>,
    /// `in_channels` of a scripted convolution (a `Final` constant).
    pub in_channels: Option<u64>,
}

/// A layer the code proves, with its weight from the inventory: what
/// [`super::PtInspection::input_layer`] and [`super::PtInspection::output_layer`] hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenLayer {
    /// Module path from the root: `conv1`, `stem.0`, `fc`.
    pub path: String,
    pub kind: LayerKind,
    /// Its weight's shape: `[out, in / groups, kh, kw]` or `[out, in]`.
    pub weight: Vec<u64>,
    /// Channels (features) it takes.
    pub in_channels: u64,
    /// Channels (features) it outputs.
    pub outputs: u64,
}

impl ProvenLayer {
    /// `layer` with its weight `<path>.weight` from `tensors`; `None` when the weight is not
    /// there, has another rank, or disagrees with what the layer's code says.
    pub fn new(layer: &CodeLayer, tensors: &[super::TensorInfo]) -> Option<Self> {
        let name = format!("{}.weight", layer.path);
        let w = &tensors.iter().find(|t| t.name == name)?.shape;
        let in_channels = match (layer.kind, w.as_slice()) {
            (LayerKind::Linear, [_, i]) => *i,
            (LayerKind::Conv2d, [_, i, _, _]) => {
                let from_weight = i.checked_mul(layer.groups?)?;
                if layer.in_channels.is_some_and(|c| c != from_weight) {
                    return None;
                }
                from_weight
            }
            _ => return None,
        };
        Some(ProvenLayer {
            path: layer.path.clone(),
            kind: layer.kind,
            weight: w.clone(),
            in_channels,
            outputs: w[0],
        })
    }
}

/// One method: parameter names (`self` first) and body lines.
#[derive(Debug, Default)]
struct Method<'a> {
    params: Vec<String>,
    body: Vec<&'a str>,
}

/// One class: attribute types (qualified names as written), `Final` constants, methods.
#[derive(Debug, Default)]
struct Class<'a> {
    attrs: HashMap<&'a str, &'a str>,
    finals: HashMap<&'a str, &'a str>,
    methods: HashMap<String, Method<'a>>,
}

/// Every class of a TorchScript archive's code, by qualified name
/// (`__torch__.torch.nn.modules.conv.___torch_mangle_3.Conv2d`).
#[derive(Debug, Default)]
pub struct ScriptCode<'a> {
    classes: HashMap<String, Class<'a>>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Top-level comma-separated parts of `s`, empty ones dropped (brackets of any kind nest;
/// nothing inside a string literal counts, [`blank_strings`]). Also splits `forward`'s
/// parameters for [`super::signature`].
pub(crate) fn split_top(s: &str) -> Vec<&str> {
    let blank = blank_strings(s);
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in blank.bytes().enumerate() {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            // A comma outside literals is the same byte in `s`: a character boundary.
            b',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.retain(|p| !p.is_empty());
    out
}

/// Index of the bracket closing the one opened at `open` (`s[open]` is `(`), string literals
/// skipped.
fn closing(s: &str, open: usize) -> Option<usize> {
    let blank = blank_strings(s);
    let mut depth = 0i32;
    for (i, b) in blank.bytes().enumerate().skip(open) {
        match b {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Index of the bracket opening the one closed at `close` (`s[close]` is `)`), string literals
/// skipped.
fn opening(s: &str, close: usize) -> Option<usize> {
    let blank = blank_strings(s);
    let b = blank.as_bytes();
    let mut depth = 0i32;
    for i in (0..=close.min(b.len().checked_sub(1)?)).rev() {
        match b[i] {
            b')' => depth += 1,
            b'(' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Parameter names of a `def` header `def name(self: T, x: Tensor, y: int=1) -> T:`.
fn params(header: &str) -> Option<(&str, Vec<&str>)> {
    let rest = header.trim_start().strip_prefix("def ")?;
    let open = blank_strings(rest).find('(')?;
    let name = rest[..open].trim();
    let close = closing(rest, open)?;
    let ps = split_top(&rest[open + 1..close])
        .into_iter()
        .map(|p| p.split([':', '=']).next().unwrap_or("").trim())
        .collect();
    Some((name, ps))
}

/// A call `(RECV).METHOD(ARGS)` spanning all of `expr`.
fn whole_call(expr: &str) -> Option<(&str, &str, Vec<&str>)> {
    let expr = expr.trim();
    if !expr.starts_with('(') {
        return None;
    }
    let recv_end = closing(expr, 0)?;
    let rest = expr[recv_end + 1..].strip_prefix('.')?;
    let open = blank_strings(rest).find('(')?;
    let method = &rest[..open];
    let close = closing(rest, open)?;
    if !is_ident(method) || close != rest.len() - 1 {
        return None;
    }
    Some((
        expr[1..recv_end].trim(),
        method,
        split_top(&rest[open + 1..close]),
    ))
}

/// Byte offsets of `token` as a whole identifier in `line` (not inside a string literal).
fn token_at(line: &str, token: &str) -> Vec<usize> {
    let blank = blank_strings(line);
    let b = blank.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'.';
    blank
        .match_indices(token)
        .map(|(i, _)| i)
        .filter(|&i| {
            (i == 0 || !word(b[i - 1]))
                && b.get(i + token.len())
                    .is_none_or(|&c| !(word(c) && c != b'.'))
        })
        .collect()
}

impl<'a> ScriptCode<'a> {
    /// Reads every `code/**.py` file: `(path relative to the archive folder, text)`.
    pub fn parse<I: IntoIterator<Item = (&'a str, &'a str)>>(files: I) -> Self {
        let mut code = ScriptCode::default();
        for (path, text) in files {
            let Some(module) = path
                .strip_prefix("code/")
                .and_then(|p| p.strip_suffix(".py"))
            else {
                continue;
            };
            code.parse_file(&module.replace('/', "."), text);
        }
        code
    }

    fn parse_file(&mut self, module: &str, text: &'a str) {
        let lines: Vec<&'a str> = text.lines().collect();
        let mut i = 0;
        let mut current: Option<(String, Class<'a>)> = None;
        while i < lines.len() {
            let line = lines[i];
            let t = line.trim();
            let ind = indent(line);
            i += 1;
            if ind == 0 && t.starts_with("class ") {
                if let Some((n, c)) = current.take() {
                    self.classes.insert(n, c);
                }
                let name = t["class ".len()..]
                    .split(['(', ':'])
                    .next()
                    .unwrap_or("")
                    .trim();
                current = Some((format!("{module}.{name}"), Class::default()));
                continue;
            }
            let Some((_, class)) = current.as_mut() else {
                continue;
            };
            if ind != 2 {
                continue;
            }
            if t.starts_with("def ") {
                // The header may span lines (one parameter per line) until `:` closes it.
                let mut header = t.to_string();
                while !header.ends_with(':') && i < lines.len() && indent(lines[i]) > 2 {
                    header.push(' ');
                    header.push_str(lines[i].trim());
                    i += 1;
                }
                let mut body = Vec::new();
                while i < lines.len() && (indent(lines[i]) > 2 || lines[i].trim().is_empty()) {
                    if !lines[i].trim().is_empty() {
                        body.push(lines[i]);
                    }
                    i += 1;
                }
                if let Some((name, ps)) = params(&header) {
                    let params = ps.into_iter().map(str::to_string).collect();
                    class
                        .methods
                        .insert(name.to_string(), Method { params, body });
                }
                continue;
            }
            // `__annotations__["0"] = T` (scripted containers), `name : T`, `name : Final[int] = 3`.
            if let Some(rest) = t.strip_prefix("__annotations__[\"") {
                if let Some((name, ty)) = rest.split_once("\"] = ") {
                    class.attrs.insert(name, ty.trim());
                }
            } else if let Some((name, ty)) = t.split_once(" : ") {
                if let Some((_, value)) =
                    ty.strip_prefix("Final[").and_then(|f| f.split_once("] = "))
                {
                    class.finals.insert(name.trim(), value.trim());
                } else {
                    class.attrs.insert(name.trim(), ty.trim());
                }
            }
        }
        if let Some((n, c)) = current.take() {
            self.classes.insert(n, c);
        }
    }

    /// The layer the root module's `forward` feeds its (first) input to, when the code proves it.
    pub fn input_layer(&self, root: &str) -> Option<CodeLayer> {
        let mut class = root.to_string();
        let mut method = "forward".to_string();
        let mut param = 1usize;
        let mut path: Vec<String> = Vec::new();
        for _ in 0..MAX_HOPS {
            if let Some(layer) = self.layer(&class, &path) {
                return Some(layer);
            }
            let m = self.classes.get(&class)?.methods.get(method.as_str())?;
            let p = m.params.get(param)?.as_str();
            let base = indent(m.body.first()?);
            let line = m.body.iter().find(|l| !token_at(l, p).is_empty())?;
            // Only straight-line code at the method's own level proves an order.
            let at = token_at(line, p);
            if indent(line) != base || at.len() != 1 {
                return None;
            }
            let (recv, name, index) = enclosing_call(line, at[0], p)?;
            let (next, sub) = self.receiver(&class, m, recv)?;
            class = next;
            path.extend(sub);
            method = name.to_string();
            param = index + 1;
        }
        None
    }

    /// The layer whose output the root module's `forward` returns, when the code proves it.
    pub fn output_layer(&self, root: &str) -> Option<CodeLayer> {
        let mut class = root.to_string();
        let mut method = "forward".to_string();
        let mut path: Vec<String> = Vec::new();
        for _ in 0..MAX_HOPS {
            if let Some(layer) = self.layer(&class, &path) {
                return Some(layer);
            }
            let m = self.classes.get(&class)?.methods.get(method.as_str())?;
            let base = indent(m.body.first()?);
            let (pos, ret) = m
                .body
                .iter()
                .enumerate()
                .rev()
                .find_map(|(i, l)| l.trim().strip_prefix("return ").map(|r| (i, r)))?;
            if indent(m.body[pos]) != base {
                return None;
            }
            let mut expr = ret.trim();
            if is_ident(expr) {
                // `_5 = (fc).forward(x, )` then `return _5`: the only assignment, at this level.
                let prefix = format!("{expr} = ");
                let mut assigned = m.body[..pos]
                    .iter()
                    .filter(|l| l.trim_start().starts_with(&prefix));
                let a = assigned.next()?;
                if assigned.next().is_some() || indent(a) != base {
                    return None;
                }
                expr = &a.trim_start()[prefix.len()..];
            }
            let (recv, name, _) = whole_call(expr)?;
            let (next, sub) = self.receiver(&class, m, recv)?;
            class = next;
            path.extend(sub);
            method = name.to_string();
        }
        None
    }

    /// `class` as a Conv2d or Linear layer at `path`, when it is one.
    fn layer(&self, class: &str, path: &[String]) -> Option<CodeLayer> {
        let kind = match python_name(class)?.as_str() {
            "torch.nn.modules.conv.Conv2d" => LayerKind::Conv2d,
            "torch.nn.modules.linear.Linear" => LayerKind::Linear,
            _ => return None,
        };
        let c = self.classes.get(class);
        let final_int = |n: &str| c?.finals.get(n)?.parse::<u64>().ok();
        let groups = final_int("groups").or_else(|| c.and_then(traced_groups));
        Some(CodeLayer {
            path: path.join("."),
            kind,
            groups: if kind == LayerKind::Conv2d {
                groups
            } else {
                None
            },
            in_channels: final_int("in_channels"),
        })
    }

    /// The class a call receiver names and the module path to it from `class`: `self`,
    /// `self.a`, or a name bound in `m` by `x = self.a`, `x = getattr(y, "0")`, `x = y.a`.
    fn receiver(&self, class: &str, m: &Method<'_>, recv: &str) -> Option<(String, Vec<String>)> {
        let mut binds: HashMap<&str, Vec<String>> = HashMap::new();
        binds.insert("self", Vec::new());
        for l in &m.body {
            let Some((name, value)) = l.trim().split_once(" = ") else {
                continue;
            };
            if !is_ident(name) {
                continue;
            }
            let target = attribute_path(value, &binds);
            match target {
                Some(p) => {
                    binds.insert(name, p);
                }
                None => {
                    binds.remove(name);
                }
            }
        }
        let path = if let Some(p) = binds.get(recv) {
            p.clone()
        } else {
            attribute_path(recv, &binds)?
        };
        let mut c = class.to_string();
        for seg in &path {
            c = self.classes.get(&c)?.attrs.get(seg.as_str())?.to_string();
        }
        Some((c, path))
    }
}

/// `self.a`, `y.a`, `getattr(y, "0")` with `y` bound: the attribute path it names.
fn attribute_path(value: &str, binds: &HashMap<&str, Vec<String>>) -> Option<Vec<String>> {
    let value = value.trim();
    let (base, attr) = if let Some(args) = value
        .strip_prefix("getattr(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let (b, a) = args.split_once(',')?;
        let a = a.trim();
        (b.trim(), a.strip_prefix('"')?.strip_suffix('"')?)
    } else {
        let (b, a) = value.rsplit_once('.')?;
        if !is_ident(a) {
            return None;
        }
        (b, a)
    };
    if attr.is_empty() || !attr.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return None;
    }
    let mut p = binds.get(base)?.clone();
    p.push(attr.to_string());
    Some(p)
}

/// The call whose argument list holds the token at `at`: `(RECV).METHOD(..., token, ...)`,
/// with the token's argument index; `None` unless the token is a whole argument.
fn enclosing_call<'l>(line: &'l str, at: usize, token: &str) -> Option<(&'l str, &'l str, usize)> {
    let blank = blank_strings(line);
    let b = blank.as_bytes();
    let mut depth = 0i32;
    let mut open = None;
    for i in (0..at).rev() {
        match b[i] {
            b')' | b']' => depth += 1,
            b'(' | b'[' if depth > 0 => depth -= 1,
            b'(' => {
                open = Some(i);
                break;
            }
            b'[' => return None,
            _ => {}
        }
    }
    let open = open?;
    let close = closing(line, open)?;
    let args = split_top(&line[open + 1..close]);
    let index = args.iter().position(|a| *a == token)?;
    let dot = blank[..open].rfind('.')?;
    let head = &line[..open];
    let method = &head[dot + 1..];
    let recv_close = dot.checked_sub(1)?;
    if !is_ident(method) || b[recv_close] != b')' {
        return None;
    }
    let recv_open = opening(line, recv_close)?;
    Some((line[recv_open + 1..recv_close].trim(), method, index))
}

/// `groups` of a traced convolution: argument 9 of the `torch._convolution(...)` its forward
/// calls.
fn traced_groups(c: &Class<'_>) -> Option<u64> {
    let body = &c.methods.get("forward")?.body;
    body.iter().find_map(|l| {
        let k = blank_strings(l).find("torch._convolution(")?;
        let open = k + "torch._convolution".len();
        let close = closing(l, open)?;
        split_top(&l[open + 1..close]).get(8)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESNET: &str = r#"class ResNet(Module):
  __parameters__ = []
  training : bool
  conv1 : __torch__.torch.nn.modules.conv.Conv2d
  bn1 : __torch__.torch.nn.modules.batchnorm.BatchNorm2d
  layer1 : __torch__.torch.nn.modules.container.Sequential
  fc : __torch__.torch.nn.modules.linear.Linear
  def forward(self: __torch__.torchvision.models.resnet.ResNet,
    x: Tensor) -> Tensor:
    fc = self.fc
    layer1 = self.layer1
    bn1 = self.bn1
    conv1 = self.conv1
    _0 = (bn1).forward((conv1).forward(x, ), )
    input = torch.flatten((layer1).forward(_0, ), 1)
    return (fc).forward(input, )
"#;
    const CONV: &str = r#"class Conv2d(Module):
  __parameters__ = ["weight", ]
  weight : Tensor
  def forward(self: __torch__.torch.nn.modules.conv.Conv2d,
    x: Tensor) -> Tensor:
    weight = self.weight
    input = torch._convolution(x, weight, None, [2, 2], [3, 3], [1, 1], False, [0, 0], 1, False, False, True, True)
    return input
"#;
    const LINEAR: &str = "class Linear(Module):\n  weight : Tensor\n  def forward(self: __torch__.torch.nn.modules.linear.Linear,\n    input: Tensor) -> Tensor:\n    weight = self.weight\n    return torch.linear(input, weight, None)\n";

    fn code(files: &[(&'static str, &'static str)]) -> ScriptCode<'static> {
        ScriptCode::parse(files.iter().copied())
    }

    #[test]
    fn a_traced_resnet_proves_its_first_convolution_and_its_head() {
        let c = code(&[
            ("code/__torch__/torchvision/models/resnet.py", RESNET),
            ("code/__torch__/torch/nn/modules/conv.py", CONV),
            ("code/__torch__/torch/nn/modules/linear.py", LINEAR),
        ]);
        let root = "__torch__.torchvision.models.resnet.ResNet";
        let first = c.input_layer(root).expect("conv1");
        assert_eq!(
            (first.path.as_str(), first.kind, first.groups),
            ("conv1", LayerKind::Conv2d, Some(1))
        );
        let last = c.output_layer(root).expect("fc");
        assert_eq!((last.path.as_str(), last.kind), ("fc", LayerKind::Linear));
    }

    #[test]
    fn scripted_code_through_methods_containers_and_wrappers() {
        let root = r#"class Net(Module):
  stem : __torch__.torch.nn.modules.container.___torch_mangle_6.Sequential
  head : __torch__.Wrap
  def forward(self: __torch__.Net,
    x: Tensor) -> Tensor:
    x0 = (self).forward_features(x, )
    return (self.head).forward(x0, )
  def forward_features(self: __torch__.Net,
    x: Tensor) -> Tensor:
    stem = self.stem
    x1 = (stem).forward(x, )
    return x1
class Wrap(Module):
  act : __torch__.torch.nn.modules.activation.SiLU
  lin : __torch__.torch.nn.modules.linear.Linear
  def forward(self: __torch__.Wrap,
    argument_1: __torch__.torch.nn.modules.activation.SiLU,
    x: Tensor) -> Tensor:
    lin = self.lin
    _0 = (lin).forward(x, )
    return _0
"#;
        let seq = r#"class Sequential(Module):
  __annotations__["0"] = __torch__.torch.nn.modules.conv.___torch_mangle_5.Conv2d
  def forward(self: __torch__.torch.nn.modules.container.___torch_mangle_6.Sequential,
    input: Tensor) -> Tensor:
    _0 = getattr(self, "0")
    return (_0).forward(input, )
"#;
        let conv = r#"class Conv2d(Module):
  groups : Final[int] = 1
  in_channels : Final[int] = 3
  def forward(self: __torch__.torch.nn.modules.conv.___torch_mangle_5.Conv2d,
    input: Tensor) -> Tensor:
    return (self)._conv_forward(input, self.weight, self.bias, )
"#;
        let c = ScriptCode::parse([
            ("code/__torch__.py", root),
            (
                "code/__torch__/torch/nn/modules/container/___torch_mangle_6.py",
                seq,
            ),
            (
                "code/__torch__/torch/nn/modules/conv/___torch_mangle_5.py",
                conv,
            ),
            ("code/__torch__/torch/nn/modules/linear.py", LINEAR),
        ]);
        let first = c.input_layer("__torch__.Net").expect("stem.0");
        assert_eq!(
            (first.path.as_str(), first.in_channels),
            ("stem.0", Some(3))
        );
        // The head is a Linear inside a wrapper whose forward takes a module first.
        let last = c.output_layer("__torch__.Net").expect("head.lin");
        assert_eq!(last.path, "head.lin");
    }

    /// What torch 2.11's `torch.jit.script` printed for a module whose stem takes a string before
    /// the image (`self.stem("a)(,\"", x)`), whose forward has a default `'"(,'` and whose stem
    /// raises with `"tag \"(\" or ')'"`: the quotes, escapes, brackets and commas inside those
    /// literals are text. (Before literals were skipped, neither layer nor the signature was
    /// found in this file.)
    const STRINGS_NET: &str = r#"class Net(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  _is_full_backward_hook : Optional[bool]
  stem : __torch__.Stem
  fc : __torch__.torch.nn.modules.linear.Linear
  def forward(self: __torch__.Net,
    x: Tensor,
    sep: str="\"(,") -> Tensor:
    _0 = __torch__.torch.nn.functional.adaptive_avg_pool2d
    stem = self.stem
    y = (stem).forward("a)(,\"", x, )
    y0 = torch.flatten(_0(y, [1, 1], ), 1)
    fc = self.fc
    return (fc).forward(y0, )
class Stem(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  _is_full_backward_hook : Optional[bool]
  conv : __torch__.torch.nn.modules.conv.Conv2d
  def forward(self: __torch__.Stem,
    tag: str,
    x: Tensor) -> Tensor:
    if torch.eq(tag, ")"):
      _1 = torch.add("tag \"(\" or \')\', not ", tag)
      ops.prim.RaiseException(_1, "builtins.ValueError")
    else:
      pass
    conv = self.conv
    return (conv).forward(x, )
"#;
    const SCRIPTED_CONV: &str = r#"class Conv2d(Module):
  __parameters__ = ["weight", "bias", ]
  weight : Tensor
  bias : Optional[Tensor]
  in_channels : Final[int] = 3
  padding_mode : Final[str] = "zeros"
  groups : Final[int] = 1
  def forward(self: __torch__.torch.nn.modules.conv.Conv2d,
    input: Tensor) -> Tensor:
    weight = self.weight
    bias = self.bias
    _0 = (self)._conv_forward(input, weight, bias, )
    return _0
"#;

    #[test]
    fn real_scripted_code_with_brackets_in_its_strings() {
        let c = code(&[
            ("code/__torch__.py", STRINGS_NET),
            ("code/__torch__/torch/nn/modules/conv.py", SCRIPTED_CONV),
            ("code/__torch__/torch/nn/modules/linear.py", LINEAR),
        ]);
        let first = c.input_layer("__torch__.Net").expect("stem.conv");
        assert_eq!(
            (
                first.path.as_str(),
                first.kind,
                first.groups,
                first.in_channels
            ),
            ("stem.conv", LayerKind::Conv2d, Some(1), Some(3))
        );
        let last = c.output_layer("__torch__.Net").expect("fc");
        assert_eq!((last.path.as_str(), last.kind), ("fc", LayerKind::Linear));
        let sig = super::super::signature::parse(STRINGS_NET, "__torch__", "Net").expect("forward");
        assert_eq!(
            sig.display(),
            r#"forward(x: Tensor, sep: str="\"(,") -> Tensor"#
        );
        assert!(super::super::signature::check(&sig, "model.pt").is_none());
    }

    #[test]
    fn brackets_and_commas_inside_strings_are_text() {
        assert_eq!(
            split_top(r#"x, "a(b,", 'c,d)', [1, 2]"#),
            vec!["x", r#""a(b,""#, "'c,d)'", "[1, 2]"]
        );
        assert_eq!(split_top(r#""\"(,", y"#), vec![r#""\"(,""#, "y"]);
        let line = r#"_0 = (conv).forward("a)", x, ")(", )"#;
        let open = line.find('(').unwrap();
        assert_eq!(closing(line, open), Some(open + 5));
        let call = line.find(".forward(").unwrap() + ".forward".len();
        assert_eq!(closing(line, call), Some(line.len() - 1));
        assert_eq!(opening(line, open + 5), Some(open));
        let at = token_at(line, "x");
        assert_eq!(at.len(), 1, "an x inside a literal is not the parameter");
        assert_eq!(
            enclosing_call(line, at[0], "x"),
            Some(("conv", "forward", 1))
        );
        assert_eq!(
            params(r#"def forward(self: __torch__.M, x: Tensor, sep: str="(,") -> Tensor:"#),
            Some(("forward", vec!["self", "x", "sep"]))
        );
    }

    /// Adversarial text: every reader returns (no panic, no index out of bounds, no slice off
    /// a character boundary) on random mixes of brackets, quotes, escapes, commas, newlines and
    /// multi-byte characters, and what it returns is consistent. Deterministic (xorshift).
    #[test]
    fn random_code_never_panics() {
        const ALPHABET: &[&str] = &[
            "(",
            ")",
            "[",
            "]",
            "{",
            "}",
            ",",
            "\"",
            "'",
            "'''",
            "\\",
            ":",
            "=",
            " ",
            "\n",
            "  ",
            "x",
            "self",
            ".",
            "forward",
            "def ",
            "class ",
            "return ",
            "getattr(",
            "é",
            "→",
            "_0",
            " = ",
            "(conv).forward(x, )",
            "torch._convolution(",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let n = (next() % 60) as usize;
            let mut s = String::new();
            for _ in 0..n {
                s.push_str(ALPHABET[(next() % ALPHABET.len() as u64) as usize]);
            }
            let blank = blank_strings(&s);
            assert_eq!(blank.len(), s.len(), "{s:?}");
            for part in split_top(&s) {
                assert!(s.contains(part), "{s:?}");
            }
            // Brackets of the code (not inside a literal) pair up both ways.
            for (i, _) in blank.match_indices('(') {
                if let Some(c) = closing(&s, i) {
                    assert_eq!(s.as_bytes()[c], b')', "{s:?}");
                    assert_eq!(opening(&s, c), Some(i), "{s:?}");
                }
            }
            let at = token_at(&s, "x");
            for &i in &at {
                let _ = enclosing_call(&s, i, "x");
            }
            let _ = whole_call(&s);
            let _ = params(&s);
            let module = format!("class Net(Module):\n  conv : __torch__.torch.nn.modules.conv.Conv2d\n  def forward(self: __torch__.Net,\n    x: Tensor) -> Tensor:\n    {s}\n    return {s}\n");
            let c = ScriptCode::parse([
                ("code/__torch__.py", module.as_str()),
                ("code/__torch__/torch/nn/modules/conv.py", CONV),
                ("code/__torch__/x.py", s.as_str()),
            ]);
            let _ = c.input_layer("__torch__.Net");
            let _ = c.output_layer("__torch__.Net");
            let _ = super::super::signature::parse(&module, "__torch__", "Net");
            let _ = super::super::signature::parse(&s, "__torch__", "Net");
        }
    }

    #[test]
    fn what_the_code_does_not_prove_is_not_found() {
        // The input is permuted before the first layer; the output is a concatenation.
        let root = r#"class Net(Module):
  conv : __torch__.torch.nn.modules.conv.Conv2d
  def forward(self: __torch__.Net,
    x: Tensor) -> Tensor:
    conv = self.conv
    x0 = torch.permute(x, [0, 3, 1, 2])
    _0 = (conv).forward(x0, )
    return torch.cat([_0, _0], 1)
"#;
        let c = ScriptCode::parse([
            ("code/__torch__.py", root),
            ("code/__torch__/torch/nn/modules/conv.py", CONV),
        ]);
        assert!(c.input_layer("__torch__.Net").is_none());
        assert!(c.output_layer("__torch__.Net").is_none());
        // A branch decides the output: not proven either.
        let branchy = r#"class Net(Module):
  fc : __torch__.torch.nn.modules.linear.Linear
  def forward(self: __torch__.Net,
    x: Tensor) -> Tensor:
    if flag:
      _0 = (self.fc).forward(x, )
    else:
      _0 = x
    return _0
"#;
        let c = ScriptCode::parse([
            ("code/__torch__.py", branchy),
            ("code/__torch__/torch/nn/modules/linear.py", LINEAR),
        ]);
        assert!(c.output_layer("__torch__.Net").is_none());
        assert!(c.input_layer("__torch__.Net").is_none());
    }
}
