//! The `.pt` side: inspect a bare model file, and build a package from it in the browser.

use wasm_bindgen::prelude::*;

use byom_core::pack::PackOptions;

use crate::js::{parse_settings, to_js};

/// What `inspectPt` returns: the inspection plus the issues it raised.
#[derive(serde::Serialize)]
struct PtResult {
    inspection: byom_core::torch::PtInspection,
    issues: Vec<byom_core::Issue>,
}

/// Inspect a whole `.pt` held in memory (the smart-import flow): kind, tensors, parameters,
/// minimum torch version, safety issues, recognised architecture.
#[wasm_bindgen(js_name = inspectPt, unchecked_return_type = "PtResult")]
pub fn inspect_pt(
    bytes: &[u8],
    file_name: &str,
    settings_json: Option<String>,
) -> Result<JsValue, JsError> {
    let settings = parse_settings(settings_json.as_deref())?;
    let (inspection, issues) = byom_core::torch::inspect_bytes(bytes, &settings, file_name);
    to_js(&PtResult { inspection, issues })
}

/// The page's pack options: `byom_core::pack::PackOptions` as JSON (that type is not serde, and
/// JavaScript should not have to send every field). Unknown fields are refused so a typo in a
/// field name never silently drops what the user declared.
#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct PackOptionsJson {
    model_type: Option<String>,
    input_shape: Option<Vec<i64>>,
    output_shape: Option<Vec<i64>>,
    class_names: Vec<String>,
    num_classes: Option<u64>,
    /// `[height, width]`.
    resize: Option<[u64; 2]>,
    mean: Option<Vec<f64>>,
    std: Option<Vec<f64>>,
    channel_order: Option<String>,
    postprocessing: Option<String>,
    threshold: Option<f64>,
    confidence_threshold: Option<f64>,
    nms_threshold: Option<f64>,
    name: Option<String>,
    version: Option<String>,
    architecture: Option<String>,
    settings: Option<byom_core::Settings>,
}

impl PackOptionsJson {
    fn into_core(self) -> PackOptions {
        let defaults = PackOptions::default();
        PackOptions {
            model_type: self.model_type.unwrap_or(defaults.model_type),
            input_shape: self.input_shape.unwrap_or(defaults.input_shape),
            output_shape: self.output_shape,
            class_names: self.class_names,
            num_classes: self.num_classes,
            resize: self.resize.map(|[h, w]| (h, w)),
            mean: self.mean,
            std: self.std,
            channel_order: self.channel_order,
            postprocessing: self.postprocessing,
            threshold: self.threshold,
            confidence_threshold: self.confidence_threshold,
            nms_threshold: self.nms_threshold,
            name: self.name,
            version: self.version,
            architecture: self.architecture,
            settings: self.settings.unwrap_or(defaults.settings),
        }
    }
}

fn parse_pack_options(options_json: &str) -> Result<PackOptions, JsError> {
    let options: PackOptionsJson = serde_json::from_str(options_json)
        .map_err(|e| JsError::new(&format!("invalid pack options: {e}")))?;
    Ok(options.into_core())
}

/// Build a `model.tar.gz` from a bare `.pt` and the declared metadata (`optionsJson`: the
/// fields of the core's `PackOptions`, all optional). Returns the package bytes.
#[wasm_bindgen]
pub fn pack(pt_bytes: &[u8], pt_name: &str, options_json: &str) -> Result<Vec<u8>, JsError> {
    let options = parse_pack_options(options_json)?;
    byom_core::pack::pack(pt_bytes, pt_name, &options).map_err(|e| JsError::new(&e.to_string()))
}

/// What `packDetailed` reports besides the bytes.
#[derive(serde::Serialize)]
struct PackedInfo {
    pt_name: String,
    inspection: byom_core::torch::PtInspection,
    warnings: Vec<byom_core::Issue>,
    inferred: Vec<String>,
    config_yaml: String,
    mochi_json: String,
    manifest_json: String,
}

/// Like `pack`, and also says what was inferred, what was warned about, and the three
/// generated metadata files (the page shows them before the user downloads the package).
#[wasm_bindgen(js_name = packDetailed, unchecked_return_type = "PackedPackage")]
pub fn pack_detailed(
    pt_bytes: &[u8],
    pt_name: &str,
    options_json: &str,
) -> Result<JsValue, JsError> {
    let options = parse_pack_options(options_json)?;
    let packed = byom_core::pack::pack_with_details(pt_bytes, pt_name, &options)
        .map_err(|e| JsError::new(&e.to_string()))?;
    let bytes = js_sys::Uint8Array::from(packed.tar_gz.as_slice());
    let info = to_js(&PackedInfo {
        pt_name: packed.pt_name,
        inspection: packed.inspection,
        warnings: packed.warnings,
        inferred: packed.inferred,
        config_yaml: packed.config_yaml,
        mochi_json: packed.mochi_json,
        manifest_json: packed.manifest_json,
    })?;
    js_sys::Reflect::set(&info, &JsValue::from_str("package"), &bytes)
        .map_err(|_| JsError::new("could not attach the package bytes"))?;
    Ok(info)
}
