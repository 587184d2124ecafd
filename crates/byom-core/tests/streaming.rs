//! The report is a pure function of the bytes: identical whatever the chunk sizes.

mod common;

use byom_core::{Event, Settings, Validator};
use common::*;

/// A small deterministic generator for chunk sizes (no extra dependency).
fn random_sizes(seed: u64, n: usize, max: usize) -> Vec<usize> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            1 + ((x >> 33) as usize % max)
        })
        .collect()
}

fn packages() -> Vec<(&'static str, Vec<u8>)> {
    let good = targz(&good_members());
    let mut hostile = good_members();
    hostile.push(file("/abs", "x"));
    hostile.push(special("export_artifacts/l", b'2', "/etc"));
    hostile.push(file("./config.yaml", "dup"));
    hostile.push(file("._x", "apple"));
    let mut garbage = good.clone();
    garbage.extend_from_slice(b"junk");
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 6] ^= 1;
    // Bigger than one ratio-check interval, compressible but not a bomb.
    let mut big = good_members();
    big.push(file(
        "export_artifacts/notes.txt",
        "line of text that compresses well\n".repeat(20_000),
    ));
    let mut zeros = good_members();
    zeros.push(file("export_artifacts/zeros.bin", vec![0u8; 20 << 20]));
    vec![
        ("good", good.clone()),
        ("hostile", targz(&hostile)),
        ("trailing", garbage),
        ("bad-crc", bad_crc),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("plain-tar", tar(&good_members())),
        ("bad-yaml", with("config.yaml", "dataset: [")),
        ("big", targz(&big)),
        ("ratio-bomb", gz_best(&tar(&zeros))),
        // Found by `cargo fuzz run validate`: zlib-rs words this corruption differently
        // depending on how much input one call gets. The first two bytes are the fuzz
        // target's chunking seed.
        (
            "fuzz-corrupt-deflate",
            include_bytes!("data/fuzz-corrupt-deflate.bin")[2..].to_vec(),
        ),
    ]
}

#[test]
fn report_is_identical_for_any_chunking() {
    for (name, bytes) in packages() {
        let whole = serde_json::to_string(&validate(&bytes)).unwrap();
        let variants: Vec<(String, Vec<usize>)> = vec![
            ("1-byte".into(), vec![1]),
            ("7-byte".into(), vec![7]),
            ("random".into(), random_sizes(42, 1000, 100_000)),
            ("random-small".into(), random_sizes(7, 1000, 700)),
            ("64k+1".into(), vec![65_537]),
        ];
        for (label, sizes) in variants {
            // 1-byte feeding of multi-MiB packages is slow in debug builds; the small ones suffice.
            if (label == "1-byte" || label == "random-small") && bytes.len() > 200_000 {
                continue;
            }
            let chunked = serde_json::to_string(&validate_chunked(&bytes, &sizes)).unwrap();
            assert_eq!(whole, chunked, "{name} fed in {label} chunks");
        }
    }
}

#[test]
fn ratio_bomb_package_is_refused_and_others_are_not() {
    let p = packages();
    let get = |n: &str| validate(&p.iter().find(|(k, _)| *k == n).unwrap().1);
    assert_eq!(codes(&get("ratio-bomb")), ["BYOM008"]);
    assert!(!has(&get("big"), "BYOM008"));
}

#[test]
fn events_arrive_while_streaming_and_feeding_after_fatal_is_ignored() {
    let bytes = targz(&{
        let mut m = good_members();
        m.push(file("/etc/passwd", "x"));
        m
    });
    let mut v = Validator::new(&Settings::default());
    let mut entries = 0;
    let mut issues = Vec::new();
    for chunk in bytes.chunks(100) {
        v.feed(chunk);
        for e in v.drain_events() {
            match e {
                Event::Entry { .. } => entries += 1,
                Event::Issue(i) => issues.push(i.code.to_string()),
            }
        }
    }
    assert_eq!(entries, 5);
    assert!(issues.contains(&"BYOM005".to_string()));
    assert!(!v.is_finished());

    let mut v = Validator::new(&Settings::default());
    v.feed(b"not gzip");
    v.feed(&[0u8; 300]);
    assert!(v.is_finished());
    v.feed(&vec![0u8; 1 << 20]);
    let r = v.finish();
    assert_eq!(codes(&r), ["BYOM001"]);
    assert_eq!(r.summary.compressed_bytes, 8 + 300 + (1 << 20));
}

#[test]
fn validate_reader_matches_validate_bytes() {
    let bytes = targz(&good_members());
    let a = byom_core::validate::validate_reader(bytes.as_slice(), &Settings::default()).unwrap();
    assert_eq!(a, validate(&bytes));
}

/// A cheap, deterministic stand-in for the cargo-fuzz `validate` target that runs with every
/// `cargo test`: corrupt a real package (byte flips, truncation, insertion) many ways, and check
/// that the validator neither panics nor depends on the chunking.
#[test]
fn mutated_packages_never_panic_and_stay_chunking_independent() {
    let base = targz(&good_members());
    let plain = tar(&good_members());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |m: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    for round in 0..300 {
        // Mutate either the compressed bytes or the tar before compression (reaches the tar walker).
        let mut bytes = if round % 2 == 0 {
            base.clone()
        } else {
            plain.clone()
        };
        for _ in 0..=next(4) {
            let len = bytes.len() as u64;
            match next(3) {
                0 => {
                    let i = next(len) as usize;
                    bytes[i] ^= 1 << next(8);
                }
                1 => bytes.truncate(next(len) as usize + 1),
                _ => {
                    let i = next(len) as usize;
                    bytes.insert(i, next(256) as u8);
                }
            }
        }
        if round % 2 == 1 {
            bytes = gz(&bytes);
        }
        let whole = serde_json::to_string(&validate(&bytes)).unwrap();
        let sizes = [1 + next(3000) as usize, 1 + next(70_000) as usize];
        let chunked = serde_json::to_string(&validate_chunked(&bytes, &sizes)).unwrap();
        assert_eq!(whole, chunked, "round {round}");
    }
}
