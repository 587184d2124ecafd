//! Broken and hostile archives: every BYOM0xx case, built as real bytes in memory.

mod common;

use std::time::Instant;

use byom_core::{Limits, Settings, Validator};
use common::*;
use flate2::{Compress, Compression, FlushCompress};

#[test]
fn good_package_is_valid_with_no_issues_of_its_own() {
    let r = validate(&targz(&good_members()));
    assert_eq!(own_codes(&r), Vec::<&str>::new(), "{r:#?}");
    assert_eq!(
        r.summary.model_file.as_deref(),
        Some("export_artifacts/model.pt")
    );
    assert_eq!(r.summary.model_file_bytes, Some(TINY_PT.len() as u64));
    assert_eq!(r.summary.input_shape, Some(vec![1, 3, 224, 224]));
    assert_eq!(r.summary.model_type.as_deref(), Some("classification"));
    assert_eq!(r.summary.num_classes, Some(2));
    assert_eq!(r.summary.entries.len(), 4);
}

#[test]
fn tar_czf_dot_layout_is_valid() {
    // `tar czf model.tar.gz .`: a `./` directory entry and `./` prefixes everywhere.
    let mut members = vec![dir("./"), dir("./export_artifacts/")];
    for m in good_members() {
        let mut name = b"./".to_vec();
        name.extend_from_slice(&m.name);
        members.push(Member { name, ..m });
    }
    let r = validate(&targz(&members));
    assert_eq!(own_codes(&r), Vec::<&str>::new(), "{r:#?}");
    assert!(r.summary.entries.contains(&"export_artifacts/".to_string()));
    assert!(r.summary.entries.contains(&"config.yaml".to_string()));
}

#[test]
fn not_gzip_at_all() {
    let r = validate(b"hello, this is not a package at all");
    assert_eq!(codes(&r), ["BYOM001"]);
    assert!(r.errors[0]
        .message
        .starts_with("Model artifact is not a valid tar.gz file."));
    assert!(!r.valid);
}

#[test]
fn empty_file_is_not_gzip() {
    let r = validate(b"");
    assert_eq!(codes(&r), ["BYOM001"]);
    assert!(r.errors[0].message.contains("empty"));
}

#[test]
fn plain_tar_says_so() {
    let r = validate(&tar(&good_members()));
    assert_eq!(codes(&r), ["BYOM001"]);
    assert!(
        r.errors[0].message.contains("uncompressed tar"),
        "{}",
        r.errors[0].message
    );
    assert!(r.errors[0].hint.contains("gzip"));
}

#[test]
fn bare_pt_zip_says_so() {
    let r = validate(TINY_PT);
    assert_eq!(codes(&r), ["BYOM001"]);
    assert!(r.errors[0].message.contains("zip"));
}

#[test]
fn truncated_gzip() {
    let bytes = targz(&good_members());
    for cut in [5, 20, bytes.len() / 2, bytes.len() - 3] {
        let r = validate(&bytes[..cut]);
        assert_eq!(codes(&r), ["BYOM002"], "cut at {cut}: {r:#?}");
        assert!(r.errors[0].message.contains("truncated"));
    }
}

#[test]
fn crc_and_size_mismatch() {
    let mut bytes = targz(&good_members());
    let n = bytes.len();
    bytes[n - 8] ^= 0xff; // CRC-32
    let r = validate(&bytes);
    assert_eq!(codes(&r), ["BYOM002"]);
    assert!(r.errors[0].message.contains("CRC"));
    let mut bytes = targz(&good_members());
    bytes[n - 2] ^= 0x01; // ISIZE
    let r = validate(&bytes);
    assert_eq!(codes(&r), ["BYOM002"]);
    assert!(r.errors[0].message.contains("length"));
}

