//! The page's speed floor, for `bench/web_validate.mjs --floor` (docs/bench-web.md, "The
//! floor"): how fast the validator's own inflater runs as wasm in this engine with nothing else
//! to do — the whole file already in wasm memory, no reads, no copies, no tar walk, no `.pt`
//! scan. No reader of a package can beat it in one worker, so it bounds what tuning the read
//! loop can win. Not used by the page; the same functions run natively in
//! `examples/floor.rs`, so both sides measure one code.

use wasm_bindgen::prelude::*;

use byom_core::archive::gzip::{member_header_len, GzipDecoder};
use byom_core::Limits;

/// Output buffer of [`inflate_only`], and the piece size [`gzip_layer`] is fed in: the page's
/// read loop feeds 1 MiB chunks.
const PIECE: usize = 1 << 20;

/// zlib-rs alone (the inflater inside the validator's gzip layer): inflates the first gzip
/// member of `gz` into one reused buffer, checks nothing else. Returns the bytes inflated.
pub fn inflate_only(gz: &[u8]) -> Result<u64, String> {
    use flate2::{Decompress, FlushDecompress, Status};
    let start = member_header_len(gz).ok_or("not a gzip member header")?;
    let mut inflater = Decompress::new(false);
    let mut out = vec![0; PIECE];
    let mut input = &gz[start..];
    loop {
        let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
        let status = inflater
            .decompress(input, &mut out, FlushDecompress::None)
            .map_err(|e| e.to_string())?;
        // total_in grew by what this call consumed, at most input.len().
        input = &input[usize::try_from(inflater.total_in() - before_in).unwrap_or(input.len())..];
        if status == Status::StreamEnd {
            return Ok(inflater.total_out());
        }
        // With all input consumed the inflater may still hold output for a full buffer; only a
        // call that moves nothing means the data ended early.
        if (inflater.total_in(), inflater.total_out()) == (before_in, before_out) {
            return Err("the deflate data ends early".into());
        }
    }
}

/// The validator's whole gzip layer (inflate, CRC-32, ISIZE, ratio checks: what
/// `Validator::feed` runs before the tar walk), fed `gz` in 1 MiB pieces; the inflated bytes
/// are counted and dropped. Returns the bytes inflated.
pub fn gzip_layer(gz: &[u8]) -> Result<u64, String> {
    let mut decoder = GzipDecoder::new(&Limits::default());
    let mut total = 0u64;
    let mut sink = |bytes: &[u8]| {
        total += bytes.len() as u64;
        Ok(())
    };
    for piece in gz.chunks(PIECE) {
        decoder.push(piece, &mut sink).map_err(|i| i.message)?;
    }
    decoder.finish().map_err(|i| i.message)?;
    Ok(total)
}

/// A package held in wasm memory for the two floor measurements (timed by the caller).
#[wasm_bindgen]
pub struct InflateFloor {
    gz: Vec<u8>,
}

#[wasm_bindgen]
impl InflateFloor {
    #[wasm_bindgen(constructor)]
    pub fn new(gz: Vec<u8>) -> InflateFloor {
        InflateFloor { gz }
    }

    /// [`inflate_only`] over the held package; bytes inflated.
    #[wasm_bindgen(js_name = inflateOnly)]
    pub fn inflate_only(&self) -> Result<f64, JsError> {
        inflate_only(&self.gz)
            .map(|n| n as f64)
            .map_err(|e| JsError::new(&e))
    }

    /// [`gzip_layer`] over the held package; bytes inflated.
    #[wasm_bindgen(js_name = gzipLayer)]
    pub fn gzip_layer(&self) -> Result<f64, JsError> {
        gzip_layer(&self.gz)
            .map(|n| n as f64)
            .map_err(|e| JsError::new(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn both_stages_inflate_the_whole_member() {
        // More than one piece and one output buffer, so the loops go round.
        let data: Vec<u8> = (0..3 * PIECE as u32 + 123)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let gz = gzip(&data);
        assert_eq!(inflate_only(&gz), Ok(data.len() as u64));
        assert_eq!(gzip_layer(&gz), Ok(data.len() as u64));
    }

    #[test]
    fn a_broken_package_is_an_error_not_a_time() {
        let gz = gzip(&[7u8; 100_000]);
        assert!(inflate_only(b"not gzip").is_err());
        assert!(inflate_only(&gz[..gz.len() / 2]).is_err());
        // The gzip layer checks what inflate alone does not: the CRC-32 in the trailer.
        let mut bad_crc = gz.clone();
        let at = bad_crc.len() - 8;
        bad_crc[at] ^= 1;
        assert_eq!(inflate_only(&bad_crc), Ok(100_000));
        assert!(gzip_layer(&bad_crc).is_err());
    }
}
