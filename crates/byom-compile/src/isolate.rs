//! Runs of an artifact that may crash libtorch, in a child process of their own.
//!
//! The load-time candidates of x86_64-cpu (see [`crate::plan`]) switch on code paths of
//! libtorch that the artifact as saved never takes: the oneDNN Graph (LLGA) fuser and
//! `optimize_for_inference`. On real models they can crash the process: the LLGA fuser dies
//! with SIGSEGV in `itensor_from_tensor` on timm's `fastvit_ma36` and `nextvit_base` (libtorch
//! 2.11), which used to take the whole job with it, every target lost, for a speed-up that is
//! only ever optional. So each candidate runs in a fresh process (this same executable,
//! re-executed with [`PROBE_ARG`]): a crash, a hang past its deadline or an error only rules
//! that candidate out, and the report says which and why.
//!
//! Every binary that hosts the compile pipeline calls [`serve_probe_if_asked`] first thing in
//! `main` (byom-server, the `compile` example). A host that did not would treat the probe as
//! its own unknown arguments and exit non-zero: the candidate is then "not used", never wrong.
//!
//! The child inherits the parent's sandbox (Landlock domain, rlimits, environment, process
//! group: the server's cancel and timeout kill it with the worker) and applies the parent's
//! thread count and operator libraries, so it measures what the parent would. While it runs,
//! the model is in memory twice (the parent keeps its copy): a job's host memory peak is up to
//! twice the worker's `RLIMIT_DATA` cap, which is per process.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::shim::{self, BenchRun, BenchSpec, BenchStep};

/// The first argument that makes a host binary run one probe and exit.
pub const PROBE_ARG: &str = "__byom-bench-probe";

/// What the child runs: a [`BenchSpec`] with owned fields, plus the process-wide settings.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    artifact: PathBuf,
    device: String,
    step: u8,
    half: bool,
    shape: Vec<i64>,
    select: String,
    warmup: u32,
    iters: u32,
    /// The parent's libtorch intra-op thread count.
    threads: i32,
    /// Operators from operator libraries (torchvision's) the artifact calls.
    operators: Vec<String>,
}

/// What the child answers (JSON; the output's values go beside it as raw little-endian f32,
/// `<answer>.f32`, read back no larger than the in-process run's own output buffer).
#[derive(Debug, Serialize, Deserialize)]
enum Response {
    Ran { times_ms: Vec<f64>, values: usize },
    Failed(String),
}

/// The largest JSON answer read back (its times: far more than any run count asks for).
const MAX_ANSWER_BYTES: u64 = 16 << 20;

/// Reads at most `max` bytes of `path`; more is an error (the child is not trusted).
fn read_capped(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!("more than {max} bytes")));
    }
    Ok(bytes)
}

fn values_path(answer: &Path) -> PathBuf {
    let mut p = answer.as_os_str().to_owned();
    p.push(".f32");
    PathBuf::from(p)
}

/// How one isolated run went wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeError {
    /// The child returned an error (libtorch threw, the output could not be read...).
    Failed(String),
    /// The child died of a signal: libtorch crashed.
    Crashed(String),
    /// The child ran past its deadline and was killed.
    TimedOut(Duration),
    /// The child could not be started or gave no answer.
    NoAnswer(String),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // libtorch's errors carry a C++ backtrace after their first line.
            ProbeError::Failed(e) => write!(f, "{}", e.lines().next().unwrap_or("").trim()),
            ProbeError::Crashed(signal) => write!(
                f,
                "it crashed libtorch: killed by {signal} in a separate process; the job went on \
                 without it"
            ),
            ProbeError::TimedOut(d) => write!(
                f,
                "it ran past {} s in a separate process and was stopped",
                d.as_secs()
            ),
            ProbeError::NoAnswer(e) => write!(f, "no answer from the probe process: {e}"),
        }
    }
}

