//! `mochi.json` rules (`BYOM3xx`): the `stages` array, the first stage's `type` and shapes,
//! and the declared framework. The shape checks (BYOM307–309) are shared with manifest.json.

use crate::package::contents::MOCHI;
use crate::package::{MetaFile, Value};
use crate::report::Issue;
use crate::report::Severity::Error;
use crate::rules::config::check_classes;
use crate::rules::layout::MetaRules;
use crate::rules::Rule;

pub const MOCHI_EMPTY: Rule = Rule {
    code: "BYOM301",
    name: "mochi-empty",
    severity: Error,
    summary: "`mochi.json` is empty.",
    hint: "Write at least {\"stages\": [{\"type\": \"classification\", \"input_shape\": [1, 3, 224, 224]}]}.",
    doc: "mochi.json is empty",
};

pub const MOCHI_INVALID_JSON: Rule = Rule {
    code: "BYOM302",
    name: "mochi-invalid-json",
    severity: Error,
    summary: "`mochi.json` is not valid JSON.",
    hint: "Fix the JSON syntax at the line and column given (no comments, no trailing commas, double quotes).",
    doc: "Invalid JSON in mochi.json: followed by the parser's message. The guide's examples show \
`//` comments for explanation; real files must not contain them.",
};

pub const MOCHI_MISSING_STAGES: Rule = Rule {
    code: "BYOM303",
    name: "mochi-missing-stages",
    severity: Error,
    summary: "`mochi.json` has no `stages` array.",
    hint: "Add \"stages\": [{\"type\": ..., \"input_shape\": [B, C, H, W]}].",
    doc: "mochi.json missing 'stages' array (also when the top level is not an object or \
`stages` is not an array).",
};

pub const MOCHI_EMPTY_STAGES: Rule = Rule {
    code: "BYOM304",
    name: "mochi-empty-stages",
    severity: Error,
    summary: "`mochi.json`'s `stages` array is empty.",
    hint: "Put one stage object into \"stages\".",
    doc: "mochi.json 'stages' must be a non-empty array",
};

pub const MOCHI_MISSING_TYPE: Rule = Rule {
    code: "BYOM305",
    name: "mochi-missing-type",
    severity: Error,
    summary: "The first stage has no `type`.",
    hint: "Add \"type\": \"classification\" (or object_detection, segmentation, anomaly_detection, ...) to stages[0].",
    doc: "mochi.json missing 'stages[0].type' (also when `type` is not a non-empty string or the \
stage is not an object).",
};

pub const MOCHI_MISSING_INPUT_SHAPE: Rule = Rule {
    code: "BYOM306",
    name: "mochi-missing-input-shape",
    severity: Error,
    summary: "The first stage has no `input_shape`.",
    hint: "Add \"input_shape\": [1, 3, H, W] to stages[0], with H and W as in config.yaml.",
    doc: "mochi.json missing 'stages[0].input_shape'",
};

pub const INVALID_INPUT_SHAPE: Rule = Rule {
    code: "BYOM307",
    name: "invalid-input-shape",
    severity: Error,
    summary: "An input shape is not a 4-element list `[batch, channels, height, width]`.",
    hint: "Write the shape as [batch, channels, height, width], e.g. [1, 3, 224, 224].",
    doc: "Invalid input_shape: {s}. Must be [batch, channels, height, width]\n\nChecked for \
mochi.json's `stages[0].input_shape` and, in manifest.json, `input_shape`, \
`model_graph.stages[0].input_shape` and `compilable_models[].data_input_config.input`; `file` \
and the message say which.",
};

pub const INVALID_INPUT_DIMENSION: Rule = Rule {
    code: "BYOM308",
    name: "invalid-input-dimension",
    severity: Error,
    summary: "An input shape element is not a positive integer.",
    hint: "Every element of the shape must be a whole number ≥ 1, e.g. [1, 3, 224, 224] (no strings, floats or -1).",
    doc: "Invalid input_shape dimension at index {i}: {d}. Must be positive integer.",
};

pub const INVALID_OUTPUT_SHAPE: Rule = Rule {
    code: "BYOM309",
    name: "invalid-output-shape",
    severity: Error,
    summary: "`output_shape` is not a list of positive integers.",
    hint:
        "Write output_shape as a list of whole numbers, e.g. [1, 2] for 2 classes, or leave it out.",
    doc: "`output_shape` is optional, but when given (mochi or manifest) it must be a non-empty \
list of positive integers.",
};

