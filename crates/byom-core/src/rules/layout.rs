//! Package layout rules (`BYOM1xx`): the required files, the one `.pt`, other model formats,
//! extra files, and the metadata files' encoding and structure limits.

use crate::package::contents::{is_export_pt, CONFIG, EXPORT_DIR, MANIFEST, MOCHI};
use crate::package::{Contents, MetaError, MetaFile, Value};
use crate::report::Issue;
use crate::report::Severity::{Error, Warning};
use crate::rules::Rule;
use crate::torch::PtKind;

pub const MISSING_REQUIRED_FILE: Rule = Rule {
    code: "BYOM101",
    name: "missing-required-file",
    severity: Error,
    summary: "A required file is missing from the archive root.",
    hint: "A package holds config.yaml and mochi.json at the root and export_artifacts/manifest.json plus one .pt: `tar czf model.tar.gz config.yaml mochi.json export_artifacts`.",
    doc: "Missing required files in model artifact: followed by one line per file.\n\n\
Required: `config.yaml`, `mochi.json`, `export_artifacts/manifest.json` (paths are compared \
after removing `./`).",
};

pub const NO_PT_FILE: Rule = Rule {
    code: "BYOM102",
    name: "no-pt-file",
    severity: Error,
    summary: "There is no `.pt` file directly inside `export_artifacts/`.",
    hint: "Save the model into export_artifacts/, e.g. `torch.jit.trace(model, example).save(\"export_artifacts/model.pt\")`.",
    doc: "No .pt model file found in export_artifacts/. Model must include a PyTorch model file \
(.pt extension).\n\nA `.pt` elsewhere in the archive (root, a sub-folder) does not count; the \
hint names it when there is one.",
};

pub const MULTIPLE_PT_FILES: Rule = Rule {
    code: "BYOM103",
    name: "multiple-pt-files",
    severity: Error,
    summary: "More than one `.pt` file in `export_artifacts/`.",
    hint: "Keep exactly one .pt in export_artifacts/ (the one manifest.json's compilable_models names).",
    doc: "The guide requires a single `.pt`. With two, which one is compiled is ambiguous (the \
reference portal silently takes whichever comes first). Only the first is inspected.",
};

pub const WRONG_MODEL_FORMAT: Rule = Rule {
    code: "BYOM104",
    name: "wrong-model-format",
    severity: Error,
    summary: "The model is in a format other than a loadable PyTorch `.pt`.",
    hint:
        "Export TorchScript: `torch.jit.trace(model, example).save(\"export_artifacts/model.pt\")`.",
    doc: "A `.pth`, `.safetensors`, `.onnx`, `.bin`, `.pkl`, `.ckpt` or `.torchscript` file sits \
where the `.pt` should be, or the `.pt` is an ultralytics training checkpoint (`best.pt`).\n\n\
- SageMaker's `model.pth`: if it was saved with `torch.jit.save` it is TorchScript, rename it to \
`.pt`; otherwise load it and re-export.\n\
- ultralytics `best.pt`: `yolo export model=best.pt format=torchscript`, then package \
`best.torchscript` renamed to `.pt`.\n\
- ONNX / safetensors: load the weights into the PyTorch model and export TorchScript.",
};

pub const EXTRA_FILE: Rule = Rule {
    code: "BYOM106",
    name: "extra-file",
    severity: Warning,
    summary: "A file that is not part of the package format.",
    hint: "Remove it from the archive; only config.yaml, mochi.json, export_artifacts/manifest.json and the .pt are used.",
    doc: "Extra files are carried along but never used; often they are left-overs (a second \
model, a notebook, `.DS_Store`).",
};

pub const METADATA_NOT_UTF8: Rule = Rule {
    code: "BYOM107",
    name: "metadata-not-utf8",
    severity: Error,
    summary: "A metadata file is not valid UTF-8 text.",
    hint: "Save the file as UTF-8 (most editors: \"Save with encoding → UTF-8\").",
    doc: "YAML and JSON are UTF-8. A file saved as UTF-16 or Latin-1 (e.g. by Windows PowerShell \
`>` redirection) cannot be read the same way everywhere.",
};

pub const DUPLICATE_KEY: Rule = Rule {
    code: "BYOM108",
    name: "duplicate-key",
    severity: Error,
    summary: "A key appears twice in the same YAML mapping or JSON object.",
    hint: "Keep one copy of the key; parsers disagree on which one wins.",
    doc: "`{\"input_shape\": [1,3,224,224], \"input_shape\": [1,3,640,640]}`: Python keeps the \
last, other readers the first. A duplicate is an error so every reader sees the same value.",
};

