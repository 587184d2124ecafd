//! Arbitrary bytes, fed in arbitrary chunks: the validator must never panic, and the report must
//! not depend on the chunking. The first two bytes choose the chunk sizes.
#![no_main]

use byom_core::{Settings, Validator};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (seed, bytes) = data.split_at(2);
    let settings = Settings::default();
    let whole = byom_core::validate::validate_bytes(bytes, &settings);

    let mut v = Validator::new(&settings);
    let mut x = u64::from(u16::from_le_bytes([seed[0], seed[1]])) | 1;
    let mut pos = 0;
    while pos < bytes.len() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = (1 + (x >> 33) as usize % 4096).min(bytes.len() - pos);
        v.feed(&bytes[pos..pos + n]);
        let _ = v.drain_events();
        pos += n;
    }
    let chunked = v.finish();
    assert_eq!(whole, chunked, "report depends on chunking");
});
