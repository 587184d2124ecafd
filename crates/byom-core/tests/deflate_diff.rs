//! Differential tests of the parallel-gunzip decoder (archive::deflate, archive::chunked)
//! against zlib-rs, the sequential reference: on every input the two give identical bytes, or
//! ours refuses (a refusal only sends the caller back to zlib-rs, so it is always safe).
//! Accepting what zlib-rs refuses, or decoding differently, fails these tests.

use std::io::Write;

use byom_core::archive::chunked::{decode_chunk, ChunkJob, Stitcher, MARKER_PHASE_MAX};
use byom_core::archive::deflate::{inflate, inflate_bytes, inflate_markers, MARKER, WINDOW};
use byom_core::archive::gzip::member_header_len;
use byom_core::Limits;
use flate2::{Compression, Decompress, FlushDecompress, Status};

/// A small deterministic generator (no rand dependency in the core's tests).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// fp32 values like trained weights: small, normal-ish, barely compressible (~1.1×).
fn weights(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    let mut v = Vec::with_capacity(n * 4);
    for _ in 0..n {
        let s: f32 = (0..4)
            .map(|_| (r.next() >> 40) as f32 / (1u64 << 24) as f32)
            .sum();
        v.extend_from_slice(&((s - 2.0) * 0.05).to_le_bytes());
    }
    v
}

/// Text-like, highly compressible data with long and overlapping matches.
fn text(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    let words: [&[u8]; 6] = [
        b"layer",
        b".weight ",
        b"bias",
        b"\n",
        b"aaaaaaaaaaaaaaaa",
        b"0123",
    ];
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        v.extend_from_slice(words[(r.next() % 6) as usize]);
    }
    v.truncate(n);
    v
}

fn raw_deflate(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The reference: zlib-rs, whole raw deflate stream; `Err` on any refusal or a missing end.
fn zlib(raw: &[u8]) -> Result<Vec<u8>, ()> {
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(raw.len() * 4 + 1024);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.len());
        }
        let before = d.total_in();
        let st = d
            .decompress_vec(
                &raw[d.total_in() as usize..],
                &mut out,
                FlushDecompress::Finish,
            )
            .map_err(|_| ())?;
        if st == Status::StreamEnd {
            return Ok(out);
        }
        if d.total_in() == before && out.len() < out.capacity() {
            return Err(());
        }
    }
}

fn ours(raw: &[u8]) -> Result<(Vec<u8>, u64), ()> {
    let mut out = Vec::new();
    let o = inflate::<u8>(raw, 0, u64::MAX, &mut out, usize::MAX).map_err(|_| ())?;
    if !o.stream_end {
        return Err(());
    }
    Ok((out, o.end_bit))
}

#[test]
fn whole_streams_match_zlib_at_every_level() {
    for level in 0..=9 {
        for (i, data) in [
            weights(40_000, 7),
            text(300_000, 3),
            Vec::new(),
            vec![0; 70_000],
        ]
        .into_iter()
        .enumerate()
        {
            let raw = raw_deflate(&data, level);
            let (out, end) = ours(&raw).unwrap_or_else(|()| panic!("level {level} input {i}"));
            assert_eq!(out, data, "level {level} input {i}");
            assert_eq!(end.div_ceil(8), raw.len() as u64, "ends at the last byte");
        }
    }
}

/// Corrupt and truncated streams: ours refuses, or gives exactly zlib-rs's bytes.
#[test]
fn corrupt_streams_never_disagree_with_zlib() {
    let mut r = Rng(99);
    let mut agreed = 0;
    for case in 0..3000 {
        let data = if case % 2 == 0 {
            weights(2000, case)
        } else {
            text(20_000, case)
        };
        let mut raw = raw_deflate(&data, (case % 10) as u32);
        match case % 3 {
            0 => {
                let n = (r.next() % 4 + 1) as usize;
                for _ in 0..n {
                    let i = (r.next() as usize) % raw.len();
                    raw[i] ^= 1 << (r.next() % 8);
                }
            }
            1 => raw.truncate((r.next() as usize) % raw.len()),
            _ => {
                let i = (r.next() as usize) % raw.len();
                raw[i] = r.next() as u8;
            }
        }
        let reference = zlib(&raw);
        if let Ok((out, _)) = ours(&raw) {
            assert_eq!(
                Ok(&out),
                reference.as_ref(),
                "case {case}: accepted what zlib-rs did not"
            );
            agreed += 1;
        }
    }
    assert!(
        agreed > 0,
        "some corruptions still decode (e.g. a flipped literal)"
    );
}

