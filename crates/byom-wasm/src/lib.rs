//! wasm-bindgen face of byom-core.
