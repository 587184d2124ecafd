//! Headers that tar readers resolve differently are refused (issue 9.3): what byom validates
//! must be what GNU tar and Python's tarfile extract. tests/test_tar_differential.py runs the
//! three readers over the same kinds of archives; these pin the walker's side quickly.

mod common;

use common::*;

/// `h` with its magic replaced (`b"ustar\0" b"00"`, `b"ustar  \0"` GNU, zeros v7) and bytes
/// written at `at`, checksum recomputed.
fn patch(mut h: [u8; 512], magic: &[u8; 8], at: usize, bytes: &[u8]) -> [u8; 512] {
    h[257..265].copy_from_slice(magic);
    h[at..at + bytes.len()].copy_from_slice(bytes);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

const GNU: &[u8; 8] = b"ustar  \0";
const V7: &[u8; 8] = &[0; 8];

fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(512) * 512, 0);
    v
}

fn record(kind: u8, payload: &[u8], magic: &[u8; 8]) -> Vec<u8> {
    let mut out = patch(
        header(b"././@LongLink", payload.len() as u64, kind, b""),
        magic,
        0,
        b"",
    )
    .to_vec();
    out.extend(padded(payload));
    out
}

fn pax(records: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = format!(" {k}={v}\n");
        let mut n = body.len() + 1;
        while n.to_string().len() + body.len() != n {
            n = n.to_string().len() + body.len();
        }
        out.extend(format!("{n}{body}").into_bytes());
    }
    out
}

/// The three metadata files, then `pt` (the model member, possibly preceded by records).
fn package(pt: Vec<u8>) -> Vec<u8> {
    let mut raw = tar(&good_members()[..3]);
    raw.truncate(raw.len() - 1024);
    raw.extend(pt);
    raw.extend([0u8; 1024]);
    gz(&raw)
}

fn pt_member(name: &[u8], magic: &[u8; 8]) -> Vec<u8> {
    let mut out = patch(header(name, TINY_PT.len() as u64, b'0', b""), magic, 0, b"");
    out[0..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    let mut v = out.to_vec();
    v.extend(padded(TINY_PT));
    v
}

const PT: &str = "export_artifacts/model.pt";

fn refused(bytes: &[u8], words: &str) {
    let r = validate(bytes);
    assert!(!r.valid);
    let i = issue(&r, "BYOM004");
    assert!(i.message.contains(words), "{}", i.message);
    assert!(
        i.message.contains("would read this archive differently"),
        "{}",
        i.message
    );
}

#[test]
fn honoured_records_with_and_without_magic_are_valid() {
    for magic in [GNU, V7] {
        let mut pt = record(b'L', format!("{PT}\0").as_bytes(), magic);
        pt.extend(pt_member(b"decoy/model.pt", magic));
        let r = validate(&package(pt));
        assert!(r.valid, "{:?}", r.errors);
        assert_eq!(r.summary.model_file.as_deref(), Some(PT));

        let mut pt = record(b'x', &pax(&[("path", PT)]), magic);
        pt.extend(pt_member(b"decoy/model.pt", magic));
        let r = validate(&package(pt));
        assert!(r.valid, "{:?}", r.errors);
        assert_eq!(r.summary.model_file.as_deref(), Some(PT));
    }
    // The same name twice is not ambiguous; a harmless global header is ignored by everyone.
    let mut pt = record(b'L', format!("{PT}\0").as_bytes(), GNU);
    pt.extend(record(b'x', &pax(&[("path", PT)]), GNU));
    pt.extend(pt_member(b"decoy/model.pt", GNU));
    assert!(validate(&package(pt)).valid);
    let mut pt = record(b'g', &pax(&[("comment", "hi")]), GNU);
    pt.extend(pt_member(PT.as_bytes(), GNU));
    assert!(validate(&package(pt)).valid);
}

#[test]
fn a_global_header_that_names_or_sizes_members_is_refused() {
    for key in ["path", "size", "linkpath", "GNU.sparse.name"] {
        let value = if key == "size" { "3" } else { PT };
        let mut pt = record(b'g', &pax(&[(key, value)]), GNU);
        pt.extend(pt_member(b"decoy/model.pt", GNU));
        refused(&package(pt), "global header");
    }
}

#[test]
fn two_names_for_one_member_are_refused() {
    let other = "export_artifacts/other.pt\0";
    let mut pt = record(b'L', other.as_bytes(), GNU);
    pt.extend(record(b'x', &pax(&[("path", PT)]), GNU));
    pt.extend(pt_member(b"decoy/model.pt", GNU));
    refused(&package(pt), "long-name record and a PAX path");

    let mut pt = record(b'L', other.as_bytes(), GNU);
    pt.extend(record(b'L', format!("{PT}\0").as_bytes(), GNU));
    pt.extend(pt_member(b"decoy/model.pt", GNU));
    refused(&package(pt), "Two GNU long-name records");

    let mut pt = record(b'x', &pax(&[("path", PT)]), GNU);
    pt.extend(record(
        b'x',
        &pax(&[("path", "export_artifacts/other.pt")]),
        GNU,
    ));
    pt.extend(pt_member(b"decoy/model.pt", GNU));
    refused(&package(pt), "Two PAX headers name");

    let mut pt = record(b'x', &pax(&[("size", "3")]), GNU);
    pt.extend(record(b'x', &pax(&[("size", "4")]), GNU));
    pt.extend(pt_member(PT.as_bytes(), GNU));
    refused(&package(pt), "different sizes");
}

#[test]
fn gnu_sparse_keys_are_refused() {
    let mut pt = record(
        b'x',
        &pax(&[("GNU.sparse.name", "export_artifacts/other.pt")]),
        GNU,
    );
    pt.extend(pt_member(PT.as_bytes(), GNU));
    refused(&package(pt), "GNU.sparse.name");
}

#[test]
fn prefix_bytes_without_ustar_magic_are_refused() {
    for magic in [GNU, V7] {
        let mut h = patch(
            header(b"model.pt", TINY_PT.len() as u64, b'0', b""),
            magic,
            345,
            b"export_artifacts",
        )
        .to_vec();
        h.extend(padded(TINY_PT));
        refused(&package(h), "prefix field");
    }
    // Under POSIX ustar magic the prefix is part of the name, for every reader.
    let mut h = patch(
        header(b"model.pt", TINY_PT.len() as u64, b'0', b""),
        b"ustar\x0000",
        345,
        b"export_artifacts",
    )
    .to_vec();
    h.extend(padded(TINY_PT));
    let r = validate(&package(h));
    assert!(r.valid, "{:?}", r.errors);
    assert_eq!(r.summary.model_file.as_deref(), Some(PT));
}

#[test]
fn a_long_name_stops_at_its_first_nul() {
    // GNU tar and tarfile read the name as a C string.
    let mut pt = record(b'L', format!("{PT}\0trailing junk").as_bytes(), GNU);
    pt.extend(pt_member(b"decoy/model.pt", GNU));
    let r = validate(&package(pt));
    assert!(r.valid, "{:?}", r.errors);
    assert_eq!(r.summary.model_file.as_deref(), Some(PT));
}