pub const FRAMEWORK_NOT_PYTORCH: Rule = Rule {
    code: "BYOM310",
    name: "framework-not-pytorch",
    severity: Error,
    summary: "`model_info.framework` names a framework other than PyTorch.",
    hint: "Only PyTorch models can be imported: set \"framework\": \"pytorch\" (and package a PyTorch .pt).",
    doc: "`model_info.framework` is optional; when given it must be `pytorch` (any case).",
};

/// How this file's parse failures are reported.
const PARSE: MetaRules = MetaRules {
    file: MOCHI,
    format: "JSON",
    empty: &MOCHI_EMPTY,
    invalid: &MOCHI_INVALID_JSON,
};

pub const ALL: &[&Rule] = &[
    &MOCHI_EMPTY,
    &MOCHI_INVALID_JSON,
    &MOCHI_MISSING_STAGES,
    &MOCHI_EMPTY_STAGES,
    &MOCHI_MISSING_TYPE,
    &MOCHI_MISSING_INPUT_SHAPE,
    &INVALID_INPUT_SHAPE,
    &INVALID_INPUT_DIMENSION,
    &INVALID_OUTPUT_SHAPE,
    &FRAMEWORK_NOT_PYTORCH,
];

/// Check a `[B, C, H, W]` shape; `label` is how the message names it (`input_shape`).
pub fn check_input_shape(file: &str, label: &str, v: &Value, out: &mut Vec<Issue>) {
    let Some(items) = v.as_seq().filter(|s| s.len() == 4) else {
        out.push(INVALID_INPUT_SHAPE.issue(
            Some(file),
            format!("Invalid {label}: {v}. Must be [batch, channels, height, width]"),
        ));
        return;
    };
    for (i, d) in items.iter().enumerate() {
        if d.as_positive_int().is_none() {
            out.push(INVALID_INPUT_DIMENSION.issue(
                Some(file),
                format!(
                    "Invalid {label} dimension at index {i}: {d}. Must be positive integer.{}",
                    crate::rules::config::kind_note(d)
                ),
            ));
        }
    }
}

/// Check an optional output shape.
pub fn check_output_shape(file: &str, label: &str, v: &Value, out: &mut Vec<Issue>) {
    let ok = v.as_seq().is_some_and(|s| !s.is_empty()) && v.as_shape().is_some();
    if !ok {
        out.push(INVALID_OUTPUT_SHAPE.issue(
            Some(file),
            format!("Invalid {label}: {v}. Must be a list of positive integers."),
        ));
    }
}

/// Checks of `mochi.json` alone.
pub fn check(meta: &MetaFile) -> Vec<Issue> {
    PARSE.check(meta, check_root)
}

/// The checks of a well-formed `mochi.json`.
fn check_root(root: &Value) -> Vec<Issue> {
    let mut out = Vec::new();
    if let Some(fw) = root
        .path(&["model_info", "framework"])
        .filter(|v| **v != Value::Null)
    {
        if !fw
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("pytorch"))
        {
            out.push(FRAMEWORK_NOT_PYTORCH.issue(
                Some(MOCHI),
                format!(
                    "mochi.json model_info.framework is {fw}; only pytorch models are supported."
                ),
            ));
        }
    }
    let Some(stages) = root.get("stages").and_then(Value::as_seq) else {
        out.push(MOCHI_MISSING_STAGES.issue(Some(MOCHI), "mochi.json missing 'stages' array"));
        return out;
    };
    let Some(stage) = stages.first() else {
        out.push(
            MOCHI_EMPTY_STAGES.issue(Some(MOCHI), "mochi.json 'stages' must be a non-empty array"),
        );
        return out;
    };
    if stage
        .get("type")
        .and_then(Value::as_str)
        .is_none_or(|t| t.trim().is_empty())
    {
        out.push(MOCHI_MISSING_TYPE.issue(Some(MOCHI), "mochi.json missing 'stages[0].type'"));
    }
    match stage.get("input_shape") {
        None | Some(Value::Null) => out.push(
            MOCHI_MISSING_INPUT_SHAPE
                .issue(Some(MOCHI), "mochi.json missing 'stages[0].input_shape'"),
        ),
        Some(shape) => check_input_shape(MOCHI, "input_shape", shape, &mut out),
    }
    if let Some(shape) = stage.get("output_shape").filter(|v| **v != Value::Null) {
        check_output_shape(MOCHI, "output_shape", shape, &mut out);
    }
    if stage.is_map() {
        check_classes(MOCHI, "stages[0].", stage, &mut out);
    }
    out
}