/// Random bytes as deflate: every block type and header path, mostly invalid.
#[test]
fn random_bytes_never_disagree_with_zlib() {
    let mut r = Rng(5);
    for len in 0..20_000usize {
        let n = len % 64;
        let raw: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
        if let Ok((out, _)) = ours(&raw) {
            assert_eq!(Ok(out), zlib(&raw), "input {raw:?}");
        }
    }
}

/// Decode a gzip file the way the CLI's parallel reader does (chunks decoded independently,
/// stitched in order), single-threaded here.
fn chunked(gz: &[u8], chunk: usize, max_out: usize) -> Result<Vec<u8>, String> {
    chunked_with(gz, chunk, max_out, 1 << 20)
}

/// [`chunked`] with the in-order pass's piece size given.
fn chunked_with(gz: &[u8], chunk: usize, max_out: usize, piece: usize) -> Result<Vec<u8>, String> {
    let header = member_header_len(gz).ok_or("header")?;
    let len = gz.len();
    let mut st =
        Stitcher::new(&Limits::default(), len as u64, &gz[..header]).with_in_order_piece(piece);
    let mut all = Vec::new();
    let mut hashed = Vec::new();
    let mut start = 0;
    // zlib-rs level 1 writes fixed-Huffman blocks of up to ~100 KiB compressed.
    let overlap = 1 << 20;
    while start < len && !st.stream_ended() {
        let end = (start + chunk).min(len);
        let input = gz[start..(end + overlap).min(len)].to_vec();
        let job = ChunkJob {
            offset: start as u64,
            input,
            start_bit: (start == 0).then_some(header as u64 * 8),
            stop_bit: ((end - start) * 8) as u64,
            max_out,
        };
        let result = decode_chunk(job);
        let supplied = st
            .accept(&result, &mut |b| all.extend_from_slice(b))
            .map_err(|e| e.to_string())?;
        // What a caller hashes: each chunk's own copy of the bytes it supplied, in order.
        if !supplied.is_empty() {
            assert_eq!(
                result.job.offset + supplied.start as u64,
                hashed.len() as u64
            );
        }
        hashed.extend_from_slice(&result.job.input[supplied]);
        start = end;
    }
    let t = st.trailer_offset().ok_or("no end")? as usize;
    st.finish(&gz[t.min(len)..]).map_err(|e| e.to_string())?;
    assert!(
        hashed == gz[..t],
        "the supplied ranges are not the file up to the trailer"
    );
    Ok(all)
}

#[test]
fn chunked_decoding_equals_the_data() {
    let mut data = weights(300_000, 11);
    data.extend_from_slice(&text(200_000, 4));
    data.extend_from_slice(&weights(100_000, 12));
    for level in [1, 6, 9] {
        let gz = gzip(&data, level);
        for chunk in [4096, 50_000, 300_000, 10 << 20] {
            match chunked(&gz, chunk, 8 << 20) {
                Ok(got) => assert!(got == data, "level {level} chunk {chunk}"),
                // zlib-rs level 1 writes one block of over 1 MB here: no chunk of it can end
                // within its input, and the reader says so instead of guessing.
                Err(e) => assert!(
                    level == 1 && chunk < 1 << 20,
                    "level {level} chunk {chunk}: {e}"
                ),
            }
        }
        // A chunk over its output cap is decoded by the in-order pass, in pieces.
        assert!(chunked_with(&gz, 1 << 20, 100_000, 7_777).unwrap() == data);
    }
}

