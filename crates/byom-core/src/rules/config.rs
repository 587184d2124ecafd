//! `config.yaml` rules (`BYOM2xx`): the `dataset` section with positive-integer image size and
//! well-formed class information.

use crate::package::contents::CONFIG;
use crate::package::{MetaFile, Value};
use crate::report::Issue;
use crate::report::Severity::Error;
use crate::rules::layout::MetaRules;
use crate::rules::Rule;

pub const CONFIG_EMPTY: Rule = Rule {
    code: "BYOM201",
    name: "config-empty",
    severity: Error,
    summary: "`config.yaml` is empty.",
    hint: "Write at least:\ndataset:\n  image_width: 224\n  image_height: 224",
    doc: "config.yaml is empty\n\nThe file has no content (or only comments).",
};

pub const CONFIG_INVALID_YAML: Rule = Rule {
    code: "BYOM202",
    name: "config-invalid-yaml",
    severity: Error,
    summary: "`config.yaml` is not valid YAML.",
    hint: "Fix the YAML syntax at the position given (indent with spaces, not tabs; one document only).",
    doc: "Invalid YAML in config.yaml: followed by the parser's message and position.",
};

pub const CONFIG_MISSING_DATASET: Rule = Rule {
    code: "BYOM203",
    name: "config-missing-dataset",
    severity: Error,
    summary: "`config.yaml` has no `dataset` mapping.",
    hint: "Add a `dataset:` section with `image_width` and `image_height`.",
    doc: "config.yaml missing 'dataset' section\n\nAlso raised when the file's top level, or \
`dataset`, is not a mapping.",
};

pub const CONFIG_MISSING_DIMENSION: Rule = Rule {
    code: "BYOM204",
    name: "config-missing-dimension",
    severity: Error,
    summary: "`dataset.image_width` or `dataset.image_height` is missing.",
    hint: "Add `image_width:` and `image_height:` under `dataset:`, equal to input_shape[3] and input_shape[2].",
    doc: "config.yaml missing 'dataset.image_width' (or 'dataset.image_height').",
};

pub const CONFIG_INVALID_DIMENSION: Rule = Rule {
    code: "BYOM205",
    name: "config-invalid-dimension",
    severity: Error,
    summary: "`image_width` / `image_height` is not a positive integer.",
    hint: "Write a bare whole number, e.g. `image_width: 224` — not \"224\" (a string), 224.0 (a float) or true.",
    doc: "Invalid image_width: {v}. Must be positive integer.\n\nStrings (`\"224\"`), floats \
(`224.0`), booleans and values ≤ 0 are all refused; the message shows the value as written.",
};

pub const CONFIG_INVALID_CLASSES: Rule = Rule {
    code: "BYOM206",
    name: "config-invalid-classes",
    severity: Error,
    summary: "`num_classes` is not a positive integer or `class_names` is not a list of strings.",
    hint: "Write `num_classes: 2` and `class_names: [good, defect]` (one name per class).",
    doc: "`num_classes` (in config.yaml's `dataset` or mochi.json's stage) must be a positive \
integer; `class_names` a list of strings.",
};

/// How this file's parse failures are reported.
const PARSE: MetaRules = MetaRules {
    file: CONFIG,
    format: "YAML",
    empty: &CONFIG_EMPTY,
    invalid: &CONFIG_INVALID_YAML,
};

pub const ALL: &[&Rule] = &[
    &CONFIG_EMPTY,
    &CONFIG_INVALID_YAML,
    &CONFIG_MISSING_DATASET,
    &CONFIG_MISSING_DIMENSION,
    &CONFIG_INVALID_DIMENSION,
    &CONFIG_INVALID_CLASSES,
];

/// Checks of `config.yaml` alone.
pub fn check(meta: &MetaFile) -> Vec<Issue> {
    PARSE.check(meta, check_root)
}

/// The checks of a well-formed `config.yaml`.
fn check_root(root: &Value) -> Vec<Issue> {
    let mut out = Vec::new();
    let Some(dataset) = root.get("dataset").filter(|d| d.is_map()) else {
        out.push(
            CONFIG_MISSING_DATASET.issue(Some(CONFIG), "config.yaml missing 'dataset' section"),
        );
        return out;
    };
    for key in ["image_width", "image_height"] {
        match dataset.get(key) {
            None | Some(Value::Null) => out.push(
                CONFIG_MISSING_DIMENSION
                    .issue(Some(CONFIG), format!("config.yaml missing 'dataset.{key}'")),
            ),
            Some(v) if v.as_positive_int().is_none() => out.push(CONFIG_INVALID_DIMENSION.issue(
                Some(CONFIG),
                format!(
                    "Invalid {key}: {v}. Must be positive integer.{}",
                    kind_note(v)
                ),
            )),
            Some(_) => {}
        }
    }
    check_classes(CONFIG, "dataset.", dataset, &mut out);
    out
}

/// " (a string)" etc., when the value is of the wrong kind rather than out of range.
pub fn kind_note(v: &Value) -> String {
    match v {
        Value::Int(_) => String::new(),
        other => format!(" (it is {})", other.kind()),
    }
}

/// `num_classes` / `class_names` shape checks, shared with mochi.json's stage.
pub fn check_classes(file: &str, prefix: &str, map: &Value, out: &mut Vec<Issue>) {
    if let Some(n) = map.get("num_classes").filter(|v| **v != Value::Null) {
        if n.as_positive_int().is_none() {
            out.push(CONFIG_INVALID_CLASSES.issue(
                Some(file),
                format!(
                    "Invalid {prefix}num_classes: {n}. Must be positive integer.{}",
                    kind_note(n)
                ),
            ));
        }
    }
    if let Some(names) = map.get("class_names").filter(|v| **v != Value::Null) {
        let ok = names
            .as_seq()
            .is_some_and(|s| s.iter().all(|v| v.as_str().is_some()));
        if !ok {
            out.push(CONFIG_INVALID_CLASSES.issue(
                Some(file),
                format!("Invalid {prefix}class_names: {names}. Must be a list of strings."),
            ));
        }
    }
}
