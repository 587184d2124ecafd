//! What a package declares about its model, pulled once from the three parsed metadata files.
//!
//! The cross-file rules compare these declarations, the report's summary shows them, and the
//! compile server builds from them: one reading of the metadata for all three, so what is
//! compiled is what was checked.

use super::{Contents, Value};

/// The declarations, owned (metadata files are small; cloning two stage mappings costs
/// nothing next to reading the package, and an owned value can travel with the validated
/// package to the compiler).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Declared {
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub config_classes: Option<u64>,
    pub class_names: Option<Vec<String>>,
    /// mochi.json `stages[0]`.
    pub mochi_stage: Option<Value>,
    pub mochi_input: Option<Vec<i64>>,
    pub mochi_output: Option<Vec<i64>>,
    pub mochi_classes: Option<u64>,
    pub mochi_type: Option<String>,
    pub manifest_input: Option<Vec<i64>>,
    /// manifest.json `model_graph.stages[0]`.
    pub graph_stage: Option<Value>,
    /// mochi.json `model_info.architecture`: the builder's name, when the package says it.
    pub architecture: Option<String>,
}

/// A 4-dimensional shape of positive integers.
pub(crate) fn shape4(v: Option<&Value>) -> Option<Vec<i64>> {
    v.and_then(Value::as_shape).filter(|s| s.len() == 4)
}

impl Declared {
    pub fn from(c: &Contents) -> Self {
        Declared::of(c.config.value(), c.mochi.value(), c.manifest.value())
    }

    /// From the parsed files (any may be absent).
    pub fn of(config: Option<&Value>, mochi: Option<&Value>, manifest: Option<&Value>) -> Self {
        let dataset = config.and_then(|v| v.get("dataset"));
        let mochi_stage = mochi
            .and_then(|m| m.get("stages"))
            .and_then(Value::as_seq)
            .and_then(<[Value]>::first);
        let graph_stage = manifest
            .and_then(|m| m.path(&["model_graph", "stages"]))
            .and_then(Value::as_seq)
            .and_then(<[Value]>::first);
        let positive = |map: Option<&Value>, key: &str| {
            map.and_then(|m| m.get(key))
                .and_then(Value::as_positive_int)
        };
        Declared {
            width: positive(dataset, "image_width"),
            height: positive(dataset, "image_height"),
            config_classes: positive(dataset, "num_classes"),
            class_names: dataset
                .and_then(|d| d.get("class_names"))
                .and_then(Value::as_seq)
                .and_then(|s| s.iter().map(|v| v.as_str().map(str::to_string)).collect()),
            mochi_stage: mochi_stage.cloned(),
            mochi_input: shape4(mochi_stage.and_then(|s| s.get("input_shape"))),
            mochi_output: mochi_stage
                .and_then(|s| s.get("output_shape"))
                .and_then(Value::as_shape),
            mochi_classes: positive(mochi_stage, "num_classes"),
            mochi_type: mochi_stage
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str)
                .map(str::to_string),
            manifest_input: shape4(manifest.and_then(|m| m.get("input_shape"))),
            graph_stage: graph_stage.cloned(),
            architecture: mochi
                .and_then(|m| m.path(&["model_info", "architecture"]))
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }

    /// The input shape the package declares (mochi's, else the manifest's).
    pub fn input_shape(&self) -> Option<&[i64]> {
        self.mochi_input
            .as_deref()
            .or(self.manifest_input.as_deref())
    }

    pub fn num_classes(&self) -> Option<u64> {
        self.config_classes.or(self.mochi_classes)
    }

    pub fn stage_type(&self) -> Option<&str> {
        self.mochi_type.as_deref().or_else(|| {
            self.graph_stage
                .as_ref()
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str)
        })
    }

    pub fn output_shape(&self) -> Option<Vec<i64>> {
        self.mochi_output.clone().or_else(|| {
            self.graph_stage
                .as_ref()
                .and_then(|s| s.get("output_shape"))
                .and_then(Value::as_shape)
        })
    }
}
