//! The classifier head: which layer's outputs are the classes, read from the `.pt`'s tensor
//! inventory, and whether the declared class count contradicts it.
//!
//! Why one module: `byom validate` (through [`super::cross_check`]) and `byom pack` must judge
//! the same file the same way — a package `pack` writes must never fail validation, and a
//! package that validates clean must not fail at compile because its head has another width.
//!
//! How sure the file makes us:
//! - a recognised state dict: the architecture table names the head, and the server builds
//!   that architecture with the classifier the weights give, so the model it deploys has
//!   exactly that many outputs: BYOM620, an error;
//! - TorchScript whose code returns a `Linear`'s output straight from the root `forward`
//!   ([`super::PtInspection::output_layer`], read by [`super::script_code`]): that layer's
//!   width is the output's: BYOM620;
//! - TorchScript whose last weight (rank ≥ 2, in the root module's registration order) belongs
//!   to a head-named child of the root (`fc`, `classifier`, `classifier.N`, `head`,
//!   `heads.head`, `last_linear`) and is a Linear (`[out, in]`) or a 1×1 convolution
//!   (`[out, in, 1, 1]`): the traced graph computes its outputs with exactly that layer, so a
//!   different class count is proven wrong: BYOM620, an error;
//! - anything else (an unknown state dict, TorchScript whose last weight is not a head, an
//!   inventory cut short by `max_tensors`): the last 2-D weight is only a guess: BYOM612.

use super::{rules, PtInspection, PtKind, TensorInfo};
use crate::diagnostics::Issue;

/// How the head was found, from the most certain to the least.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// TorchScript: the root `forward`'s code returns this Linear's output.
    TorchScriptCode,
    /// TorchScript: the file's last weight is a head-named child of the root module.
    TorchScriptHead,
    /// A state dict laid out as a recognised architecture (named in the message).
    Architecture,
    /// The last 2-D weight of a file whose architecture is not recognised.
    Guess,
}

/// The layer whose output features are the model's classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `fc.weight`; for [`Evidence::Architecture`] the architecture's name (`resnet18`).
    pub tensor: String,
    /// `[out, in]` or `[out, in, 1, 1]`; empty for [`Evidence::Architecture`].
    pub shape: Vec<u64>,
    /// Output features: the class count the file proves (or suggests).
    pub outputs: u64,
    pub evidence: Evidence,
}

impl Head {
    /// The file itself proves the head's width: a different class count is an error.
    pub fn proven(&self) -> bool {
        self.evidence != Evidence::Guess
    }
}

/// Module paths that name a classifier head at the root (torchvision, timm, pretrainedmodels).
fn is_head_module(path: &str) -> bool {
    match path {
        "fc" | "classifier" | "head" | "heads.head" | "last_linear" | "head.fc" => true,
        _ => path
            .strip_prefix("classifier.")
            .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit())),
    }
}

/// A Linear weight `[out, in]`, or a 1×1 convolution `[out, in, 1, 1]` (squeezenet's head).
fn head_shaped(t: &TensorInfo) -> bool {
    match t.shape.as_slice() {
        [o, i] => *o > 0 && *i > 0,
        [o, i, 1, 1] => *o > 0 && *i > 0,
        _ => false,
    }
}

