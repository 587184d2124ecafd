//! The streaming `Validator` class: feed chunks, drain events, finish with a report.

use wasm_bindgen::prelude::*;

use crate::js::{parse_settings, to_js};

/// One validation of one package, fed in chunks of any size. Same verdict as the CLI and the
/// server for the same bytes under the same settings.
#[wasm_bindgen]
pub struct Validator {
    /// `None` once `finish` consumed it (the core's `finish` takes `self`).
    inner: Option<byom_core::Validator>,
    settings_hash: String,
    fed: f64,
}

#[wasm_bindgen]
impl Validator {
    /// `settingsJson`: the `settings` member of `GET /api/v1/format-spec` as a JSON string, or
    /// `undefined` for the defaults.
    #[wasm_bindgen(constructor)]
    pub fn new(settings_json: Option<String>) -> Result<Validator, JsError> {
        let settings = parse_settings(settings_json.as_deref())?;
        Ok(Validator {
            inner: Some(byom_core::Validator::new(&settings)),
            settings_hash: settings.hash(),
            fed: 0.0,
        })
    }

    /// Feed the next chunk of the `.tar.gz` (copied into wasm memory, then inflated and walked).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), JsError> {
        let inner = self.inner.as_mut().ok_or_else(finished_error)?;
        inner.feed(chunk);
        self.fed += chunk.len() as f64;
        Ok(())
    }

    /// Events found since the last call: `{event: "entry", path, size}` and
    /// `{event: "issue", code, severity, message, file, hint}`.
    #[wasm_bindgen(js_name = drainEvents, unchecked_return_type = "ValidationEvent[]")]
    pub fn drain_events(&mut self) -> Result<JsValue, JsError> {
        let inner = self.inner.as_mut().ok_or_else(finished_error)?;
        to_js(&inner.drain_events())
    }

    /// True once a fatal error was found: further bytes are only counted, not inflated. Keep
    /// feeding to the end anyway if the report must match the CLI's byte for byte
    /// (`summary.compressed_bytes` is the number of bytes fed).
    #[wasm_bindgen(js_name = isFinished)]
    pub fn is_finished(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(byom_core::Validator::is_finished)
    }

    /// Bytes fed so far.
    #[wasm_bindgen(getter, js_name = bytesFed)]
    pub fn bytes_fed(&self) -> f64 {
        self.fed
    }

    /// `sha256:` hash of the settings in force (compare with the server's `settings_hash`).
    #[wasm_bindgen(getter, js_name = settingsHash)]
    pub fn settings_hash(&self) -> String {
        self.settings_hash.clone()
    }

    /// The final report, as the JSON object `byom validate --format json` prints.
    #[wasm_bindgen(unchecked_return_type = "Report")]
    pub fn finish(&mut self) -> Result<JsValue, JsError> {
        to_js(&self.finish_report()?)
    }

    /// The final report as the exact JSON text serde produced (for byte comparisons in tests).
    #[wasm_bindgen(js_name = finishJson)]
    pub fn finish_json(&mut self) -> Result<String, JsError> {
        Ok(serde_json::to_string(&self.finish_report()?)?)
    }
}

impl Validator {
    fn finish_report(&mut self) -> Result<byom_core::Report, JsError> {
        let inner = self.inner.take().ok_or_else(finished_error)?;
        Ok(inner.finish())
    }

    /// Feed from Rust (used by `validateBlob`).
    pub(crate) fn feed_slice(&mut self, chunk: &[u8]) -> Result<(), JsError> {
        self.feed(chunk)
    }
}

fn finished_error() -> JsError {
    JsError::new("this Validator already finished; create a new one per package")
}

impl Validator {
    /// The report, for `validateBlob`.
    pub(crate) fn finish_report_for_blob(&mut self) -> Result<byom_core::Report, JsError> {
        self.finish_report()
    }
}
