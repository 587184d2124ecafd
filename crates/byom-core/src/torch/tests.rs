//! End-to-end tests of the inspector on files built byte by byte: no panic, no hang, bounded
//! memory, and the same verdict whatever the chunk sizes.

use super::zip::tests::build_zip;
use super::*;
use crate::diagnostics::Severity;

/// `torch.save({"w": tensor[2,3] float32})`-style data.pkl (protocol 2).
fn state_dict_pickle(key: &str, numel: u8) -> Vec<u8> {
    let mut p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00wq\x02ctorch._utils\n_rebuild_tensor_v2\nq\x03((X\x07\x00\x00\x00storageq\x04ctorch\nFloatStorage\nq\x05X".to_vec();
    p.extend((key.len() as u32).to_le_bytes());
    p.extend(key.as_bytes());
    p.extend(b"q\x06X\x03\x00\x00\x00cpuq\x07K");
    p.push(numel);
    p.extend(b"tq\x08QK\x00K\x02K\x03\x86q\x09K\x03K\x01\x86q\x0a\x89h\x00)Rq\x0btq\x0cRq\x0ds.");
    p
}

fn state_dict_zip(declared_numel: u8, data_bytes: usize) -> Vec<u8> {
    let pkl = state_dict_pickle("0", declared_numel);
    let data = vec![0x50u8; data_bytes]; // 'P' bytes: plenty of near-signatures
    build_zip(
        &[
            ("sd/data.pkl", &pkl),
            ("sd/data/0", &data),
            ("sd/version", b"3\n"),
            ("sd/byteorder", b"little"),
        ],
        None,
    )
}

fn inspect_chunked(bytes: &[u8], chunk: usize, settings: &Settings) -> (PtInspection, Vec<Issue>) {
    let mut i = PtInspector::new(settings, "m.pt");
    for c in bytes.chunks(chunk.max(1)) {
        i.feed(c);
    }
    i.finish()
}

fn codes(issues: &[Issue]) -> Vec<&str> {
    issues.iter().map(|i| i.code.as_str()).collect()
}

#[test]
fn byte_built_state_dict_is_read_the_same_whatever_the_chunks() {
    let z = state_dict_zip(6, 24);
    let s = Settings::default();
    let (base, base_issues) = inspect_bytes(&z, &s, "m.pt");
    assert_eq!(base.kind, PtKind::StateDict);
    assert_eq!(base.safety, Safety::Safe);
    assert_eq!(base.tensors.len(), 1);
    let t = &base.tensors[0];
    assert_eq!(
        (t.name.as_str(), t.dtype.as_str(), t.shape.clone(), t.bytes),
        ("w", "float32", vec![2, 3], 24)
    );
    assert_eq!(t.strides, vec![3, 1]);
    assert_eq!(t.storage_key.as_deref(), Some("0"));
    assert_eq!(base.archive_prefix.as_deref(), Some("sd"));
    assert_eq!(base.archive_version, Some(3));
    assert_eq!(codes(&base_issues), vec!["BYOM609"]);
    for chunk in [1, 2, 5, 17, 64, 4096] {
        let (i, issues) = inspect_chunked(&z, chunk, &s);
        assert_eq!(i, base, "chunk {chunk}");
        assert_eq!(issues, base_issues, "chunk {chunk}");
    }
}

#[test]
fn storage_size_mismatch_is_an_error() {
    let (_, issues) = inspect_bytes(&state_dict_zip(6, 20), &Settings::default(), "m.pt");
    assert!(codes(&issues).contains(&"BYOM605"), "{issues:?}");
}

#[test]
fn zip_name_mismatch_is_an_error() {
    let pkl = state_dict_pickle("0", 6);
    let z = build_zip(
        &[("a/data.pkl", &pkl), ("a/data/0", &[0u8; 24])],
        Some(&["a/data.pkl", "a/evil.pkl"]),
    );
    let (i, issues) = inspect_bytes(&z, &Settings::default(), "m.pt");
    assert!(codes(&issues).contains(&"BYOM606"));
    assert_ne!(i.safety, Safety::Safe);
}

/// A protocol-0 pickle calling os.system (what `pickle.dumps(Evil(), 0)` writes on Linux).
const OS_SYSTEM_P0: &[u8] = b"cposix\nsystem\np0\n(Vtouch /tmp/x\np1\ntp2\nRp3\n.";

fn benign_zip_with(extra: &[(&str, &[u8])], hostile_first: bool) -> Vec<u8> {
    let pkl = state_dict_pickle("0", 6);
    let data = [0u8; 24];
    let mut entries: Vec<(&str, &[u8])> = vec![
        ("archive/data.pkl", &pkl),
        ("archive/data/0", &data),
        ("archive/version", b"3\n"),
    ];
    if hostile_first {
        entries.splice(0..0, extra.iter().copied());
    } else {
        entries.extend_from_slice(extra);
    }
    build_zip(&entries, None)
}

fn assert_refused(z: &[u8], code: &str) -> Vec<Issue> {
    let s = Settings::default();
    let (base, issues) = inspect_bytes(z, &s, "m.pt");
    assert!(codes(&issues).contains(&code), "{issues:?}");
    assert_ne!(base.safety, Safety::Safe);
    assert!(base.verdict.contains('['), "{}", base.verdict);
    for chunk in [1, 3, 64, 4096] {
        let (i, again) = inspect_chunked(z, chunk, &s);
        assert_eq!((i, &again), (base.clone(), &issues), "chunk {chunk}");
    }
    issues
}

#[test]
fn duplicate_data_pkl_hostile_first_is_refused() {
    // byom used to keep the last record of a name (benign) while torch may read the first.
    let z = benign_zip_with(&[("archive/data.pkl", OS_SYSTEM_P0)], true);
    let issues = assert_refused(&z, "BYOM613");
    let dup = issues.iter().find(|i| i.code == "BYOM613").unwrap();
    assert!(
        dup.message.contains("\"archive/data.pkl\""),
        "{}",
        dup.message
    );
    assert_eq!(dup.severity, Severity::Error);
    // Both records are walked: the payload is named whichever one torch would read.
    assert!(codes(&issues).contains(&"BYOM602"), "{issues:?}");
    let z = benign_zip_with(&[("archive/data.pkl", OS_SYSTEM_P0)], false);
    let issues = assert_refused(&z, "BYOM613");
    assert!(codes(&issues).contains(&"BYOM602"), "{issues:?}");
}

#[test]
fn upper_case_data_pkl_beside_data_pkl_is_refused() {
    let z = benign_zip_with(&[("archive/DATA.PKL", OS_SYSTEM_P0)], false);
    let issues = assert_refused(&z, "BYOM614");
    // The record is also read as torch would read it: a pickle, walked, its call named.
    assert!(codes(&issues).contains(&"BYOM602"), "{issues:?}");
}

#[test]
fn lone_upper_case_data_pkl_is_inspected_as_data_pkl() {
    // torch.load finds `archive/DATA.PKL` for "data.pkl": so must byom.
    let z = build_zip(
        &[
            ("archive/DATA.PKL", OS_SYSTEM_P0),
            ("archive/version", b"3\n"),
        ],
        None,
    );
    let issues = assert_refused(&z, "BYOM602");
    assert!(issues[0].message.contains("posix.system"), "{issues:?}");
}

#[test]
fn record_outside_the_archive_folder_is_refused() {
    let z = benign_zip_with(&[("other/data.pkl", OS_SYSTEM_P0)], false);
    let issues = assert_refused(&z, "BYOM615");
    let m = &issues.iter().find(|i| i.code == "BYOM615").unwrap().message;
    assert!(
        m.contains("other/data.pkl") && m.contains("\"archive/\""),
        "{m}"
    );
}

#[test]
fn memo_trick_inside_a_zip_is_caught() {
    // The global is stored in the memo under a benign-looking flow and called via GET.
    let pkl = b"\x80\x02cposix\nsystem\nq\x010h\x01X\x02\x00\x00\x00idq\x02\x85R.";
    let z = build_zip(&[("a/data.pkl", pkl)], None);
    let (i, issues) = inspect_bytes(&z, &Settings::default(), "m.pt");
    assert_eq!(codes(&issues), vec!["BYOM602"]);
    assert!(issues[0].message.contains("posix.system"));
    assert_eq!(i.safety, Safety::Unsafe);
}

#[test]
fn payload_before_parse_error_is_named() {
    let pkl = b"\x80\x02cbuiltins\nexec\nq\x00\xfe\xfe\xfe";
    let z = build_zip(&[("a/data.pkl", pkl)], None);
    let (_, issues) = inspect_bytes(&z, &Settings::default(), "m.pt");
    assert!(codes(&issues).contains(&"BYOM602"), "{issues:?}");
    let (_, issues) = inspect_bytes(pkl, &Settings::default(), "m.pt");
    assert_eq!(codes(&issues), vec!["BYOM602"]);
}

#[test]
fn truncated_files_are_corrupt_and_never_panic() {
    let z = state_dict_zip(6, 24);
    for cut in 0..z.len() {
        let (i, issues) = inspect_bytes(&z[..cut], &Settings::default(), "m.pt");
        assert!(
            issues.iter().any(|x| x.severity == Severity::Error),
            "cut {cut}: {issues:?}"
        );
        assert_ne!(i.safety, Safety::Safe, "cut {cut}");
    }
}

#[test]
fn huge_declared_sizes_stay_bounded() {
    // Local header without bit 3 declaring 4 GiB, then EOF.
    let mut z = state_dict_zip(6, 24);
    z[6] = 0;
    z[18..22].copy_from_slice(&u32::MAX.to_le_bytes());
    let (_, issues) = inspect_bytes(&z, &Settings::default(), "m.pt");
    assert!(codes(&issues).contains(&"BYOM604"));
    // A pickle that declares a 2^63-byte string.
    let (_, issues) = inspect_bytes(
        b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f",
        &Settings::default(),
        "m.pt",
    );
    assert_eq!(codes(&issues), vec!["BYOM600"]);
}

#[test]
fn pickle_limit_gives_a_clear_verdict() {
    let mut s = Settings::default();
    s.limits.max_pickle_bytes = 64;
    let (_, issues) = inspect_bytes(&state_dict_zip(6, 24), &s, "m.pt");
    assert!(codes(&issues).contains(&"BYOM610"), "{issues:?}");
    let mut s = Settings::default();
    s.limits.max_pickle_ops = 10;
    let (_, issues) = inspect_bytes(&state_dict_zip(6, 24), &s, "m.pt");
    assert!(codes(&issues).contains(&"BYOM610"), "{issues:?}");
}

fn legacy_file(storage_numel_written: u64) -> Vec<u8> {
    let mut f = legacy::MAGIC_PICKLE.to_vec();
    f.push(b'.');
    f.extend(b"\x80\x02M\xe9\x03.");
    f.extend(b"\x80\x02}q\x00X\x0d\x00\x00\x00little_endianq\x01\x88s.");
    // main pickle: {"w": _rebuild_tensor_v2(('storage', FloatStorage, '7', 'cpu', 4, None), 0, (4,), (1,), False, OrderedDict())}
    f.extend(b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x007q\x05X\x03\x00\x00\x00cpuq\x06K\x04Ntq\x07QK\x00K\x04\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs.");
    f.extend(b"\x80\x02]q\x00X\x01\x00\x00\x007q\x01a.");
    f.extend(storage_numel_written.to_le_bytes());
    f.extend([0u8; 16]);
    f
}

#[test]
fn legacy_format_streams_and_checks_storage_sizes() {
    let s = Settings::default();
    let good = legacy_file(4);
    for chunk in [1, 3, 8, 1000] {
        let (i, issues) = inspect_chunked(&good, chunk, &s);
        assert_eq!(i.kind, PtKind::Legacy, "chunk {chunk}");
        assert_eq!(i.tensors.len(), 1);
        assert_eq!(i.tensors[0].shape, vec![4]);
        assert_eq!(codes(&issues), vec!["BYOM607"], "chunk {chunk}");
    }
    let (_, issues) = inspect_bytes(&legacy_file(5), &s, "m.pt");
    assert!(codes(&issues).contains(&"BYOM605"), "{issues:?}");
    let (_, issues) = inspect_bytes(&good[..good.len() - 3], &s, "m.pt");
    assert!(codes(&issues).contains(&"BYOM604"), "{issues:?}");
}

#[test]
fn forged_legacy_magic_is_still_walked() {
    // The magic number computed by eval: not the legacy magic bytes, so walked as a bare pickle.
    let f = b"\x80\x02c__builtin__\neval\nq\x00X\x16\x00\x00\x000x1950A86A20F9469CFC6Cq\x01\x85R.";
    let (_, issues) = inspect_bytes(f, &Settings::default(), "m.pt");
    assert_eq!(codes(&issues), vec!["BYOM602"]);
}

#[test]
fn required_torch_policy() {
    let pkl = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01ctorch._utils\n_rebuild_tensor_v3\nq\x02((X\x07\x00\x00\x00storageq\x03ctorch.storage\nUntypedStorage\nq\x04X\x01\x00\x00\x000q\x05X\x03\x00\x00\x00cpuq\x06K\x06tq\x07QK\x00K\x03\x85q\x08K\x01\x85q\t\x89ccollections\nOrderedDict\nq\n)Rq\x0bctorch\nuint16\nq\x0ctq\rRq\x0es.";
    let z = build_zip(
        &[
            ("u/data.pkl", pkl),
            ("u/data/0", &[0u8; 6]),
            ("u/version", b"3\n"),
        ],
        None,
    );
    let mut s = Settings::default();
    let (i, issues) = inspect_bytes(&z, &s, "m.pt");
    assert_eq!(i.min_torch.as_deref(), Some("2.3"));
    assert_eq!(i.tensors[0].dtype, "uint16");
    let w: Vec<_> = issues.iter().filter(|x| x.code == "BYOM702").collect();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].severity, Severity::Warning);
    assert!(
        w[0].message.contains("PyTorch 1.8")
            && w[0].message.contains("dtype uint16 needs PyTorch ≥ 2.3")
    );
    s.required_torch = "1.8".parse().unwrap();
    let (_, issues) = inspect_bytes(&z, &s, "m.pt");
    assert!(issues
        .iter()
        .any(|x| x.code == "BYOM702" && x.severity == Severity::Error));
    s.required_torch = "2.1".parse().unwrap();
    let (_, issues) = inspect_bytes(&z, &s, "m.pt");
    assert!(issues
        .iter()
        .any(|x| x.code == "BYOM701" && x.severity == Severity::Error));
}

#[test]
fn cross_check_warns_on_mismatch() {
    let mut i = PtInspection::empty(PtKind::StateDict, 0);
    i.arch = Some(ArchMatch {
        zoo: super::arch::Zoo::Torchvision,
        name: "resnet18".into(),
        num_classes: 10,
        in_channels: 1,
        server_compilable: true,
        builder_kwargs: Default::default(),
    });
    let issues = cross_check(&i, "m.pt", Some(&[1, 3, 224, 224]), Some(2));
    assert_eq!(codes(&issues), vec!["BYOM611", "BYOM612"]);
    assert!(cross_check(&i, "m.pt", Some(&[1, 1, 224, 224]), Some(10)).is_empty());
}

#[test]
fn random_bytes_never_panic() {
    // A small deterministic xorshift stream of byte soups, including zip and pickle prefixes.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let s = Settings::default();
    for round in 0..300 {
        let len = (round * 7) % 400;
        let mut b: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        match round % 3 {
            0 => b.splice(0..0, b"PK\x03\x04".iter().copied()).for_each(drop),
            1 => b
                .splice(0..0, legacy::MAGIC_PICKLE.iter().copied())
                .for_each(drop),
            _ => b.splice(0..0, b"\x80\x02".iter().copied()).for_each(drop),
        };
        let _ = inspect_chunked(&b, 1 + round % 13, &s);
    }
}