#[test]
fn corrupt_deflate_data() {
    let mut bytes = targz(&good_members());
    // Deflate block type 3 is reserved: set both type bits of the first block header.
    bytes[10] |= 0b110;
    let r = validate(&bytes);
    assert_eq!(codes(&r), ["BYOM002"], "{r:#?}");
}

#[test]
fn concatenated_members_are_valid_but_trailing_garbage_is_not() {
    let t = tar(&good_members());
    let (a, b) = t.split_at(3000);
    let mut two = gz(a);
    two.extend_from_slice(&gz(b));
    let r = validate(&two);
    assert_eq!(own_codes(&r), Vec::<&str>::new(), "{r:#?}");

    let mut junk = targz(&good_members());
    junk.extend_from_slice(b"garbage");
    let r = validate(&junk);
    assert_eq!(codes(&r), ["BYOM003"]);
    let mut one = targz(&good_members());
    one.push(0x1f);
    assert_eq!(codes(&validate(&one)), ["BYOM003"]);
}

#[test]
fn gzip_header_fields_are_parsed() {
    // FEXTRA + FNAME + FCOMMENT + FHCRC, then raw deflate and the trailer.
    let t = tar(&good_members());
    let mut h = vec![0x1f, 0x8b, 8, 0x02 | 0x04 | 0x08 | 0x10, 0, 0, 0, 0, 0, 3];
    h.extend_from_slice(&[4, 0, b'a', b'b', 2, 0]);
    h.extend_from_slice(b"model.tar\0a comment\0");
    let crc16 = (crc32fast::hash(&h) & 0xffff) as u16;
    h.extend_from_slice(&crc16.to_le_bytes());
    let mut c = Compress::new(Compression::fast(), false);
    let mut deflated = Vec::with_capacity(t.len() + 1024);
    c.compress_vec(&t, &mut deflated, FlushCompress::Finish)
        .unwrap();
    h.extend_from_slice(&deflated);
    h.extend_from_slice(&crc32fast::hash(&t).to_le_bytes());
    h.extend_from_slice(&(t.len() as u32).to_le_bytes());
    let r = validate(&h);
    assert_eq!(own_codes(&r), Vec::<&str>::new(), "{r:#?}");
    // A wrong header CRC is caught.
    let mut bad = h.clone();
    bad[26] ^= 0xff;
    assert_eq!(codes(&validate(&bad)), ["BYOM002"]);
}

#[test]
fn gzipped_non_tar() {
    let r = validate(&gz(
        &b"just a single gzipped file, not a tar archive. ".repeat(20)
    ));
    assert_eq!(codes(&r), ["BYOM004"]);
    assert!(r.errors[0].message.contains("not a tar"));
}

#[test]
fn truncated_tar_inside_valid_gzip() {
    let t = tar(&good_members());
    let r = validate(&gz(&t[..2000]));
    assert_eq!(codes(&r), ["BYOM004"], "{r:#?}");
    assert!(r.errors[0].message.contains("truncated"));
}

#[test]
fn bad_header_checksum() {
    let mut t = tar(&good_members());
    let second = 512 + 512; // config.yaml is < 512 bytes: second header at 1024
    t[second + 1] ^= 0x20;
    let r = validate(&gz(&t));
    assert!(has(&r, "BYOM004"), "{r:#?}");
}

#[test]
fn absolute_and_parent_paths() {
    let mut m = good_members();
    m.push(file("/etc/passwd", "x"));
    m.push(file("export_artifacts/../../escape.sh", "x"));
    let r = validate(&targz(&m));
    let unsafe_paths: Vec<_> = r.errors.iter().filter(|i| i.code == "BYOM005").collect();
    assert_eq!(unsafe_paths.len(), 2, "{r:#?}");
    assert!(!r.valid);
}