pub const METADATA_TOO_DEEP: Rule = Rule {
    code: "BYOM109",
    name: "metadata-too-deep",
    severity: Error,
    summary: "A metadata file nests too deeply or uses too many YAML aliases (an alias bomb).",
    hint: "Metadata is a few levels deep; remove the deep nesting / YAML anchors and aliases.",
    doc: "Nesting deeper than `max_nesting_depth`, more than `max_yaml_aliases` alias references, \
or aliases that expand to a huge document (\"billion laughs\") are refused before they cost \
memory.",
};

pub const ALL: &[&Rule] = &[
    &MISSING_REQUIRED_FILE,
    &NO_PT_FILE,
    &MULTIPLE_PT_FILES,
    &WRONG_MODEL_FORMAT,
    &EXTRA_FILE,
    &METADATA_NOT_UTF8,
    &DUPLICATE_KEY,
    &METADATA_TOO_DEEP,
];

/// Extensions of model files that are not what the package needs, with a specific hint each.
fn wrong_format_hint(path: &str) -> Option<String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let hint = match ext.as_str() {
        "pth" => format!(
            "If {name} was saved with torch.jit.save (TorchScript), rename it to {stem}.pt. Otherwise \
             (SageMaker's model.pth is usually a state dict or a pickled model) load it in Python and \
             re-export: torch.jit.trace(model, example).save(\"export_artifacts/{stem}.pt\")."
        ),
        "torchscript" => format!(
            "This is ultralytics' TorchScript export: rename it to export_artifacts/{stem}.pt."
        ),
        "onnx" => "ONNX cannot be compiled here: export the PyTorch model instead with \
                   torch.jit.trace(model, example).save(\"export_artifacts/model.pt\")."
            .to_string(),
        "safetensors" => "safetensors holds weights only: load them into the model class \
                          (model.load_state_dict(safetensors.torch.load_file(...))) and export \
                          torch.jit.trace(model, example).save(\"export_artifacts/model.pt\")."
            .to_string(),
        "bin" | "pkl" | "ckpt" => format!(
            "Load {name} in Python, then export TorchScript: \
             torch.jit.trace(model, example).save(\"export_artifacts/{stem}.pt\")."
        ),
        _ => return None,
    };
    Some(hint)
}

fn is_metadata(path: &str) -> bool {
    path == CONFIG || path == MOCHI || path == MANIFEST
}

/// Layout checks over the whole package (missing files, the `.pt`, extras).
pub fn check(c: &Contents) -> Vec<Issue> {
    let mut out = Vec::new();
    let missing: Vec<&str> = [CONFIG, MOCHI, MANIFEST]
        .into_iter()
        .filter(|f| !c.has(f))
        .collect();
    if !missing.is_empty() {
        let mut msg = String::from("Missing required files in model artifact:");
        for f in &missing {
            msg.push_str("\n  ");
            msg.push_str(f);
        }
        out.push(MISSING_REQUIRED_FILE.issue(None, msg));
    }

    let wrong: Vec<(&str, String)> = c
        .files
        .iter()
        .filter_map(|(p, _)| wrong_format_hint(p).map(|h| (p.as_str(), h)))
        .collect();
    match c.pt_files.len() {
        0 => {
            if let Some((path, hint)) = wrong.first() {
                out.push(WRONG_MODEL_FORMAT.issue_with_hint(
                    Some(path),
                    format!(
                        "No .pt model file found in export_artifacts/, but '{path}' is a model in another format."
                    ),
                    hint.clone(),
                ));
            } else {
                let elsewhere = c
                    .files
                    .iter()
                    .find(|(p, _)| p.ends_with(".pt"))
                    .map(|(p, _)| p);
                let hint = match elsewhere {
                    Some(p) => format!("Found '{p}': move it to export_artifacts/ (directly, not in a sub-folder)."),
                    None => NO_PT_FILE.hint.to_string(),
                };
                out.push(NO_PT_FILE.issue_with_hint(
                    None,
                    "No .pt model file found in export_artifacts/. Model must include a PyTorch model file (.pt extension).",
                    hint,
                ));
            }
        }
        1 => {}
        n => out.push(MULTIPLE_PT_FILES.issue(
            Some(EXPORT_DIR),
            format!(
                "export_artifacts/ holds {n} .pt files ({}); exactly one is allowed.",
                c.pt_files.join(", ")
            ),
        )),
    }

    // An ultralytics training checkpoint named like one (best.pt / last.pt).
    if let (Some(pt), Some(insp)) = (c.pt_path(), &c.inspection) {
        let name = pt.rsplit('/').next().unwrap_or(pt);
        if matches!(name, "best.pt" | "last.pt")
            && matches!(insp.kind, PtKind::Checkpoint | PtKind::PickledModule)
        {
            out.push(WRONG_MODEL_FORMAT.issue_with_hint(
                Some(pt),
                format!("'{pt}' looks like an ultralytics training checkpoint, not an exported model."),
                format!(
                    "Export it: `yolo export model={name} format=torchscript`, then package the resulting \
                     {}.torchscript as export_artifacts/{}.pt.",
                    name.trim_end_matches(".pt"),
                    name.trim_end_matches(".pt")
                ),
            ));
        }
    }

    const MAX_LISTED: usize = 20;
    let extras: Vec<&str> = c
        .files
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| !is_metadata(p) && !is_export_pt(p))
        .collect();
    for p in extras.iter().take(MAX_LISTED) {
        if c.pt_files.is_empty() && wrong.first().is_some_and(|(w, _)| w == p) {
            continue; // already reported as the model in the wrong format
        }
        out.push(EXTRA_FILE.issue(
            Some(p),
            format!("'{p}' is not part of the package format and is ignored."),
        ));
    }
    if extras.len() > MAX_LISTED {
        out.push(EXTRA_FILE.issue(
            None,
            format!(
                "{} more files are not part of the package format.",
                extras.len() - MAX_LISTED
            ),
        ));
    }
    out
}

