//! Build script of byom-compile.
//!
//! 1. Finds the libtorch that tch links (torch-sys exports it as `DEP_TCH_LIBTORCH_LIB`).
//! 2. Compiles the small C++ shim (`shim/byom_shim.cpp`) against the same libtorch headers,
//!    because tch exposes neither `torch::jit::freeze` nor `optimize_for_inference`.
//! 3. Re-exports the library directory as `DEP_BYOM_TORCH_LIB_DIR` (this crate `links =
//!    "byom_torch"`), so the crate that produces the real binary (the server) can give it an
//!    rpath; binaries of this crate itself (examples, tests) get the rpath here.
//! 4. With the `cuda` feature, links `libtorch_cuda` with `--no-as-needed`: nothing references
//!    it by symbol (it registers the CUDA backend from static initialisers), so the default
//!    `--as-needed` drops it and `Cuda::is_available()` is false even on a GPU machine.
use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=shim/byom_shim.cpp");
    println!("cargo:rerun-if-changed=shim/byom_shim.h");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=BYOM_TORCH_CXX11_ABI");

    let Some(lib_dir) = env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        // torch-sys printed no library directory (doc-only builds): nothing to compile against.
        println!("cargo:warning=DEP_TCH_LIBTORCH_LIB is not set; the C++ shim is not built");
        return;
    };
    let torch_root = lib_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| lib_dir.clone());
    let include = torch_root.join("include");
    let api_include = include.join("torch/csrc/api/include");
    // The PyPI wheels since torch 2.7 use the new C++11 ABI; must match or the shim will not link.
    let abi = env::var("BYOM_TORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());

    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(&api_include)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("shim/byom_shim.cpp")
        .compile("byom_shim");

    let lib = lib_dir.display();
    // Dependents read this as DEP_BYOM_TORCH_LIB_DIR.
    println!("cargo:lib_dir={lib}");
    // Where ops.rs looks for torchvision when /proc does not say where libtorch was mapped from.
    println!("cargo:rustc-env=BYOM_LIBTORCH_LIB_DIR={lib}");
    println!(
        "cargo:cuda={}",
        u8::from(env::var_os("CARGO_FEATURE_CUDA").is_some())
    );
    // Applies to this package's own linked targets (examples, tests); dependents add their own.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
