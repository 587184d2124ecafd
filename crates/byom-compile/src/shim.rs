//! Safe wrappers over the C++ shim (`shim/byom_shim.cpp`): `torch::jit::freeze`,
//! `optimize_for_inference`, the oneDNN Graph fuser switch and graph dumps, which tch does not
//! expose.
//!
//! The shim is file-path based: no module pointer crosses between tch's C++ wrapper and ours.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_long, CStr, CString};
use std::path::Path;

extern "C" {
    fn byom_transform(
        in_path: *const c_char,
        out_path: *const c_char,
        device: *const c_char,
        cast: c_int,
        freeze: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn byom_bench(
        path: *const c_char,
        device: *const c_char,
        load_step: c_int,
        half: c_int,
        shape: *const i64,
        ndim: usize,
        select: *const c_char,
        warmup: c_int,
        iters: c_int,
        times_ms: *mut f64,
        out: *mut f32,
        out_cap: usize,
        out_len: *mut usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn byom_graph_text(
        path: *const c_char,
        buf: *mut c_char,
        cap: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_long;
    fn byom_load_library(
        path: *const c_char,
        global: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn byom_operator_namespaces(buf: *mut c_char, cap: usize) -> c_long;
}

const ERR_LEN: usize = 4096;
/// Largest graph dump kept (a ResNet-152 is well under 1 MiB of graph text).
const MAX_GRAPH_TEXT: usize = 64 << 20;
/// Largest output copied back for comparison (64 Mi values, 256 MiB).
pub(crate) const MAX_OUTPUT_VALUES: usize = 64 << 20;

fn cstr(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("string with a NUL byte: {s:?}"))
}

fn path_cstr(p: &Path) -> Result<CString, String> {
    cstr(
        p.to_str()
            .ok_or_else(|| format!("path is not UTF-8: {}", p.display()))?,
    )
}

fn err_text(buf: &[u8]) -> String {
    CStr::from_bytes_until_nul(buf)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown libtorch error".to_string())
}

/// How [`transform`] casts floating parameters and buffers; the numbers are the shim's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cast {
    Keep = 0,
    Fp16 = 1,
    Fp32 = 2,
}

/// Loads `input` on `device`, casts (`cast`), optionally freezes, saves to `output`.
pub fn transform(
    input: &Path,
    output: &Path,
    device: &str,
    cast: Cast,
    freeze: bool,
) -> Result<(), String> {
    let (i, o, d) = (path_cstr(input)?, path_cstr(output)?, cstr(device)?);
    let mut err = vec![0u8; ERR_LEN];
    // SAFETY: all pointers are valid NUL-terminated strings / a buffer of ERR_LEN bytes that
    // outlive the call; the shim catches every C++ exception.
    let rc = unsafe {
        byom_transform(
            i.as_ptr(),
            o.as_ptr(),
            d.as_ptr(),
            cast as c_int,
            c_int::from(freeze),
            err.as_mut_ptr().cast(),
            ERR_LEN,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(err_text(&err))
    }
}

/// What one benchmark run returned.
#[derive(Debug, Clone)]
pub struct BenchRun {
    pub times_ms: Vec<f64>,
    pub output: Vec<f32>,
}

/// Load-time steps [`bench`] can apply; the numbers are the shim's (`byom_shim.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchStep {
    /// The artifact as saved.
    None = 0,
    /// freeze + `optimize_for_inference` (its result cannot be saved: pytorch#69608).
    OptimizeForInference = 1,
    /// The oneDNN Graph (LLGA) fuser, a process-wide setting restored after the run.
    OnednnFusion = 2,
}

impl BenchStep {
    /// The step numbered `n` (its `as u8`).
    pub fn from_u8(n: u8) -> Option<Self> {
        [Self::None, Self::OptimizeForInference, Self::OnednnFusion]
            .into_iter()
            .find(|s| *s as u8 == n)
    }
}

/// A forward-pass benchmark request for [`bench`].
#[derive(Debug, Clone)]
pub struct BenchSpec<'a> {
    pub device: &'a str,
    /// The load-time step to apply after loading (x86_64-cpu's candidates).
    pub step: BenchStep,
    pub half: bool,
    pub shape: &'a [i64],
    /// Output selector: "" tensor, "#i" tuple/list element, else dict key.
    pub select: &'a str,
    pub warmup: u32,
    pub iters: u32,
}

/// Loads `path` and times forwards on the fixed input; returns times and the selected output.
pub fn bench(path: &Path, spec: &BenchSpec<'_>) -> Result<BenchRun, String> {
    let p = path_cstr(path)?;
    let d = cstr(spec.device)?;
    let s = cstr(spec.select)?;
    let numel = spec
        .shape
        .iter()
        .try_fold(1usize, |acc, &x| {
            usize::try_from(x).ok().and_then(|x| acc.checked_mul(x))
        })
        .ok_or("input shape overflows")?;
    let out_cap = numel.clamp(1 << 16, MAX_OUTPUT_VALUES);
    let mut times = vec![0f64; spec.iters as usize];
    let mut out = vec![0f32; out_cap];
    let mut out_len = 0usize;
    let mut err = vec![0u8; ERR_LEN];
    let warmup = c_int::try_from(spec.warmup).map_err(|_| "too many warm-up runs")?;
    let iters = c_int::try_from(spec.iters).map_err(|_| "too many runs")?;
    // SAFETY: `times` holds `iters` doubles, `out` holds `out_cap` floats, `shape` holds `ndim`
    // values, all strings are NUL-terminated; the shim writes within these bounds and catches
    // every C++ exception.
    let rc = unsafe {
        byom_bench(
            p.as_ptr(),
            d.as_ptr(),
            spec.step as c_int,
            c_int::from(spec.half),
            spec.shape.as_ptr(),
            spec.shape.len(),
            s.as_ptr(),
            warmup,
            iters,
            times.as_mut_ptr(),
            out.as_mut_ptr(),
            out_cap,
            &mut out_len,
            err.as_mut_ptr().cast(),
            ERR_LEN,
        )
    };
    if rc != 0 {
        return Err(err_text(&err));
    }
    if out_len > out_cap {
        return Err(format!(
            "output has {out_len} values, more than the {out_cap} compared"
        ));
    }
    out.truncate(out_len);
    Ok(BenchRun {
        times_ms: times,
        output: out,
    })
}

/// Text of every method graph of the module (inlined), for op checks.
pub fn graph_text(path: &Path) -> Result<String, String> {
    let p = path_cstr(path)?;
    let mut err = vec![0u8; ERR_LEN];
    let mut cap = 1usize << 20;
    loop {
        let mut buf = vec![0u8; cap];
        // SAFETY: `buf` holds `cap` bytes, `err` ERR_LEN bytes; the shim never writes past them.
        let n = unsafe {
            byom_graph_text(
                p.as_ptr(),
                buf.as_mut_ptr().cast(),
                cap,
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        let n = usize::try_from(n).map_err(|_| err_text(&err))?;
        if n <= cap {
            buf.truncate(n);
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        if n > MAX_GRAPH_TEXT {
            return Err(format!(
                "graph text of {n} bytes is over the {MAX_GRAPH_TEXT} limit"
            ));
        }
        cap = n;
    }
}

/// `dlopen(path, RTLD_NOW | (global ? RTLD_GLOBAL : RTLD_LOCAL))`, never closed.
pub fn load_library(path: &Path, global: bool) -> Result<(), String> {
    let p = path_cstr(path)?;
    let mut err = vec![0u8; ERR_LEN];
    // SAFETY: `p` is a NUL-terminated string and `err` a buffer of ERR_LEN bytes, both outliving
    // the call. Loading a library runs its static initialisers: only the operator libraries of
    // the server's own Python environment are ever passed here (see ops.rs).
    let rc = unsafe {
        byom_load_library(
            p.as_ptr(),
            c_int::from(global),
            err.as_mut_ptr().cast(),
            ERR_LEN,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(err_text(&err))
    }
}

/// Namespaces of every operator registered in this process, sorted.
pub fn operator_namespaces() -> Vec<String> {
    let mut cap = 4096usize;
    loop {
        let mut buf = vec![0u8; cap];
        // SAFETY: `buf` holds `cap` bytes; the shim writes at most `cap` and returns the length.
        let n = unsafe { byom_operator_namespaces(buf.as_mut_ptr().cast(), cap) };
        let n = usize::try_from(n).unwrap_or(0);
        if n <= cap {
            buf.truncate(n);
            return String::from_utf8_lossy(&buf)
                .lines()
                .map(str::to_string)
                .collect();
        }
        cap = n;
    }
}