#[test]
fn chunked_decoding_refuses_corrupt_gzip() {
    let data = weights(200_000, 21);
    let gz = gzip(&data, 6);
    let mut r = Rng(8);
    for case in 0..60 {
        let mut bad = gz.clone();
        match case % 3 {
            0 => {
                let i = 20 + (r.next() as usize) % (bad.len() - 20);
                bad[i] ^= 1 << (r.next() % 8);
            }
            1 => bad.truncate(10 + (r.next() as usize) % (bad.len() - 10)),
            _ => bad.extend_from_slice(&gz), // a second member: the sequential reader decides
        }
        let seq = {
            let mut d = flate2::read::GzDecoder::new(&bad[..]);
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut d, &mut v).ok().map(|_| v)
        };
        if let Ok(got) = chunked(&bad, 100_000, 8 << 20) {
            // Accepted: must be a flip that zlib-rs also decodes to the same bytes (none here,
            // the CRC catches every changed byte) and a single member.
            assert_eq!(Some(got), seq, "case {case}");
            panic!("case {case}: a corrupt file was accepted");
        }
    }
}

#[test]
fn markers_stand_for_the_unknown_window() {
    // A stream whose second half copies from its first half, decoded from the second half's
    // block with an unknown window, resolves to the right bytes.
    let mut data = weights(50_000, 2);
    data.extend_from_slice(&text(100_000, 9));
    let raw = raw_deflate(&data, 6);
    let mut out = Vec::new();
    // Stop after the first block that ends past 100 kB of compressed data (> 32 KiB output).
    let o = inflate::<u8>(&raw, 0, 800_000, &mut out, usize::MAX).unwrap();
    assert!(!o.stream_end, "several blocks");
    let first = *o.blocks.last().unwrap();
    let mut syms: Vec<u16> = (0..WINDOW as u16).map(|i| MARKER + i).collect();
    let rest = inflate::<u16>(&raw, first.bit, u64::MAX, &mut syms, usize::MAX).unwrap();
    assert!(rest.stream_end);
    let before = &data[..first.out as usize];
    let resolved: Vec<u8> = syms[WINDOW..]
        .iter()
        .map(|&s| {
            if s < 256 {
                s as u8
            } else {
                before[before.len() - WINDOW + usize::from(s - MARKER)]
            }
        })
        .collect();
    assert!(resolved == data[first.out as usize..]);
    assert!(
        syms[WINDOW..].iter().any(|&s| s >= MARKER),
        "the test used markers"
    );
}

#[test]
fn marker_decoding_switches_to_bytes_once_the_window_is_clean() {
    // Weight-like data decoded from its second block with an unknown window: the first block
    // that ends with 32 KiB of marker-free output behind it stops the marker phase, and bytes
    // decoded from there with that window complete the stream exactly.
    let data = weights(400_000, 31);
    let raw = raw_deflate(&data, 6);
    let mut out = Vec::new();
    let o = inflate::<u8>(&raw, 0, 1, &mut out, usize::MAX).unwrap();
    let first = o.blocks[0];
    let mut syms: Vec<u16> = (0..WINDOW as u16).map(|i| MARKER + i).collect();
    let m = inflate_markers(&raw, first.bit, u64::MAX, &mut syms, usize::MAX).unwrap();
    assert!(m.window_clean && !m.stream_end, "stopped early");
    let tail = &syms[syms.len() - WINDOW..];
    assert!(tail.iter().all(|&s| s < 256), "a marker-free window");
    let mut bytes: Vec<u8> = tail.iter().map(|&s| s as u8).collect();
    let rest = inflate::<u8>(&raw, m.end_bit, u64::MAX, &mut bytes, usize::MAX).unwrap();
    assert!(rest.stream_end);
    let at = first.out as usize + syms.len() - WINDOW;
    assert!(
        bytes[WINDOW..] == data[at..],
        "the byte phase continues the stream"
    );
}

