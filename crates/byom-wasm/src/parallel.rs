//! Parallel inflate across Web Workers (issue 14): decoding workers call [`decode_chunk`] on
//! their own slices of the file; the validation worker feeds the results, in file order, to one
//! [`ParallelValidator`]: the core's `Stitcher` proves each chunk is what sequential decoding
//! gives and hands the inflated bytes to the one sequential `Validator`, so the report cannot
//! depend on this path. Any doubt is an error here, and the page then validates the file again
//! with the sequential reader (the reference) from the start.
//!
//! The chunking is the core's [`ChunkPlan`], the same as the CLI's `--inflate-threads`.

use wasm_bindgen::prelude::*;

use byom_core::archive::chunk_plan::{ChunkPlan, HEADER_PROBE, MEMORY_BUDGET};
use byom_core::archive::chunked::{self, ChunkResult, Stitcher};

use crate::chunk_wire;
use crate::js::{parse_settings, to_js};

/// Decode chunk `index` of a file planned as `(fileLen, chunkBytes, deflateStart)` (the
/// coordinator's [`ParallelValidator`] getters) from the bytes of its read range. Returns the
/// result as a message for [`ParallelValidator::accept`]: written into the front of `reuse`
/// when it is large enough (a buffer the coordinator handed back, so that chunk after chunk
/// costs no new `ArrayBuffer`), else in a new array.
#[wasm_bindgen(js_name = decodeChunk)]
pub fn decode_chunk(
    file_len: f64,
    chunk_bytes: f64,
    deflate_start: f64,
    index: usize,
    input: Vec<u8>,
    reuse: Option<js_sys::Uint8Array>,
) -> Result<js_sys::Uint8Array, JsError> {
    let plan = ChunkPlan::from_parts(file_len as u64, chunk_bytes as u64, deflate_start as u64);
    if index >= plan.chunks {
        return Err(JsError::new("chunk index past the plan"));
    }
    let result = chunked::decode_chunk(plan.job(index, input));
    let message = chunk_wire::encode(&result.decoded);
    let len = u32::try_from(message.len()).map_err(|_| JsError::new("chunk message too large"))?;
    Ok(match reuse.filter(|buf| buf.length() >= len) {
        Some(buf) => {
            let view = buf.subarray(0, len);
            view.copy_from(&message);
            view
        }
        None => js_sys::Uint8Array::from(&message[..]),
    })
}

/// One package validated from chunks decoded elsewhere, accepted in file order.
#[wasm_bindgen]
pub struct ParallelValidator {
    plan: ChunkPlan,
    stitcher: Option<Stitcher>,
    validator: Option<byom_core::Validator>,
    accepted: usize,
}

#[wasm_bindgen]
impl ParallelValidator {
    /// `head`: the file's first 64 KiB (or all of it). Throws when the file is not worth or not
    /// fit for the parallel path (not gzip, a single chunk): validate it sequentially.
    #[wasm_bindgen(constructor)]
    pub fn new(
        settings_json: Option<String>,
        file_len: f64,
        head: &[u8],
        chunk_bytes: f64,
    ) -> Result<ParallelValidator, JsError> {
        let settings = parse_settings(settings_json.as_deref())?;
        let plan = ChunkPlan::new(file_len as u64, head, chunk_bytes as u64)
            .map_err(|why| JsError::new(&format!("sequential: {why}")))?;
        Ok(ParallelValidator {
            stitcher: Some(Stitcher::new(
                &settings.limits,
                plan.file_len,
                &head[..plan.deflate_start as usize],
            )),
            validator: Some(byom_core::Validator::new(&settings)),
            plan,
            accepted: 0,
        })
    }

    #[wasm_bindgen(getter)]
    pub fn chunks(&self) -> usize {
        self.plan.chunks
    }

    #[wasm_bindgen(getter, js_name = chunkBytes)]
    pub fn chunk_bytes(&self) -> f64 {
        self.plan.chunk as f64
    }

    #[wasm_bindgen(getter, js_name = deflateStart)]
    pub fn deflate_start(&self) -> f64 {
        self.plan.deflate_start as f64
    }

