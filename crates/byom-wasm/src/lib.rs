//! wasm-bindgen face of byom-core: the validator, the `.pt` inspector and the package builder for
//! JavaScript, meant to run inside a dedicated Web Worker so the page never freezes.
//!
//! Everything that crosses into JavaScript as structured data is serialised with `serde_json`
//! and parsed with `JSON.parse`, so a report in the browser has byte-for-byte the shape of
//! `byom validate --format json` (no second serialiser that could drift, such as
//! serde-wasm-bindgen's Map-vs-object choices).
//!
//! Modules: [`validator`] (the streaming `Validator` class), [`blob`] (`validateBlob`, the
//! whole-Blob convenience loop), [`model`] (`inspectPt`, `pack`, `postProcessingTypes`), [`parallel`] (`decodeChunk` and
//! `ParallelValidator`: inflate across workers, wire format in [`chunk_wire`]), [`typings`] (TypeScript types
//! of the JSON shapes), [`js`] (small conversions shared by the others), [`floor`] (the benchmark's
//! speed floor: the validator's inflater alone, not used by the page).

mod blob;
mod chunk_wire;
pub mod floor;
mod js;
mod model;
mod parallel;
mod typings;
mod validator;

use wasm_bindgen::prelude::*;

pub use blob::validate_blob;
pub use floor::InflateFloor;
pub use model::{default_post_processing, inspect_pt, pack, pack_detailed, post_processing_types};
pub use parallel::{decode_chunk, ParallelValidator};
pub use validator::Validator;

/// Runs once when the module is instantiated: route Rust panics to `console.error`, because with
/// `panic = "abort"` the browser would otherwise only say "unreachable executed".
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&JsValue::from_str(&format!("byom-wasm panic: {info}")));
    }));
}

/// The byom-core version that makes every verdict (also carried in each report).
#[wasm_bindgen]
pub fn version() -> String {
    byom_core::VERSION.to_string()
}

/// The default settings (limits + `required_torch`), used when the page has no server to ask.
#[wasm_bindgen(js_name = defaultSettings, unchecked_return_type = "Settings")]
pub fn default_settings() -> Result<JsValue, JsError> {
    js::to_js(&byom_core::Settings::default())
}

/// `sha256:` hash of a settings JSON string (or the defaults), to compare with the server's.
#[wasm_bindgen(js_name = settingsHash)]
pub fn settings_hash(settings_json: Option<String>) -> Result<String, JsError> {
    Ok(js::parse_settings(settings_json.as_deref())?.hash())
}