#[test]
fn zlib_byte_phase_gives_our_decoders_outcome_from_every_block_start() {
    // `inflate_bytes` (zlib-rs primed at a bit, Z_BLOCK stops) must report the same block ends,
    // end bit, stream end and bytes as our own byte decoder, from every block boundary (bit
    // offsets of every residue mod 8), with the real window before it, and with stop bits
    // anywhere: the stitcher's proof compares these bits.
    let mut cases = 0;
    let mut residues = std::collections::BTreeSet::new();
    for (level, data) in [
        (6, weights(600_000, 41)),
        (1, weights(300_000, 42)),
        (9, text(400_000, 43)),
        (0, weights(150_000, 44)),
        (6, {
            let mut d = text(200_000, 45);
            d.extend(weights(200_000, 46));
            d.extend(vec![7u8; 300_000]);
            d
        }),
    ] {
        let raw = raw_deflate(&data, level);
        let mut whole = Vec::new();
        let all = inflate::<u8>(&raw, 0, u64::MAX, &mut whole, usize::MAX).unwrap();
        assert!(whole == data);
        let starts = std::iter::once((0u64, 0u64)).chain(all.blocks.iter().map(|b| (b.bit, b.out)));
        for (bit, out_at) in starts {
            if bit == all.end_bit {
                continue;
            }
            residues.insert(bit % 8);
            let window = &data[(out_at as usize).saturating_sub(WINDOW)..out_at as usize];
            for stop in [bit + 1, bit + 20_000, bit + 300_000, u64::MAX] {
                let mut a = window.to_vec();
                let mut b = window.to_vec();
                let ours = inflate::<u8>(&raw, bit, stop, &mut a, usize::MAX);
                let theirs = inflate_bytes(&raw, bit, stop, &mut b, usize::MAX);
                assert_eq!(ours, theirs, "level {level}, start bit {bit}, stop {stop}");
                assert!(a == b, "level {level}, start bit {bit}: same bytes");
                cases += 1;
            }
        }
    }
    assert!(
        residues.len() >= 6,
        "blocks start at bit residues {residues:?}"
    );
    assert!(cases > 40, "{cases} cases");
}

#[test]
fn zlib_byte_phase_refuses_what_our_decoder_refuses() {
    // Truncated input, a window too short for a back-reference, and the output cap: both
    // decoders refuse (the variants may differ; the caller only falls back).
    let data = text(200_000, 47);
    let raw = raw_deflate(&data, 6);
    let mut whole = Vec::new();
    let all = inflate::<u8>(&raw, 0, u64::MAX, &mut whole, usize::MAX).unwrap();
    let second = all.blocks[0];
    let cut = &raw[..raw.len() - 100];
    assert!(inflate_bytes(cut, 0, u64::MAX, &mut Vec::new(), usize::MAX).is_err());
    assert!(inflate::<u8>(cut, 0, u64::MAX, &mut Vec::new(), usize::MAX).is_err());
    // No window at all before the second block of text: its back-references reach before.
    let e = inflate_bytes(&raw, second.bit, u64::MAX, &mut Vec::new(), usize::MAX);
    assert!(e.is_err());
    assert!(inflate::<u8>(&raw, second.bit, u64::MAX, &mut Vec::new(), usize::MAX).is_err());
    for cap in [0, 1, 1000, 65_536, 199_999] {
        let a = inflate::<u8>(&raw, 0, u64::MAX, &mut Vec::new(), cap);
        let b = inflate_bytes(&raw, 0, u64::MAX, &mut Vec::new(), cap);
        assert!(a.is_err() && b.is_err(), "cap {cap}: {a:?} {b:?}");
    }
    let exact = inflate_bytes(&raw, 0, u64::MAX, &mut Vec::new(), data.len()).unwrap();
    assert!(exact.stream_end);
}

/// `data` gzipped at level 6 with a sync flush every `block` bytes (each flush ends a block, so
/// a chunk starting anywhere finds a block boundary soon).
fn gzip_flushed(data: &[u8], block: usize) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
    for piece in data.chunks(block) {
        enc.write_all(piece).unwrap();
        enc.flush().unwrap();
    }
    enc.finish().unwrap()
}

