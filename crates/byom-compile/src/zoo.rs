//! Rebuilding a recognised state dict with its model library's own constructor.
//!
//! A state dict is only weights. The validator recognises which library builder it belongs to
//! ([`ArchMatch`]: torchvision or timm, builder name, classes, input channels, further keyword
//! arguments); this module runs `python/zoo_build.py` (embedded here, written into the work
//! directory) as a child process that constructs the model with that library, loads the weights
//! with torch's weights-only loader, traces it, and writes the TorchScript and the eager model's
//! own outputs on the fixed input. From there the job treats the TorchScript exactly like a
//! user's, and every parity check compares against the library's eager outputs.
//!
//! The child's limits: in the server it inherits everything the worker has (the memory cap
//! `RLIMIT_DATA`, the file-size cap `RLIMIT_FSIZE`, no core dumps, the empty network namespace,
//! the worker's process group which a timeout or cancel kills, and the Landlock domain that
//! confines files to the job directory, plus read access to the interpreter's own directories,
//! [`PythonRuntime::read_roots`]). Here it gets a clean environment, its own wall-time limit
//! ([`crate::CompileOptions::zoo_timeout_s`]), its output in a file whose tail only is read, and
//! result files whose sizes are checked before reading.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use byom_core::torch::ArchMatch;
use serde::{Deserialize, Serialize};
use tch::Kind;

use crate::target::Precision;

/// The rebuilding program, shipped inside the worker binary.
const SCRIPT: &str = include_str!("../python/zoo_build.py");

/// What the probe runs: the interpreter's directories and library versions, as JSON.
const PROBE: &str = r#"
import json, os, sys
import torch, torchvision
try:
    import timm
    timm_version = timm.__version__
except ImportError:
    timm_version = None
roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
         os.path.dirname(os.path.realpath(sys.executable))}
roots.update(p for p in sys.path if p and os.path.isabs(p) and os.path.isdir(p))
print(json.dumps({"exe": sys.executable, "read_roots": sorted(roots),
                  "torch": torch.__version__, "torchvision": torchvision.__version__,
                  "timm": timm_version}))
"#;

/// Largest `result.json` / `reference.json` read from the child.
const MAX_META_BYTES: u64 = 1024 * 1024;
/// Bytes of the child's log read for an error message.
const LOG_TAIL_BYTES: u64 = 4 * 1024;

/// The Python interpreter that rebuilds state dicts, as found by [`probe`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonRuntime {
    /// The interpreter (`sys.executable`).
    pub exe: PathBuf,
    /// Directories it reads its standard library and packages from; the worker's sandbox
    /// leaves them readable (read-only).
    #[serde(default)]
    pub read_roots: Vec<PathBuf>,
    /// `torch 2.11.0, torchvision 0.26.0, timm 1.0.31`, for logs.
    #[serde(default)]
    pub libraries: String,
}

/// The interpreter to use when none is configured: `$BYOM_PYTHON`, else the first `python3`
/// on `PATH` (the project's venv when its `bin` is on `PATH`, as after scripts/setup.sh).
pub fn default_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BYOM_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("python3"))
        .find(|p| p.is_file())
}

#[derive(Deserialize)]
struct ProbeOut {
    exe: PathBuf,
    read_roots: Vec<PathBuf>,
    torch: String,
    torchvision: String,
    timm: Option<String>,
}

/// Checks that `exe` runs and imports torch and torchvision (timm is optional: without it timm
/// models fail with a message naming it); returns what the worker needs to run it.
pub fn probe(exe: &Path) -> Result<PythonRuntime, String> {
    let out = Command::new(exe)
        .args(["-I", "-B", "-c", PROBE])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").trim();
        return Err(format!(
            "{} cannot import torch and torchvision ({last}): install tests/requirements.txt into it",
            exe.display()
        ));
    }
    let p: ProbeOut = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{}: unexpected probe output: {e}", exe.display()))?;
    let mut libraries = format!("torch {}, torchvision {}", p.torch, p.torchvision);
    match &p.timm {
        Some(v) => libraries.push_str(&format!(", timm {v}")),
        None => libraries.push_str(", no timm"),
    }
    Ok(PythonRuntime {
        exe: p.exe,
        read_roots: p.read_roots,
        libraries,
    })
}

