//! Operator libraries: torchvision's operators (`torchvision::nms`, `roi_align`, …) loaded into
//! the worker for the models that call them, and only for those.
//!
//! libtorch resolves every operator a TorchScript file calls when `torch::jit::load` compiles
//! it, so a scripted or traced torchvision detector fails with `Unknown builtin op:
//! torchvision::nms` unless the operators are registered in the process first. They live in the
//! torchvision wheel's `torchvision/_C.so` (no torchvision C++ distribution exists on PyPI,
//! and its source is not published there either), which registers them from static
//! initialisers but links `libtorch_python.so`, whose Python symbols need libpython. So, in
//! order: `dlopen(libpython3.X.so.1.0, RTLD_GLOBAL)` (the interpreter is never initialised: the
//! operators are C++ kernels and `tests/test_detectors.py` checks each of them against Python's
//! output), `torch/lib/libtorch_python.so` by full path (the `_C.so` of the wheel carries no
//! usable run path), then `_C.so`. Loading costs tens of milliseconds and maps libpython and,
//! with a CUDA wheel, libtorch_cuda; a model that calls no torchvision operator never pays it.
//!
//! Where the files are, without running Python: torch's `lib/` is where this process mapped
//! `libtorch_cpu.so` from (the wheel tch was built against, `LIBTORCH_USE_PYTORCH=1`), so the
//! wheel's `site-packages` is two levels up and torchvision sits beside torch there. libpython
//! comes from the virtual environment's `pyvenv.cfg` (`home`), the prefix's `lib/`, or the
//! system's library path. `BYOM_TORCHVISION_LIB` and `BYOM_LIBPYTHON` override both (a
//! `libtorchvision.so` built with CMake needs no libpython and may be given instead of `_C.so`).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::shim;

/// Overrides the torchvision operator library (`.../torchvision/_C.so` or a CMake-built
/// `libtorchvision.so`).
pub const ENV_TORCHVISION_LIB: &str = "BYOM_TORCHVISION_LIB";
/// Overrides the libpython `_C.so` needs (`libpython3.11.so.1.0`).
pub const ENV_LIBPYTHON: &str = "BYOM_LIBPYTHON";

/// The torch library directory this crate was built against (rpath), when /proc says nothing.
const BUILD_LIBTORCH_DIR: Option<&str> = option_env!("BYOM_LIBTORCH_LIB_DIR");

/// An operator library a bundle needs, as `report.json` and `deployment.json` name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorLibrary {
    /// `torchvision`.
    pub name: String,
    /// Its version as installed where the model was compiled (`0.26.0+cu130`), when known.
    pub version: Option<String>,
    /// The operator namespaces it provides.
    pub namespaces: Vec<String>,
    /// The operators of the model that need it (`torchvision::nms`).
    pub operators: Vec<String>,
}

/// The files that provide torchvision's operators, in the order they are loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorchvisionFiles {
    /// libpython and `libtorch_python.so` (empty for a library that does not link them).
    pub before: Vec<PathBuf>,
    pub library: PathBuf,
    pub version: Option<String>,
}

/// Directory of the mapped `libtorch_cpu.so`, else the one the build linked.
pub fn torch_lib_dir() -> Option<PathBuf> {
    let maps = fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
        .or_else(|| BUILD_LIBTORCH_DIR.map(PathBuf::from))
}

/// `site-packages/torch/lib` → `site-packages`.
fn site_packages(torch_lib: &Path) -> Option<PathBuf> {
    torch_lib.parent()?.parent().map(Path::to_path_buf)
}

/// `3.11` from `.../lib/python3.11/site-packages`.
fn python_version(site: &Path) -> Option<String> {
    let dir = site.parent()?.file_name()?.to_str()?;
    dir.strip_prefix("python").map(str::to_string)
}

/// Where libpython may be, best first (the last one is a bare soname for the system's search).
fn libpython_candidates(site: &Path) -> Vec<PathBuf> {
    let Some(v) = python_version(site) else {
        return Vec::new();
    };
    let soname = format!("libpython{v}.so.1.0");
    let mut out = Vec::new();
    // site-packages → python3.X → lib → venv root
    if let Some(root) = site.ancestors().nth(3) {
        if let Ok(cfg) = fs::read_to_string(root.join("pyvenv.cfg")) {
            for line in cfg.lines() {
                if let Some((k, v)) = line.split_once('=') {
                    if k.trim() == "home" {
                        if let Some(prefix) = Path::new(v.trim()).parent() {
                            out.push(prefix.join("lib").join(&soname));
                        }
                    }
                }
            }
        }
        out.push(root.join("lib").join(&soname));
    }
    out.push(PathBuf::from(soname));
    out
}

