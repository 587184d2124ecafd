//! What the three analyses (zip, legacy, other) share: their context, the one collection of
//! globals, the safety judgement, the inventory, the version policy and the verdict line.
//!
//! Order matters for the message a user sees: a known-dangerous global is named first
//! (BYOM602); a whole pickled module is "not loadable without its source" (BYOM601), not an
//! attack; any other unlisted global is refused and named (BYOM603).

use std::collections::BTreeSet;

use crate::diagnostics::{Issue, Severity};
use crate::settings::Settings;
use crate::torch::arch;
use crate::torch::inventory::{canonical_dtype, dtype_size, FoundTensor, Layout, Reader};
use crate::torch::pickle::{Pickle, PickleError, WalkLimits};
use crate::torch::rules;
use crate::torch::safety::{classify, GlobalClass};
use crate::torch::version::{self, TorchVersion};
use crate::torch::{PtInspection, PtKind, Safety, TensorInfo};

/// What every analysis needs.
pub struct Ctx<'a> {
    pub settings: &'a Settings,
    pub file: &'a str,
    pub file_bytes: u64,
}

/// Pickle budgets from the limits. Values are bounded at one per 16 pickle bytes, so a pickle
/// made only of `EMPTY_LIST` opcodes cannot build millions of nodes (about 32 bytes each).
pub fn walk_limits(s: &Settings) -> WalkLimits {
    WalkLimits {
        max_ops: s.limits.max_pickle_ops,
        max_nodes: (s.limits.max_pickle_bytes / 16).max(4096),
    }
}

/// Every global (module, name) a file's pickles reference, each once, in first-seen order
/// (the order messages name them). One type for the three readers (zip, legacy, bare pickle),
/// consumed by the safety judgement, the inventory and the version evidence.
#[derive(Debug, Default)]
pub(super) struct Globals(Vec<(String, String)>);

