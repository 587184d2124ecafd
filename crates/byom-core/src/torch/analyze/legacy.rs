//! A legacy-format (pre-1.6, not zip) `.pt`: every pickle the legacy reader walked.

use super::common::{
    dtypes_used, fill_tensors, finalize, judge, recognise_into, version_issues, weights, Ctx,
    Globals,
};
use crate::diagnostics::{Issue, Severity};
use crate::torch::inventory::{Layout, Reader};
use crate::torch::legacy::{LegacyProblem, LegacyReader};
use crate::torch::rules;
use crate::torch::version::{self, Evidence};
use crate::torch::{PtInspection, PtKind};

/// A legacy-format file.
pub fn legacy_file(ctx: &Ctx<'_>, r: &LegacyReader) -> (PtInspection, Vec<Issue>) {
    let f = Some(ctx.file);
    let mut insp = PtInspection::empty(PtKind::Legacy, ctx.file_bytes);
    let mut issues = Vec::new();
    let mut globals = Globals::default();
    for p in &r.pickles {
        globals.add(p);
    }
    insp.globals = globals.names();
    for p in &r.problems {
        issues.push(match p {
            LegacyProblem::Corrupt(m) => rules::CORRUPT.issue(f, m.clone()),
            LegacyProblem::Limit(m) => rules::MODEL_LIMIT.issue(f, m.clone()),
            LegacyProblem::SizeMismatch(m) => rules::STORAGE_SIZE.issue(f, m.clone()),
        });
    }
    let module_classes = r
        .main()
        .map(|p| Reader::new(p).module_classes())
        .unwrap_or_default();
    let j = judge(ctx, &globals, false, &module_classes);
    insp.safety = j.safety;
    let flagged = !j.issues.is_empty();
    issues.extend(j.issues);
    if let Some(p) = r.main() {
        let (layout, found, key) = weights(p);
        insp.checkpoint_key = key;
        fill_tensors(ctx, &mut insp, found);
        if matches!(layout, Layout::Module) {
            insp.kind = PtKind::PickledModule;
        }
    }
    if flagged || issues.iter().any(|i| i.severity == Severity::Error) {
        return finalize(insp, issues);
    }
    issues.push(rules::LEGACY.issue(
        f,
        format!(
            "legacy torch.save format ({} tensors): PyTorch can load it, but the compile server cannot compile it — re-save it with a current torch (zip format) or export TorchScript",
            insp.tensor_count
        ),
    ));
    if insp.checkpoint_key.is_some() {
        let k = insp.checkpoint_key.clone().unwrap_or_default();
        issues.push(rules::CHECKPOINT.issue(
            f,
            format!("a training checkpoint: the state dict is under key {k:?}"),
        ));
    }
    recognise_into(&mut insp);
    let ev = Evidence {
        globals: globals.as_slice(),
        dtypes: dtypes_used(&insp, &globals),
        ..Default::default()
    };
    let reqs = version::requirements(&ev);
    issues.extend(version_issues(ctx, &mut insp, &reqs));
    finalize(insp, issues)
}
