//! The bytes one Web Worker sends another for a decoded chunk: a [`Decoded`] (or the decode
//! error) leaves a decoding worker's wasm memory as one `Uint8Array` and enters the
//! coordinating worker's. Both ends are this crate (the same build, loaded by `web/`); the
//! format is private to it and versioned by its first byte.
//!
//! The reading side still checks every length against what is left: a malformed message is an
//! error (the page then validates sequentially), never a panic or an unbounded allocation.
//!
//! Layout (little endian): `version u8`, then `0 u8, error u8` or `1 u8, start_bit u64,
//! end_bit u64, stream_end u8, blocks u32, blocks × (bit u64, out u64), head u32, head × u16,
//! tail_crc u32, tail u32, tail × u8`.

use byom_core::archive::chunked::Decoded;
use byom_core::archive::deflate::{BlockEnd, Error, Outcome};
use crc32fast::Hasher;

const VERSION: u8 = 1;

/// Every decode error, by its code on the wire.
const ERRORS: [Error; 8] = [
    Error::Truncated,
    Error::BadBlockType,
    Error::BadStoredLength,
    Error::BadCode,
    Error::BadSymbol,
    Error::TooFarBack,
    Error::OutputLimit,
    Error::Unavailable,
];

/// Serialise a chunk's decode result.
pub fn encode(decoded: &Result<Decoded, Error>) -> Vec<u8> {
    let mut out = vec![VERSION];
    match decoded {
        Err(e) => {
            let code = ERRORS.iter().position(|x| x == e).unwrap_or(0);
            out.extend([0, code as u8]);
        }
        Ok(d) => {
            let size = 30 + d.outcome.blocks.len() * 16 + d.head.len() * 2 + d.tail.len();
            out.reserve(size);
            out.push(1);
            out.extend(d.start_bit.to_le_bytes());
            out.extend(d.outcome.end_bit.to_le_bytes());
            out.push(u8::from(d.outcome.stream_end));
            out.extend(len_u32(d.outcome.blocks.len()).to_le_bytes());
            for b in &d.outcome.blocks {
                out.extend(b.bit.to_le_bytes());
                out.extend(b.out.to_le_bytes());
            }
            out.extend(len_u32(d.head.len()).to_le_bytes());
            for s in &d.head {
                out.extend(s.to_le_bytes());
            }
            out.extend(d.tail_crc.clone().finalize().to_le_bytes());
            out.extend(len_u32(d.tail.len()).to_le_bytes());
            out.extend_from_slice(&d.tail);
        }
    }
    out
}

/// A chunk's output is bounded by the plan's `max_out` (a few MiB), far below `u32::MAX`.
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Why a message could not be read.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(&'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed decoded-chunk message: {}", self.0)
    }
}

/// Read a chunk's decode result; `max_out` bounds the symbols a chunk may hold.
pub fn decode(bytes: &[u8], max_out: usize) -> Result<Result<Decoded, Error>, Malformed> {
    let mut r = Reader(bytes);
    if r.u8()? != VERSION {
        return Err(Malformed("unknown version"));
    }
    if r.u8()? == 0 {
        let code = usize::from(r.u8()?);
        return ERRORS
            .get(code)
            .map(|e| Err(*e))
            .ok_or(Malformed("unknown error code"));
    }
    let start_bit = r.u64()?;
    let end_bit = r.u64()?;
    let stream_end = r.u8()? != 0;
    let n = r.len(16)?;
    let mut blocks = Vec::with_capacity(n);
    for _ in 0..n {
        blocks.push(BlockEnd {
            bit: r.u64()?,
            out: r.u64()?,
        });
    }
    let n = r.len(2)?;
    if n > max_out {
        return Err(Malformed("more symbols than the chunk may hold"));
    }
    let head = r
        .take(n * 2)?
        .chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect();
    let crc = r.u32()?;
    let n = r.len(1)?;
    if n > max_out {
        return Err(Malformed("more bytes than the chunk may hold"));
    }
    let tail = r.take(n)?.to_vec();
    if !r.0.is_empty() {
        return Err(Malformed("trailing bytes"));
    }
    Ok(Ok(Decoded {
        start_bit,
        outcome: Outcome {
            end_bit,
            stream_end,
            blocks,
            // Always false in a finished chunk: decode_chunk has decoded the rest as bytes.
            window_clean: false,
        },
        head,
        tail_crc: Hasher::new_with_initial_len(crc, tail.len() as u64),
        tail,
    }))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.0.len() {
            return Err(Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A count of items of `size` bytes each, checked against what is left (no allocation
    /// larger than the message itself).
    fn len(&mut self, size: usize) -> Result<usize, Malformed> {
        let n = self.u32()? as usize;
        if n.saturating_mul(size) > self.0.len() {
            return Err(Malformed("a count larger than the message"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byom_core::archive::chunk_plan::ChunkPlan;
    use byom_core::archive::chunked::decode_chunk;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn sample() -> Vec<u8> {
        // Text-like data (matches that reach back) followed by noise (literals).
        let mut data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("{} ", i % 997).into_bytes())
            .collect();
        let mut x = 7u32;
        data.extend((0..100_000).map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 24) as u8
        }));
        data
    }

    #[test]
    fn every_chunk_round_trips() {
        let gz = gzip(&sample());
        let plan = ChunkPlan::new(gz.len() as u64, &gz, 16 << 10).unwrap();
        for i in 0..plan.chunks {
            let (start, n) = plan.read_range(i);
            let input = gz[start as usize..(start + n) as usize].to_vec();
            let result = decode_chunk(plan.job(i, input));
            let wire = encode(&result.decoded);
            let back = decode(&wire, plan.max_out).unwrap();
            match (&result.decoded, &back) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(
                        (a.start_bit, &a.outcome, &a.head, &a.tail),
                        (b.start_bit, &b.outcome, &b.head, &b.tail)
                    );
                    assert_eq!(a.tail_crc.clone().finalize(), b.tail_crc.clone().finalize());
                }
                (Err(a), Err(b)) => assert_eq!(a, b),
                _ => panic!("chunk {i}: result kind changed on the wire"),
            }
        }
    }

    #[test]
    fn truncated_or_inflated_messages_are_refused_not_panics() {
        // Noise over 16 byte values: Huffman-coded blocks of ~16 KiB output, so chunk 0 decodes
        // on its own (the text of `sample` starts with a block longer than the marker phase may
        // run, which makes its chunk 0 a doubt).
        let mut x = 11u32;
        let noise: Vec<u8> = (0..300_000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 28) as u8
            })
            .collect();
        let gz = gzip(&noise);
        let plan = ChunkPlan::new(gz.len() as u64, &gz, 16 << 10).unwrap();
        let (start, n) = plan.read_range(0);
        let result = decode_chunk(plan.job(0, gz[start as usize..(start + n) as usize].to_vec()));
        assert!(result.decoded.is_ok());
        let wire = encode(&result.decoded);
        for cut in 0..wire.len() {
            assert!(decode(&wire[..cut], plan.max_out).is_err(), "cut at {cut}");
        }
        let mut longer = wire.clone();
        longer.push(0);
        assert_eq!(
            decode(&longer, plan.max_out).err(),
            Some(Malformed("trailing bytes"))
        );
        // A count that claims more than the message holds.
        let mut lying = wire.clone();
        lying[18..22].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&lying, plan.max_out).is_err());
        assert!(decode(&[VERSION, 0, 200], plan.max_out).is_err());
        assert_eq!(
            decode(&[VERSION, 0, 6], plan.max_out).unwrap().err(),
            Some(Error::OutputLimit)
        );
    }
}