#[test]
fn a_chunk_whose_window_never_cleans_is_left_to_the_in_order_pass() {
    // 200 kB of weights, then a 20 KiB pattern repeated for 3 MB: every byte of the repeats
    // copies from 20 KiB back, so a chunk starting inside them only ever copies markers — its
    // window never becomes clean, and the marker phase would run to the chunk's end.
    let mut data = weights(50_000, 41);
    let pattern = weights(5 << 10, 42); // 4 bytes a weight: 20 KiB
    while data.len() < 3_200_000 {
        data.extend_from_slice(&pattern);
    }
    let gz = gzip_flushed(&data, 64 << 10);
    let header = member_header_len(&gz).unwrap();
    // A chunk in the repeats whose output is more than the marker phase may hold but less
    // than the chunk's output cap: the cap on the phase, not the chunk's, refuses it.
    // The repeats compress ~70×: the file's last 40 kB are all repeats.
    let start = gz.len() - 40_000;
    let len = 16 << 10;
    let job = ChunkJob {
        offset: start as u64,
        input: gz[start..start + len + (4 << 10)].to_vec(),
        start_bit: None,
        stop_bit: (len * 8) as u64,
        max_out: 8 << 20,
    };
    let result = decode_chunk(job);
    assert!(
        matches!(
            result.decoded,
            Err(byom_core::archive::deflate::Error::OutputLimit)
        ),
        "refused at the marker phase's cap: {:?} (file {} bytes)",
        result.decoded.as_ref().map(|d| d.head.len()),
        gz.len()
    );
    assert!(header < start, "{}", gz.len());
    // The in-order pass decodes such chunks itself, so the file still comes out whole.
    assert!(chunked(&gz, 16 << 10, 8 << 20).unwrap() == data);

    // Weight-like data never gets near the cap: its window is clean within a block or two.
    let data = weights(500_000, 43);
    let gz = gzip(&data, 6);
    let start = gz.len() / 2;
    let job = ChunkJob {
        offset: start as u64,
        input: gz[start..start + (1 << 20).min(gz.len() - start)].to_vec(),
        start_bit: None,
        stop_bit: (256 << 10) * 8,
        max_out: 8 << 20,
    };
    let decoded = decode_chunk(job)
        .decoded
        .expect("a weight chunk decodes on its own");
    assert!(
        decoded.head.len() < MARKER_PHASE_MAX / 4,
        "head {}",
        decoded.head.len()
    );
}

#[test]
fn a_zeroed_layer_is_decoded_in_order_in_bounded_pieces_and_the_rest_in_parallel() {
    use byom_core::archive::chunked::IN_ORDER_PIECE;
    // Weights, 8 MB of zeros (a pruned layer: ~8 kB compressed), weights.
    let mut data = weights(300_000, 51);
    data.resize(data.len() + (8 << 20), 0);
    data.extend_from_slice(&weights(300_000, 52));
    let gz = gzip(&data, 6);
    let header = member_header_len(&gz).unwrap();
    let chunk = 64 << 10;
    let max_out = 2 * chunk + (1 << 20);
    let mut st = Stitcher::new(&Limits::default(), gz.len() as u64, &gz[..header]);
    let (mut all, mut largest, mut start) = (Vec::new(), 0, 0);
    while start < gz.len() && !st.stream_ended() {
        let end = (start + chunk).min(gz.len());
        let job = ChunkJob {
            offset: start as u64,
            input: gz[start..(end + (256 << 10)).min(gz.len())].to_vec(),
            start_bit: (start == 0).then_some(header as u64 * 8),
            stop_bit: ((end - start) * 8) as u64,
            max_out,
        };
        st.accept(&decode_chunk(job), &mut |b| {
            largest = largest.max(b.len());
            all.extend_from_slice(b);
        })
        .unwrap();
        start = end;
    }
    // The one chunk holding the zeros went over its cap; the stream is still whole, and no
    // piece handed on was larger than a chunk's cap or the in-order piece.
    assert_eq!(st.in_order_chunks(), 1);
    assert!(largest <= max_out.max(IN_ORDER_PIECE), "{largest}");
    let t = st.trailer_offset().unwrap() as usize;
    st.finish(&gz[t..]).unwrap();
    assert!(all == data);
}