#[test]
fn links_devices_and_fifos() {
    for (kind, what) in [
        (b'2', "symlink"),
        (b'1', "hardlink"),
        (b'3', "character device"),
        (b'6', "FIFO"),
    ] {
        let mut m = good_members();
        m.push(special("export_artifacts/link.pt", kind, "/etc/passwd"));
        let r = validate(&targz(&m));
        let i = issue(&r, "BYOM006");
        assert!(i.message.contains(what), "{}", i.message);
        assert!(!r.valid);
    }
}

#[test]
fn duplicate_after_normalisation() {
    let mut m = good_members();
    m.push(file(
        "./config.yaml",
        "dataset: {image_width: 1, image_height: 1}\n",
    ));
    let r = validate(&targz(&m));
    assert_eq!(issue(&r, "BYOM007").file.as_deref(), Some("config.yaml"));
    // The first copy counts: no dimension mismatch from the second.
    assert!(!has(&r, "BYOM501"));
}

#[test]
fn appledouble_members_are_ignored_with_one_warning() {
    let mut m = good_members();
    m.push(file("._config.yaml", "\0\x05\x16\x07 binary"));
    m.push(file("export_artifacts/._model.pt", "\0\x05\x16\x07"));
    m.push(dir("__MACOSX/"));
    m.push(file("__MACOSX/export_artifacts/._manifest.json", "x"));
    let r = validate(&targz(&m));
    assert_eq!(own_codes(&r), ["BYOM013"], "{r:#?}");
    assert!(r.errors.iter().all(|i| i.code.as_str() >= "BYOM600"));
}

#[test]
fn single_top_folder() {
    let members: Vec<Member> = good_members()
        .into_iter()
        .map(|m| {
            let mut name = b"my-model/".to_vec();
            name.extend_from_slice(&m.name);
            Member { name, ..m }
        })
        .collect();
    let r = validate(&targz(&members));
    assert_eq!(codes(&r), ["BYOM014"], "{r:#?}");
    assert!(r.errors[0].message.contains("my-model/"));
    assert!(r.errors[0].hint.contains("-C my-model ."));
}

#[test]
fn too_many_entries_and_long_paths() {
    let settings = Settings {
        limits: Limits {
            max_entries: 5,
            ..Limits::default()
        },
        ..Settings::default()
    };
    let mut m = good_members();
    for i in 0..5 {
        m.push(file(&format!("extra{i}.txt"), "x"));
    }
    let r = validate_with(&targz(&m), &settings);
    assert!(has(&r, "BYOM010"), "{r:#?}");

    let mut m = good_members();
    m.push(file(
        &format!("export_artifacts/{}.txt", "x".repeat(1100)),
        "x",
    ));
    let r = validate(&targz(&m));
    assert!(has(&r, "BYOM011"), "{r:#?}");
    // 200-byte names through GNU long-name records are fine.
    let mut m = good_members();
    m.push(file(&format!("notes/{}.txt", "n".repeat(200)), "x"));
    let r = validate(&targz(&m));
    assert_eq!(own_codes(&r), ["BYOM106"], "{r:#?}");
}

#[test]
fn pax_path_records_are_honoured() {
    let mut t = Vec::new();
    let record = "30 path=export_artifacts/m.pt\n";
    assert_eq!(record.len(), 30);
    let pax = |t: &mut Vec<u8>| {
        t.extend_from_slice(&header(b"PaxHeaders/x", record.len() as u64, b'x', b""));
        t.extend_from_slice(record.as_bytes());
        while !t.len().is_multiple_of(512) {
            t.push(0);
        }
    };
    for m in good_members()
        .into_iter()
        .filter(|m| !m.name.ends_with(b".pt"))
    {
        t.extend_from_slice(&header(&m.name, m.data.len() as u64, b'0', b""));
        t.extend_from_slice(&m.data);
        while !t.len().is_multiple_of(512) {
            t.push(0);
        }
    }
    pax(&mut t);
    t.extend_from_slice(&header(b"short-name", TINY_PT.len() as u64, b'0', b""));
    t.extend_from_slice(TINY_PT);
    while !t.len().is_multiple_of(512) {
        t.push(0);
    }
    t.extend_from_slice(&[0; 1024]);
    let r = validate(&gz(&t));
    assert!(
        r.summary
            .entries
            .contains(&"export_artifacts/m.pt".to_string()),
        "{r:#?}"
    );
    assert!(has(&r, "BYOM407")); // manifest names model.pt
}