/// How one metadata file's own rules report that it cannot be read: the one parse-or-report
/// prelude of `config.yaml`'s, `mochi.json`'s and `manifest.json`'s checks (BYOM201/202,
/// 301/302, 401/402), so the three cannot drift in wording or in which failures they skip.
pub struct MetaRules {
    /// The file's path in the package (`export_artifacts/manifest.json`).
    pub file: &'static str,
    /// `"YAML"` or `"JSON"`, as the syntax message names the format.
    pub format: &'static str,
    /// Raised when the file is empty (`BYOMx01`).
    pub empty: &'static Rule,
    /// Raised with the parser's message when the file is malformed (`BYOMx02`).
    pub invalid: &'static Rule,
}

impl MetaRules {
    /// `rules`' issues on the parsed root of `meta`, or what to report instead of checking it:
    /// nothing when the file is absent (BYOM101), too large (BYOM012) or refused by
    /// [`check_metadata`] (BYOM107–109), each reported elsewhere; the empty or invalid-syntax
    /// issue otherwise.
    pub fn check(&self, meta: &MetaFile, rules: impl FnOnce(&Value) -> Vec<Issue>) -> Vec<Issue> {
        match self.root(meta) {
            Ok(root) => rules(root),
            Err(issues) => issues,
        }
    }

    fn root<'a>(&self, meta: &'a MetaFile) -> Result<&'a Value, Vec<Issue>> {
        // Messages name the file as users know it, without the `export_artifacts/` folder.
        let name = self.file.rsplit('/').next().unwrap_or(self.file);
        match meta {
            MetaFile::Parsed(Ok(v)) => Ok(v),
            MetaFile::Parsed(Err(MetaError::Empty)) => Err(vec![self
                .empty
                .issue(Some(self.file), format!("{name} is empty"))]),
            MetaFile::Parsed(Err(MetaError::Syntax(e))) => Err(vec![self.invalid.issue(
                Some(self.file),
                format!("Invalid {} in {name}: {e}", self.format),
            )]),
            MetaFile::Absent | MetaFile::TooLarge | MetaFile::Parsed(Err(_)) => Err(Vec::new()),
        }
    }
}

/// The encoding/structure issue (BYOM107–109) of one metadata file, if any.
pub fn check_metadata(file: &str, meta: &MetaFile) -> Option<Issue> {
    let MetaFile::Parsed(Err(e)) = meta else {
        return None;
    };
    match e {
        MetaError::NotUtf8 { offset } => Some(METADATA_NOT_UTF8.issue(
            Some(file),
            format!("{file} is not valid UTF-8 (first bad byte at offset {offset})."),
        )),
        MetaError::DuplicateKey { path } => {
            Some(DUPLICATE_KEY.issue(Some(file), format!("Duplicate key '{path}' in {file}.")))
        }
        MetaError::TooDeep { limit } => Some(METADATA_TOO_DEEP.issue(
            Some(file),
            format!("{file} nests deeper than {limit} levels (limit max_nesting_depth)."),
        )),
        MetaError::AliasBomb(why) => {
            Some(METADATA_TOO_DEEP.issue(Some(file), format!("{file}: {why}.")))
        }
        MetaError::Empty | MetaError::Syntax(_) => None,
    }
}
