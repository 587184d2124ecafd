//! Arbitrary bytes as a `.pt`, streamed through the inspector in uneven chunks: never panic.
#![no_main]

use byom_core::torch::PtInspector;
use byom_core::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let settings = Settings::default();
    let mut inspector = PtInspector::new(&settings, "export_artifacts/model.pt");
    let mut rest = data;
    let mut step = 1;
    while !rest.is_empty() {
        let n = step.min(rest.len());
        inspector.feed(&rest[..n]);
        rest = &rest[n..];
        step = step * 3 % 8191 + 1;
    }
    let _ = inspector.finish();
});
