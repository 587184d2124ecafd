//! Unit tests of the zip reader, on zips built byte by byte (PyTorch's layout and hostile
//! variants of it). `build_zip` is shared with the inspector's tests.

use super::records::{SIG_CENTRAL, SIG_DESC, SIG_EOCD, SIG_LOCAL};
use super::*;

pub(crate) const LIM: ZipLimits = ZipLimits {
    max_pickle_bytes: 1 << 20,
    max_code_bytes: 1 << 20,
    max_directory_bytes: 1 << 20,
    max_records: 1000,
};

/// Build a PyTorch-style zip: bit 3, zero sizes in local headers, descriptors, Zip64-less.
pub(crate) fn build_zip(entries: &[(&str, &[u8])], cd_names: Option<&[&str]>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut cd = Vec::new();
    for (k, (name, data)) in entries.iter().enumerate() {
        let off = out.len() as u32;
        let crc = crc32fast::hash(data);
        out.extend_from_slice(&SIG_LOCAL);
        out.extend_from_slice(&[20, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(&SIG_DESC);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        let cname = cd_names.map_or(*name, |n| n[k]);
        cd.extend_from_slice(&SIG_CENTRAL);
        cd.extend_from_slice(&[20, 0, 20, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
        cd.extend_from_slice(&crc.to_le_bytes());
        cd.extend_from_slice(&(data.len() as u32).to_le_bytes());
        cd.extend_from_slice(&(data.len() as u32).to_le_bytes());
        cd.extend_from_slice(&(cname.len() as u16).to_le_bytes());
        cd.extend_from_slice(&[0; 12]);
        cd.extend_from_slice(&off.to_le_bytes());
        cd.extend_from_slice(cname.as_bytes());
    }
    let cd_off = out.len() as u32;
    out.extend_from_slice(&cd);
    out.extend_from_slice(&SIG_EOCD);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_off.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

fn scan(bytes: &[u8], chunk: usize) -> ZipView {
    let mut s = ZipScanner::new(LIM);
    for c in bytes.chunks(chunk.max(1)) {
        s.feed(c);
    }
    s.finish()
}

#[test]
fn finds_entries_whatever_the_chunking() {
    // Tensor bytes that contain a local-header signature must not end the entry.
    let mut tensor = vec![7u8; 300];
    tensor[100..104].copy_from_slice(&SIG_LOCAL);
    tensor[150..154].copy_from_slice(&SIG_CENTRAL);
    let z = build_zip(
        &[
            ("m/data.pkl", b"\x80\x02}q\x00."),
            ("m/data/0", &tensor),
            ("m/version", b"3\n"),
        ],
        None,
    );
    for chunk in [1, 2, 3, 7, 64, 100_000] {
        let v = scan(&z, chunk);
        assert!(v.problems.is_empty(), "chunk {chunk}: {:?}", v.problems);
        assert_eq!(v.prefix.as_deref(), Some("m"));
        assert_eq!(
            v.local.iter().map(|e| e.size).collect::<Vec<_>>(),
            vec![Some(6), Some(300), Some(2)]
        );
        assert_eq!(
            v.record("version").map(|r| r.data.clone()),
            Some(b"3\n".to_vec())
        );
        assert_eq!(v.record("data.pkl").map(|r| r.data.len()), Some(6));
        assert!(v.record("data/0").is_none(), "tensor bytes are never kept");
    }
}

#[test]
fn name_mismatch_is_reported() {
    let z = build_zip(
        &[("a/data.pkl", b"\x80\x02N."), ("a/x", b"1")],
        Some(&["a/data.pkl", "a/evil.pkl"]),
    );
    let v = scan(&z, 5);
    assert!(
        v.problems
            .iter()
            .any(|p| matches!(p, ZipProblem::NameMismatch(_))),
        "{:?}",
        v.problems
    );
}

fn has(v: &ZipView, f: fn(&ZipProblem) -> bool) -> bool {
    v.problems.iter().any(f)
}

#[test]
fn duplicate_name_is_reported_and_named() {
    // The hostile data.pkl first, a benign one after: the scanner keeps the last by name,
    // torch's binary search may read either.
    let z = build_zip(
        &[
            ("archive/data.pkl", b"cos\nsystem\n(S'x'\ntR."),
            ("archive/data.pkl", b"\x80\x02}q\x00."),
            ("archive/version", b"3\n"),
        ],
        None,
    );
    let v = scan(&z, 7);
    let dup: Vec<&ZipProblem> = v
        .problems
        .iter()
        .filter(|p| matches!(p, ZipProblem::DuplicateName(_)))
        .collect();
    assert_eq!(dup.len(), 1, "{:?}", v.problems);
    assert!(
        matches!(dup[0], ZipProblem::DuplicateName(d) if d.names == ["archive/data.pkl"]),
        "{dup:?}"
    );
    // The report text is the contract.
    assert_eq!(
        dup[0].to_string(),
        "the zip holds two or more records named \"archive/data.pkl\": which one PyTorch reads is unspecified, so the one inspected may not be the one loaded"
    );
    assert!(!has(&v, |p| matches!(p, ZipProblem::NameMismatch(_))));
    // Neither record is dropped: the first stays the record, the second is kept aside.
    assert!(v
        .record("data.pkl")
        .is_some_and(|r| r.data.starts_with(b"cos")));
    assert_eq!(v.shadowed.len(), 1);
    assert!(v.shadowed[0].1.data.starts_with(b"\x80\x02"));
}

#[test]
fn names_equal_under_case_folding_collide() {
    let z = build_zip(
        &[
            ("archive/data.pkl", b"\x80\x02}q\x00."),
            ("archive/DATA.PKL", b"cos\nsystem\n(S'x'\ntR."),
            ("archive/version", b"3\n"),
        ],
        None,
    );
    let v = scan(&z, 3);
    let collision = v
        .problems
        .iter()
        .find(|p| {
            matches!(p, ZipProblem::CaseCollision(c)
            if c.pairs == [("archive/data.pkl".to_string(), "archive/DATA.PKL".to_string())])
        })
        .unwrap_or_else(|| panic!("{:?}", v.problems));
    assert_eq!(
        collision.to_string(),
        "records \"archive/data.pkl\" and \"archive/DATA.PKL\" differ only in letter case: PyTorch's zip reader ignores case, so it may load either"
    );
    assert!(!has(&v, |p| matches!(p, ZipProblem::DuplicateName(_))));
    // Only ASCII letters fold (miniz's MZ_TOLOWER): these names are distinct for torch.
    let z = build_zip(
        &[
            ("archive/data.pkl", b"\x80\x02}q\x00."),
            ("archive/data/0", b"1"),
            ("archive/data\\0", b"1"),
            ("archive/d\u{c4}ta.pkl", b"1"),
            ("archive/d\u{e4}ta.pkl", b"1"),
        ],
        None,
    );
    assert!(scan(&z, 64).problems.is_empty());
}

#[test]
fn record_outside_the_archive_folder_is_reported() {
    let z = build_zip(
        &[
            ("archive/data.pkl", b"\x80\x02}q\x00."),
            ("other/data.pkl", b"\x80\x02}q\x00."),
            ("ARCHIVE/x", b"1"),
            ("loose", b"1"),
        ],
        None,
    );
    let v = scan(&z, 64);
    let outside = v
        .problems
        .iter()
        .find_map(|p| match p {
            ZipProblem::OutsidePrefix(o) => Some(o.clone()),
            _ => None,
        })
        .expect("outside-prefix problem");
    assert_eq!(
        outside,
        OutsidePrefix::Outside {
            folder: "archive/".into(),
            names: vec!["other/data.pkl".into(), "ARCHIVE/x".into(), "loose".into()],
        }
    );
    assert_eq!(
        outside.to_string(),
        "records are outside the archive folder \"archive/\" PyTorch derives from the first record: \"other/data.pkl\", \"ARCHIVE/x\", \"loose\""
    );
    // The folder comes from the first central-directory record; a first record without
    // one makes the zip unreadable for torch.
    let z = build_zip(&[("data.pkl", b"\x80\x02}q\x00.")], None);
    assert!(has(&scan(&z, 64), |p| matches!(
        p,
        ZipProblem::OutsidePrefix(OutsidePrefix::FirstNotInFolder { name }) if name == "data.pkl"
    )));
}

#[test]
fn record_lookups_ignore_case_like_torch() {
    let z = build_zip(
        &[
            ("archive/DATA.PKL", b"\x80\x02}q\x00."),
            ("archive/Version", b"3\n"),
        ],
        None,
    );
    let v = scan(&z, 64);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.record("data.pkl").map(|r| r.data.len()), Some(6));
    assert_eq!(
        v.record("version").map(|r| r.data.clone()),
        Some(b"3\n".to_vec())
    );
    assert_eq!(v.key("archive/DATA.PKL"), "data.pkl");
}

#[test]
fn directory_listing_one_record_twice_cannot_hide_another() {
    // Same count of directory entries as local headers, but the second entry points at the
    // first record again: the second local record is hidden from torch.
    let mut z = build_zip(
        &[("a/data.pkl", b"\x80\x02N."), ("a/evil.pkl", b"\x80\x02N.")],
        Some(&["a/data.pkl", "a/data.pkl"]),
    );
    let cd = (0..z.len())
        .rev()
        .find(|&i| z[i..].starts_with(&SIG_CENTRAL))
        .unwrap();
    z[cd + 42..cd + 46].copy_from_slice(&0u32.to_le_bytes());
    let v = scan(&z, 5);
    assert!(
        has(
            &v,
            |p| matches!(p, ZipProblem::NameMismatch(DirectoryMismatch::ListedTwice { offset: 0, name }) if name == "a/data.pkl")
        ),
        "{:?}",
        v.problems
    );
    assert!(
        has(
            &v,
            |p| matches!(p, ZipProblem::NameMismatch(m @ DirectoryMismatch::Hidden { name, .. })
                if name == "a/evil.pkl" && m.to_string().contains("\"a/evil.pkl\" at offset") && m.to_string().contains("is hidden"))
        ),
        "{:?}",
        v.problems
    );
}

#[test]
fn compression_method_mismatch_is_reported() {
    let mut z = build_zip(&[("a/data.pkl", b"\x80\x02N.")], None);
    let cd = (0..z.len())
        .find(|&i| z[i..].starts_with(&SIG_CENTRAL))
        .unwrap();
    z[cd + 10] = 8; // the directory says deflated, the local header stored
    let v = scan(&z, 5);
    assert!(
        has(
            &v,
            |p| matches!(p, ZipProblem::NameMismatch(m @ DirectoryMismatch::MethodDiffers { local: 0, central: 8, .. })
                if m.to_string() == "record \"a/data.pkl\": compression method 0 in its local header, 8 in the central directory")
        ),
        "{:?}",
        v.problems
    );
}

#[test]
fn end_record_is_the_last_signature_as_miniz_picks_it() {
    // A second end record hidden in the real one's comment: miniz takes the last signature,
    // whatever its comment length says; so it must be the one that ends the file.
    let mut z = build_zip(&[("a/data.pkl", b"\x80\x02N.")], None);
    let mut fake = SIG_EOCD.to_vec();
    fake.extend_from_slice(&[0; 16]);
    fake.extend_from_slice(&100u16.to_le_bytes());
    let comment = [fake.as_slice(), b"xx"].concat();
    let n = z.len();
    z[n - 2..].copy_from_slice(&(comment.len() as u16).to_le_bytes());
    z.extend_from_slice(&comment);
    let v = scan(&z, 9);
    assert!(
        has(&v, |p| matches!(
            p,
            ZipProblem::Corrupt(ZipCorruption::EndRecordNotAtEnd { .. })
        )),
        "{:?}",
        v.problems
    );
    // A comment without a signature is fine.
    let mut z = build_zip(&[("a/data.pkl", b"\x80\x02N.")], None);
    let n = z.len();
    z[n - 2..].copy_from_slice(&5u16.to_le_bytes());
    z.extend_from_slice(b"hello");
    assert!(scan(&z, 9).problems.is_empty());
}

#[test]
fn non_utf8_names_are_refused() {
    let mut z = build_zip(&[("a/data.pkl", b"\x80\x02N.")], None);
    // Patch the name byte in the local header and the directory alike.
    for i in 0..z.len() - 10 {
        if &z[i..i + 10] == b"a/data.pkl" {
            z[i + 2] = 0xFF;
        }
    }
    let v = scan(&z, 64);
    assert!(
        has(
            &v,
            |p| matches!(p, ZipProblem::Corrupt(m @ ZipCorruption::LocalNameNotUtf8 { offset: 0, .. })
                if m.to_string() == "record name \"a/\u{fffd}ata.pkl\" at offset 0 is not valid UTF-8")
        ),
        "{:?}",
        v.problems
    );
}

#[test]
fn truncated_zip_is_corrupt() {
    let z = build_zip(&[("a/data.pkl", b"\x80\x02N.")], None);
    for cut in [3, 10, 40, z.len() - 5] {
        let v = scan(&z[..cut], 4);
        assert!(
            v.problems
                .iter()
                .any(|p| matches!(p, ZipProblem::Corrupt(_))),
            "cut {cut}"
        );
    }
}

#[test]
fn huge_declared_sizes_do_not_allocate() {
    let mut z = build_zip(&[("a/data.pkl", b"\x80\x02N.")], None);
    // Clear bit 3 and declare a 4 GiB entry: the scanner waits for bytes, then reports truncation.
    z[6] = 0;
    z[18..22].copy_from_slice(&u32::MAX.to_le_bytes());
    let v = scan(&z, 3);
    assert!(!v.problems.is_empty());
}

#[test]
fn pickle_cap_is_enforced() {
    let big = vec![b'N'; 5000];
    let z = build_zip(&[("a/data.pkl", &big)], None);
    let mut s = ZipScanner::new(ZipLimits {
        max_pickle_bytes: 1000,
        ..LIM
    });
    s.feed(&z);
    let v = s.finish();
    assert!(
        v.problems.iter().any(|p| matches!(p, ZipProblem::Limit(l @ ZipLimitHit::KeptOverBudget { budget: Budget::PickleBytes, cap: 1000, .. })
            if l.to_string() == "record a/data.pkl takes the kept records over max_pickle_bytes (1000 bytes)")),
        "{:?}",
        v.problems
    );
    assert!(v.record("data.pkl").is_some_and(|r| r.truncated));
}