/// One rebuild.
pub struct Request<'a> {
    pub arch: &'a ArchMatch,
    /// The package's `.pt`, already judged safe by byom's own pickle reader.
    pub state_dict: &'a Path,
    /// For a checkpoint: the key holding the state dict.
    pub checkpoint_key: Option<&'a str>,
    pub input_shape: &'a [i64],
    /// The declared output shape: a detector's row count (`[B, max_detections, 6]`).
    pub output_shape: Option<&'a [i64]>,
    /// Also trace an fp16 twin.
    pub half: bool,
    pub threads: i32,
    pub timeout: Duration,
}

/// The eager model's output on the fixed input, under the worker's selector (forward.rs).
#[derive(Debug, Clone)]
pub struct Reference {
    pub selector: String,
    pub shape: Vec<i64>,
    pub values: Vec<f32>,
}

/// What the child built.
#[derive(Debug)]
pub struct Built {
    pub eager: PathBuf,
    pub eager_half: Option<PathBuf>,
    /// The weights' floating dtype (the model was traced in it).
    pub kind: Kind,
    /// `torchvision 0.26.0`
    pub library: String,
    pub references: Vec<Reference>,
    /// How the child exported it: scripted (a detector in its `Detections` wrapper) or traced.
    pub export: Export,
}

/// How the child turned the library's model into TorchScript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Export {
    /// `torch.jit.trace` on the fixed input (every classification/segmentation model).
    Trace,
    /// `torch.jit.script` of torchvision's detector in the `Detections` wrapper of
    /// docs/detectors.md: one tensor in, `[B, max_detections, 6]` out.
    Script,
}

impl Export {
    /// For the job's log: "traced" or "wrapped as docs/detectors.md shows and scripted".
    pub fn describe(self) -> &'static str {
        match self {
            Export::Trace => "traced",
            Export::Script => {
                "wrapped (a detector: one image tensor in, [batch, max_detections, 6] rows of                  x1, y1, x2, y2, score, label out, docs/detectors.md) and scripted"
            }
        }
    }
}

#[derive(Deserialize)]
struct ResultFile {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    library: Option<String>,
    #[serde(default)]
    dtype: Option<String>,
    #[serde(default)]
    export: Option<Export>,
}

#[derive(Deserialize)]
struct ReferenceFile {
    outputs: Vec<ReferenceEntry>,
}

#[derive(Deserialize)]
struct ReferenceEntry {
    selector: String,
    shape: Vec<i64>,
    file: String,
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let len = fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len > max {
        return Err(format!("{}: {len} bytes, over {max}", path.display()));
    }
    fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The last lines of the child's log (bounded), for a crash without a result.
fn log_tail(path: &Path) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)));
    let mut buf = Vec::new();
    let _ = f.take(LOG_TAIL_BYTES).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .chars()
        .take(500)
        .collect()
}

fn kind_of(dtype: &str) -> Result<Kind, String> {
    Ok(match dtype {
        "float32" => Kind::Float,
        "float16" => Kind::Half,
        "bfloat16" => Kind::BFloat16,
        "float64" => Kind::Double,
        other => return Err(format!("weights of dtype {other} cannot be compiled")),
    })
}

