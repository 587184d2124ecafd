//! Builders of real `.tar.gz` packages in memory, including hostile ones no tar library writes.
#![allow(dead_code)]

use std::io::Write;

use byom_core::{Report, Settings, Validator};
use flate2::write::GzEncoder;
use flate2::Compression;

pub const TINY_PT: &[u8] = include_bytes!("../data/tiny_traced.pt");

/// One tar member: raw name bytes, type flag, content.
#[derive(Clone)]
pub struct Member {
    pub name: Vec<u8>,
    pub kind: u8,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
}

pub fn file(name: &str, data: impl AsRef<[u8]>) -> Member {
    Member {
        name: name.as_bytes().to_vec(),
        kind: b'0',
        data: data.as_ref().to_vec(),
        link: Vec::new(),
    }
}

pub fn dir(name: &str) -> Member {
    Member {
        name: name.as_bytes().to_vec(),
        kind: b'5',
        data: Vec::new(),
        link: Vec::new(),
    }
}

pub fn special(name: &str, kind: u8, link: &str) -> Member {
    Member {
        name: name.as_bytes().to_vec(),
        kind,
        data: Vec::new(),
        link: link.as_bytes().to_vec(),
    }
}

/// A 512-byte ustar header with a correct checksum.
pub fn header(name: &[u8], size: u64, kind: u8, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0001750\0");
    h[116..124].copy_from_slice(b"0001750\0");
    if size < 0o77777777777 {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        // GNU base-256 for sizes of 8 GiB and more.
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..148].copy_from_slice(b"14712345670\0");
    h[156] = kind;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(512) {
        out.push(0);
    }
}

/// A tar stream of the members (GNU `L` records for names over 100 bytes), with end blocks.
pub fn tar(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        if m.name.len() > 100 {
            let mut long = m.name.clone();
            long.push(0);
            out.extend_from_slice(&header(b"././@LongLink", long.len() as u64, b'L', b""));
            out.extend_from_slice(&long);
            pad(&mut out);
        }
        out.extend_from_slice(&header(&m.name, m.data.len() as u64, m.kind, &m.link));
        out.extend_from_slice(&m.data);
        pad(&mut out);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).expect("gzip in memory");
    e.finish().expect("gzip in memory")
}

/// Best compression (for packages that must look like a bomb).
pub fn gz_best(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(bytes).expect("gzip in memory");
    e.finish().expect("gzip in memory")
}

pub fn targz(members: &[Member]) -> Vec<u8> {
    gz(&tar(members))
}

pub const CONFIG: &str = "dataset:\n  image_width: 224\n  image_height: 224\n  num_classes: 2\n  class_names:\n    - good\n    - defect\n";

pub const MOCHI: &str = r#"{
  "stages": [{"type": "classification", "input_shape": [1, 3, 224, 224], "output_shape": [1, 2], "num_classes": 2}],
  "model_info": {"name": "ResNet50-Quality-Classifier", "version": "1.0.0", "framework": "pytorch"}
}"#;

pub const MANIFEST: &str = r#"{
  "model_graph": {"stages": [{"type": "classification", "input_shape": [1, 3, 224, 224], "output_shape": [1, 2]}]},
  "input_shape": [1, 3, 224, 224],
  "compilable_models": [{"filename": "model.pt", "data_input_config": {"input": [1, 3, 224, 224]}, "framework": "PYTORCH"}],
  "preprocessing": {"resize": [224, 224], "normalize": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}, "channel_order": "RGB"},
  "postprocessing": {"type": "softmax", "threshold": 0.5}
}"#;

/// The guide's example 2 (ResNet classification) with the tiny real TorchScript model.
pub fn good_members() -> Vec<Member> {
    vec![
        file("config.yaml", CONFIG),
        file("mochi.json", MOCHI),
        file("export_artifacts/manifest.json", MANIFEST),
        file("export_artifacts/model.pt", TINY_PT),
    ]
}

/// The good package with one metadata file replaced.
pub fn with(path: &str, content: &str) -> Vec<u8> {
    let members: Vec<Member> = good_members()
        .into_iter()
        .map(|m| {
            if m.name == path.as_bytes() {
                file(path, content)
            } else {
                m
            }
        })
        .collect();
    targz(&members)
}

pub fn validate(bytes: &[u8]) -> Report {
    byom_core::validate::validate_bytes(bytes, &Settings::default())
}

pub fn validate_with(bytes: &[u8], settings: &Settings) -> Report {
    byom_core::validate::validate_bytes(bytes, settings)
}

/// Feed in chunks of the given sizes (cycled).
pub fn validate_chunked(bytes: &[u8], sizes: &[usize]) -> Report {
    let mut v = Validator::new(&Settings::default());
    let mut pos = 0;
    let mut i = 0;
    while pos < bytes.len() {
        let n = sizes[i % sizes.len()].min(bytes.len() - pos);
        v.feed(&bytes[pos..pos + n]);
        pos += n;
        i += 1;
    }
    v.finish()
}

pub fn codes(r: &Report) -> Vec<&str> {
    r.errors
        .iter()
        .chain(&r.warnings)
        .map(|i| i.code.as_str())
        .collect()
}

/// Codes from the validator's own rules (the `.pt` rules, BYOM6xx/7xx, belong to the torch
/// inspection and are tested there).
pub fn own_codes(r: &Report) -> Vec<&str> {
    codes(r).into_iter().filter(|c| *c < "BYOM600").collect()
}

pub fn has(r: &Report, code: &str) -> bool {
    codes(r).contains(&code)
}

pub fn issue<'a>(r: &'a Report, code: &str) -> &'a byom_core::Issue {
    r.errors
        .iter()
        .chain(&r.warnings)
        .find(|i| i.code == code)
        .unwrap_or_else(|| panic!("no {code} in {:#?}", codes(r)))
}