/// The head, when the inventory shows one.
pub fn find(insp: &PtInspection) -> Option<Head> {
    match insp.kind {
        PtKind::StateDict | PtKind::Checkpoint | PtKind::Legacy => {
            if let Some(a) = &insp.arch {
                return Some(Head {
                    tensor: a.name.clone(),
                    shape: Vec::new(),
                    outputs: a.num_classes,
                    evidence: Evidence::Architecture,
                });
            }
            last_linear(insp)
        }
        PtKind::TorchscriptTraced | PtKind::TorchscriptScripted => {
            if let Some(l) = insp
                .output_layer
                .as_ref()
                .filter(|l| l.kind == super::script_code::LayerKind::Linear)
            {
                return Some(Head {
                    tensor: format!("{}.weight", l.path),
                    shape: l.weight.clone(),
                    outputs: l.outputs,
                    evidence: Evidence::TorchScriptCode,
                });
            }
            // Only a complete inventory can show which weight is last.
            let complete = insp.tensor_count == insp.tensors.len() as u64;
            let last = insp
                .tensors
                .iter()
                .rev()
                .find(|t| t.shape.len() >= 2 && t.name.ends_with(".weight"));
            if let Some(t) = last.filter(|t| {
                complete
                    && head_shaped(t)
                    && t.name.strip_suffix(".weight").is_some_and(is_head_module)
            }) {
                return Some(Head {
                    tensor: t.name.clone(),
                    shape: t.shape.clone(),
                    outputs: t.shape[0],
                    evidence: Evidence::TorchScriptHead,
                });
            }
            last_linear(insp)
        }
        PtKind::PickledModule | PtKind::NotPytorch => None,
    }
}

fn last_linear(insp: &PtInspection) -> Option<Head> {
    let t = insp
        .tensors
        .iter()
        .rev()
        .find(|t| t.shape.len() == 2 && t.name.ends_with("weight"))?;
    Some(Head {
        tensor: t.name.clone(),
        shape: t.shape.clone(),
        outputs: t.shape[0],
        evidence: Evidence::Guess,
    })
}

