//! What the package declares, as the compiler uses it and copies it into `deployment.json`.
//!
//! Nothing here parses text: the values come from the core's own reading of the metadata
//! ([`byom_core::ValidatedPackage`]), the same one its rules checked.

use byom_core::package::{Declared, Value};
use byom_core::ValidatedPackage;
use serde_json::Value as Json;

use crate::error::CompileError;

/// The declarations the compiler uses and copies into `deployment.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDeclarations {
    pub model_type: String,
    pub input_shape: Vec<i64>,
    pub output_shape: Option<Vec<i64>>,
    pub image_width: Option<u64>,
    pub image_height: Option<u64>,
    pub num_classes: Option<u64>,
    pub class_names: Option<Vec<String>>,
    /// mochi.json's `model_graph` equivalent (its `stages`), copied verbatim.
    pub model_graph: Json,
    pub preprocessing: Option<Json>,
    pub postprocessing: Option<Json>,
    pub model_info: Option<Json>,
}

/// The declarations of a validated package.
pub fn read(pkg: &ValidatedPackage) -> Result<ModelDeclarations, CompileError> {
    from_parts(&pkg.declared, &pkg.mochi, &pkg.manifest)
}

/// From the core's declarations and the parsed mochi.json / manifest.json. The validator has
/// checked them; a missing input shape is still an error here rather than a panic.
pub fn from_parts(
    declared: &Declared,
    mochi: &Value,
    manifest: &Value,
) -> Result<ModelDeclarations, CompileError> {
    let input_shape = declared.input_shape().map(<[i64]>::to_vec).ok_or_else(|| {
        CompileError::InvalidPackage(
            "mochi.json stages[0].input_shape is not [B, C, H, W]".to_string(),
        )
    })?;
    Ok(ModelDeclarations {
        model_type: declared.stage_type().unwrap_or("unknown").to_string(),
        input_shape,
        output_shape: declared.output_shape(),
        image_width: declared.width,
        image_height: declared.height,
        num_classes: declared.num_classes(),
        class_names: declared.class_names.clone(),
        model_graph: mochi.get("stages").map_or(Json::Null, Value::to_json),
        preprocessing: manifest.get("preprocessing").map(Value::to_json),
        postprocessing: manifest.get("postprocessing").map(Value::to_json),
        model_info: mochi.get("model_info").map(Value::to_json),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use byom_core::package::{json, yaml};
    use byom_core::Limits;

    fn decl(mochi: &str, manifest: &str, config: &str) -> Result<ModelDeclarations, CompileError> {
        let l = Limits::default();
        let mochi = json::parse(mochi.as_bytes(), &l).unwrap();
        let manifest = json::parse(manifest.as_bytes(), &l).unwrap();
        let config = yaml::parse(config.as_bytes(), &l).unwrap();
        let d = Declared::of(Some(&config), Some(&mochi), Some(&manifest));
        from_parts(&d, &mochi, &manifest)
    }

    #[test]
    fn reads_shapes_and_classes() {
        let d = decl(
            r#"{"stages":[{"type":"classification","input_shape":[1,3,224,224],"output_shape":[1,2]}],"model_info":{"name":"m"}}"#,
            r#"{"postprocessing":{"type":"softmax","threshold":0.5}}"#,
            "dataset:\n  image_width: 224\n  image_height: 224\n  class_names: [good, defect]\n",
        )
        .unwrap();
        assert_eq!(d.model_type, "classification");
        assert_eq!(d.input_shape, vec![1, 3, 224, 224]);
        assert_eq!(d.output_shape, Some(vec![1, 2]));
        assert_eq!(
            d.class_names,
            Some(vec!["good".to_string(), "defect".to_string()])
        );
        assert_eq!(d.image_width, Some(224));
        let post = d.postprocessing.unwrap();
        assert_eq!(post["type"], "softmax");
        assert_eq!(post["threshold"], 0.5);
        assert_eq!(d.model_info.unwrap()["name"], "m");
        assert_eq!(d.model_graph[0]["input_shape"][3], 224);
    }

    #[test]
    fn output_shape_falls_back_to_manifest_and_missing_input_is_an_error() {
        let d = decl(
            r#"{"stages":[{"type":"x","input_shape":[1,3,8,8]}]}"#,
            r#"{"model_graph":{"stages":[{"output_shape":[1,5]}]}}"#,
            "dataset: {}\n",
        )
        .unwrap();
        assert_eq!(d.output_shape, Some(vec![1, 5]));
        assert!(decl(r#"{"stages":[{"input_shape":[1,3,0,8]}]}"#, "{}", "a: 1\n").is_err());
    }
}
