//! What the package declares, read from its (already validated) metadata files.

use serde_json::Value;

use crate::error::CompileError;
use crate::package::ExtractedPackage;

/// The declarations the compiler uses and copies into `deployment.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    pub model_type: String,
    pub input_shape: Vec<i64>,
    pub output_shape: Option<Vec<i64>>,
    pub image_width: Option<i64>,
    pub image_height: Option<i64>,
    pub num_classes: Option<u64>,
    pub class_names: Option<Vec<String>>,
    /// mochi.json's `model_graph` equivalent (its `stages`), copied verbatim.
    pub model_graph: Value,
    pub preprocessing: Option<Value>,
    pub postprocessing: Option<Value>,
    pub model_info: Option<Value>,
}

fn shape(v: Option<&Value>) -> Option<Vec<i64>> {
    v?.as_array()?.iter().map(Value::as_i64).collect()
}

/// Reads the declarations; the validator has checked them, but a missing field is still an
/// error here rather than a panic.
pub fn read(pkg: &ExtractedPackage) -> Result<Declared, CompileError> {
    let bad = |what: &str| CompileError::InvalidPackage(what.to_string());
    let mochi: Value =
        serde_json::from_str(&pkg.mochi_json).map_err(|e| bad(&format!("mochi.json: {e}")))?;
    let manifest: Value = serde_json::from_str(&pkg.manifest_json)
        .map_err(|e| bad(&format!("manifest.json: {e}")))?;
    let stage = mochi
        .pointer("/stages/0")
        .ok_or_else(|| bad("mochi.json has no stages[0]"))?;
    let input_shape = shape(stage.get("input_shape"))
        .filter(|s| s.len() == 4 && s.iter().all(|&d| d > 0))
        .ok_or_else(|| bad("mochi.json stages[0].input_shape is not [B, C, H, W]"))?;
    let output_shape = shape(stage.get("output_shape"))
        .or_else(|| shape(manifest.pointer("/model_graph/stages/0/output_shape")));
    let (mut width, mut height, mut num_classes, mut class_names) = (None, None, None, None);
    if let Some(text) = &pkg.config_yaml {
        if let Ok(docs) = yaml_rust2::YamlLoader::load_from_str(text) {
            if let Some(ds) = docs.first().map(|d| &d["dataset"]) {
                width = ds["image_width"].as_i64();
                height = ds["image_height"].as_i64();
                num_classes = ds["num_classes"]
                    .as_i64()
                    .and_then(|n| u64::try_from(n).ok());
                class_names = ds["class_names"]
                    .as_vec()
                    .and_then(|v| v.iter().map(|c| c.as_str().map(str::to_string)).collect());
            }
        }
    }
    if num_classes.is_none() {
        num_classes = stage.get("num_classes").and_then(Value::as_u64);
    }
    Ok(Declared {
        model_type: stage
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string(),
        input_shape,
        output_shape,
        image_width: width,
        image_height: height,
        num_classes,
        class_names,
        model_graph: mochi.get("stages").cloned().unwrap_or(Value::Null),
        preprocessing: manifest.get("preprocessing").cloned(),
        postprocessing: manifest.get("postprocessing").cloned(),
        model_info: mochi.get("model_info").cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(mochi: &str, manifest: &str, config: Option<&str>) -> ExtractedPackage {
        ExtractedPackage {
            sha256: String::new(),
            report: byom_core::Validator::new(&byom_core::Settings::default()).finish(),
            config_yaml: config.map(str::to_string),
            mochi_json: mochi.to_string(),
            manifest_json: manifest.to_string(),
            model_name: "m.pt".to_string(),
            model_path: "/nonexistent".into(),
        }
    }

    #[test]
    fn reads_shapes_and_classes() {
        let d = read(&pkg(
            r#"{"stages":[{"type":"classification","input_shape":[1,3,224,224],"output_shape":[1,2]}]}"#,
            r#"{"postprocessing":{"type":"softmax"}}"#,
            Some("dataset:\n  image_width: 224\n  image_height: 224\n  class_names: [good, defect]\n"),
        ))
        .unwrap();
        assert_eq!(d.input_shape, vec![1, 3, 224, 224]);
        assert_eq!(d.output_shape, Some(vec![1, 2]));
        assert_eq!(
            d.class_names,
            Some(vec!["good".to_string(), "defect".to_string()])
        );
        assert_eq!(d.image_width, Some(224));
        assert_eq!(d.postprocessing.unwrap()["type"], "softmax");
    }

    #[test]
    fn output_shape_falls_back_to_manifest_and_bad_input_is_an_error() {
        let d = read(&pkg(
            r#"{"stages":[{"type":"x","input_shape":[1,3,8,8]}]}"#,
            r#"{"model_graph":{"stages":[{"output_shape":[1,5]}]}}"#,
            None,
        ))
        .unwrap();
        assert_eq!(d.output_shape, Some(vec![1, 5]));
        assert!(read(&pkg(
            r#"{"stages":[{"input_shape":[1,3,0,8]}]}"#,
            "{}",
            None
        ))
        .is_err());
        assert!(read(&pkg("{", "{}", None)).is_err());
    }
}
