//! Step 1–3 of a job: validate and extract the package (one pass), load the model (TorchScript
//! as is, a state dict by rebuilding its architecture with its library's own constructor, see
//! [`crate::zoo`]), run it once on the fixed input and check the output shape the package
//! declares.
//!
//! What the validator learned is used, not relearned: the kind of `.pt`, its tensor inventory
//! and its architecture come from the inspection in the report, the declarations from the
//! core's parsed metadata.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use byom_core::torch::PtKind;
use tch::{CModule, Device, Kind};

use crate::error::CompileError;
use crate::metadata::{self, ModelDeclarations};
use crate::options::CompileOptions;
use crate::package::{self, ExtractedPackage};
use crate::progress;
use crate::report::ModelSummary;
use crate::{forward, ops, zoo};

/// Everything the per-target steps need.
pub struct Prepared {
    pub package: ExtractedPackage,
    pub declared: ModelDeclarations,
    pub summary: ModelSummary,
    /// The unfrozen TorchScript module, eval mode, in the weights' dtype.
    pub eager_path: PathBuf,
    /// An fp16 twin of `eager_path` traced in fp16, for state dicts (whose traced weights are
    /// constants that `.half()` does not convert); `None`: cast `eager_path` instead.
    pub eager_half_path: Option<PathBuf>,
    pub kind: Kind,
    pub selector: String,
    /// The original's output on the fixed input (f32).
    pub reference: Vec<f32>,
    /// What every target's result warns of: what the deployed model leaves out.
    pub warnings: Vec<String>,
}

/// What the documented detector wrapper leaves out of a torchvision detector's outputs: Mask
/// R-CNN's masks, Keypoint R-CNN's keypoints (docs/detectors.md).
fn detector_outputs_left_out(builder: &str, export: zoo::Export) -> Option<String> {
    if export != zoo::Export::Script {
        return None;
    }
    let what = if builder.starts_with("maskrcnn") {
        "Mask R-CNN's masks"
    } else if builder.starts_with("keypointrcnn") {
        "Keypoint R-CNN's keypoints"
    } else {
        return None;
    };
    Some(format!(
        "the deployed {builder} returns boxes, scores and labels only ([batch, max_detections, 6], \
         docs/detectors.md): {what} are not in its output; to deploy them, export your own \
         wrapper as TorchScript"
    ))
}

/// Human name of a kind, as in the core's JSON.
pub fn kind_name(kind: PtKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{kind:?}"))
}

