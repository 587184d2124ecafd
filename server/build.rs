//! Gives the `byom-server` binary an rpath to the libtorch it links (through byom-compile → tch),
//! so it runs without LD_LIBRARY_PATH. byom-compile declares `links = "byom_torch"` and exports
//! the library directory as `DEP_BYOM_TORCH_LIB_DIR`.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_BYOM_TORCH_LIB_DIR");
    // `sqlx::migrate!` embeds these directories: a new migration must rebuild the binary.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=migrations-postgres");
    if let Ok(dir) = std::env::var("DEP_BYOM_TORCH_LIB_DIR") {
        if !dir.is_empty() {
            println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{dir}");
        }
    }
}
