//! A zip `.pt` (state dict, checkpoint, TorchScript, pickled module) judged in named steps
//! over the [`ZipView`] the zip reader produced: structure → TorchScript? → walk pickles →
//! versions → safety → inventory → storage sizes → usability → torch version. Only a file
//! that is safe to read and has no error gets the usability verdicts.

use super::common::{
    arch_verdict, contains, dtypes_used, fill_tensors, finalize, judge, pickle_error_issue,
    version_issues, walk_limits, weights, Ctx, Globals,
};
use crate::diagnostics::{Issue, Severity};
use crate::torch::inventory::{Layout, Reader};
use crate::torch::pickle::{walk, Pickle};
use crate::torch::rules;
use crate::torch::script_class::ScriptClass;
use crate::torch::script_code::{CodeLayer, ProvenLayer, ScriptCode};
use crate::torch::version::{self, Evidence};
use crate::torch::zip::{ZipProblem, ZipView};
use crate::torch::{ops, signature};
use crate::torch::{PtInspection, PtKind, Safety};

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
    if torchscript {
        script_facts(&view, &p, &mut insp);
    }
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
    // All TorchScript code, joined once for the operator scan and the version evidence.
    let code = code_text(&view);
    if torchscript {
        let found = callable(ctx, &mut insp, &view, &code, &p, &walked.globals);
        issues.extend(found);
    }
    let v = zip_version_issues(ctx, &mut insp, &view, &code, torchscript, &walked.globals);
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

/// Step 6b, TorchScript: the root module's class names the architecture, and the archive's
/// code proves (or not) the layers the input enters and the output leaves
/// ([`crate::torch::script_code`]); their weights come from the inventory just read.
fn script_facts(view: &ZipView, p: &Pickle, insp: &mut PtInspection) {
    // The same root class the `forward` check reads (one reader of it: signature::root_class).
    let Some(class) = signature::root_class(p).and_then(|(m, n)| ScriptClass::from_global(m, n))
    else {
        return;
    };
    insp.architecture = Some(class.display());
    let files = view.records.iter().filter_map(|(name, r)| {
        let rel = view.rel(name);
        let code = rel.starts_with("code/") && rel.ends_with(".py") && !r.truncated;
        Some((rel, std::str::from_utf8(&r.data).ok().filter(|_| code)?))
    });
    let code = ScriptCode::parse(files);
    let prove = |l: Option<CodeLayer>| l.and_then(|l| ProvenLayer::new(&l, &insp.tensors));
    // Only a complete inventory holds every layer's weight.
    if insp.tensor_count == insp.tensors.len() as u64 {
        insp.input_layer = prove(code.input_layer(&class.qualified));
        insp.output_layer = prove(code.output_layer(&class.qualified));
    }
    insp.script_class = Some(class);
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

/// Step 8b, TorchScript only: the operators the file calls (BYOM630 for a namespace the server
/// lacks) and its root `forward` (BYOM631 when it cannot take one tensor). Either makes the
/// file not compilable on the server.
fn callable(
    ctx: &Ctx<'_>,
    insp: &mut PtInspection,
    view: &ZipView,
    code: &str,
    data: &Pickle,
    globals: &Globals,
) -> Vec<Issue> {
    let calls = ops::scan(code, globals.as_slice());
    let mut issues = ops::check(&calls, &ctx.settings.operator_namespaces, ctx.file);
    insp.operators = calls.operators.into_iter().collect();
    insp.custom_classes = calls.classes.into_iter().collect();
    insp.forward = signature::root_class(data).and_then(|(module, class)| {
        let rec = view.record(&signature::code_record(module))?;
        signature::parse(&String::from_utf8_lossy(&rec.data), module, class)
    });
    issues.extend(
        insp.forward
            .as_ref()
            .and_then(|f| signature::check(f, ctx.file)),
    );
    if !issues.is_empty() {
        insp.server_compilable = false;
    }
    issues
}

/// Step 9: the minimum torch version the file needs (BYOM701/702), from the zip's evidence;
/// a file too new for `required_torch` is not compilable on the server.
fn zip_version_issues(
    ctx: &Ctx<'_>,
    insp: &mut PtInspection,
    view: &ZipView,
    code: &str,
    torchscript: bool,
    globals: &Globals,
) -> Vec<Issue> {
    let ev = Evidence {
        zip: true,
        torchscript,
        scripted_string_table: insp.kind == PtKind::TorchscriptScripted && string_table(view),
        archive_version: insp.archive_version,
        globals: globals.as_slice(),
        dtypes: dtypes_used(insp, globals),
        code,
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