/// `__version__` of `torchvision/version.py` beside the library.
fn torchvision_version(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join("version.py")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim().trim_matches(['\'', '"']).to_string())
}

/// Where torchvision's operators are, or a message saying what was looked for and what to do.
pub fn locate_torchvision() -> Result<TorchvisionFiles, String> {
    let torch_lib = torch_lib_dir();
    let library = match std::env::var_os(ENV_TORCHVISION_LIB) {
        Some(p) => {
            let p = PathBuf::from(p);
            if !p.is_file() {
                return Err(format!(
                    "{ENV_TORCHVISION_LIB}={} is not a file",
                    p.display()
                ));
            }
            p
        }
        None => {
            let lib = torch_lib.as_deref().ok_or(
                "the server cannot tell where its libtorch is installed, so it cannot find torchvision beside it",
            )?;
            let site = site_packages(lib).ok_or("libtorch is not inside a torch wheel")?;
            let c = site.join("torchvision").join("_C.so");
            if !c.is_file() {
                return Err(format!(
                    "torchvision is not installed beside the server's torch ({} does not exist): \
                     install the torchvision release built for torch {} into that Python \
                     environment (pip install torchvision), or set {ENV_TORCHVISION_LIB} to its \
                     _C.so or a libtorchvision.so",
                    c.display(),
                    crate::LIBTORCH_VERSION
                ));
            }
            c
        }
    };
    let version = library.parent().and_then(torchvision_version);
    // A wheel's _C.so links libtorch_python (and so libpython); a CMake-built libtorchvision
    // does not.
    let from_wheel = library
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("_C"));
    let mut before = Vec::new();
    if from_wheel {
        let lib = torch_lib
            .as_deref()
            .ok_or("cannot find libtorch_python.so: libtorch's directory is unknown")?;
        let torch_python = lib.join("libtorch_python.so");
        if !torch_python.is_file() {
            return Err(format!(
                "{} does not exist: torchvision's _C.so needs the torch wheel's libtorch_python",
                torch_python.display()
            ));
        }
        let libpython = match std::env::var_os(ENV_LIBPYTHON) {
            Some(p) => PathBuf::from(p),
            None => {
                let site = site_packages(lib).unwrap_or_default();
                let candidates = libpython_candidates(&site);
                candidates
                    .iter()
                    .find(|c| c.is_absolute() && c.is_file())
                    .or(candidates.last())
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "cannot tell which libpython torch's wheel in {} was built for: set {ENV_LIBPYTHON}",
                            site.display()
                        )
                    })?
            }
        };
        before = vec![libpython, torch_python];
    }
    Ok(TorchvisionFiles {
        before,
        library,
        version,
    })
}