    /// File offset where chunk `i`'s read range starts.
    #[wasm_bindgen(js_name = readStart)]
    pub fn read_start(&self, i: usize) -> f64 {
        self.plan.read_range(i).0 as f64
    }

    /// Length of chunk `i`'s read range.
    #[wasm_bindgen(js_name = readLength)]
    pub fn read_length(&self, i: usize) -> f64 {
        self.plan.read_range(i).1 as f64
    }

    /// How many chunks may be decoding or waiting at once within the core's memory budget
    /// (the CLI's too).
    #[wasm_bindgen(js_name = inFlight)]
    pub fn in_flight(&self, decoders: usize) -> usize {
        self.plan.in_flight(MEMORY_BUDGET, decoders)
    }

    /// How many of the file's first bytes the constructor wants as `head`.
    #[wasm_bindgen(js_name = headerProbe)]
    pub fn header_probe() -> f64 {
        HEADER_PROBE as f64
    }

    /// True while more chunks are needed (the final block not yet accepted and no fatal error).
    #[wasm_bindgen(js_name = needsMore)]
    pub fn needs_more(&self) -> bool {
        self.accepted < self.plan.chunks
            && self.stitcher.as_ref().is_some_and(|s| !s.stream_ended())
            && self.validator.as_ref().is_some_and(|v| !v.is_finished())
    }

    /// Accept chunk `index` (the next one in file order): `input` is its read range's bytes,
    /// `decoded` what [`decode_chunk`] returned for it. Throws on any doubt: validate the file
    /// sequentially instead.
    pub fn accept(&mut self, index: usize, input: Vec<u8>, decoded: &[u8]) -> Result<(), JsError> {
        if index != self.accepted || index >= self.plan.chunks {
            return Err(JsError::new("chunks must be accepted in file order"));
        }
        let decoded = chunk_wire::decode(decoded, self.plan.max_out)
            .map_err(|e| JsError::new(&e.to_string()))?;
        let stitcher = self.stitcher.as_mut().ok_or_else(finished)?;
        let validator = self.validator.as_mut().ok_or_else(finished)?;
        let result = ChunkResult {
            job: self.plan.job(index, input),
            decoded,
        };
        stitcher
            .accept(&result, &mut |bytes| validator.feed_inflated(bytes))
            .map_err(|d| JsError::new(&format!("doubt: {d}")))?;
        self.accepted += 1;
        Ok(())
    }

    /// Events found since the last call (the same shapes as `Validator.drainEvents`).
    #[wasm_bindgen(js_name = drainEvents, unchecked_return_type = "ValidationEvent[]")]
    pub fn drain_events(&mut self) -> Result<JsValue, JsError> {
        let validator = self.validator.as_mut().ok_or_else(finished)?;
        to_js(&validator.drain_events())
    }

    /// File offset of the gzip trailer once the final block was accepted; `undefined` when the
    /// trailer is not needed (a fatal error ended the validation) or not known.
    #[wasm_bindgen(js_name = trailerOffset)]
    pub fn trailer_offset(&self) -> Option<f64> {
        if self
            .validator
            .as_ref()
            .is_none_or(byom_core::Validator::is_finished)
        {
            return None;
        }
        self.stitcher.as_ref()?.trailer_offset().map(|t| t as f64)
    }

    /// The report, as `Validator.finish` gives it. `tail`: the file's bytes from
    /// [`Self::trailer_offset`] (up to 9 of them), or empty when that was `undefined`. Throws on
    /// a doubt about the end of the stream: validate sequentially instead.
    #[wasm_bindgen(unchecked_return_type = "Report")]
    pub fn finish(&mut self, tail: &[u8]) -> Result<JsValue, JsError> {
        let stitcher = self.stitcher.take().ok_or_else(finished)?;
        let validator = self.validator.take().ok_or_else(finished)?;
        if !validator.is_finished() {
            stitcher
                .finish(tail)
                .map_err(|d| JsError::new(&format!("doubt: {d}")))?;
        }
        to_js(&validator.finish_inflated(self.plan.file_len))
    }
}

fn finished() -> JsError {
    JsError::new("this ParallelValidator already finished; create a new one per package")
}
