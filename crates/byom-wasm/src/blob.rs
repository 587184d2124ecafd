//! `validateBlob`: the whole read loop in Rust, for callers that just want a report.
//!
//! Worker-only: it uses `FileReaderSync`, which exists in workers and not on the main thread
//! (a synchronous read there would freeze the page, which is why browsers forbid it).

use wasm_bindgen::prelude::*;

use crate::js::to_js;
use crate::validator::Validator;

/// Default read size: large enough that per-call overhead vanishes, small enough to keep the
/// worker's peak memory low (one chunk in JS, one copy in wasm).
const DEFAULT_CHUNK_BYTES: f64 = 4.0 * 1024.0 * 1024.0;

/// Validate a `Blob`/`File` by reading it synchronously in chunks (`Blob.slice` +
/// `FileReaderSync.readAsArrayBuffer`). `onProgress(bytesRead, totalBytes, events)` is called
/// after each chunk with the events found in it. Returns the report.
#[wasm_bindgen(js_name = validateBlob, unchecked_return_type = "Report")]
pub fn validate_blob(
    blob: &web_sys::Blob,
    settings_json: Option<String>,
    #[wasm_bindgen(
        unchecked_param_type = "((bytesRead: number, totalBytes: number, events: ValidationEvent[]) => void) | null | undefined"
    )]
    on_progress: Option<js_sys::Function>,
    chunk_bytes: Option<f64>,
) -> Result<JsValue, JsError> {
    let chunk = chunk_bytes
        .filter(|c| *c >= 1.0)
        .unwrap_or(DEFAULT_CHUNK_BYTES)
        .floor();
    let total = blob.size();
    let reader = web_sys::FileReaderSync::new().map_err(|_| {
        JsError::new("FileReaderSync is unavailable: call validateBlob inside a Web Worker")
    })?;
    let mut validator = Validator::new(settings_json)?;
    let mut buffer: Vec<u8> = Vec::new();
    let mut offset = 0.0;
    // To the end even after a fatal error: `compressed_bytes` counts the bytes fed and must
    // match the other faces, which read everything (later bytes are only counted).
    while offset < total {
        let end = (offset + chunk).min(total);
        let slice = blob
            .slice_with_f64_and_f64(offset, end)
            .map_err(|_| JsError::new("Blob.slice failed"))?;
        let array_buffer = reader
            .read_as_array_buffer(&slice)
            .map_err(|_| JsError::new("reading the file failed (was it changed or removed?)"))?;
        let bytes = js_sys::Uint8Array::new(&array_buffer);
        buffer.resize(bytes.length() as usize, 0);
        bytes.copy_to(&mut buffer);
        validator.feed_slice(&buffer)?;
        offset = end;
        if let Some(callback) = &on_progress {
            let events = validator.drain_events()?;
            callback
                .call3(&JsValue::NULL, &offset.into(), &total.into(), &events)
                .map_err(|_| JsError::new("onProgress threw"))?;
        }
    }
    to_js(&validator.finish_report_for_blob()?)
}
