//! What a worker does to itself as soon as it starts: a Landlock domain that leaves it its job
//! directory and nothing of the server's.
//!
//! The worker runs as the server's user, so without this it could open the SQLite database, the
//! admin-token file and every tenant's blobs. Landlock (Linux ≥ 5.13, no privileges needed) lets
//! the process give those rights up for itself and everything it starts:
//!
//! - files: read + write beneath the job directory only; read-only beneath the system's library
//!   and configuration directories, the directories of every file already mapped into the
//!   process (libtorch, wherever its wheel lives), those of the operator libraries it may load
//!   later (torchvision's `_C.so`, libpython, the wheel's CUDA libraries: byom_compile::ops)
//!   and the process's own `/proc/self`;
//!   `/dev` for the null/random devices and, on GPU hosts, the NVIDIA device files;
//! - TCP: no bind, no connect (ABI ≥ 4; the network namespace already leaves no interface);
//! - scopes: no signals to processes outside the domain (the server, other workers) and no
//!   abstract UNIX sockets outside it (ABI ≥ 6).
//!
//! It must run before libtorch starts any thread: Landlock restricts the calling thread and the
//! threads and processes it creates afterwards. Each right is applied as far as the running
//! kernel supports it (best effort); [`Confinement::describe`] says what was enforced, and the
//! worker writes that to its log so a job's log tail shows it.

use std::path::{Path, PathBuf};

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, RestrictionStatus, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

/// The Landlock ABI whose rights this module was written and tested against; newer kernels
/// enforce exactly these, older ones what they know of them.
const TESTED_ABI: ABI = ABI::V6;

/// System directories a libtorch process reads from (shared libraries, `ld.so.cache`, CPU and
/// GPU topology under `/sys`). None of them holds anything of byom's.
///
/// Not `/opt`, `/srv` or `/var`, where data directories live; libraries installed there are
/// covered by the mapped-file directories and `LD_LIBRARY_PATH`.
const SYSTEM_READ: [&str; 7] = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/etc", "/sys"];

/// Individual `/proc` entries libtorch, OpenMP and CUDA read. Not the whole of `/proc`: other
/// processes' command lines live there.
const PROC_READ: [&str; 6] = [
    "/proc/self",
    "/proc/thread-self",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/driver",
];

/// What was enforced.
#[derive(Debug)]
pub struct Confinement {
    pub status: RulesetStatus,
    /// Read-only roots that contain the job directory's data directory, which would leave the
    /// server's database readable (a data directory under /usr, say). Reported, not fatal.
    pub exposed_data_dir: Option<PathBuf>,
}

impl Confinement {
    pub fn describe(&self) -> String {
        let mut s = match self.status {
            RulesetStatus::FullyEnforced => "sandbox: Landlock fully enforced (files: job directory read-write, system libraries read-only; TCP denied; signals and abstract sockets scoped)".to_string(),
            RulesetStatus::PartiallyEnforced => "sandbox: Landlock partially enforced (this kernel's Landlock ABI lacks some rights: files are confined, TCP or signal scoping may not be)".to_string(),
            RulesetStatus::NotEnforced => "sandbox: Landlock NOT enforced (unsupported by this kernel): the worker can read what the server's user can read".to_string(),
        };
        if let Some(root) = &self.exposed_data_dir {
            s.push_str(&format!(
                "; WARNING: the data directory lies under {} which the worker may read",
                root.display()
            ));
        }
        s
    }
}

/// The Landlock ABI version the running kernel offers (0: none). For the server's start-up log.
pub fn kernel_abi() -> i64 {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) only returns the
    // ABI version (or -1); it takes no pointer it would dereference.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32,
        )
    };
    v.max(0)
}

