//! The input's channel axis against the model's first convolution.
//!
//! How sure the file makes us:
//! - a recognised state dict: the server builds that architecture itself, with the first
//!   convolution the weights give, so a declared input with other channels can never run:
//!   BYOM621, an error;
//! - TorchScript whose code proves which convolution its `forward` feeds the input to
//!   ([`super::PtInspection::input_layer`]): the same, an error;
//! - an unrecognised state dict: the first 4-D weight is only a guess: BYOM611, a warning.
//!   TorchScript whose code proves nothing gets no channel check (its first stored weight need
//!   not be the first layer run).
//!
//! The common mistake is channels last, `[1, 224, 224, 3]`: the message says so and gives the
//! shape to write, `[1, 3, 224, 224]`. The warnings that follow from the same wrong axis (an
//! unusual channel count, a resize or normalisation that does not fit it) are then left out
//! of the report by the validator ([`crate::rules::cross_file::follows_from_channels`]).

use super::script_code::LayerKind;
use super::{rules, PtInspection, PtKind};
use crate::diagnostics::Issue;

/// The convolution the input enters, and how sure that is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstConv {
    /// How the message names it: `conv1.weight [64, 3, 7, 7]`, `the first convolution of resnet18`.
    pub what: String,
    pub in_channels: u64,
    /// The file proves it: a contradiction is an error.
    pub proven: bool,
}

/// The first convolution, when the file shows one.
pub fn find(insp: &PtInspection) -> Option<FirstConv> {
    match insp.kind {
        PtKind::StateDict | PtKind::Checkpoint | PtKind::Legacy => {
            if let Some(a) = &insp.arch {
                let name = insp.architecture.clone().unwrap_or_else(|| a.name.clone());
                return Some(FirstConv {
                    what: format!("the first convolution of {name}"),
                    in_channels: a.in_channels,
                    proven: true,
                });
            }
            insp.tensors
                .iter()
                .find(|t| t.shape.len() == 4 && t.name.ends_with("weight"))
                .map(|t| FirstConv {
                    what: format!("the first convolution {:?}", t.name),
                    in_channels: t.shape[1],
                    proven: false,
                })
        }
        PtKind::TorchscriptTraced | PtKind::TorchscriptScripted => {
            // A Linear first takes features on the last axis: not a channel check.
            let l = insp
                .input_layer
                .as_ref()
                .filter(|l| l.kind == LayerKind::Conv2d)?;
            Some(FirstConv {
                what: format!(
                    "the first convolution its forward runs, {}.weight {:?},",
                    l.path, l.weight
                ),
                in_channels: l.in_channels,
                proven: true,
            })
        }
        PtKind::PickledModule | PtKind::NotPytorch => None,
    }
}

fn show(shape: &[i64]) -> String {
    let parts: Vec<String> = shape.iter().map(i64::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// The declared input against the first convolution: BYOM621 (error) when the file proves
/// it, BYOM611 (warning) when it is a guess; `None` when they agree or nothing is known.
pub fn check(insp: &PtInspection, file: &str, input_shape: Option<&[i64]>) -> Option<Issue> {
    let shape = input_shape?;
    let conv = find(insp)?;
    let c = i64::try_from(conv.in_channels).ok()?;
    let &declared = shape.get(1)?;
    if declared < 0 || declared == c {
        return None;
    }
    // Channels last (`[1, 224, 224, 3]`): move them to axis 1; otherwise only axis 1 changes.
    let channels_last = shape.len() == 4 && shape[3] == c;
    let fixed: Vec<i64> = if channels_last {
        vec![shape[0], c, shape[1], shape[2]]
    } else {
        let mut s = shape.to_vec();
        s[1] = c;
        s
    };
    let what = &conv.what;
    if !conv.proven {
        return Some(rules::INPUT_CHANNELS.issue(
            Some(file),
            format!(
                "input_shape[1] is {declared}, but {what} takes {c} channels (a guess: the architecture is not recognised)"
            ),
        ));
    }
    let message = if channels_last {
        format!(
            "input_shape {} puts the channels last (NHWC), but {what} takes {c} channels on axis 1 (NCHW): write {}",
            show(shape),
            show(&fixed)
        )
    } else {
        format!(
            "input_shape {} has {declared} channels, but {what} takes {c}: write {}",
            show(shape),
            show(&fixed)
        )
    };
    Some(rules::INPUT_CHANNELS_CONTRADICT.issue_with_hint(
        Some(file),
        message,
        format!(
            "input_shape is [batch, channels, height, width]: write {} in mochi.json stages[0].input_shape and wherever manifest.json repeats it (input_shape, model_graph.stages[0].input_shape, compilable_models[].data_input_config.input).",
            show(&fixed)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::Severity;
    use crate::torch::script_code::ProvenLayer;

    fn traced_with_first_conv() -> PtInspection {
        let mut i = PtInspection::empty(PtKind::TorchscriptTraced, 0);
        i.input_layer = Some(ProvenLayer {
            path: "conv1".into(),
            kind: LayerKind::Conv2d,
            weight: vec![64, 3, 7, 7],
            in_channels: 3,
            outputs: 64,
        });
        i
    }

    #[test]
    fn channels_last_is_one_error_with_the_shape_to_write() {
        let i = check(&traced_with_first_conv(), "m.pt", Some(&[1, 224, 224, 3])).unwrap();
        assert_eq!((i.code.as_str(), i.severity), ("BYOM621", Severity::Error));
        assert!(i.message.contains("NHWC"), "{}", i.message);
        assert!(
            i.message.ends_with("write [1, 3, 224, 224]"),
            "{}",
            i.message
        );
        assert!(
            i.message.contains("conv1.weight [64, 3, 7, 7]"),
            "{}",
            i.message
        );
        let i = check(&traced_with_first_conv(), "m.pt", Some(&[1, 1, 224, 224])).unwrap();
        assert!(
            i.message.ends_with("write [1, 3, 224, 224]"),
            "{}",
            i.message
        );
        assert!(check(&traced_with_first_conv(), "m.pt", Some(&[1, 3, 224, 224])).is_none());
    }

    #[test]
    fn torchscript_without_a_proof_and_guesses_are_not_errors() {
        let mut i = traced_with_first_conv();
        i.input_layer = None;
        assert!(check(&i, "m.pt", Some(&[1, 224, 224, 3])).is_none());
        let mut sd = PtInspection::empty(PtKind::StateDict, 0);
        sd.tensors = vec![crate::torch::TensorInfo {
            name: "stem.weight".into(),
            shape: vec![8, 3, 3, 3],
            ..Default::default()
        }];
        let w = check(&sd, "m.pt", Some(&[1, 224, 224, 3])).unwrap();
        assert_eq!(
            (w.code.as_str(), w.severity),
            ("BYOM611", Severity::Warning)
        );
    }
}
