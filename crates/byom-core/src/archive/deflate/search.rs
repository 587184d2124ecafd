//! Finding a block boundary without knowing where blocks are: try every bit offset as the start
//! of a dynamic-Huffman block header and keep the first one from which the data decodes without
//! error up to the stop. A false positive is possible in principle; the caller accepts a
//! chunk only when the previous chunk's decoding ended exactly at its start, so a wrong guess
//! is detected, never used.

use super::bits::Bits;
use super::decode::{dynamic_header, inflate_with, Outcome, Tables};
use super::Error;

/// Most bits tried as a block start: real zlib blocks are tens of KiB, so a chunk without a
/// dynamic header in its first 256 KiB is handed back (the stitcher decodes it from the proven
/// bit instead).
const MAX_SEARCH_BITS: u64 = 256 * 1024 * 8;

/// Kraft sums (in 1/128) of four 3-bit code-length-code lengths, indexed by their 12 bits.
const KRAFT: [u8; 4096] = {
    let mut t = [0u8; 4096];
    let mut i = 0;
    while i < 4096 {
        let mut sum = 0u32;
        let mut f = 0;
        while f < 4 {
            let l = (i >> (3 * f)) & 7;
            if l != 0 {
                sum += 128 >> l;
            }
            f += 1;
        }
        // At most 4 × 64 = 256: saturate, any sum over 128 fails anyway.
        t[i] = if sum > 255 { 255 } else { sum as u8 };
        i += 1;
    }
    t
};

/// Search bit offsets `from_bit..search_end_bit` of `input` for a dynamic block from which
/// decoding succeeds until a block ends at or past `stop_bit` (or the stream ends). Output
/// goes to `out` after its prefix (normally [`super::WINDOW`] markers); like
/// [`super::inflate_markers`], decoding stops early once the window is marker-free. Returns the
/// start bit and the outcome; `Err` with the last error when no offset works.
///
/// Work is bounded against hostile input: at most [`MAX_SEARCH_BITS`] offsets, and the output of
/// failed candidates may total at most `4 × max_out` symbols (a crafted stream could otherwise
/// make many offsets decode far before failing).
pub fn find_and_inflate(
    input: &[u8],
    from_bit: u64,
    search_end_bit: u64,
    stop_bit: u64,
    out: &mut Vec<u16>,
    max_out: usize,
) -> Result<(u64, Outcome), Error> {
    let prefix = out.len();
    let mut tables = Tables::new();
    let end = search_end_bit
        .min(input.len() as u64 * 8)
        .min(from_bit.saturating_add(MAX_SEARCH_BITS));
    let mut last_err = Error::Truncated;
    let mut wasted = 0usize;
    for bit in from_bit..end {
        // Cheap filter on the header's first 17 + 3 × HCLEN bits (all in one 128-bit load):
        // BTYPE = 2, HLIT ≤ 29, HDIST ≤ 29, and the code-length code complete (Kraft sum
        // exactly 1, zlib's rule for it). Most offsets fail here, before any table work.
        let byte = (bit / 8) as usize;
        let word = |n: usize| {
            let mut w = [0u8; 16];
            let avail = input.len().saturating_sub(byte).min(n);
            w[..avail].copy_from_slice(&input[byte..byte + avail]);
            u128::from_le_bytes(w) >> (bit % 8)
        };
        let low = match input.get(byte..byte + 4) {
            Some(w) => u32::from_le_bytes([w[0], w[1], w[2], w[3]]) >> (bit % 8),
            None => word(4) as u32,
        };
        if (low >> 1) & 3 != 2 || (low >> 3) & 31 > 29 || (low >> 8) & 31 > 29 {
            continue;
        }
        let word = match input.get(byte..byte + 16) {
            Some(w) => u128::from_le_bytes(w.try_into().unwrap_or([0; 16])) >> (bit % 8),
            None => word(16),
        };
        let hclen = ((word >> 13) & 15) as u32 + 4;
        let fields = (word >> 17) as u64 & ((1u64 << (3 * hclen)) - 1);
        let kraft: u32 = (0..5)
            .map(|i| u32::from(KRAFT[((fields >> (12 * i)) & 0xFFF) as usize]))
            .sum();
        if kraft != 128 {
            continue;
        }
        let Ok(mut bits) = Bits::at(input, bit + 3) else {
            continue;
        };
        if dynamic_header(&mut bits, &mut tables).is_err() {
            continue;
        }
        let last = low & 1 == 1;
        match inflate_with(
            &mut bits,
            &mut tables,
            stop_bit,
            out,
            max_out,
            Some(last),
            true,
        ) {
            Ok(outcome) => return Ok((bit, outcome)),
            // A candidate that filled the cap decoded a lot of valid data: almost surely the real
            // boundary of a chunk too big for the cap. Searching on would only waste time.
            Err(Error::OutputLimit) => return Err(Error::OutputLimit),
            Err(e) => {
                last_err = e;
                wasted += out.len() - prefix;
                out.truncate(prefix);
                if wasted > max_out.saturating_mul(4) {
                    return Err(e);
                }
            }
        }
    }
    Err(last_err)
}
