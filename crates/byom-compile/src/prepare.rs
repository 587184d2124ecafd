//! Step 1–3 of a job: validate and extract the package (one pass), load the model (TorchScript
//! as is, a state dict by rebuilding its architecture), run it once on the fixed input and check
//! the output shape the package declares.
//!
//! What the validator learned is used, not relearned: the kind of `.pt`, its tensor inventory
//! and its architecture come from the inspection in the report, the declarations from the
//! core's parsed metadata.

use std::path::{Path, PathBuf};

use byom_core::torch::PtKind;
use tch::{CModule, Device, Kind};

use crate::error::CompileError;
use crate::metadata::{self, ModelDeclarations};
use crate::options::CompileOptions;
use crate::package::{self, ExtractedPackage};
use crate::report::ModelSummary;
use crate::state_dict;
use crate::{forward, ops, storage};

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
    let operator_libraries =
        ops::ensure(&inspection.operators, log).map_err(CompileError::Operators)?;
    let (architecture, kind) = match inspection.kind {
        PtKind::TorchscriptTraced | PtKind::TorchscriptScripted => {
            let mut module = CModule::load_on_device(&package.model_path, Device::Cpu)
                .map_err(|e| CompileError::Load(e.to_string()))?;
            module.set_eval();
            module.save(&eager_path).map_err(|e| CompileError::Load(format!("re-saving: {e}")))?;
            // Named by the validator from the root class (`timm ConvNeXt`), when it could.
            (inspection.architecture.clone(), forward::parameter_kind(&module))
        }
        PtKind::StateDict | PtKind::Checkpoint => {
            let tensors = storage::stored_tensors(inspection).map_err(CompileError::Unsupported)?;
            let shapes = tensors.iter().map(|t| (t.name.clone(), t.shape.clone())).collect();
            // The validator's recognition (in the report) names the architecture; building it
            // here and comparing every parameter name and shape confirms it exactly.
            let unsupported = |why: String| {
                CompileError::Unsupported(format!(
                    "this state dict is not of an architecture the server can build ({why}): \
                     export TorchScript with torch.jit.trace(model, example).save(...) instead"
                ))
            };
            let m = inspection.arch.as_ref().ok_or_else(|| {
                unsupported("the validator recognised no architecture in it".to_string())
            })?;
            let classes = i64::try_from(m.num_classes)
                .map_err(|_| unsupported(format!("{} classes", m.num_classes)))?;
            let arch = state_dict::confirm(&m.name, classes, &shapes).map_err(unsupported)?;
            log.push(format!(
                "state dict recognised by the validator as {arch} with {classes} classes; \
                 every parameter name and shape matches the architecture built here"
            ));
            let prefix = inspection.archive_prefix.as_deref().ok_or_else(|| {
                CompileError::Unsupported("the model file's zip has no top folder".to_string())
            })?;
            let values = state_dict::read_tensors(
                &package.model_path,
                prefix,
                &package.validated.model_records,
                &tensors,
                opts.settings.limits.max_uncompressed_bytes,
            )
            .map_err(CompileError::Load)?;
            let rebuilt =
                state_dict::rebuild(arch, classes, &values, &declared.input_shape, &eager_path, None)
                    .map_err(CompileError::Load)?;
            log.push(format!("rebuilt {arch} in Rust and traced it to TorchScript"));
            if want_half {
                let half = work.join("eager-fp16-traced.pt");
                state_dict::rebuild(arch, classes, &values, &declared.input_shape, &half, Some(Kind::Half))
                    .map_err(CompileError::Load)?;
                log.push(format!("traced {arch} a second time in fp16 (traced weights are constants, which .half() does not convert)"));
                eager_half_path = Some(half);
            }
            (Some(rebuilt.architecture.to_string()), rebuilt.kind)
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
    let module = CModule::load_on_device(&eager_path, Device::Cpu)
        .map_err(|e| CompileError::Load(e.to_string()))?;
    let input = forward::fixed_input(&declared.input_shape, kind, Device::Cpu)
        .map_err(|e| CompileError::Forward(e.to_string()))?;
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
    let reference =
        forward::to_f32_vec(&selected.tensor).map_err(|e| CompileError::Forward(e.to_string()))?;
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
    })
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