/// Runs steps 1–3 in `work`.
pub fn prepare(
    package_path: &Path,
    work: &Path,
    opts: &CompileOptions,
    want_half: bool,
    log: &mut Vec<String>,
) -> Result<Prepared, CompileError> {
    let package = package::extract(package_path, &opts.settings, work)?;
    log.push(format!(
        "package valid (sha256 {}), model file {}",
        package.sha256, package.model_name
    ));
    let declared = metadata::read(&package.validated)?;
    let inspection = &package.validated.model;
    log.push(format!("model file kind: {}", kind_name(inspection.kind)));
    let eager_path = work.join("eager.pt");
    let mut eager_half_path = None;
    let mut operator_libraries =
        ops::ensure(&inspection.operators, log).map_err(CompileError::Operators)?;
    // The library's eager outputs, for a state dict rebuilt by `zoo`.
    let mut zoo_references = None;
    let mut warnings = Vec::new();
    let (architecture, kind) = match inspection.kind {
        PtKind::TorchscriptTraced | PtKind::TorchscriptScripted => {
            progress::step("loading the model with libtorch");
            let mut module = CModule::load_on_device(&package.model_path, Device::Cpu)
                .map_err(|e| CompileError::Load(e.to_string()))?;
            module.set_eval();
            module.save(&eager_path).map_err(|e| CompileError::Load(format!("re-saving: {e}")))?;
            // Named by the validator from the root class (`timm ConvNeXt`), when it could.
            (inspection.architecture.clone(), forward::parameter_kind(&module))
        }
        PtKind::StateDict | PtKind::Checkpoint => {
            let m = inspection.arch.as_ref().ok_or_else(|| {
                CompileError::Unsupported(
                    "this state dict is not of an architecture the server can build (the \
                     validator recognised no torchvision or timm architecture in it): export \
                     TorchScript with torch.jit.trace(model, example).save(...) instead"
                        .to_string(),
                )
            })?;
            if !m.server_compilable {
                return Err(CompileError::Unsupported(format!(
                    "{} is recognised, but the server's table does not compile it: export \
                     TorchScript with torch.jit.trace(model, example).save(...) instead",
                    m.qualified()
                )));
            }
            let python = opts.python.as_ref().ok_or_else(|| {
                CompileError::Unsupported(format!(
                    "{} is a state dict: rebuilding it needs the server's Python with torch, \
                     torchvision and timm, and this server has none (byom-server --python / \
                     BYOM_PYTHON); TorchScript compiles without it",
                    m.qualified()
                ))
            })?;
            let request = zoo::Request {
                arch: m,
                state_dict: &package.model_path,
                checkpoint_key: inspection.checkpoint_key.as_deref(),
                input_shape: &declared.input_shape,
                output_shape: declared.output_shape.as_deref(),
                half: want_half,
                threads: opts.threads,
                timeout: Duration::from_secs(opts.zoo_timeout_s),
            };
            let built = zoo::rebuild(
                python,
                &request,
                work,
                opts.settings.limits.max_uncompressed_bytes,
            )
            .map_err(CompileError::Load)?;
            fs::rename(&built.eager, &eager_path)
                .map_err(CompileError::io(&eager_path))?;
            log.push(format!(
                "state dict recognised by the validator as {} ({} classes, {} input channels); \
                 rebuilt with {}'s own constructor ({}), weights loaded strictly with torch's \
                 weights-only loader, {} to TorchScript",
                m.qualified(),
                m.num_classes,
                m.in_channels,
                m.zoo.as_str(),
                built.library,
                built.export.describe()
            ));
            // The rebuilt TorchScript may call an operator library (a detector: torchvision::nms,
            // roi_align) that the state dict, being only weights, could not show the validator:
            // read its code as a user's file is read, and load what it calls before libtorch
            // compiles it.
            let rebuilt = rebuilt_operators(&eager_path, opts)?;
            for lib in ops::ensure(&rebuilt, log).map_err(CompileError::Operators)? {
                if !operator_libraries.iter().any(|l| l.name == lib.name) {
                    operator_libraries.push(lib);
                }
            }
            if let Some(half) = built.eager_half {
                log.push(format!("traced {} a second time in fp16 (traced weights are constants, which .half() does not convert)", m.qualified()));
                eager_half_path = Some(half);
            }
            if let Some(dropped) = detector_outputs_left_out(&m.name, built.export) {
                warnings.push(dropped);
            }
            zoo_references = Some((built.references, built.export));
            (Some(m.qualified()), built.kind)
        }
        PtKind::PickledModule => {
            return Err(CompileError::Unsupported(
                "a whole pickled nn.Module is not loadable without its source: re-export with \
                 torch.jit.trace(model, example).save(...)"
                    .to_string(),
            ))
        }
        PtKind::Legacy => {
            return Err(CompileError::Unsupported(
                "legacy (pre-1.6, non-zip) torch.save files cannot be read by libtorch: re-save \
                 with torch.save(model.state_dict(), path) from torch >= 1.6, or export TorchScript"
                    .to_string(),
            ))
        }
        PtKind::NotPytorch => {
            return Err(CompileError::Unsupported("the model file is not a PyTorch file".to_string()))
        }
    };
    progress::step("loading the model with libtorch");
    let module = CModule::load_on_device(&eager_path, Device::Cpu)
        .map_err(|e| CompileError::Load(e.to_string()))?;
    let input = forward::fixed_input(&declared.input_shape, kind, Device::Cpu)
        .map_err(|e| CompileError::Forward(e.to_string()))?;
    progress::step(&format!(
        "running the model on its declared input {:?}",
        declared.input_shape
    ));
    let selected = forward::run(&module, &input, declared.output_shape.as_deref())
        .map_err(CompileError::Forward)?;
    let actual = selected.tensor.size();
    if let Some(d) = &declared.output_shape {
        if *d != actual {
            return Err(CompileError::OutputShape {
                declared: d.clone(),
                actual,
                which: selected.description,
            });
        }
    }
    log.push(format!(
        "forward pass on the fixed input {:?} ({kind:?}): {} has shape {actual:?}{}",
        declared.input_shape,
        selected.description,
        if declared.output_shape.is_some() {
            ", as declared"
        } else {
            " (no output_shape declared)"
        }
    ));
    let mut reference =
        forward::to_f32_vec(&selected.tensor).map_err(|e| CompileError::Forward(e.to_string()))?;
    if let Some((refs, export)) = zoo_references {
        // Every later check compares against the library's eager model, not against the
        // TorchScript: first the TorchScript itself.
        let (eager, max_rel) =
            zoo::check_export(refs, &selected.selector, &actual, &reference, kind, export)
                .map_err(CompileError::Load)?;
        log.push(format!(
            "the {} TorchScript computes what the library's eager model computes on the \
             fixed input ({}): max rel error {max_rel:.3e}; every target is compared with the \
             eager model's outputs",
            match export {
                zoo::Export::Trace => "traced",
                zoo::Export::Script => "scripted",
            },
            selected.description
        ));
        reference = eager;
    }
    let kind_label = kind_name(inspection.kind);
    let summary = ModelSummary {
        kind: kind_label,
        architecture,
        model_file: package.model_name.clone(),
        input_shape: declared.input_shape.clone(),
        input_dtype: dtype_name(kind).to_string(),
        declared_output_shape: declared.output_shape.clone(),
        output_shape: actual,
        checked_output: selected.description,
        eager_latency: None,
        operator_libraries,
    };
    if !package.report().warnings.is_empty() {
        log.push(format!(
            "validator warnings: {}",
            package
                .report()
                .warnings
                .iter()
                .map(|w| w.code.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Prepared {
        package,
        declared,
        summary,
        eager_path,
        eager_half_path,
        kind,
        selector: selected.selector,
        reference,
        warnings,
    })
}

/// The operators a rebuilt TorchScript file calls, read by the core's inspector (streamed: the
/// file can be hundreds of MB).
fn rebuilt_operators(path: &Path, opts: &CompileOptions) -> Result<Vec<String>, CompileError> {
    use std::io::Read;

    let mut file = fs::File::open(path).map_err(CompileError::io(path))?;
    let mut inspector = byom_core::torch::PtInspector::new(&opts.settings, "eager.pt");
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(CompileError::io(path))?;
        if n == 0 {
            break;
        }
        inspector.feed(&buf[..n]);
    }
    Ok(inspector.finish().0.operators)
}

/// The torch name of a floating dtype.
pub fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Half => "float16",
        Kind::BFloat16 => "bfloat16",
        Kind::Double => "float64",
        _ => "float32",
    }
}

#[cfg(test)]
mod detector_tests {
    use super::*;

    #[test]
    fn masks_and_keypoints_left_out_are_said() {
        let said = |b| detector_outputs_left_out(b, zoo::Export::Script);
        assert!(said("maskrcnn_resnet50_fpn_v2").is_some_and(|w| w.contains("masks are not")));
        assert!(said("keypointrcnn_resnet50_fpn").is_some_and(|w| w.contains("keypoints are not")));
        assert_eq!(said("fasterrcnn_resnet50_fpn"), None);
        assert_eq!(
            detector_outputs_left_out("maskrcnn_resnet50_fpn", zoo::Export::Trace),
            None
        );
    }
}
