//! Turning what the readers kept into a verdict: kind, inventory, safety, version, issues.
//!
//! Order matters for the message a user sees: a known-dangerous global is named first
//! (BYOM602); a whole pickled module is "not loadable without its source" (BYOM601), not an
//! attack; any other unlisted global is refused and named (BYOM603). Only a file that is safe
//! to read gets the usability verdicts (checkpoint, unknown architecture, torch version).

use std::collections::BTreeSet;

use super::arch;
use super::inventory::{canonical_dtype, dtype_size, FoundTensor, Layout, Reader};
use super::legacy::{LegacyProblem, LegacyReader};
use super::pickle::{walk, Pickle, PickleError, WalkLimits};
use super::rules;
use super::safety::{classify, GlobalClass};
use super::version::{self, Evidence, TorchVersion};
use super::zip::{ZipProblem, ZipView};
use super::{PtInspection, PtKind, Safety, TensorInfo};
use crate::report::{Issue, Severity};
use crate::settings::Settings;

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
struct Globals(Vec<(String, String)>);

impl Globals {
    /// Add the globals of one walked pickle.
    fn add(&mut self, p: &Pickle) {
        for g in &p.globals {
            if !self.0.contains(g) {
                self.0.push(g.clone());
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn as_slice(&self) -> &[(String, String)] {
        &self.0
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(m, n)| (m.as_str(), n.as_str()))
    }

    /// `module.name` of each, for the inspection.
    fn names(&self) -> Vec<String> {
        self.iter().map(|(m, n)| format!("{m}.{n}")).collect()
    }
}

/// The safety judgement over every global of the file.
struct Judgement {
    safety: Safety,
    issues: Vec<Issue>,
}

fn judge(
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

fn pickle_error_issue(file: &str, record: &str, e: &PickleError) -> Issue {
    match e {
        PickleError::TooManyOps | PickleError::TooManyNodes => rules::MODEL_LIMIT.issue(
            Some(file),
            format!("{record}: {e} (max_pickle_ops / max_pickle_bytes)"),
        ),
        _ => rules::CORRUPT.issue(Some(file), format!("{record}: {e}")),
    }
}

/// Fill the inventory fields from found tensors.
fn fill_tensors(ctx: &Ctx<'_>, insp: &mut PtInspection, found: Vec<FoundTensor>) {
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
fn weights(p: &Pickle) -> (Layout, Vec<FoundTensor>, Option<String>) {
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
fn version_issues(
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
fn dtypes_used<'a>(insp: &'a PtInspection, globals: &'a Globals) -> Vec<&'a str> {
    let mut set: BTreeSet<&str> = insp.dtypes.keys().map(String::as_str).collect();
    for (m, n) in globals.iter() {
        if m == "torch" && dtype_size(canonical_dtype(n)).is_some() {
            set.insert(canonical_dtype(n));
        }
    }
    set.into_iter().collect()
}

/// Architecture verdict for a weights-only kind: BYOM609 when the server cannot build it.
fn arch_verdict(insp: &mut PtInspection, file: &str, issues: &mut Vec<Issue>) {
    insp.arch = arch::recognise(&insp.tensors);
    insp.architecture = insp.arch.as_ref().map(|a| a.name.clone());
    match &insp.arch {
        Some(a) if a.server_compilable => {
            insp.server_compilable = insp.kind != PtKind::Legacy;
        }
        Some(a) => issues.push(rules::UNKNOWN_ARCH.issue(
            Some(file),
            format!("state dict of {} ({} classes): the server cannot compile this architecture — export TorchScript instead", a.name, a.num_classes),
        )),
        None => issues.push(rules::UNKNOWN_ARCH.issue(
            Some(file),
            format!(
                "state dict of an unknown architecture ({} tensors): the server cannot compile this state dict — export TorchScript instead",
                insp.tensor_count
            ),
        )),
    }
}

fn verdict(insp: &PtInspection, issues: &[Issue]) -> String {
    if let Some(e) = issues.iter().find(|i| i.severity == Severity::Error) {
        return format!("{}: {} [{}]", insp.kind.describe(), e.message, e.code);
    }
    let compile = if insp.server_compilable {
        match &insp.architecture {
            Some(a) => format!("compilable on the server: yes ({a})"),
            None => "compilable on the server: yes".to_string(),
        }
    } else {
        "compilable on the server: no".to_string()
    };
    format!("{}; safe to load; {compile}", insp.kind.describe())
}

fn finalize(mut insp: PtInspection, issues: Vec<Issue>) -> (PtInspection, Vec<Issue>) {
    insp.verdict = verdict(&insp, &issues);
    (insp, issues)
}

/// A zip `.pt` (state dict, checkpoint, TorchScript, pickled module), judged in named steps;
/// each step adds its issues in the order the report shows them.
pub fn zip_file(ctx: &Ctx<'_>, view: ZipView) -> (PtInspection, Vec<Issue>) {
    let f = Some(ctx.file);
    let mut insp = PtInspection::empty(PtKind::NotPytorch, ctx.file_bytes);
    insp.archive_prefix = view.prefix.clone();
    let mut issues = structure_issues(ctx, &view.problems);
    let torchscript = is_torchscript(&view);
    let walked = walk_pickles(ctx, &view, &mut issues);
    insp.globals = walked.globals.names();
    read_versions(&view, &mut insp);

    let module_classes = walked
        .data
        .as_ref()
        .map(|p| Reader::new(p).module_classes())
        .unwrap_or_default();
    let flagged = zip_safety(
        ctx,
        &mut insp,
        &mut issues,
        &walked.globals,
        torchscript,
        &module_classes,
    );

    let Some(p) = walked.data else {
        if !flagged && !issues.iter().any(|i| i.code == rules::MODEL_LIMIT.code) {
            issues.push(rules::NOT_PYTORCH.issue(
                f,
                "a zip archive without a data.pkl record: not a file written by torch.save or torch.jit.save",
            ));
        }
        return finalize(insp, issues);
    };

    zip_inventory(ctx, &mut insp, &view, &p, torchscript);
    issues.extend(storage_issues(ctx, &view, &p));

    if flagged {
        if insp.kind == PtKind::NotPytorch && module_classes.is_empty() {
            // keep the kind: a pickle that is only a payload
        } else if !module_classes.is_empty() && !torchscript {
            insp.kind = PtKind::PickledModule;
        }
        return finalize(insp, issues);
    }
    if issues.iter().any(|i| i.severity == Severity::Error) {
        return finalize(insp, issues);
    }
    if !usability(ctx, &mut insp, &mut issues) {
        return finalize(insp, issues);
    }
    let v = zip_version_issues(ctx, &mut insp, &view, torchscript, &walked.globals);
    issues.extend(v);
    finalize(insp, issues)
}

/// Step 1: what the zip reader found wrong with the structure, one issue per problem (the
/// problem's text is the message; its variant picks the rule).
fn structure_issues(ctx: &Ctx<'_>, problems: &[ZipProblem]) -> Vec<Issue> {
    let f = Some(ctx.file);
    problems
        .iter()
        .map(|p| {
            let rule = match p {
                ZipProblem::Corrupt(_) => &rules::CORRUPT,
                ZipProblem::NameMismatch(_) => &rules::NAME_MISMATCH,
                ZipProblem::Limit(_) => &rules::MODEL_LIMIT,
                ZipProblem::DuplicateName(_) => &rules::DUPLICATE_NAME,
                ZipProblem::CaseCollision(_) => &rules::CASE_COLLISION,
                ZipProblem::OutsidePrefix(_) => &rules::OUTSIDE_PREFIX,
            };
            rule.issue(f, p.to_string())
        })
        .collect()
}

/// Step 2: TorchScript (which widens the allowlist) only by the exact names: torch.load
/// decides it with `"constants.pkl" in get_all_records()`, a case-sensitive test, and would
/// unpickle a `CONSTANTS.PKL` archive's data.pkl as a plain pickle; such a file is judged as
/// one here.
fn is_torchscript(view: &ZipView) -> bool {
    view.records.keys().any(|n| view.rel(n) == "constants.pkl")
        || view
            .local
            .iter()
            .any(|e| view.rel(&e.name).starts_with("code/"))
}

/// What walking a zip's pickles found.
struct Walked {
    /// Globals of every pickle walked.
    globals: Globals,
    /// The walked `data.pkl` (the weights or module), if any.
    data: Option<Pickle>,
}

/// Step 3: every pickle in the zip is walked for globals, not only data.pkl (also a record
/// that starts like one under another name, and a duplicate torch might read instead). Names
/// are compared as torch looks them up (ASCII case-insensitively: `DATA.PKL` is its
/// data.pkl). A pickle that does not parse is BYOM604 (BYOM610 when over budget).
fn walk_pickles(ctx: &Ctx<'_>, view: &ZipView, issues: &mut Vec<Issue>) -> Walked {
    let wl = walk_limits(ctx.settings);
    let mut globals = Globals::default();
    let mut data = None;
    let shadowed = view.shadowed.iter().map(|(n, r)| (n, r));
    for (name, rec) in view.records.iter().chain(shadowed) {
        let key = view.key(name);
        let rel = key.as_str();
        let hidden_pickle =
            !rel.ends_with(".pkl") && !rel.starts_with("code/") && rec.data.first() == Some(&0x80);
        if !(rel.ends_with(".pkl") || hidden_pickle) || rec.truncated {
            continue;
        }
        let p = walk(&rec.data, wl);
        globals.add(&p);
        if let Some(e) = &p.error {
            issues.push(pickle_error_issue(ctx.file, name, e));
        }
        if rel == "data.pkl" {
            data = Some(p);
        }
    }
    Walked { globals, data }
}

/// Step 4: the archive's format version and byte order records, in PyTorchStreamReader's
/// order: `.data/version` when present, else `version`.
fn read_versions(view: &ZipView, insp: &mut PtInspection) {
    insp.archive_version = view
        .record(".data/version")
        .or_else(|| view.record("version"))
        .and_then(|r| {
            std::str::from_utf8(&r.data)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        });
    insp.byteorder = view
        .record("byteorder")
        .map(|r| String::from_utf8_lossy(&r.data).trim().to_string());
}

/// Step 5: the safety judgement (BYOM601/602/603). Returns whether the file was flagged
/// (unsafe or a pickled module). A broken or inconsistent zip may hide records, so one
/// with an error already found gets no claim of safety.
fn zip_safety(
    ctx: &Ctx<'_>,
    insp: &mut PtInspection,
    issues: &mut Vec<Issue>,
    globals: &Globals,
    torchscript: bool,
    module_classes: &[String],
) -> bool {
    let j = judge(
        ctx,
        globals,
        torchscript,
        if torchscript { &[] } else { module_classes },
    );
    insp.safety = j.safety;
    let flagged = !j.issues.is_empty();
    if !flagged && issues.iter().any(|i| i.severity == Severity::Error) {
        insp.safety = Safety::Unknown;
    }
    issues.extend(j.issues);
    flagged
}

/// Step 6: kind and tensors of `data.pkl`.
fn zip_inventory(
    ctx: &Ctx<'_>,
    insp: &mut PtInspection,
    view: &ZipView,
    p: &Pickle,
    torchscript: bool,
) {
    let (layout, found, key) = if torchscript {
        let tensors = p
            .root
            .map(|r| Reader::new(p).collect(r))
            .unwrap_or_default();
        (Layout::Module, tensors, None)
    } else {
        weights(p)
    };
    insp.kind = if torchscript {
        if scripted(view) {
            PtKind::TorchscriptScripted
        } else {
            PtKind::TorchscriptTraced
        }
    } else {
        match layout {
            Layout::StateDict => PtKind::StateDict,
            Layout::Checkpoint { .. } => PtKind::Checkpoint,
            Layout::Module => PtKind::PickledModule,
            Layout::NoTensors => PtKind::NotPytorch,
        }
    };
    insp.checkpoint_key = key;
    fill_tensors(ctx, insp, found);
}

/// Step 7: storage sizes vs `data/*` records (only when the directory was read), BYOM605.
/// Matched exactly, not case-insensitively as torch would: the compile server reads
/// `data/<key>` by exact name, and torch.save never writes another case, so a case-only match
/// is refused.
fn storage_issues(ctx: &Ctx<'_>, view: &ZipView, p: &Pickle) -> Vec<Issue> {
    let f = Some(ctx.file);
    let mut issues = Vec::new();
    if view.central.is_empty() {
        return issues;
    }
    let sizes: std::collections::HashMap<&str, u64> =
        view.sizes().map(|(n, s)| (view.rel(n), s)).collect();
    for s in Reader::new(p).storages().values() {
        let rec = format!("data/{}", s.key);
        match sizes.get(rec.as_str()) {
            Some(&have) if have == s.bytes => {}
            Some(&have) => issues.push(rules::STORAGE_SIZE.issue(
                f,
                format!("storage {} declares {} {} elements ({} bytes), but record {rec} holds {have} bytes", s.key, s.numel, s.dtype, s.bytes),
            )),
            None => issues.push(rules::STORAGE_SIZE.issue(f, format!("storage {} has no record {rec} in the zip", s.key))),
        }
    }
    issues
}

/// Step 8: usability verdicts by kind, for a file safe to read and without errors:
/// checkpoint (BYOM608), architecture (BYOM609), no tensors (BYOM600). Returns false when
/// the file is not a model at all (nothing more to say).
fn usability(ctx: &Ctx<'_>, insp: &mut PtInspection, issues: &mut Vec<Issue>) -> bool {
    let f = Some(ctx.file);
    match insp.kind {
        PtKind::NotPytorch => {
            issues.push(rules::NOT_PYTORCH.issue(
                f,
                "the zip's data.pkl holds no tensors: not a model saved by PyTorch",
            ));
            return false;
        }
        PtKind::StateDict => arch_verdict(insp, ctx.file, issues),
        PtKind::Checkpoint => {
            let k = insp.checkpoint_key.clone().unwrap_or_default();
            issues.push(rules::CHECKPOINT.issue(
                f,
                format!("a training checkpoint: the state dict is under key {k:?} — save only the weights: torch.save(checkpoint[{k:?}], \"model.pt\")"),
            ));
            arch_verdict(insp, ctx.file, issues);
        }
        PtKind::TorchscriptTraced | PtKind::TorchscriptScripted => insp.server_compilable = true,
        PtKind::PickledModule | PtKind::Legacy => {}
    }
    true
}

/// Step 9: the minimum torch version the file needs (BYOM701/702), from the zip's evidence;
/// a file too new for `required_torch` is not compilable on the server.
fn zip_version_issues(
    ctx: &Ctx<'_>,
    insp: &mut PtInspection,
    view: &ZipView,
    torchscript: bool,
    globals: &Globals,
) -> Vec<Issue> {
    let code = code_text(view);
    let ev = Evidence {
        zip: true,
        torchscript,
        scripted_string_table: insp.kind == PtKind::TorchscriptScripted && string_table(view),
        archive_version: insp.archive_version,
        globals: globals.as_slice(),
        dtypes: dtypes_used(insp, globals),
        code: &code,
    };
    let reqs = version::requirements(&ev);
    let v = version_issues(ctx, insp, &reqs);
    if v.iter().any(|i| i.severity == Severity::Error) {
        insp.server_compilable =
            insp.server_compilable && !v.iter().any(|i| i.code == rules::TORCH_TOO_NEW.code);
    }
    v
}

/// All TorchScript code (`code/**.py`), joined.
fn code_text(view: &ZipView) -> String {
    let mut s = String::new();
    for (name, rec) in &view.records {
        let key = view.key(name);
        if key.starts_with("code/") && key.ends_with(".py") {
            s.push_str(&String::from_utf8_lossy(&rec.data));
            s.push('\n');
        }
    }
    s
}

fn debug_records(view: &ZipView) -> impl Iterator<Item = &[u8]> {
    view.records
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().ends_with(".debug_pkl"))
        .map(|(_, r)| r.data.as_slice())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Traced or scripted? Heuristic, stated: `torch.jit.trace` records Python stack frames
/// (`file.py(123): forward`) as the source of each node and, since 2.1, a `traced_inputs.pkl`;
/// `torch.jit.script` records the module's source text (`def forward(`). Without debug
/// records the file is called traced (the conservative choice: no extra version claim).
fn scripted(view: &ZipView) -> bool {
    if view
        .local
        .iter()
        .any(|e| view.key(&e.name) == "traced_inputs.pkl")
    {
        return false;
    }
    let mut saw_def = false;
    for d in debug_records(view) {
        if trace_frame(d) {
            return false;
        }
        saw_def |= contains(d, b"def forward(") || contains(d, b"def ");
    }
    saw_def
}

/// Whether a debug record holds a traced frame `something.py(123): name`.
fn trace_frame(d: &[u8]) -> bool {
    let pat = b".py(";
    let mut i = 0;
    while let Some(k) = d
        .get(i..)
        .and_then(|r| r.windows(pat.len()).position(|w| w == pat))
    {
        let mut j = i + k + pat.len();
        let start = j;
        while j < d.len() && d[j].is_ascii_digit() {
            j += 1;
        }
        if j > start && d.get(j..j + 3) == Some(b"): ") {
            return true;
        }
        i = i + k + 1;
    }
    false
}

/// Debug records in the string-table layout (PyTorch ≥ 1.11).
fn string_table(view: &ZipView) -> bool {
    debug_records(view).any(|d| contains(&d[..d.len().min(64)], b"FORMAT_WITH_STRING_TABLE"))
}

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
    insp.arch = arch::recognise(&insp.tensors);
    insp.architecture = insp.arch.as_ref().map(|a| a.name.clone());
    let ev = Evidence {
        globals: globals.as_slice(),
        dtypes: dtypes_used(&insp, &globals),
        ..Default::default()
    };
    let reqs = version::requirements(&ev);
    issues.extend(version_issues(ctx, &mut insp, &reqs));
    finalize(insp, issues)
}

/// Not a zip and not legacy: name the globals if the bytes are a pickle (also inside a `.npy`).
pub fn other_file(ctx: &Ctx<'_>, head: &[u8]) -> (PtInspection, Vec<Issue>) {
    let f = Some(ctx.file);
    let mut insp = PtInspection::empty(PtKind::NotPytorch, ctx.file_bytes);
    let mut rest = npy_payload(head).unwrap_or(head);
    // Pickles may be stacked (a benign one first, the payload after): walk them all.
    let mut globals = Globals::default();
    let mut module_classes = Vec::new();
    let mut first_ok = None;
    for _ in 0..MAX_STACKED_PICKLES {
        let p = walk(rest, walk_limits(ctx.settings));
        globals.add(&p);
        module_classes.extend(Reader::new(&p).module_classes());
        first_ok.get_or_insert(p.error.is_none());
        if p.error.is_some() || p.consumed == 0 || p.consumed >= rest.len() {
            break;
        }
        rest = &rest[p.consumed..];
    }
    let mut issues = Vec::new();
    if !globals.is_empty() {
        insp.globals = globals.names();
        let j = judge(ctx, &globals, false, &module_classes);
        insp.safety = j.safety;
        issues.extend(j.issues);
    }
    let parsed = first_ok == Some(true);
    let what = if head.is_empty() {
        "the file is empty".to_string()
    } else if parsed || !globals.is_empty() {
        "a bare pickle, not a file written by torch.save (no zip signature, no legacy magic number)"
            .to_string()
    } else if head.starts_with(b"\x93NUMPY") {
        "a NumPy array file".to_string()
    } else if head.starts_with(b"\x89PNG") {
        "a PNG image".to_string()
    } else if head.starts_with(b"7z\xbc\xaf") {
        "a 7-Zip archive".to_string()
    } else if head.starts_with(b"\x08") || contains(&head[..head.len().min(64)], b"onnx") {
        "possibly an ONNX model; export TorchScript instead".to_string()
    } else {
        "neither a zip archive (PK\\x03\\x04) nor a legacy PyTorch pickle".to_string()
    };
    if issues.is_empty() {
        issues.push(rules::NOT_PYTORCH.issue(f, format!("not a PyTorch file: {what}")));
    }
    finalize(insp, issues)
}

/// Most pickles walked one after another in a bare file.
const MAX_STACKED_PICKLES: usize = 64;

/// The pickle inside a `.npy` file of object dtype (after the header).
fn npy_payload(b: &[u8]) -> Option<&[u8]> {
    if !b.starts_with(b"\x93NUMPY") || b.len() < 10 {
        return None;
    }
    let (len, start) = if b[6] == 1 {
        (usize::from(u16::from_le_bytes([b[8], b[9]])), 10)
    } else {
        let l = b.get(8..12)?;
        (
            usize::try_from(u32::from_le_bytes([l[0], l[1], l[2], l[3]])).ok()?,
            12,
        )
    };
    b.get(start + len..)
}
