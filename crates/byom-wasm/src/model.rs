//! The `.pt` side: inspect a bare model file, and build a package from it in the browser.

use wasm_bindgen::prelude::*;

use byom_core::pack::PackOptions;
use byom_core::package::PostProcessing;

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

/// The page's pack options: the core's `PackOptions` read directly from JSON (every field
/// optional; unknown fields, a resize that is not `{height, width}`, an unknown post-processing
/// or a `required_torch` that is not a version are refused with the field named).
fn parse_pack_options(options_json: &str) -> Result<PackOptions, JsError> {
    PackOptions::from_json(options_json).map_err(|e| JsError::new(&e.to_string()))
}

/// The post-processing types the runtime knows, in the core's order (the page's `<select>`).
#[wasm_bindgen(js_name = postProcessingTypes, unchecked_return_type = "PostProcessing[]")]
pub fn post_processing_types() -> Result<JsValue, JsError> {
    to_js(&PostProcessing::ALL)
}

/// The usual post-processing for a stage type (`softmax` for a type without a specific one).
#[wasm_bindgen(js_name = defaultPostProcessing, unchecked_return_type = "PostProcessing")]
pub fn default_post_processing(model_type: &str) -> String {
    PostProcessing::default_for(model_type).as_str().to_string()
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
