//! The extraction sink: the validator hands the inspected `.pt` forward in the same pass, and
//! `finish_package` the metadata it parsed (issue 10: one reader, typed contracts).

mod common;

use byom_core::{ExtractSink, Settings, Validator};
use common::*;

/// Records what the validator hands over.
#[derive(Debug, Default)]
struct Recorder {
    starts: Vec<(String, u64)>,
    bytes: Vec<u8>,
    ends: usize,
}

impl ExtractSink for Recorder {
    fn start(&mut self, path: &str, size: u64) {
        self.starts.push((path.to_string(), size));
    }
    fn data(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }
    fn end(&mut self) {
        self.ends += 1;
    }
}

fn run(
    bytes: &[u8],
    chunk: usize,
) -> (
    Result<byom_core::ValidatedPackage, Box<byom_core::Report>>,
    Recorder,
) {
    let mut rec = Recorder::default();
    let mut v = Validator::with_sink(&Settings::default(), &mut rec);
    for c in bytes.chunks(chunk.max(1)) {
        v.feed(c);
    }
    let out = v.finish_package();
    (out, rec)
}

#[test]
fn the_inspected_pt_is_handed_over_whole_in_any_chunking() {
    let pkg = targz(&good_members());
    for chunk in [1, 7, 511, 512, 4096, 1 << 20] {
        let (out, rec) = run(&pkg, chunk);
        let p = out.expect("the good package is valid");
        assert_eq!(
            rec.starts,
            [(
                "export_artifacts/model.pt".to_string(),
                TINY_PT.len() as u64
            )]
        );
        assert_eq!(rec.bytes, TINY_PT, "chunk {chunk}");
        assert_eq!(rec.ends, 1);
        assert_eq!(p.model_path, "export_artifacts/model.pt");
        assert_eq!(p.model_name(), "model.pt");
        assert_eq!(p.model.file_bytes, TINY_PT.len() as u64);
        assert_eq!(Some(&p.model), p.report.model.as_ref());
    }
}

#[test]
fn the_report_is_the_same_with_or_without_a_sink() {
    for pkg in [
        targz(&good_members()),
        with("mochi.json", "{"),
        targz(&good_members()[..3]),
    ] {
        let plain = validate(&pkg);
        let (out, _) = run(&pkg, 4096);
        let report = match out {
            Ok(p) => p.report,
            Err(r) => *r,
        };
        assert_eq!(report, plain);
    }
}

#[test]
fn finish_package_hands_forward_the_parsed_metadata() {
    let (out, _) = run(&targz(&good_members()), 1 << 16);
    let p = out.unwrap();
    assert_eq!(p.declared.stage_type(), Some("classification"));
    assert_eq!(p.declared.input_shape(), Some(&[1, 3, 224, 224][..]));
    assert_eq!(p.declared.output_shape(), Some(vec![1, 2]));
    assert_eq!(p.declared.num_classes(), Some(2));
    assert_eq!(
        p.declared.class_names,
        Some(vec!["good".to_string(), "defect".to_string()])
    );
    assert_eq!(
        p.mochi
            .path(&["model_info", "name"])
            .and_then(|v| v.as_str()),
        Some("ResNet50-Quality-Classifier")
    );
    assert_eq!(
        p.manifest
            .path(&["postprocessing", "type"])
            .and_then(|v| v.as_str()),
        Some("softmax")
    );
    assert!(p.config.get("dataset").is_some());
}

#[test]
fn an_invalid_package_gives_its_report_not_a_package() {
    let (out, rec) = run(&with("mochi.json", "{"), 4096);
    let report = out.unwrap_err();
    assert!(!report.valid);
    assert!(!report.errors.is_empty());
    // The bytes went by (the verdict comes at the end); the caller must discard them.
    assert_eq!(rec.bytes, TINY_PT);
}

#[test]
fn typeflag_7_members_are_regular_files_for_the_validator_and_the_sink() {
    // Contiguous files (typeflag '7') are regular files for GNU tar and Python's tarfile; the
    // compile worker's old second reader (the `tar` crate) skipped them (issue 10).
    let members: Vec<Member> = good_members()
        .into_iter()
        .map(|mut m| {
            m.kind = b'7';
            m
        })
        .collect();
    let (out, rec) = run(&targz(&members), 999);
    let p = out.expect("a package of '7' members is valid");
    assert_eq!(rec.bytes, TINY_PT);
    assert_eq!(p.declared.stage_type(), Some("classification"));
}

#[test]
fn only_the_first_pt_is_handed_over() {
    let mut members = good_members();
    members.push(file("export_artifacts/other.pt", b"not this one"));
    let (out, rec) = run(&targz(&members), 4096);
    assert!(out.is_err(), "two .pt files are BYOM103");
    assert_eq!(rec.starts.len(), 1);
    assert_eq!(rec.bytes, TINY_PT);
}

#[test]
fn an_empty_pt_is_started_and_ended() {
    let mut members = good_members();
    members[3] = file("export_artifacts/model.pt", b"");
    let (out, rec) = run(&targz(&members), 4096);
    assert!(out.is_err());
    assert_eq!(rec.starts, [("export_artifacts/model.pt".to_string(), 0)]);
    assert_eq!(rec.ends, 1);
}