/// Confine the calling process (and all it starts later) to `job_dir`, leaving `read_roots`
/// read-only as well: the directories of operator libraries it may load later (torchvision's,
/// loaded only for models that call its operators) and of the Python that rebuilds state dicts
/// (its child inherits this domain). A root that would contain the data directory (or is `/`)
/// is dropped: what needs it then fails to load, which the job reports, rather than the worker
/// reading the server's files.
pub fn confine_to(job_dir: &Path, extra_read: &[PathBuf]) -> Result<Confinement, String> {
    let job_dir = job_dir
        .canonicalize()
        .map_err(|e| format!("job directory {}: {e}", job_dir.display()))?;
    let mut read_roots: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
    read_roots.extend(mapped_file_dirs());
    if let Some(paths) = std::env::var_os("LD_LIBRARY_PATH") {
        read_roots.extend(std::env::split_paths(&paths).filter(|p| p.is_absolute()));
    }
    // jobs/<id> → the data directory two levels up.
    let data_dir = job_dir
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf);
    read_roots.extend(python_read_roots(extra_read, data_dir.as_deref()));
    read_roots.sort();
    read_roots.dedup();
    let exposed_data_dir = data_dir.as_ref().and_then(|d| {
        read_roots
            .iter()
            .filter_map(|r| r.canonicalize().ok())
            .find(|r| d.starts_with(r))
    });

    let abi = TESTED_ABI;
    let read = AccessFs::from_read(abi);
    let devices = read | AccessFs::WriteFile | AccessFs::IoctlDev;
    let status: RestrictionStatus = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(&read_roots, read)))
        .and_then(|r| r.add_rules(path_beneath_rules(PROC_READ, read)))
        .and_then(|r| r.add_rules(path_beneath_rules(["/dev"], devices)))
        .and_then(|r| r.add_rules(path_beneath_rules([&job_dir], AccessFs::from_all(abi))))
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("setting up the Landlock sandbox: {e}"))?;
    Ok(Confinement {
        status: status.ruleset,
        exposed_data_dir,
    })
}

/// The Python directories that may be opened read-only: absolute, existing, not `/`, and not
/// holding the data directory.
fn python_read_roots(roots: &[PathBuf], data_dir: Option<&Path>) -> Vec<PathBuf> {
    roots
        .iter()
        .filter(|r| r.is_absolute())
        .filter_map(|r| r.canonicalize().ok())
        .filter(|r| r.parent().is_some())
        .filter(|r| data_dir.is_none_or(|d| !d.starts_with(r)))
        .collect()
}

/// Directories of the files mapped into this process (its executable, libtorch and every other
/// shared library, wherever they were installed): a library loaded later is usually beside one
/// already loaded.
fn mapped_file_dirs() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/maps")
        .map(|maps| dirs_of_mapped_files(&maps, |p| p.is_file()))
        .unwrap_or_default()
}

