//! `export_artifacts/manifest.json` rules (`BYOM4xx`): the model graph, the input shape and the
//! compilable models the compile step reads.

use crate::package::contents::MANIFEST;
use crate::package::{Contents, MetaFile, Value};
use crate::report::Issue;
use crate::report::Severity::Error;
use crate::rules::layout::MetaRules;
use crate::rules::mochi::{check_input_shape, check_output_shape};
use crate::rules::Rule;

pub const MANIFEST_EMPTY: Rule = Rule {
    code: "BYOM401",
    name: "manifest-empty",
    severity: Error,
    summary: "`export_artifacts/manifest.json` is empty.",
    hint: "Write model_graph, input_shape and compilable_models as in the guide's examples.",
    doc: "manifest.json is empty",
};

pub const MANIFEST_INVALID_JSON: Rule = Rule {
    code: "BYOM402",
    name: "manifest-invalid-json",
    severity: Error,
    summary: "`manifest.json` is not valid JSON.",
    hint: "Fix the JSON syntax at the line and column given (no comments, no trailing commas, double quotes).",
    doc: "Invalid JSON in manifest.json: followed by the parser's message.",
};

pub const MANIFEST_MISSING_MODEL_GRAPH: Rule = Rule {
    code: "BYOM403",
    name: "manifest-missing-model-graph",
    severity: Error,
    summary: "`manifest.json` has no usable `model_graph`.",
    hint: "Add \"model_graph\": {\"stages\": [{\"type\": ..., \"input_shape\": [B, C, H, W]}]} matching mochi.json.",
    doc: "manifest.json missing 'model_graph' — also raised when `model_graph` has no non-empty \
`stages` array whose first stage has a `type`.",
};

pub const MANIFEST_MISSING_INPUT_SHAPE: Rule = Rule {
    code: "BYOM404",
    name: "manifest-missing-input-shape",
    severity: Error,
    summary: "`manifest.json` has no top-level `input_shape`.",
    hint: "Add \"input_shape\": [B, C, H, W], the same as mochi.json's stages[0].input_shape.",
    doc: "manifest.json missing 'input_shape'",
};

pub const MANIFEST_MISSING_COMPILABLE_MODELS: Rule = Rule {
    code: "BYOM405",
    name: "manifest-missing-compilable-models",
    severity: Error,
    summary: "`compilable_models` is missing or empty.",
    hint: "Add \"compilable_models\": [{\"filename\": \"model.pt\", \"data_input_config\": {\"input\": [B, C, H, W]}, \"framework\": \"PYTORCH\"}].",
    doc: "The compile step compiles exactly the files listed in `compilable_models`; with none \
listed there is nothing to compile.",
};

pub const COMPILABLE_MISSING_FILENAME: Rule = Rule {
    code: "BYOM406",
    name: "compilable-missing-filename",
    severity: Error,
    summary: "A `compilable_models` entry has no `filename`.",
    hint: "Set \"filename\" to the .pt's name inside export_artifacts/, e.g. \"model.pt\".",
    doc: "Each entry of `compilable_models` must be an object with a non-empty string `filename`.",
};

pub const COMPILABLE_FILE_NOT_FOUND: Rule = Rule {
    code: "BYOM407",
    name: "compilable-file-not-found",
    severity: Error,
    summary: "`compilable_models[].filename` is not the `.pt` in the package.",
    hint: "Set filename to the name of the .pt actually in export_artifacts/ (without the folder).",
    doc: "The reference portal accepts a manifest naming a file that is not there; the compile \
job then fails. The filename is compared with the `.pt` in `export_artifacts/` (a leading \
`export_artifacts/` in the filename is accepted).",
};

pub const COMPILABLE_FRAMEWORK: Rule = Rule {
    code: "BYOM408",
    name: "compilable-framework",
    severity: Error,
    summary: "`compilable_models[].framework` is missing or not `PYTORCH`.",
    hint: "Set \"framework\": \"PYTORCH\" in every compilable_models entry.",
    doc: "The compiler is told the framework from this field; only PyTorch is supported.",
};

/// How this file's parse failures are reported.
const PARSE: MetaRules = MetaRules {
    file: MANIFEST,
    format: "JSON",
    empty: &MANIFEST_EMPTY,
    invalid: &MANIFEST_INVALID_JSON,
};

pub const ALL: &[&Rule] = &[
    &MANIFEST_EMPTY,
    &MANIFEST_INVALID_JSON,
    &MANIFEST_MISSING_MODEL_GRAPH,
    &MANIFEST_MISSING_INPUT_SHAPE,
    &MANIFEST_MISSING_COMPILABLE_MODELS,
    &COMPILABLE_MISSING_FILENAME,
    &COMPILABLE_FILE_NOT_FOUND,
    &COMPILABLE_FRAMEWORK,
];