/// Runs the child in `work` (its own sub-directory `zoo/`) and collects what it wrote.
/// `max_reference_bytes` bounds the reference outputs read back.
pub fn rebuild(
    python: &PythonRuntime,
    req: &Request<'_>,
    work: &Path,
    max_reference_bytes: u64,
) -> Result<Built, String> {
    let dir = work.join("zoo");
    fs::create_dir_all(dir.join("tmp")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let script = dir.join("zoo_build.py");
    fs::write(&script, SCRIPT).map_err(|e| format!("{}: {e}", script.display()))?;
    let request = serde_json::json!({
        "zoo": req.arch.zoo.as_str(),
        "name": req.arch.name,
        "num_classes": req.arch.num_classes,
        "in_channels": req.arch.in_channels,
        "builder_kwargs": req.arch.builder_kwargs,
        "state_dict": req.state_dict,
        "checkpoint_key": req.checkpoint_key,
        "input_shape": req.input_shape,
        "output_shape": req.output_shape,
        "half": req.half,
        "threads": req.threads,
        "out_dir": dir,
    });
    let request_path = dir.join("request.json");
    fs::write(&request_path, request.to_string())
        .map_err(|e| format!("{}: {e}", request_path.display()))?;
    let log_path = dir.join("zoo_build.log");
    let log = fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let threads = req.threads.max(1).to_string();
    // -I: no user site, no PYTHON* variables, no script directory on sys.path; -B: no .pyc.
    let mut child = Command::new(&python.exe)
        .args(["-I", "-B"])
        .arg(&script)
        .arg(&request_path)
        .current_dir(&dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &dir)
        .env("TMPDIR", dir.join("tmp"))
        .env("LANG", "C.UTF-8")
        .env("OMP_NUM_THREADS", &threads)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", python.exe.display()))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > req.timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "rebuilding {} took longer than {} s (the limit): stopped",
                    req.arch.qualified(),
                    req.timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for the rebuild: {e}")),
        }
    };
    let result: Option<ResultFile> = read_bounded(&dir.join("result.json"), MAX_META_BYTES)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let result = match result {
        Some(r) if r.ok && status.success() => r,
        Some(r) => {
            return Err(format!(
                "rebuilding {} with its library failed: {}",
                req.arch.qualified(),
                r.error.unwrap_or_else(|| format!("exit status {status}"))
            ))
        }
        None => {
            return Err(format!(
                "rebuilding {} with its library ended ({status}) without a result: {}",
                req.arch.qualified(),
                log_tail(&log_path)
            ))
        }
    };
    let kind = kind_of(result.dtype.as_deref().unwrap_or("float32"))?;
    let refs: ReferenceFile =
        serde_json::from_slice(&read_bounded(&dir.join("reference.json"), MAX_META_BYTES)?)
            .map_err(|e| format!("reference.json: {e}"))?;
    let mut budget = max_reference_bytes;
    let mut references = Vec::new();
    for r in refs.outputs {
        // Only names the child itself chose (`reference-N.bin`): never a path elsewhere.
        if !r.file.starts_with("reference-")
            || r.file.contains('/')
            || r.file.contains("..")
            || r.shape.iter().any(|&d| d < 0)
        {
            return Err(format!("reference.json: bad entry {:?}", r.file));
        }
        let bytes = read_bounded(&dir.join(&r.file), budget)?;
        budget -= bytes.len() as u64;
        let numel: i64 = r.shape.iter().product();
        if bytes.len() as i64 != numel * 4 {
            return Err(format!(
                "{}: {} bytes for shape {:?}",
                r.file,
                bytes.len(),
                r.shape
            ));
        }
        let values = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        references.push(Reference {
            selector: r.selector,
            shape: r.shape,
            values,
        });
    }
    let eager = dir.join("eager.pt");
    let eager_half = dir.join("eager-fp16.pt");
    Ok(Built {
        eager,
        eager_half: (req.half && eager_half.is_file()).then_some(eager_half),
        kind,
        library: result.library.unwrap_or_default(),
        references,
        export: result.export.unwrap_or(Export::Trace),
    })
}