/// Directories a confined worker must be able to read to load torchvision's operators later:
/// those of the files [`locate_torchvision`] names, and the CUDA libraries of the wheel that
/// `libtorch_python` pulls in (`site-packages/nvidia`). Empty when torchvision is not found.
pub fn read_roots() -> Vec<PathBuf> {
    let Ok(files) = locate_torchvision() else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = files
        .before
        .iter()
        .chain(std::iter::once(&files.library))
        .filter(|p| p.is_absolute())
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    if let Some(site) = torch_lib_dir().as_deref().and_then(site_packages) {
        for extra in ["nvidia", "torchvision.libs"] {
            let d = site.join(extra);
            if d.is_dir() {
                dirs.push(d);
            }
        }
    }
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Loaded once per process: what was loaded, or why it could not be.
static TORCHVISION: Mutex<Option<Result<Option<String>, String>>> = Mutex::new(None);

/// Loads torchvision's operators into this process (once); returns its version.
fn load_torchvision(log: &mut Vec<String>) -> Result<Option<String>, String> {
    let mut state = TORCHVISION.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(done) = state.as_ref() {
        return done.clone();
    }
    let started = Instant::now();
    let result = (|| {
        let files = locate_torchvision()?;
        for p in &files.before {
            shim::load_library(p, true).map_err(|e| format!("loading {}: {e}", p.display()))?;
        }
        shim::load_library(&files.library, false)
            .map_err(|e| format!("loading {}: {e}", files.library.display()))?;
        if !shim::operator_namespaces()
            .iter()
            .any(|n| n == "torchvision")
        {
            return Err(format!(
                "{} loaded but registered no torchvision operators",
                files.library.display()
            ));
        }
        log.push(format!(
            "loaded torchvision {}'s operators from {}{} in {} ms",
            files.version.as_deref().unwrap_or("(version unknown)"),
            files.library.display(),
            if files.before.is_empty() {
                String::new()
            } else {
                format!(
                    " (after {})",
                    files
                        .before
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            started.elapsed().as_millis()
        ));
        Ok(files.version)
    })();
    *state = Some(result.clone());
    result
}

/// Makes the operators of `operators` (`namespace::name`, from the validator's inspection)
/// that come from an operator library available in this process, and returns the libraries
/// the artifact needs. Operators of libtorch itself need nothing.
pub fn ensure(operators: &[String], log: &mut Vec<String>) -> Result<Vec<OperatorLibrary>, String> {
    let mut out = Vec::new();
    for &ns in byom_core::operators::LIBRARY_NAMESPACES {
        let used: Vec<String> = operators
            .iter()
            .filter(|op| byom_core::torch::ops::namespace(op) == ns)
            .cloned()
            .collect();
        if used.is_empty() {
            continue;
        }
        // Only torchvision today (LIBRARY_NAMESPACES); a new library gets its own loader.
        let version = load_torchvision(log).map_err(|e| {
            format!(
                "the model calls {} but torchvision's operators cannot be loaded: {e}",
                used.join(", ")
            )
        })?;
        out.push(OperatorLibrary {
            name: ns.to_string(),
            version,
            namespaces: vec![ns.to_string()],
            operators: used,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpython_is_looked_for_where_venvs_and_prefixes_put_it() {
        let dir = std::env::temp_dir().join(format!("byom-ops-venv-{}", std::process::id()));
        let site = dir.join("venv/lib/python3.11/site-packages");
        fs::create_dir_all(&site).unwrap();
        fs::write(
            dir.join("venv/pyvenv.cfg"),
            "home = /opt/py/bin\nversion = 3.11.7\n",
        )
        .unwrap();
        assert_eq!(python_version(&site).as_deref(), Some("3.11"));
        assert_eq!(
            libpython_candidates(&site),
            [
                PathBuf::from("/opt/py/lib/libpython3.11.so.1.0"),
                dir.join("venv/lib/libpython3.11.so.1.0"),
                PathBuf::from("libpython3.11.so.1.0"),
            ]
        );
        fs::create_dir_all(site.join("torchvision")).unwrap();
        fs::write(
            site.join("torchvision/version.py"),
            "__version__ = '0.26.0+cu130'\ngit_version = 'x'\n",
        )
        .unwrap();
        assert_eq!(
            torchvision_version(&site.join("torchvision")).as_deref(),
            Some("0.26.0+cu130")
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_model_without_library_operators_loads_nothing() {
        let mut log = Vec::new();
        let libs = ensure(&["aten::conv2d".into(), "prim::min".into()], &mut log).unwrap();
        assert!(libs.is_empty() && log.is_empty());
    }

    /// The core's default `operator_namespaces` (what the browser and the validator accept) is
    /// exactly what a worker provides once torchvision is loaded: libtorch's registry, plus
    /// torchvision, plus `xnnpack` (custom classes only), without `cuda` (see
    /// `byom_core::operators::SERVER_NAMESPACES`).
    #[test]
    fn operator_namespaces_are_the_workers() {
        let mut log = Vec::new();
        let libs = ensure(&["torchvision::nms".into()], &mut log).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(libs[0].operators, ["torchvision::nms"]);
        assert!(log[0].contains("loaded torchvision"), "{log:?}");
        let mut have = shim::operator_namespaces();
        have.retain(|n| n != "cuda");
        have.push("xnnpack".into());
        have.sort();
        let settings = byom_core::Settings::default();
        assert_eq!(settings.operator_namespaces.as_slice(), have.as_slice());
    }
}
