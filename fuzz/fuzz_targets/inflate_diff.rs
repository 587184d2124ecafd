//! Differential: the parallel-gunzip decoder against zlib-rs (the sequential reference) on
//! arbitrary bytes. As raw deflate, ours must refuse or give zlib-rs's exact bytes; as a gzip
//! file cut into small chunks (the first byte picks the chunk size), the stitched result must
//! be refused or equal zlib-rs's single-member decoding, trailer checked. From a bit offset
//! (the first byte's low 3 bits), whatever our byte decoder accepts the zlib-rs byte phase
//! (`inflate_bytes`, what chunks use once their window is known) must give with the same
//! outcome: block ends, end bit, stream end and bytes.
#![no_main]

use std::io::Read;

use byom_core::archive::chunked::{decode_chunk, ChunkJob, Stitcher};
use byom_core::archive::deflate::{inflate, inflate_bytes};
use byom_core::archive::gzip::member_header_len;
use byom_core::Limits;
use flate2::{Decompress, FlushDecompress, Status};
use libfuzzer_sys::fuzz_target;

fn zlib_raw(raw: &[u8]) -> Option<Vec<u8>> {
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 16);
    loop {
        if out.len() == out.capacity() {
            if out.len() > 64 << 20 {
                return None;
            }
            out.reserve(out.len());
        }
        let before = (d.total_in(), d.total_out());
        let st = d
            .decompress_vec(&raw[d.total_in() as usize..], &mut out, FlushDecompress::Finish)
            .ok()?;
        if st == Status::StreamEnd {
            return Some(out);
        }
        if (d.total_in(), d.total_out()) == before {
            return None;
        }
    }
}

/// `pick`'s high bits choose the output cap: a small one sends chunks to the in-order pass,
/// whose piece size then varies (resuming zlib-rs at every kind of place).
fn chunked(gz: &[u8], chunk: usize, pick: u8) -> Option<Vec<u8>> {
    let header = member_header_len(gz)?;
    let max_out = if pick >> 6 == 0 {
        1 << 20
    } else {
        64 + usize::from(pick & 63) * 32
    };
    let mut st = Stitcher::new(&Limits::default(), gz.len() as u64, &gz[..header])
        .with_in_order_piece(1 + usize::from(pick & 15) * 97);
    let (mut all, mut hashed, mut start) = (Vec::new(), Vec::new(), 0);
    while start < gz.len() && !st.stream_ended() {
        let end = (start + chunk).min(gz.len());
        let job = ChunkJob {
            offset: start as u64,
            input: gz[start..(end + 4096).min(gz.len())].to_vec(),
            start_bit: (start == 0).then_some(header as u64 * 8),
            stop_bit: ((end - start) * 8) as u64,
            max_out,
        };
        let result = decode_chunk(job);
        let supplied = st.accept(&result, &mut |b| all.extend_from_slice(b)).ok()?;
        // The bytes validated come from these copies, in order, with no gap.
        if !supplied.is_empty() {
            assert_eq!(result.job.offset + supplied.start as u64, hashed.len() as u64, "a gap");
        }
        hashed.extend_from_slice(&result.job.input[supplied]);
        start = end;
    }
    let t = st.trailer_offset()? as usize;
    st.finish(&gz[t.min(gz.len())..]).ok()?;
    assert!(hashed == gz[..t], "the supplied ranges are not the file up to the trailer");
    Some(all)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let mut out = Vec::new();
    if let Ok(o) = inflate::<u8>(bytes, 0, u64::MAX, &mut out, 1 << 24) {
        if o.stream_end {
            assert_eq!(Some(out), zlib_raw(bytes), "raw deflate accepted differently");
        }
    }
    let start = u64::from(pick & 7);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    if let Ok(o) = inflate::<u8>(bytes, start, u64::from(pick) * 64, &mut a, 1 << 24) {
        let z = inflate_bytes(bytes, start, u64::from(pick) * 64, &mut b, 1 << 24);
        assert_eq!(Ok(o), z, "zlib byte phase ends elsewhere");
        assert!(a == b, "zlib byte phase gives other bytes");
    }
    if let Some(ours) = chunked(bytes, 16 + usize::from(pick) * 8, pick) {
        let mut d = flate2::read::GzDecoder::new(bytes);
        let mut reference = Vec::new();
        d.read_to_end(&mut reference).expect("zlib-rs refuses what the chunked reader accepted");
        assert_eq!(ours, reference, "chunked gunzip differs");
    }
});