/// The parent directories of the regular files named in a `/proc/<pid>/maps` text. Names that
/// are not files (`/memfd:x (deleted)`, `/dev/zero`, anonymous mappings) are skipped, and so is
/// `/` itself: one such entry must never open the whole file system.
fn dirs_of_mapped_files(maps: &str, is_file: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .map(Path::new)
        .filter(|p| p.is_absolute() && is_file(p))
        .filter_map(Path::parent)
        .filter(|d| d.parent().is_some())
        .map(Path::to_path_buf)
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;
    use std::process::Command;

    const CHILD: &str = "BYOM_CONFINE_TEST_CHILD";
    const TEST_NAME: &str = "jobs::confine::tests::a_confined_process_keeps_only_its_job_directory";

    /// Landlock is per process and irreversible, so the check runs in a child: this test binary
    /// again, running only this test with `CHILD` set.
    #[test]
    fn a_confined_process_keeps_only_its_job_directory() {
        if let Some(root) = std::env::var_os(CHILD) {
            child(std::path::Path::new(&root));
            return;
        }
        if super::kernel_abi() < 1 {
            eprintln!("this kernel has no Landlock; the sandbox reports NOT enforced");
            return;
        }
        let root = std::env::temp_dir().join(format!("byom-confine-{}", std::process::id()));
        let job = root.join("data").join("jobs").join("j1");
        std::fs::create_dir_all(&job).unwrap();
        std::fs::write(root.join("data").join("byom.db"), b"secret").unwrap();
        std::fs::write(job.join("package.tar.gz"), b"pkg").unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD, &root)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&root);
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("CHILD CHECKS PASSED"), "{text}");
    }

    #[test]
    fn python_roots_never_open_the_data_directory() {
        let tmp = std::env::temp_dir().canonicalize().unwrap();
        let data = tmp.join(format!("byom-pyroots-{}", std::process::id()));
        let venv = data
            .parent()
            .unwrap()
            .join(format!("venv-{}", std::process::id()));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&venv).unwrap();
        let roots = [
            std::path::PathBuf::from("/"),
            tmp.clone(),
            venv.clone(),
            std::path::PathBuf::from("relative"),
            std::path::PathBuf::from("/no/such/dir"),
        ];
        assert_eq!(
            super::python_read_roots(&roots, Some(&data)),
            std::slice::from_ref(&venv)
        );
        let _ = std::fs::remove_dir_all(&data);
        let _ = std::fs::remove_dir_all(&venv);
    }

    #[test]
    fn mapped_files_never_open_the_root_or_memfds() {
        let maps = "\
7f00-7f01 r-xp 00000000 fd:01 1 /venv/torch/lib/libtorch_cpu.so
7f01-7f02 r--p 00000000 fd:01 1 /venv/torch/lib/libtorch_cpu.so
7f02-7f03 rw-s 00000000 00:01 2 /memfd:onednn (deleted)
7f03-7f04 rw-p 00000000 00:00 0 [heap]
7f04-7f05 r--p 00000000 fd:01 3 /usr/lib/x86_64-linux-gnu/libc.so.6
7f05-7f06 rw-p 00000000 00:00 0
7f06-7f07 r--p 00000000 fd:01 4 /rootfile";
        let files = [
            "/venv/torch/lib/libtorch_cpu.so",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/rootfile",
        ];
        let dirs = super::dirs_of_mapped_files(maps, |p| {
            files.iter().any(|f| p == std::path::Path::new(f))
        });
        assert_eq!(
            dirs,
            [
                std::path::PathBuf::from("/usr/lib/x86_64-linux-gnu"),
                std::path::PathBuf::from("/venv/torch/lib"),
            ]
        );
    }

    fn child(root: &std::path::Path) {
        let data = root.join("data");
        let job = data.join("jobs").join("j1");
        // A Python root holding the data directory is dropped, not opened.
        let c = super::confine_to(&job, &[root.to_path_buf()]).expect("confine");
        assert_eq!(
            c.status,
            landlock::RulesetStatus::FullyEnforced,
            "{}",
            c.describe()
        );
        assert!(c.exposed_data_dir.is_none());
        // Its own directory: read and write.
        assert_eq!(std::fs::read(job.join("package.tar.gz")).unwrap(), b"pkg");
        std::fs::write(job.join("result.json"), b"{}").unwrap();
        // The server's: nothing.
        let denied = std::fs::read(data.join("byom.db")).unwrap_err();
        assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
        let denied = std::fs::write(data.join("planted"), b"x").unwrap_err();
        assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
        assert!(std::fs::read_dir(&data).is_err());
        // System libraries stay readable (dlopen needs them).
        assert!(std::path::Path::new("/usr").read_dir().is_ok());
        // TCP connect is refused by Landlock before any packet (EACCES, not ECONNREFUSED).
        let tcp = std::net::TcpStream::connect("127.0.0.1:9").unwrap_err();
        assert_eq!(tcp.kind(), ErrorKind::PermissionDenied, "{tcp}");
        // No signals outside the domain: the parent test process is out of reach.
        // SAFETY: kill with signal 0 only checks permission.
        let r = unsafe { libc::kill(libc::getppid(), 0) };
        assert_eq!(r, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EPERM)
        );
        println!("CHILD CHECKS PASSED");
    }
}
