//! State dicts that more than one builder makes: which one the server rebuilds.
//!
//! Some builders make exactly the same tensor names and shapes and still compute different
//! things: torchvision's `fasterrcnn_mobilenet_v3_large_fpn` and its `…_320_fpn` twin differ
//! only in the image size and proposal counts they are built with, timm's `tf_` models only in
//! their padding. The file cannot tell them apart ([`super::arch::Recognition::alternatives`]),
//! and the server rebuilds one of them: deploying the wrong twin compiles, verifies against
//! itself and computes something else than the user's model (seen: the zoo sweep's
//! `fasterrcnn_mobilenet_v3_large_fpn` state dict deployed as the 320 twin).
//!
//! So the package decides when it says: mochi.json `model_info.architecture` naming one of the
//! twins (`fasterrcnn_mobilenet_v3_large_fpn`, or with its library, `torchvision/…`) makes that
//! twin the architecture, for the report, the page and the compile worker alike. Without such a
//! name the first in the table's order stays, with a warning (BYOM616) that names the others and
//! what to write: it is only likely, not proven, that the first is the user's.

use super::arch;
use super::rules::ARCHITECTURE_TWINS;
use super::PtInspection;
use crate::diagnostics::Issue;

/// Chooses among a recognised state dict's twins by `declared` (mochi.json
/// `model_info.architecture`); a warning when they stay ambiguous.
pub fn choose(insp: &mut PtInspection, declared: Option<&str>, file: &str) -> Option<Issue> {
    let first = insp.arch.clone()?;
    if insp.arch_alternatives.is_empty() {
        return None;
    }
    let named = |qualified: &str| declared.is_some_and(|d| names(d, qualified));
    if named(&first.qualified()) {
        return None;
    }
    if let Some(pick) = insp.arch_alternatives.iter().find(|a| named(a)).cloned() {
        if let Some(twin) = arch::twin(&pick, &first) {
            insp.arch_alternatives.retain(|a| *a != pick);
            insp.arch_alternatives.insert(0, first.qualified());
            // Conservative: what was said about the first (its issues) still holds.
            insp.server_compilable &= twin.server_compilable;
            insp.architecture = Some(twin.qualified());
            insp.arch = Some(twin);
            return None;
        }
    }
    let others = insp.arch_alternatives.join(", ");
    let example = insp.arch_alternatives[0]
        .split_once('/')
        .map_or(insp.arch_alternatives[0].as_str(), |(_, n)| n);
    Some(ARCHITECTURE_TWINS.issue_with_hint(
        Some(file),
        format!(
            "the tensors are exactly those of {} and also of {others}, which can compute \
             different things (other padding, pooling or input size); the server rebuilds {}{}",
            first.qualified(),
            first.qualified(),
            match declared {
                Some(d) => format!(" (model_info.architecture {d:?} names none of them)"),
                None => String::new(),
            }
        ),
        format!(
            "If your model is another of them, name it in mochi.json model_info.architecture, \
             e.g. \"{example}\"; or export TorchScript, which carries its own settings."
        ),
    ))
}

/// Whether a declared architecture (`resnet50`, `torchvision/resnet50`, any case) names the
/// qualified `zoo/builder`.
fn names(declared: &str, qualified: &str) -> bool {
    let d = declared.trim().to_ascii_lowercase();
    let q = qualified.to_ascii_lowercase();
    d == q || q.split_once('/').is_some_and(|(_, name)| d == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::torch::arch::ArchMatch;

    fn twins() -> PtInspection {
        let first = arch::twin(
            "torchvision/fasterrcnn_mobilenet_v3_large_320_fpn",
            &ArchMatch {
                zoo: arch::Zoo::Torchvision,
                name: String::new(),
                num_classes: 4,
                in_channels: 3,
                server_compilable: true,
                builder_kwargs: Default::default(),
            },
        )
        .expect("in the table");
        let mut insp = PtInspection::empty(crate::torch::PtKind::StateDict, 0);
        insp.architecture = Some(first.qualified());
        insp.arch = Some(first);
        insp.arch_alternatives = vec!["torchvision/fasterrcnn_mobilenet_v3_large_fpn".into()];
        insp
    }

    #[test]
    fn the_declared_twin_is_the_architecture() {
        for declared in [
            "fasterrcnn_mobilenet_v3_large_fpn",
            "torchvision/FasterRCNN_MobileNet_V3_Large_FPN",
        ] {
            let mut insp = twins();
            assert_eq!(choose(&mut insp, Some(declared), "m.pt"), None);
            let arch = insp.arch.as_ref().unwrap();
            assert_eq!(
                arch.qualified(),
                "torchvision/fasterrcnn_mobilenet_v3_large_fpn"
            );
            assert_eq!((arch.num_classes, arch.in_channels), (4, 3));
            assert_eq!(
                insp.architecture.as_deref(),
                Some("torchvision/fasterrcnn_mobilenet_v3_large_fpn")
            );
            assert_eq!(
                insp.arch_alternatives,
                ["torchvision/fasterrcnn_mobilenet_v3_large_320_fpn"]
            );
        }
    }

    #[test]
    fn the_first_declared_is_quiet_anything_else_warns_naming_the_twins() {
        let mut insp = twins();
        assert_eq!(
            choose(
                &mut insp,
                Some("fasterrcnn_mobilenet_v3_large_320_fpn"),
                "m.pt"
            ),
            None
        );
        for declared in [None, Some("resnet50")] {
            let mut insp = twins();
            let issue = choose(&mut insp, declared, "m.pt").expect("a warning");
            assert_eq!(issue.code, ARCHITECTURE_TWINS.code());
            assert!(
                issue
                    .message
                    .contains("torchvision/fasterrcnn_mobilenet_v3_large_fpn"),
                "{}",
                issue.message
            );
            assert!(
                issue.hint.contains("\"fasterrcnn_mobilenet_v3_large_fpn\""),
                "{}",
                issue.hint
            );
            assert_eq!(
                insp.architecture.as_deref(),
                Some("torchvision/fasterrcnn_mobilenet_v3_large_320_fpn")
            );
        }
    }
}