/// Checks of `manifest.json` alone.
pub fn check(meta: &MetaFile) -> Vec<Issue> {
    PARSE.check(meta, check_root)
}

/// The checks of a well-formed `manifest.json`.
fn check_root(root: &Value) -> Vec<Issue> {
    let mut out = Vec::new();
    match root.get("model_graph") {
        None | Some(Value::Null) => out.push(
            MANIFEST_MISSING_MODEL_GRAPH
                .issue(Some(MANIFEST), "manifest.json missing 'model_graph'"),
        ),
        Some(graph) => match graph
            .get("stages")
            .and_then(Value::as_seq)
            .and_then(<[Value]>::first)
        {
            None => out.push(MANIFEST_MISSING_MODEL_GRAPH.issue(
                Some(MANIFEST),
                "manifest.json 'model_graph' has no non-empty 'stages' array",
            )),
            Some(stage) => {
                if stage
                    .get("type")
                    .and_then(Value::as_str)
                    .is_none_or(|t| t.trim().is_empty())
                {
                    out.push(MANIFEST_MISSING_MODEL_GRAPH.issue(
                        Some(MANIFEST),
                        "manifest.json missing 'model_graph.stages[0].type'",
                    ));
                }
                if let Some(s) = stage.get("input_shape").filter(|v| **v != Value::Null) {
                    check_input_shape(MANIFEST, "model_graph.stages[0].input_shape", s, &mut out);
                }
                if let Some(s) = stage.get("output_shape").filter(|v| **v != Value::Null) {
                    check_output_shape(MANIFEST, "model_graph.stages[0].output_shape", s, &mut out);
                }
            }
        },
    }
    match root.get("input_shape") {
        None | Some(Value::Null) => out.push(
            MANIFEST_MISSING_INPUT_SHAPE
                .issue(Some(MANIFEST), "manifest.json missing 'input_shape'"),
        ),
        Some(s) => check_input_shape(MANIFEST, "input_shape", s, &mut out),
    }
    let models = root
        .get("compilable_models")
        .and_then(Value::as_seq)
        .filter(|m| !m.is_empty());
    let Some(models) = models else {
        out.push(MANIFEST_MISSING_COMPILABLE_MODELS.issue(
            Some(MANIFEST),
            "manifest.json missing 'compilable_models' (a non-empty array)",
        ));
        return out;
    };
    for (i, m) in models.iter().enumerate() {
        if m.get("filename")
            .and_then(Value::as_str)
            .is_none_or(|f| f.trim().is_empty())
        {
            out.push(COMPILABLE_MISSING_FILENAME.issue(
                Some(MANIFEST),
                format!("manifest.json missing 'compilable_models[{i}].filename'"),
            ));
        }
        match m.get("framework") {
            Some(Value::Str(f)) if f.eq_ignore_ascii_case("pytorch") => {}
            None | Some(Value::Null) => out.push(COMPILABLE_FRAMEWORK.issue(
                Some(MANIFEST),
                format!("manifest.json missing 'compilable_models[{i}].framework' (must be \"PYTORCH\")"),
            )),
            Some(f) => out.push(COMPILABLE_FRAMEWORK.issue(
                Some(MANIFEST),
                format!("compilable_models[{i}].framework is {f}; only \"PYTORCH\" is supported."),
            )),
        }
        if let Some(input) = m
            .path(&["data_input_config", "input"])
            .filter(|v| **v != Value::Null)
        {
            check_input_shape(
                MANIFEST,
                &format!("compilable_models[{i}].data_input_config.input"),
                input,
                &mut out,
            );
        }
    }
    out
}

/// `compilable_models[].filename` must be the `.pt` actually present.
pub fn check_files(c: &Contents) -> Vec<Issue> {
    let mut out = Vec::new();
    let Some(models) = c
        .manifest
        .value()
        .and_then(|m| m.get("compilable_models"))
        .and_then(Value::as_seq)
    else {
        return out;
    };
    for (i, m) in models.iter().enumerate() {
        let Some(name) = m
            .get("filename")
            .and_then(Value::as_str)
            .filter(|f| !f.trim().is_empty())
        else {
            continue;
        };
        let bare = name.strip_prefix("./").unwrap_or(name);
        let bare = bare.strip_prefix("export_artifacts/").unwrap_or(bare);
        let present = c
            .pt_files
            .iter()
            .any(|p| p.strip_prefix("export_artifacts/") == Some(bare));
        if !present {
            let actual = match c.pt_path() {
                Some(p) => format!(
                    " The .pt in the package is '{}'.",
                    p.trim_start_matches("export_artifacts/")
                ),
                None => String::new(),
            };
            out.push(COMPILABLE_FILE_NOT_FOUND.issue(
                Some(MANIFEST),
                format!(
                    "compilable_models[{i}].filename '{name}' is not in export_artifacts/.{actual}"
                ),
            ));
        }
    }
    out
}
