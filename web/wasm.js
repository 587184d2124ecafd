// Loads the validator's wasm: the SIMD128 build where the engine has WebAssembly SIMD (every
// current browser: Chrome/Edge 91+, Firefox 89+, Safari 16.4+), else the plain build, so an
// older browser still validates, only slower. scripts/build-wasm.sh makes both from the same
// source: web/pkg/ (SIMD) and web/pkg/nosimd/. Only the one chosen is downloaded.
//
// Feature detection, not user-agent sniffing: the engine is asked to validate a 31-byte module
// whose one function uses v128 (i32.const 0; i8x16.splat; i8x16.popcnt), the same probe as the
// wasm-feature-detect library.

const SIMD_PROBE = Uint8Array.of(
  0, 97, 115, 109, 1, 0, 0, 0, // "\0asm", version 1
  1, 5, 1, 96, 0, 1, 123, // type section: () -> v128
  3, 2, 1, 0, // function section: one function of type 0
  10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11, // code: i32.const 0, i8x16.splat, i8x16.popcnt, end
);

/** Whether this engine runs WebAssembly SIMD128. */
export function simdSupported() {
  try {
    return typeof WebAssembly === "object" && WebAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

/**
 * Import and instantiate the validator. `simd: false` forces the plain build (the tests run
 * the page both ways; `?simd=0` on the page does the same); otherwise SIMD wherever supported.
 * Resolves to {byom (the module's exports), memory (its WebAssembly.Memory), simd (the build used)}.
 */
export async function loadValidator({ simd } = {}) {
  const useSimd = simd !== false && simdSupported();
  const glue = new URL(useSimd ? "./pkg/byom_wasm.js" : "./pkg/nosimd/byom_wasm.js", import.meta.url);
  const byom = await import(glue.href);
  const exports = await byom.default();
  return { byom, memory: exports.memory, simd: useSimd };
}
