//! Turning a kept record's stored bytes into its content: stored (method 0, what `torch.save`
//! writes) as is, DEFLATE (method 8, what other zip tools write) inflated under the record's
//! budget, anything else refused. Separate from the scanner because it is the one place
//! where a small input can become a large output: the cap is applied here, as output grows.

use super::problems::{InflateError, ZipCorruption};
use super::view::Record;

/// Zip compression methods byom reads.
const STORED: u16 = 0;
const DEFLATED: u16 = 8;

/// The record `name` from its kept bytes `buf`, stored with `method`; at most `cap` bytes are
/// produced (a record cut by the scanner's budget stays `truncated`).
pub(super) fn decode(
    name: &str,
    method: u16,
    buf: Vec<u8>,
    truncated: bool,
    cap: u64,
) -> Result<Record, ZipCorruption> {
    match method {
        STORED => Ok(Record {
            data: buf,
            truncated,
        }),
        DEFLATED => match inflate(&buf, cap) {
            Ok((data, more)) => Ok(Record {
                data,
                truncated: truncated || more,
            }),
            Err(error) => Err(ZipCorruption::Inflate {
                name: name.to_string(),
                error,
            }),
        },
        method => Err(ZipCorruption::UnsupportedMethod {
            name: name.to_string(),
            method,
        }),
    }
}

/// Inflate a raw deflate stream, keeping at most `cap` bytes. Returns (data, more was left).
pub fn inflate(data: &[u8], cap: u64) -> Result<(Vec<u8>, bool), InflateError> {
    use flate2::{Decompress, FlushDecompress, Status};
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(data.len().saturating_mul(3).min(cap).min(1 << 20));
    loop {
        if out.len() >= cap {
            return Ok((out, true));
        }
        if out.capacity() == out.len() {
            let grow = (out.capacity().max(4096)).min(cap - out.len());
            out.reserve(grow);
        }
        let before_in = d.total_in();
        let before_out = d.total_out();
        let input = data.get(d.total_in() as usize..).unwrap_or(&[]);
        let room = (out.capacity() - out.len()).min(cap - out.len());
        let mut tmp = vec![0u8; room.min(1 << 20)];
        let status = d
            .decompress(input, &mut tmp, FlushDecompress::Finish)
            .map_err(|e| InflateError::Bad(e.to_string()))?;
        let produced = (d.total_out() - before_out) as usize;
        out.extend_from_slice(&tmp[..produced]);
        match status {
            Status::StreamEnd => return Ok((out, false)),
            _ if d.total_in() == before_in && produced == 0 => {
                return Err(InflateError::EndsEarly);
            }
            _ => {}
        }
    }
}