/// The declared class count against the head: BYOM620 (error) when the file proves the head's
/// width, BYOM612 (warning, saying why it is only likely) otherwise; `None` when they agree or
/// nothing is known.
pub fn check(insp: &PtInspection, file: &str, num_classes: Option<u64>) -> Option<Issue> {
    let n = num_classes?;
    let head = find(insp)?;
    if head.outputs == n {
        return None;
    }
    let c = head.outputs;
    let fix = format!(
        "Declare the {c} classes the model was trained with (num_classes and class_names in config.yaml and mochi.json; `byom pack --classes` with {c} names), or replace the head with {n} outputs, retrain and re-export."
    );
    Some(match head.evidence {
        Evidence::TorchScriptHead | Evidence::TorchScriptCode => rules::CLASSIFIER_CONTRADICTS.issue_with_hint(
            Some(file),
            format!(
                "{n} classes are declared, but the TorchScript model's classifier head {} {:?} has {c} outputs{}: it can only ever predict {c} classes",
                head.tensor,
                head.shape,
                if head.evidence == Evidence::TorchScriptCode { " (its forward returns that layer's output)" } else { "" }
            ),
            fix,
        ),
        Evidence::Architecture => rules::CLASSIFIER_CONTRADICTS.issue_with_hint(
            Some(file),
            format!(
                "{n} classes are declared, but this {} state dict's classifier has {c} outputs: the server builds it with {c} classes, so it can only ever predict {c}",
                insp.architecture.as_deref().unwrap_or(&head.tensor)
            ),
            fix,
        ),
        Evidence::Guess => rules::CLASSIFIER.issue(
            Some(file),
            format!(
                "num_classes is {n}, but the last linear layer {:?} has {c} outputs (a guess: {})",
                head.tensor,
                if matches!(
                    insp.kind,
                    PtKind::TorchscriptTraced | PtKind::TorchscriptScripted
                ) {
                    "the file's last weight is not a classifier head byom knows by name"
                } else {
                    "the architecture is not recognised"
                }
            ),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, shape: &[u64]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            shape: shape.to_vec(),
            dtype: "float32".into(),
            ..TensorInfo::default()
        }
    }

    fn traced(tensors: Vec<TensorInfo>) -> PtInspection {
        let mut i = PtInspection::empty(PtKind::TorchscriptTraced, 0);
        i.tensor_count = tensors.len() as u64;
        i.tensors = tensors;
        i
    }

    #[test]
    fn a_traced_head_is_proven_and_a_contradiction_is_an_error() {
        let insp = traced(vec![
            t("conv1.weight", &[64, 3, 7, 7]),
            t("fc.weight", &[2, 512]),
            t("fc.bias", &[2]),
        ]);
        assert!(check(&insp, "m.pt", Some(2)).is_none());
        let i = check(&insp, "m.pt", Some(3)).expect("contradiction");
        assert_eq!(i.code, "BYOM620");
        assert_eq!(i.severity, crate::diagnostics::Severity::Error);
        assert!(
            i.message.contains("fc.weight [2, 512] has 2 outputs"),
            "{}",
            i.message
        );
        assert!(
            i.message.starts_with("3 classes are declared"),
            "{}",
            i.message
        );
    }

    #[test]
    fn numbered_classifiers_and_1x1_conv_heads_are_heads() {
        for (name, shape) in [
            ("classifier.1.weight", &[4u64, 1280][..]),
            ("classifier.1.weight", &[4, 512, 1, 1]),
            ("heads.head.weight", &[4, 768]),
        ] {
            let insp = traced(vec![t("features.0.weight", &[8, 3, 3, 3]), t(name, shape)]);
            assert_eq!(
                check(&insp, "m.pt", Some(3)).unwrap().code,
                "BYOM620",
                "{name}"
            );
        }
    }

    #[test]
    fn a_linear_the_code_returns_is_proven_whatever_its_name() {
        let mut insp = traced(vec![
            t("out.weight", &[1000, 8]),
            t("conv.weight", &[8, 3, 3, 3]),
        ]);
        insp.output_layer = Some(super::super::ProvenLayer {
            path: "out".into(),
            kind: super::super::script_code::LayerKind::Linear,
            weight: vec![1000, 8],
            in_channels: 8,
            outputs: 1000,
        });
        let i = check(&insp, "m.pt", Some(3)).unwrap();
        assert_eq!(i.code, "BYOM620");
        assert!(
            i.message.contains("out.weight [1000, 8] has 1000 outputs"),
            "{}",
            i.message
        );
    }

    #[test]
    fn a_recognised_state_dict_proves_its_head() {
        let mut insp = PtInspection::empty(PtKind::StateDict, 0);
        insp.architecture = Some("torchvision/resnet18".into());
        insp.arch = Some(crate::torch::ArchMatch {
            zoo: crate::torch::arch::Zoo::Torchvision,
            name: "resnet18".into(),
            num_classes: 1000,
            in_channels: 3,
            server_compilable: true,
            builder_kwargs: Default::default(),
        });
        let i = check(&insp, "m.pt", Some(2)).unwrap();
        assert_eq!(
            (i.code.as_str(), i.severity),
            ("BYOM620", crate::diagnostics::Severity::Error)
        );
        assert!(i.message.contains("resnet18 state dict"), "{}", i.message);
    }

    #[test]
    fn what_is_only_likely_is_a_warning() {
        // The last weight is not a head by name: the last Linear is only a guess.
        let insp = traced(vec![
            t("out.weight", &[5, 4]),
            t("conv.weight", &[4, 3, 3, 3]),
        ]);
        let i = check(&insp, "m.pt", Some(3)).unwrap();
        assert_eq!(
            (i.code.as_str(), i.severity),
            ("BYOM612", crate::diagnostics::Severity::Warning)
        );
        assert!(i.message.contains("a guess"), "{}", i.message);
        // An inventory cut short by max_tensors cannot show which weight is last.
        let mut insp = traced(vec![t("fc.weight", &[2, 512])]);
        insp.tensor_count = 5000;
        assert_eq!(check(&insp, "m.pt", Some(3)).unwrap().code, "BYOM612");
        // A head-named 3x3 convolution is not a classifier's shape.
        let insp = traced(vec![t("head.weight", &[2, 16, 3, 3])]);
        assert!(check(&insp, "m.pt", Some(3)).is_none());
    }
}
