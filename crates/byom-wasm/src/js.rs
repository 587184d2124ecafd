//! Conversions between Rust values and JavaScript values, in one place.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use byom_core::Settings;

/// Serialise with serde_json and hand JavaScript the `JSON.parse` of it: the JS object then has
/// exactly the CLI's JSON shape (field names, `null`s, enum tags).
pub fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    let text = serde_json::to_string(value)?;
    js_sys::JSON::parse(&text).map_err(|_| JsError::new("JSON.parse failed on serde_json output"))
}

/// Settings from the JSON the server serves (`format-spec`'s `settings` member); `None` or an
/// empty string gives the defaults. Unknown fields are refused (the core's `deny_unknown_fields`),
/// so a newer server policy is never silently half-applied.
pub fn parse_settings(json: Option<&str>) -> Result<Settings, JsError> {
    match json.map(str::trim) {
        None | Some("") => Ok(Settings::default()),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| JsError::new(&format!("invalid settings JSON: {e}"))),
    }
}