/// Runs `spec` on `artifact` in a child process; `work` holds the request and the answer;
/// the child is killed after `deadline`. `operators`: those of [`crate::ops::ensure`].
pub fn bench(
    artifact: &Path,
    spec: &BenchSpec<'_>,
    operators: &[String],
    work: &Path,
    deadline: Duration,
) -> Result<BenchRun, ProbeError> {
    let request = Request {
        artifact: artifact.to_path_buf(),
        device: spec.device.to_string(),
        step: spec.step as u8,
        half: spec.half,
        shape: spec.shape.to_vec(),
        select: spec.select.to_string(),
        warmup: spec.warmup,
        iters: spec.iters,
        threads: tch::get_num_threads(),
        operators: operators.to_vec(),
    };
    let stem = format!("probe-{}", spec.step as u8);
    let (req_path, resp_path) = (
        work.join(format!("{stem}.request.json")),
        work.join(format!("{stem}.response.json")),
    );
    let _ = std::fs::remove_file(&resp_path);
    let _ = std::fs::remove_file(values_path(&resp_path));
    let body = serde_json::to_vec(&request).map_err(|e| ProbeError::NoAnswer(e.to_string()))?;
    std::fs::write(&req_path, body)
        .map_err(|e| ProbeError::NoAnswer(format!("writing {}: {e}", req_path.display())))?;
    let exe = std::env::current_exe().map_err(|e| ProbeError::NoAnswer(e.to_string()))?;
    let mut child = Command::new(exe)
        .arg(PROBE_ARG)
        .arg(&req_path)
        .arg(&resp_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ProbeError::NoAnswer(format!("starting it: {e}")))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProbeError::TimedOut(deadline));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(ProbeError::NoAnswer(e.to_string())),
        }
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        // Bounded: a probe that prints a lot must not fill memory.
        let _ = pipe.by_ref().take(4096).read_to_string(&mut stderr);
    }
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return Err(ProbeError::Crashed(signal_name(signal)));
    }
    let answer = read_capped(&resp_path, MAX_ANSWER_BYTES).map_err(|e| {
        let tail = stderr.lines().last().unwrap_or("").trim();
        ProbeError::NoAnswer(format!(
            "exit {status}, no answer ({e}){}",
            if tail.is_empty() {
                String::new()
            } else {
                format!(": {tail}")
            }
        ))
    })?;
    let values_file = values_path(&resp_path);
    let result = match serde_json::from_slice(&answer) {
        Ok(Response::Ran { times_ms, values }) => read_values(&values_file, values)
            .map(|output| BenchRun { times_ms, output })
            .map_err(|e| ProbeError::NoAnswer(format!("the output values: {e}"))),
        Ok(Response::Failed(e)) => Err(ProbeError::Failed(e)),
        Err(e) => Err(ProbeError::NoAnswer(format!("unreadable answer: {e}"))),
    };
    for p in [&req_path, &resp_path, &values_file] {
        let _ = std::fs::remove_file(p);
    }
    result
}

/// Exactly `values` f32s from `path`, at most as many as the in-process run keeps.
fn read_values(path: &Path, values: usize) -> std::io::Result<Vec<f32>> {
    let max = shim::MAX_OUTPUT_VALUES.min(values) as u64 * 4;
    let bytes = read_capped(path, max)?;
    if values.checked_mul(4) != Some(bytes.len()) {
        return Err(std::io::Error::other(format!(
            "{} bytes for {values} values",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// A readable name for a signal that ended a process: "signal 11 (SIGSEGV)". One place for
/// byom-server's worker and the probes here.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return format!("signal {sig}"),
    };
    format!("signal {sig} ({name})")
}

/// In a host binary's `main`, before anything else: when this process was started as a probe
/// (`PROBE_ARG REQUEST RESPONSE`), run it and return the exit code to exit with.
pub fn serve_probe_if_asked() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != PROBE_ARG {
        return None;
    }
    let (Some(req), Some(resp)) = (args.next(), args.next()) else {
        eprintln!("{PROBE_ARG} REQUEST RESPONSE");
        return Some(ExitCode::from(64));
    };
    let resp = PathBuf::from(resp);
    let answer = match run_request(Path::new(&req)) {
        Ok(run) => {
            let raw: Vec<u8> = run.output.iter().flat_map(|v| v.to_le_bytes()).collect();
            match std::fs::write(values_path(&resp), raw) {
                Ok(()) => Response::Ran {
                    times_ms: run.times_ms,
                    values: run.output.len(),
                },
                Err(e) => Response::Failed(format!("writing the output values: {e}")),
            }
        }
        Err(e) => Response::Failed(e),
    };
    let written = serde_json::to_vec(&answer)
        .map_err(|e| e.to_string())
        .and_then(|b| std::fs::write(&resp, b).map_err(|e| e.to_string()));
    match written {
        Ok(()) => Some(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("writing the probe's answer: {e}");
            Some(ExitCode::from(1))
        }
    }
}

fn run_request(path: &Path) -> Result<BenchRun, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let r: Request = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if r.threads > 0 {
        tch::set_num_threads(r.threads);
    }
    crate::ops::ensure(&r.operators, &mut Vec::new())?;
    let step = BenchStep::from_u8(r.step).ok_or_else(|| format!("unknown step {}", r.step))?;
    let spec = BenchSpec {
        device: &r.device,
        step,
        half: r.half,
        shape: &r.shape,
        select: &r.select,
        warmup: r.warmup,
        iters: r.iters,
    };
    shim::bench(&r.artifact, &spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_read_no_larger_than_it_may_be() {
        let dir = std::env::temp_dir().join(format!("byom-isolate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("values.f32");
        std::fs::write(&f, [0u8, 0, 128, 63, 0, 0, 0, 64]).unwrap();
        assert_eq!(read_values(&f, 2).unwrap(), [1.0, 2.0]);
        // Another count than the file holds, either way, is refused.
        assert!(read_values(&f, 1).is_err());
        assert!(read_values(&f, 3).is_err());
        assert!(read_values(&f, usize::MAX).is_err());
        assert!(read_capped(&f, 7).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