#[test]
fn metadata_too_large() {
    let settings = Settings {
        limits: Limits {
            max_metadata_bytes: 150,
            ..Limits::default()
        },
        ..Settings::default()
    };
    let r = validate_with(&targz(&good_members()), &settings);
    let too_large: Vec<_> = r.errors.iter().filter(|i| i.code == "BYOM012").collect();
    assert_eq!(too_large.len(), 2, "{r:#?}"); // mochi.json and manifest.json
    assert_eq!(too_large[0].file.as_deref(), Some("mochi.json"));
}

/// Stream a gzip of a tar member of `total` zeros into a validator until it gives up. The
/// deflate data is one fully-flushed 1 MiB block of zeros repeated, so generating it costs
/// nothing and nothing is ever held in memory beyond that block.
fn stream_zero_bomb(settings: &Settings, total: u64) -> (byom_core::Report, u64) {
    let mut c = Compress::new(Compression::best(), false);
    let mut hdr = Vec::with_capacity(4096);
    c.compress_vec(
        &header(b"export_artifacts/model.pt", total, b'0', b""),
        &mut hdr,
        FlushCompress::Full,
    )
    .unwrap();
    let mut c = Compress::new(Compression::best(), false);
    let mut block = Vec::with_capacity(64 << 10);
    c.compress_vec(&vec![0u8; 1 << 20], &mut block, FlushCompress::Full)
        .unwrap();
    let mut v = Validator::new(settings);
    v.feed(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
    v.feed(&hdr);
    let mut written = 0u64;
    while written < total && !v.is_finished() {
        v.feed(&block);
        written += 1 << 20;
    }
    (v.finish(), written)
}

#[test]
fn zero_bomb_of_8_gib_is_refused_in_well_under_a_second() {
    let start = Instant::now();
    let (r, written) = stream_zero_bomb(&Settings::default(), 8 << 30);
    let elapsed = start.elapsed();
    assert_eq!(codes(&r), ["BYOM008"], "{r:#?}");
    assert!(written < 256 << 20, "refused only after {written} bytes");
    // Generous for debug builds on a loaded 2-core machine; release takes milliseconds.
    assert!(
        elapsed.as_secs_f64() < 1.0 || cfg!(debug_assertions) && elapsed.as_secs_f64() < 5.0,
        "{elapsed:?}"
    );
}

#[test]
fn total_size_cap() {
    let limits = Limits {
        max_uncompressed_bytes: 4 << 20,
        max_compression_ratio: u64::MAX,
        ..Limits::default()
    };
    let settings = Settings {
        limits,
        ..Settings::default()
    };
    // Declared size over the cap: refused at the header.
    let (r, _) = stream_zero_bomb(&settings, 64 << 20);
    assert_eq!(codes(&r), ["BYOM009"], "{r:#?}");
    // Decompressed bytes over the cap (sizes declared small, data keeps coming).
    let mut t = Vec::new();
    for i in 0..6 {
        let name = format!("export_artifacts/part{i}.bin");
        t.extend_from_slice(&header(name.as_bytes(), 1 << 20, b'0', b""));
        t.extend_from_slice(&vec![0u8; 1 << 20]);
    }
    let limits = Limits {
        max_uncompressed_bytes: 5 << 20,
        max_compression_ratio: u64::MAX,
        ..Limits::default()
    };
    let r = validate_with(
        &gz(&t),
        &Settings {
            limits,
            ..Settings::default()
        },
    );
    assert!(has(&r, "BYOM009"), "{r:#?}");
}