impl Globals {
    /// Add the globals of one walked pickle.
    pub(super) fn add(&mut self, p: &Pickle) {
        for g in &p.globals {
            if !self.0.contains(g) {
                self.0.push(g.clone());
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn as_slice(&self) -> &[(String, String)] {
        &self.0
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(m, n)| (m.as_str(), n.as_str()))
    }

    /// `module.name` of each, for the inspection.
    pub(super) fn names(&self) -> Vec<String> {
        self.iter().map(|(m, n)| format!("{m}.{n}")).collect()
    }
}

/// The safety judgement over every global of the file.
pub(super) struct Judgement {
    pub(super) safety: Safety,
    pub(super) issues: Vec<Issue>,
}

pub(super) fn judge(
    ctx: &Ctx<'_>,
    globals: &Globals,
    torchscript: bool,
    module_classes: &[String],
) -> Judgement {
    let f = Some(ctx.file);
    let mut dangerous = Vec::new();
    let mut unlisted = Vec::new();
    let mut torch_modules = Vec::new();
    for (m, n) in globals.iter() {
        let name = format!("{m}.{n}");
        match classify(m, n, torchscript) {
            GlobalClass::Dangerous => dangerous.push(name),
            GlobalClass::Unlisted => unlisted.push(name),
            GlobalClass::TorchModule => torch_modules.push(name),
            GlobalClass::Allowed | GlobalClass::TorchScript => {}
        }
    }
    if !dangerous.is_empty() {
        return Judgement {
            safety: Safety::Unsafe,
            issues: vec![rules::DANGEROUS_GLOBAL.issue(
                f,
                format!(
                    "loading this file would call {} — refused (nothing was executed)",
                    dangerous.join(", ")
                ),
            )],
        };
    }
    if !module_classes.is_empty() || !torch_modules.is_empty() {
        let mut user: Vec<String> = unlisted.clone();
        if user.is_empty() {
            user = module_classes.iter().take(3).cloned().collect();
        }
        let shown: Vec<String> = user.iter().take(5).cloned().collect();
        let more = if user.len() > 5 {
            format!(" and {} more", user.len() - 5)
        } else {
            String::new()
        };
        return Judgement {
            safety: Safety::NeedsSource,
            issues: vec![rules::PICKLED_MODULE.issue(
                f,
                format!(
                    "the whole model object was pickled (it references {}{more}); it is not loadable without its source — re-export with torch.jit.trace",
                    shown.join(", ")
                ),
            )],
        };
    }
    if !unlisted.is_empty() {
        return Judgement {
            safety: Safety::Unsafe,
            issues: vec![rules::DISALLOWED_GLOBAL.issue(
                f,
                format!(
                    "the pickle references {}, outside the weights-only allowlist — refused",
                    unlisted.join(", ")
                ),
            )],
        };
    }
    Judgement {
        safety: Safety::Safe,
        issues: Vec::new(),
    }
}

pub(super) fn pickle_error_issue(file: &str, record: &str, e: &PickleError) -> Issue {
    match e {
        PickleError::TooManyOps | PickleError::TooManyNodes => rules::MODEL_LIMIT.issue(
            Some(file),
            format!("{record}: {e} (max_pickle_ops / max_pickle_bytes)"),
        ),
        _ => rules::CORRUPT.issue(Some(file), format!("{record}: {e}")),
    }
}

/// Fill the inventory fields from found tensors.
pub(super) fn fill_tensors(ctx: &Ctx<'_>, insp: &mut PtInspection, found: Vec<FoundTensor>) {
    let max = usize::try_from(ctx.settings.limits.max_tensors).unwrap_or(usize::MAX);
    insp.tensor_count = found.len() as u64;
    for t in &found {
        insp.parameter_count = insp.parameter_count.saturating_add(t.numel);
        insp.tensor_bytes = insp.tensor_bytes.saturating_add(t.bytes);
        *insp.dtypes.entry(t.dtype.clone()).or_insert(0) += 1;
    }
    insp.tensors = found
        .into_iter()
        .take(max)
        .map(|t| TensorInfo {
            name: t.name,
            dtype: t.dtype,
            shape: t.shape,
            bytes: t.bytes,
            storage_key: t.storage_key,
            storage_offset: t.storage_offset,
            strides: t.strides,
            numel: t.numel,
        })
        .collect();
}

/// Kind and tensors of a weights pickle (zip `data.pkl` or the legacy main pickle).
pub(super) fn weights(p: &Pickle) -> (Layout, Vec<FoundTensor>, Option<String>) {
    let Some(root) = p.root else {
        return (Layout::NoTensors, Vec::new(), None);
    };
    let r = Reader::new(p);
    let layout = r.layout(root);
    match &layout {
        Layout::StateDict => {
            let sd = r.state_dict(root);
            let tensors = if sd.is_empty() { r.collect(root) } else { sd };
            (layout, tensors, None)
        }
        Layout::Checkpoint { key } => {
            let tensors = r
                .get(root, key)
                .map(|v| r.state_dict(v))
                .unwrap_or_default();
            let key = key.clone();
            (layout, tensors, Some(key))
        }
        Layout::Module => (layout, r.collect(root), None),
        Layout::NoTensors => (layout, Vec::new(), None),
    }
}

/// Policy on the minimum torch version: BYOM701 / BYOM702.
pub(super) fn version_issues(
    ctx: &Ctx<'_>,
    insp: &mut PtInspection,
    reqs: &[version::Requirement],
) -> Vec<Issue> {
    let mut out = Vec::new();
    let min = version::minimum(reqs);
    insp.min_torch = min.map(|v| v.to_string());
    insp.min_torch_reasons = reqs.iter().map(version::Requirement::sentence).collect();
    let Some(min) = min else { return out };
    let required = ctx.settings.required_torch;
    let f = Some(ctx.file);
    let above = |limit: TorchVersion| -> Vec<String> {
        reqs.iter()
            .filter(|r| r.version > limit)
            .map(version::Requirement::sentence)
            .collect()
    };
    if required <= version::GUIDE {
        if min > version::GUIDE {
            let mut issue = rules::NOT_TORCH_18.issue(
                f,
                format!(
                    "PyTorch 1.8 cannot load this file: {} (required_torch = {})",
                    above(version::GUIDE).join("; "),
                    ctx.settings.required_torch
                ),
            );
            issue.severity = Severity::Error;
            out.push(issue);
        }
        return out;
    }
    if min > required {
        out.push(rules::TORCH_TOO_NEW.issue(
            f,
            format!(
                "{}, but files must load in PyTorch {required} (required_torch)",
                above(required).join("; ")
            ),
        ));
        return out;
    }
    if min > version::GUIDE {
        out.push(rules::NOT_TORCH_18.issue(
            f,
            format!(
                "PyTorch 1.8 cannot load this file: {}",
                above(version::GUIDE).join("; ")
            ),
        ));
    }
    out
}

/// dtypes used, for the version evidence: tensor dtypes plus dtype globals.
pub(super) fn dtypes_used<'a>(insp: &'a PtInspection, globals: &'a Globals) -> Vec<&'a str> {
    let mut set: BTreeSet<&str> = insp.dtypes.keys().map(String::as_str).collect();
    for (m, n) in globals.iter() {
        if m == "torch" && dtype_size(canonical_dtype(n)).is_some() {
            set.insert(canonical_dtype(n));
        }
    }
    set.into_iter().collect()
}

/// Architecture verdict for a weights-only kind: BYOM609 when the server cannot build it.
pub(super) fn arch_verdict(insp: &mut PtInspection, file: &str, issues: &mut Vec<Issue>) {
    let rec = recognise_into(insp);
    match &insp.arch {
        Some(a) if a.server_compilable => {
            insp.server_compilable = insp.kind != PtKind::Legacy;
        }
        Some(a) => issues.push(rules::UNKNOWN_ARCH.issue(
            Some(file),
            format!(
                "state dict of {} ({} classes): the server cannot rebuild this architecture — export TorchScript instead",
                a.qualified(),
                a.num_classes
            ),
        )),
        None => issues.push(rules::UNKNOWN_ARCH.issue(
            Some(file),
            match &rec.nearest {
                Some(n) => format!(
                    "state dict of an unknown architecture ({} tensors): it looks like {n}; the server can only compile a state dict that a torchvision or timm builder makes exactly — export TorchScript instead",
                    insp.tensor_count
                ),
                None => format!(
                    "state dict of an unknown architecture ({} tensors): no torchvision or timm builder makes these names and shapes, so the server cannot compile it — export TorchScript instead",
                    insp.tensor_count
                ),
            },
        )),
    }
}

/// The table's recognition of the inventory, recorded on the inspection (architecture, its
/// display name, the wrapper prefix of the keys).
pub(super) fn recognise_into(insp: &mut PtInspection) -> arch::Recognition {
    let rec = arch::recognise(&insp.tensors);
    insp.arch = rec.arch.clone();
    insp.architecture = insp.arch.as_ref().map(arch::ArchMatch::qualified);
    insp.key_prefix = rec.prefix.clone();
    insp.arch_alternatives = rec.alternatives.clone();
    rec
}

fn verdict(insp: &PtInspection, issues: &[Issue]) -> String {
    // TorchScript is named by its root class: "TorchScript (traced) of timm ConvNeXt".
    let what = match &insp.script_class {
        Some(c) => format!("{} of {}", insp.kind.describe(), c.display()),
        None => insp.kind.describe().to_string(),
    };
    if let Some(e) = issues.iter().find(|i| i.severity == Severity::Error) {
        return format!("{what}: {} [{}]", e.message, e.code);
    }
    let compile = if insp.server_compilable {
        match (&insp.architecture, &insp.script_class) {
            (Some(a), None) => format!("compilable on the server: yes ({a})"),
            _ => "compilable on the server: yes".to_string(),
        }
    } else {
        "compilable on the server: no".to_string()
    };
    format!("{what}; safe to load; {compile}")
}

pub(super) fn finalize(mut insp: PtInspection, issues: Vec<Issue>) -> (PtInspection, Vec<Issue>) {
    insp.verdict = verdict(&insp, &issues);
    (insp, issues)
}

/// Whether `needle` occurs in `hay` (small inputs: debug-record heads, file sniffing).
pub(super) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
