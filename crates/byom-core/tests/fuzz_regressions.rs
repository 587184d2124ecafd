//! Inputs found by `cargo fuzz` (fuzz/), kept so the bugs they found stay fixed.

use byom_core::torch::PtInspector;
use byom_core::Settings;

/// Feeds `bytes` in the uneven chunk sizes the `pt_inspect` fuzz target uses.
fn inspect_like_the_fuzzer(bytes: &[u8]) -> Vec<String> {
    let settings = Settings::default();
    let mut inspector = PtInspector::new(&settings, "export_artifacts/model.pt");
    let mut rest = bytes;
    let mut step = 1;
    while !rest.is_empty() {
        let n = step.min(rest.len());
        inspector.feed(&rest[..n]);
        rest = &rest[n..];
        step = step * 3 % 8191 + 1;
    }
    inspector
        .finish()
        .1
        .into_iter()
        .map(|i| i.code.to_string())
        .collect()
}

/// A zip whose kept tail is shorter than an end-of-central-directory record used to index past
/// the tail's end (a panic); it is a corrupt model file.
#[test]
fn zip_tail_shorter_than_eocd_is_corrupt_not_a_panic() {
    let codes = inspect_like_the_fuzzer(include_bytes!("data/fuzz-short-zip-tail.pt"));
    assert!(codes.iter().any(|c| c == "BYOM604"), "{codes:?}");
}
