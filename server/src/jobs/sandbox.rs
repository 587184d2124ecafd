//! Starting a worker process in a sandbox.
//!
//! libtorch runs untrusted TorchScript, and `torch::jit::load` has known crashes and huge
//! allocations on crafted files, so it never runs inside the server. Each job gets a process
//! with: an empty environment (plus the few variables libtorch and CUDA need), its job
//! directory as cwd and HOME, its own process group (so a timeout or cancel kills everything it
//! started), a memory cap through `RLIMIT_DATA` (not `RLIMIT_AS`, which breaks CUDA start-up by
//! refusing its large virtual reservations), a file-size cap through `RLIMIT_FSIZE` (the job's
//! disk allowance, `jobs::disk`: a larger write ends the worker with `SIGXFSZ`), no core dumps
//! (a crashed libtorch process would otherwise dump gigabytes, model included, into the job
//! directory), `PR_SET_PDEATHSIG` so it dies with the server,
//! and, where the kernel allows it, a fresh empty network namespace (no network at all).
//! The server's database and tokens are not passed to it in any form; the package is a private
//! copy (never a hard link: the worker could write through a link into the shared blob). Once
//! started, the worker confines its own file access to the job directory (`jobs::confine`,
//! Landlock), before libtorch is touched.

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Variables passed through to the worker when the server has them (libtorch / CUDA needs, and
/// where torchvision's operator library is when it is not beside torch: byom_compile::ops).
const PASS_ENV: [&str; 7] = [
    "LD_LIBRARY_PATH",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "RUST_BACKTRACE",
    "BYOM_TORCHVISION_LIB",
    "BYOM_LIBPYTHON",
];

/// What one worker process gets.
pub struct Spec<'a> {
    pub exe: &'a Path,
    pub job_dir: &'a Path,
    pub memory_bytes: u64,
    /// Largest file the worker may write (`RLIMIT_FSIZE`): the job's disk allowance.
    pub max_file_bytes: u64,
    pub new_netns: bool,
    pub test_delay_ms: Option<u64>,
}

/// Start `exe worker --job-dir DIR` sandboxed; stdout/stderr go to `DIR/worker.log`.
pub fn spawn(spec: &Spec<'_>) -> std::io::Result<tokio::process::Child> {
    let log = std::fs::File::create(spec.job_dir.join("worker.log"))?;
    let mut cmd = tokio::process::Command::new(spec.exe);
    cmd.arg("worker")
        .arg("--job-dir")
        .arg(spec.job_dir)
        .current_dir(spec.job_dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", spec.job_dir)
        .env("TMPDIR", spec.job_dir.join("tmp"))
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    for key in PASS_ENV {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    if let Some(ms) = spec.test_delay_ms {
        cmd.env("BYOM_WORKER_DELAY_MS", ms.to_string());
    }
    let memory = spec.memory_bytes;
    let max_file = spec.max_file_bytes;
    let netns = spec.new_netns;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let limit = libc::rlimit {
                rlim_cur: memory as libc::rlim_t,
                rlim_max: memory as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fsize = libc::rlimit {
                rlim_cur: max_file as libc::rlim_t,
                rlim_max: max_file as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &fsize) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::setrlimit(libc::RLIMIT_CORE, &no_core) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // An ignored SIGXFSZ survives exec and would turn the limit into EFBIG errors that
            // libtorch reports in its own words; the default (terminate) makes it one clear
            // failure the runner names.
            if libc::signal(libc::SIGXFSZ, libc::SIG_DFL) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            if netns && libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Kill the worker's whole process group (it is its own group leader).
pub fn kill_group(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: plain system call; a negative pid addresses the process group.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// Can this process put children into a new network namespace? Tried once at start-up by
/// starting `/bin/true` that way; when it fails the server logs a warning and runs workers
/// without network isolation.
pub fn probe_netns() -> bool {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("/bin/true");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only an async-signal-safe system call in the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.status().is_ok_and(|s| s.success())
}

/// The job directory of a job.
pub fn job_dir(data_dir: &Path, job_id: &str) -> PathBuf {
    data_dir.join("jobs").join(job_id)
}

/// What separates a job's id from its attempt number in an attempt's directory name.
const ATTEMPT_SEPARATOR: &str = ".attempt-";

/// The directory one attempt at a job runs in. Several nodes may share one data directory; an
/// attempt whose lease was lost removes its directory when it notices, and must not touch the
/// directory of the attempt that replaced it. When the attempt ends, what the job keeps goes
/// to the object store, or the directory becomes [`job_dir`].
pub fn attempt_dir(data_dir: &Path, job_id: &str, attempt: i64) -> PathBuf {
    data_dir
        .join("jobs")
        .join(format!("{job_id}{ATTEMPT_SEPARATOR}{attempt}"))
}

/// The job a directory under `jobs/` belongs to, and whether it is an attempt's scratch.
pub fn job_of_dir(name: &str) -> (&str, bool) {
    match name.split_once(ATTEMPT_SEPARATOR) {
        Some((id, _)) => (id, true),
        None => (name, false),
    }
}