/// Compares the TorchScript's output (`exported`, selected by `selector`, of shape `shape`) with
/// the eager model's; returns the eager values, which every later check compares against, and
/// the relative error. Tolerance: fp32's, or fp16's for half/bfloat16 weights.
pub fn check_export(
    references: Vec<Reference>,
    selector: &str,
    shape: &[i64],
    exported: &[f32],
    kind: Kind,
    export: Export,
) -> Result<(Vec<f32>, f64), String> {
    let what = match export {
        Export::Trace => "trace",
        Export::Script => "scripted module",
    };
    let eager = references
        .into_iter()
        .find(|r| r.selector == selector)
        .ok_or_else(|| {
            format!("the library's eager model has no output {selector:?} that the {what} has")
        })?;
    if eager.shape != shape {
        return Err(format!(
            "the {what}'s output has shape {shape:?}, the library's eager model's {:?}",
            eager.shape
        ));
    }
    let (_, rel) = crate::forward::compare(&eager.values, exported)
        .ok_or_else(|| format!("the {what}'s output and the eager model's differ in size"))?;
    let tol = match kind {
        Kind::Half | Kind::BFloat16 => Precision::Fp16.tolerance(),
        _ => Precision::Fp32.tolerance(),
    };
    if rel > tol {
        return Err(match export {
            Export::Trace => format!(
                "the TorchScript traced from the library's model computes something else than \
                 the model itself (max rel error {rel:.3e} over {tol:.0e}): its forward has \
                 data-dependent control flow that tracing cannot keep; export it with \
                 torch.jit.script instead"
            ),
            Export::Script => format!(
                "the TorchScript scripted from the library's model computes something else than \
                 the model itself on the fixed input (max rel error {rel:.3e} over {tol:.0e})"
            ),
        });
    }
    Ok((eager.values, rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtypes_the_child_reports() {
        assert_eq!(kind_of("float16"), Ok(Kind::Half));
        assert_eq!(kind_of("float32"), Ok(Kind::Float));
        assert!(kind_of("int8").is_err());
    }

    #[test]
    fn a_result_without_export_was_traced() {
        let r: ResultFile = serde_json::from_str(r#"{"ok": true}"#).unwrap();
        assert_eq!(r.export, None);
        let r: ResultFile = serde_json::from_str(r#"{"ok": true, "export": "script"}"#).unwrap();
        assert_eq!(r.export, Some(Export::Script));
    }

    #[test]
    fn a_scripted_module_that_disagrees_is_not_blamed_on_tracing() {
        let refs = || {
            vec![Reference {
                selector: String::new(),
                shape: vec![1, 2],
                values: vec![1.0, 2.0],
            }]
        };
        let (eager, rel) = check_export(
            refs(),
            "",
            &[1, 2],
            &[1.0, 2.0],
            Kind::Float,
            Export::Script,
        )
        .unwrap();
        assert_eq!((eager, rel), (vec![1.0, 2.0], 0.0));
        let e = check_export(
            refs(),
            "",
            &[1, 2],
            &[1.0, 3.0],
            Kind::Float,
            Export::Script,
        )
        .unwrap_err();
        assert!(e.contains("scripted") && !e.contains("tracing"), "{e}");
        let e =
            check_export(refs(), "", &[1, 2], &[1.0, 3.0], Kind::Float, Export::Trace).unwrap_err();
        assert!(e.contains("torch.jit.script instead"), "{e}");
        let e = check_export(
            refs(),
            "",
            &[2, 1],
            &[1.0, 2.0],
            Kind::Float,
            Export::Script,
        )
        .unwrap_err();
        assert!(
            e.contains("scripted module's output has shape [2, 1]"),
            "{e}"
        );
    }

    #[test]
    fn log_tail_is_the_last_nonempty_line() {
        let d = std::env::temp_dir().join(format!("byom-zoo-tail-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let p = d.join("log");
        fs::write(&p, format!("{}\nKilled\n\n", "x".repeat(10_000))).unwrap();
        assert_eq!(log_tail(&p), "Killed");
        let _ = fs::remove_dir_all(&d);
    }
}