#[test]
fn the_in_order_pass_stops_a_bomb_inside_its_blocks() {
    use byom_core::archive::chunked::Doubt;
    // 256 MiB of zeros: ~250 kB of deflate, far past the default 200× once past the 16 MiB
    // grace. Its thread gives up at the chunk's cap; the in-order pass must stop near where
    // the sequential reader would, not inflate it all first.
    let zeros = vec![0u8; 256 << 20];
    let gz = gzip(&zeros, 9);
    let header = member_header_len(&gz).unwrap();
    let mut st = Stitcher::new(&Limits::default(), gz.len() as u64, &gz[..header]);
    let job = ChunkJob {
        offset: 0,
        input: gz.clone(),
        start_bit: Some(header as u64 * 8),
        stop_bit: gz.len() as u64 * 8,
        max_out: 1 << 20,
    };
    let mut handed = 0;
    let verdict = st.accept(&decode_chunk(job), &mut |b| handed += b.len());
    assert_eq!(verdict.err(), Some(Doubt::Ratio));
    assert!(
        handed < 24 << 20,
        "{handed} bytes handed on before the doubt"
    );
}

#[test]
fn two_copies_of_the_same_bytes_must_agree() {
    use byom_core::archive::chunked::Doubt;
    let data = weights(400_000, 61);
    let gz = gzip(&data, 6);
    let header = member_header_len(&gz).unwrap();
    let chunk = 200_000;
    let job = |start: usize, input: Vec<u8>| ChunkJob {
        offset: start as u64,
        input,
        start_bit: (start == 0).then_some(header as u64 * 8),
        stop_bit: (chunk.min(gz.len() - start) * 8) as u64,
        max_out: 8 << 20,
    };
    let copy = |start: usize| gz[start..gz.len().min(start + chunk + (256 << 10))].to_vec();
    // The header the plan parsed differs from chunk 0's copy of it (the file changed between
    // the two reads): a doubt, before anything is handed on.
    let mut other = gz[..header].to_vec();
    other[4] ^= 1; // MTIME
    let mut st = Stitcher::new(&Limits::default(), gz.len() as u64, &other);
    let result = decode_chunk(job(0, copy(0)));
    assert_eq!(
        st.accept(&result, &mut |_| panic!("handed on")).err(),
        Some(Doubt::Changed)
    );

    // Chunk 0 ends inside a byte; chunk 1's copy of that byte differs in the bits chunk 0
    // decoded (chunk 1 itself never reads them): a doubt. With the same copy, it is accepted.
    let mut st = Stitcher::new(&Limits::default(), gz.len() as u64, &gz[..header]);
    let first = st.accept(&result, &mut |_| {}).unwrap();
    assert_eq!(first.start, 0);
    // Chunk 0 supplied up to and with the byte it ends in.
    let second = decode_chunk(job(chunk, copy(chunk)));
    let boundary_bit = second.decoded.as_ref().unwrap().start_bit;
    assert!(
        !boundary_bit.is_multiple_of(8),
        "pick another seed: chunk 0 ends on a byte boundary"
    );
    let at = (boundary_bit / 8) as usize;
    assert_eq!(chunk + at + 1, first.end);
    let mut changed = copy(chunk);
    changed[at] ^= 1; // the lowest bit: chunk 0's, never chunk 1's
    let tampered = decode_chunk(job(chunk, changed));
    assert_eq!(tampered.decoded.as_ref().unwrap().start_bit, boundary_bit);
    let mut again = Stitcher::new(&Limits::default(), gz.len() as u64, &gz[..header]);
    again.accept(&result, &mut |_| {}).unwrap();
    assert_eq!(
        again.accept(&tampered, &mut |_| {}).err(),
        Some(Doubt::Changed)
    );
    // Chunk 1 supplies from the byte after that one.
    assert_eq!(st.accept(&second, &mut |_| {}).unwrap().start, at + 1);
}
