//! The operators a TorchScript file calls, read from its code, and whether the server provides
//! them.
//!
//! Why: libtorch resolves every operator when `torch.jit.load` compiles the file's code, so a
//! model calling an operator the server's process lacks (`my_ext::fused_nms` from a C++
//! extension, or `torchvision::nms` without torchvision's library) cannot even be loaded. The
//! file proves which operators it calls: `torch.jit.save` prints each non-`aten` operator as
//! `ops.<namespace>.<name>(...)` and each `aten` one as `torch.<name>(...)` in its `code/`
//! records, and names custom classes (`__torch__.torch.classes.<namespace>.<Class>`) in that
//! code and in the pickles (`data.pkl`, `constants.pkl`). One scan reads both; the namespaces
//! are checked against [`crate::operators::OperatorNamespaces`], the server's setting.

use std::collections::{BTreeMap, BTreeSet};

use crate::diagnostics::Issue;
use crate::operators::OperatorNamespaces;
use crate::torch::code_tokens::{self, Token};
use crate::torch::rules;

/// What the code and the pickles call, each `namespace::name`, sorted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Calls {
    pub operators: BTreeSet<String>,
    pub classes: BTreeSet<String>,
}

/// The namespace of `ns::name`.
pub fn namespace(qualified: &str) -> &str {
    qualified.split("::").next().unwrap_or(qualified)
}

/// Operators and custom classes named in TorchScript `code` (all `code/**.py` records) and in
/// the pickle `globals` (module, name). String literals are skipped, so an error message that
/// mentions `ops.x.y` is not a call.
pub fn scan(code: &str, globals: &[(String, String)]) -> Calls {
    let mut calls = Calls::default();
    let mut toks = code_tokens::tokens(code).peekable();
    while let Some(t) = toks.next() {
        // A free dotted name (not an attribute of some value), called when `(` follows.
        if let Token::Name {
            text,
            member: false,
        } = t
        {
            let called = matches!(toks.peek(), Some(Token::Open(b'(')));
            classify(text, called, &mut calls);
        }
    }
    for (module, name) in globals {
        if let Some(ns) = module.strip_prefix("__torch__.torch.classes.") {
            if crate::operators::is_identifier(ns) {
                calls.classes.insert(format!("{ns}::{name}"));
            }
        }
    }
    calls
}

fn classify(name: &str, called: bool, calls: &mut Calls) {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        ["ops", ns, op, ..] => {
            calls.operators.insert(format!("{ns}::{op}"));
        }
        ["torch", "ops", ns, op, ..] => {
            calls.operators.insert(format!("{ns}::{op}"));
        }
        ["torch", op] if called => {
            calls.operators.insert(format!("aten::{op}"));
        }
        ["__torch__", "torch", "classes", ns, class, ..] => {
            calls.classes.insert(format!("{ns}::{class}"));
        }
        _ => {}
    }
}

/// BYOM630 for every namespace of `calls` the server does not provide, one issue per namespace
/// naming its operators (at most five, then a count).
pub fn check(calls: &Calls, provided: &OperatorNamespaces, file: &str) -> Vec<Issue> {
    let mut missing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for op in &calls.operators {
        if !provided.provides(namespace(op)) {
            missing.entry(namespace(op)).or_default().push(op.clone());
        }
    }
    for class in &calls.classes {
        if !provided.provides(namespace(class)) {
            missing
                .entry(namespace(class))
                .or_default()
                .push(format!("class {class}"));
        }
    }
    missing
        .into_iter()
        .map(|(ns, names)| {
            let mut listed = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            if names.len() > 5 {
                listed.push_str(&format!(" and {} more", names.len() - 5));
            }
            rules::UNKNOWN_OPERATOR.issue(
                Some(file),
                format!(
                    "the model calls {listed}: operator namespace {ns:?} is not one the server provides \
                     (a custom C++ extension or a torch.library registration of your own Python process; \
                     the server runs {}), so the model cannot even be loaded there",
                    summary(provided)
                ),
            )
        })
        .collect()
}

/// "aten, prim, torchvision and 20 more namespaces" (the whole list is in the settings).
fn summary(provided: &OperatorNamespaces) -> String {
    let shown: Vec<&str> = ["aten", "prim", "quantized", "torchvision"]
        .into_iter()
        .filter(|n| provided.provides(n))
        .collect();
    let more = provided.as_slice().len() - shown.len();
    if more == 0 {
        shown.join(", ")
    } else {
        format!(
            "{} and {more} more built-in namespaces (operator_namespaces in the server's settings)",
            shown.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Code as torch 2.11's `torch.jit.save` prints it (from a scripted torchvision SSD and a
    // model calling a torch.library op).
    const CODE: &str = r#"
  def postprocess_detections(self: __torch__.torchvision.models.detection.ssd.SSD,
    head_outputs: Dict[str, Tensor]) -> List[Dict[str, Tensor]]:
    _0 = "ops.fake.inside_a_string(x)"
    _4 = __torch__.torchvision.ops.boxes.box_iou
    keep = ops.torchvision.nms(boxes, scores, 0.5)
    n = torch.len(keep)
    y = torch.conv2d(x, w)
    ops.prim.RaiseException(_0)
    _packed_params : __torch__.torch.classes.quantized.LinearPackedParamsBase
    return ops.byomtest.scale(x)
"#;

    #[test]
    fn scans_operators_and_classes_not_strings_or_qualified_names() {
        let globals = vec![(
            "__torch__.torch.classes.my_ext".to_string(),
            "Packed".to_string(),
        )];
        let calls = scan(CODE, &globals);
        assert_eq!(
            calls
                .operators
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            [
                "aten::conv2d",
                "aten::len",
                "byomtest::scale",
                "prim::RaiseException",
                "torchvision::nms"
            ]
        );
        assert_eq!(
            calls.classes.iter().map(String::as_str).collect::<Vec<_>>(),
            ["my_ext::Packed", "quantized::LinearPackedParamsBase"]
        );
    }

    #[test]
    fn unknown_namespaces_are_errors_naming_the_operators() {
        let calls = scan(CODE, &[]);
        let issues = check(&calls, &OperatorNamespaces::default(), "model.pt");
        assert_eq!(issues.len(), 1, "{issues:?}");
        let m = &issues[0].message;
        assert_eq!(issues[0].code, rules::UNKNOWN_OPERATOR.code);
        assert!(
            m.contains("byomtest::scale") && m.contains("\"byomtest\""),
            "{m}"
        );
        // Without torchvision in the list, its operator is refused too.
        let narrow =
            OperatorNamespaces::new(vec!["aten".into(), "prim".into(), "quantized".into()])
                .unwrap();
        let issues = check(&calls, &narrow, "model.pt");
        let namespaces: Vec<_> = issues.iter().map(|i| i.message.clone()).collect();
        assert_eq!(issues.len(), 2, "{namespaces:?}");
        assert!(namespaces[1].contains("torchvision::nms"), "{namespaces:?}");
    }

    #[test]
    fn unterminated_strings_and_odd_bytes_end_cleanly() {
        for code in [
            "\"abc",
            "'''x",
            "ops.",
            "ops.a",
            "torch.",
            ".ops.a.b(",
            "\\",
        ] {
            let _ = scan(code, &[]);
        }
        assert!(scan("x.ops.a.b(1)", &[]).operators.is_empty());
    }
}
