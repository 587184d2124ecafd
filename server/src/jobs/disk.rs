//! The disk a compile job may use, and what is left of a job directory once the job is over.
//!
//! A job runs untrusted TorchScript, which can write files (`torch.save` is a TorchScript op)
//! and whose frozen form can be far larger than its upload (`torch.jit.freeze` folds a tensor
//! computed from constants, `torch.ones(2**28)` say, into a constant of the saved model: a 2 KB
//! upload became a 1 GiB `model.pt`). Each job therefore gets one allowance,
//! `--job-disk-mb` MiB + `--job-disk-per-package` × the package's size (a legitimate job holds
//! the package copy, the extracted model, up to three transformed artifacts, and per target a
//! bundle directory and its archive, all about the size of the weights: about 10 × the
//! package; the fixed part covers small packages whose weights compress well). It is enforced
//! twice:
//!
//! - per file, by the kernel: the worker runs with `RLIMIT_FSIZE` at the allowance, so a write
//!   past it ends the worker with `SIGXFSZ` (see `jobs::sandbox`);
//! - for the whole job directory, by the server: [`watch`] measures it every
//!   [`WATCH_EVERY`] while the worker runs (and once more after it ends) and the runner kills
//!   the worker's process group when it is over. The worker cannot interfere with a
//!   measurement made from outside, whatever the model does.
//!
//! Once a job is over, [`clean_finished`] keeps only its downloadable bundles and (the tail of)
//! its logs; [`sweep`] does the same at start-up for jobs a killed server left behind.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::jobs::queue::JobQueue;

const MIB: u64 = 1024 * 1024;

/// How often the server measures a running job's directory. At disk speed a worker can write
/// about this long's worth past the allowance before it is killed.
pub const WATCH_EVERY: Duration = Duration::from_millis(250);

/// Every file and directory is charged at least this much (an inode and a block), so a job
/// cannot create millions of empty files for free, and a walk of a job directory never visits
/// more than allowance / `ENTRY_BYTES` entries.
const ENTRY_BYTES: u64 = 4096;

/// Logs kept in a finished job's directory are cut to their last this many bytes (the job's
/// row keeps the last lines as `log_tail` in any case).
const LOG_KEEP_BYTES: u64 = 1024 * 1024;

/// Top-level entries of a job directory that outlive the job; everything else (the package
/// copy, `tmp/`, `out/`, anything the model wrote) is removed when the job ends.
const KEEP: [&str; 4] = ["artifacts", "worker.log", "log.txt", "job.json"];

/// One job's disk allowance and how it was computed (for the failure reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobDisk {
    /// The allowance in bytes: per file and for the whole job directory.
    pub limit: u64,
    base_mb: u64,
    per_package: u64,
    package_bytes: u64,
}

impl JobDisk {
    pub fn new(config: &Config, package_bytes: u64) -> JobDisk {
        JobDisk::from_parts(
            config.job_disk_mb,
            config.job_disk_per_package,
            package_bytes,
        )
    }

    fn from_parts(base_mb: u64, per_package: u64, package_bytes: u64) -> JobDisk {
        JobDisk {
            limit: base_mb
                .saturating_mul(MIB)
                .saturating_add(per_package.saturating_mul(package_bytes)),
            base_mb,
            per_package,
            package_bytes,
        }
    }

    /// "64.0 MiB (--job-disk-mb 64 + 16 × the package's 2.9 KiB)".
    fn describe(&self) -> String {
        format!(
            "{} (--job-disk-mb {} + {} × the package's {})",
            mib(self.limit),
            self.base_mb,
            self.per_package,
            mib(self.package_bytes)
        )
    }

    /// Why a job whose directory grew past the allowance failed.
    pub fn total_exceeded(&self, used: u64) -> String {
        format!(
            "the job used more than the per-job disk limit of {} in its directory (at least {} measured) and was killed; {}",
            self.describe(),
            mib(used),
            ADVICE
        )
    }

    /// Why a job whose worker ended with `SIGXFSZ` failed.
    pub fn file_too_large(&self) -> String {
        format!(
            "the worker wrote a file larger than the per-job disk limit of {} and was killed (SIGXFSZ); {}",
            self.describe(),
            ADVICE
        )
    }
}

const ADVICE: &str = "a model whose compiled form is much larger than its upload (torch.jit.freeze folds a large tensor computed from constants, e.g. torch.ones(n) in forward, into the saved model) or that writes files cannot be compiled here: make such tensors inputs or parameters of the size they need, or ask the operator to raise --job-disk-mb";

fn mib(bytes: u64) -> String {
    if bytes < MIB {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    }
}

/// What an entry costs against the allowance: its apparent size or its allocated blocks,
/// whichever is larger (a sparse file is charged as if written out), and at least
/// [`ENTRY_BYTES`].
fn charge(meta: &std::fs::Metadata) -> u64 {
    meta.len()
        .max(meta.blocks().saturating_mul(512))
        .max(ENTRY_BYTES)
}

/// The bytes charged for the tree under `dir` (symbolic links are charged as entries, never
/// followed). Stops walking as soon as the sum passes `stop_after`, so one measurement of a
/// directory with millions of entries stays bounded; the result is then just over it.
/// Entries that vanish while being measured are skipped.
pub fn usage(dir: &Path, stop_after: u64) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            total = total.saturating_add(charge(&meta));
            if total > stop_after {
                return total;
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

/// Resolves once the job directory is over `limit` bytes, with the bytes measured; never
/// otherwise. Meant for a `select!` against the worker's exit.
pub async fn watch(dir: &Path, limit: u64) -> u64 {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let d = dir.to_path_buf();
        let used = tokio::task::spawn_blocking(move || usage(&d, limit))
            .await
            .unwrap_or(0);
        if used > limit {
            return used;
        }
    }
}

/// What a job keeps once it is over: its bundles (`artifacts/<target>.tar.gz`, regular files
/// only) and its logs (cut to their last [`LOG_KEEP_BYTES`]). The package copy, the worker's
/// scratch (`tmp/`, `out/`) and anything else the model wrote go. Idempotent.
pub fn clean_finished(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let keep = name.to_str().is_some_and(|n| KEEP.contains(&n));
        let path = entry.path();
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        if !keep {
            remove(&path, &meta);
        } else if name == "artifacts" {
            clean_artifacts(&path, &meta);
        } else if meta.is_file() {
            if meta.len() > LOG_KEEP_BYTES {
                let _ = keep_tail(&path, LOG_KEEP_BYTES);
            }
        } else {
            remove(&path, &meta);
        }
    }
}

fn remove(path: &Path, meta: &std::fs::Metadata) {
    let _ = if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
}

/// In `artifacts/` only `<known target>.tar.gz` regular files stay (the runner moves bundles
/// there; the worker could have planted anything else).
fn clean_artifacts(path: &Path, meta: &std::fs::Metadata) {
    if !meta.is_dir() {
        remove(path, meta);
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        let Ok(m) = p.symlink_metadata() else {
            continue;
        };
        let wanted = entry.file_name().to_str().is_some_and(|n| {
            n.strip_suffix(".tar.gz")
                .is_some_and(|t| t.parse::<super::Target>().is_ok())
        });
        if !(wanted && m.is_file()) {
            remove(&p, &m);
        }
    }
}

/// Cut `path` to its last `keep` bytes.
fn keep_tail(path: &Path, keep: u64) -> std::io::Result<()> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(keep)))?;
    let mut tail = Vec::new();
    f.take(keep).read_to_end(&mut tail)?;
    let tmp = path.with_extension("tail");
    let mut out = std::fs::File::create(&tmp)?;
    out.write_all(&tail)?;
    std::fs::rename(&tmp, path)
}

/// What [`sweep`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Directories of finished jobs cleaned down to what they keep.
    pub cleaned: u32,
    /// Directories of jobs the database no longer has, removed whole.
    pub removed: u32,
}

/// Start-up: job directories a killed server (or a crash between a package delete's commit and
/// its file removal) left behind. Keyed on what the queue says of each job, never on the
/// directory alone: a job that is `queued` or `running` (for another server sharing the
/// queue, once there are several) is left alone; a finished one is cleaned like the runner
/// does at its end; one the queue does not know is removed. Call it after
/// [`JobQueue::fail_orphans`], which turns this server's own interrupted jobs into `failed`.
pub async fn sweep(queue: &dyn JobQueue, data_dir: &Path) -> Result<Swept, sqlx::Error> {
    let mut swept = Swept::default();
    let Ok(entries) = std::fs::read_dir(data_dir.join("jobs")) else {
        return Ok(swept);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        // An attempt's directory (`<job>.attempt-<n>`) belongs to its job: left alone while the
        // job is active (another node may be running it), removed after (what an attempt
        // keeps is moved to the job's directory or the store when it ends).
        let (status, scratch) = match entry.file_name().to_str() {
            Some(name) => {
                let (id, scratch) = super::sandbox::job_of_dir(name);
                (queue.status(id).await?, scratch)
            }
            None => (None, false),
        };
        match status {
            Some(s) if s.is_active() => {}
            Some(_) if scratch => {
                remove(&path, &meta);
                swept.removed += 1;
            }
            Some(_) => {
                clean_finished(&path);
                swept.cleaned += 1;
            }
            None => {
                remove(&path, &meta);
                swept.removed += 1;
            }
        }
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attempt's directory is its job's: kept while the job is active,
    /// since another node sharing the data directory may be running it; removed once it ends.
    #[tokio::test]
    async fn the_start_up_sweep_keeps_an_active_jobs_attempt_scratch() {
        use crate::jobs::queue::JobQueue;
        use crate::jobs::Target;
        let (q, db, dir) = crate::jobs::queue::test_support::queue_with_a_package("sweep").await;
        let data = dir.0.clone();
        let job = q
            .enqueue("t", "p", &[Target::X86_64Cpu], 16)
            .await
            .unwrap()
            .unwrap();
        let scratch = super::super::sandbox::attempt_dir(&data, &job.id, 1);
        std::fs::create_dir_all(scratch.join("tmp")).unwrap();
        let stray = super::super::sandbox::attempt_dir(&data, "job_gone", 3);
        std::fs::create_dir_all(&stray).unwrap();
        let swept = sweep(&q, &data).await.unwrap();
        assert!(scratch.is_dir(), "a queued job's scratch was removed");
        assert!(!stray.exists(), "an unknown job's scratch was kept");
        assert_eq!(swept.removed, 1);
        sqlx::query("UPDATE jobs SET status = 'failed'")
            .execute(&db.pool)
            .await
            .unwrap();
        sweep(&q, &data).await.unwrap();
        assert!(!scratch.exists(), "a finished job's scratch was kept");
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("byom-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_allowance_is_the_fixed_part_plus_a_multiple_of_the_package() {
        let d = JobDisk::from_parts(64, 16, 1000);
        assert_eq!(d.limit, 64 * MIB + 16_000);
        assert!(d
            .total_exceeded(70 * MIB)
            .contains("per-job disk limit of 64.0 MiB"));
        assert!(d
            .file_too_large()
            .contains("(--job-disk-mb 64 + 16 × the package's 1.0 KiB)"));
        assert_eq!(JobDisk::from_parts(u64::MAX, 2, 3).limit, u64::MAX);
    }

    #[test]
    fn usage_counts_sizes_entries_and_sparse_files_and_stops_early() {
        let d = temp_dir("usage");
        std::fs::write(d.join("a"), vec![1u8; 10_000]).unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        for i in 0..10 {
            std::fs::write(d.join("sub").join(i.to_string()), b"").unwrap();
        }
        // sparse: 100 MiB apparent, nothing allocated
        let f = std::fs::File::create(d.join("sparse")).unwrap();
        f.set_len(100 * MIB).unwrap();
        std::os::unix::fs::symlink("/usr", d.join("link")).unwrap();
        let all = usage(&d, u64::MAX);
        // 10_000 B file (≥ 12 KiB allocated at most), sub dir, 10 empty files at 4 KiB each,
        // the sparse file at its apparent size, the link as an entry (not /usr's contents)
        assert!(all >= 100 * MIB + 10_000 + 11 * ENTRY_BYTES, "{all}");
        assert!(all < 101 * MIB, "{all}");
        assert!(usage(&d, MIB) <= 101 * MIB);
        assert!(usage(&d, MIB) > MIB);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_finished_job_keeps_only_bundles_and_log_tails() {
        let d = temp_dir("clean");
        for f in [
            "package.tar.gz",
            "blob0.pt",
            "result.json",
            "job.json",
            "log.txt",
        ] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        std::fs::write(
            d.join("worker.log"),
            vec![b'a'; (LOG_KEEP_BYTES + 10) as usize],
        )
        .unwrap();
        std::fs::create_dir_all(d.join("out/.work")).unwrap();
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        std::fs::create_dir_all(d.join("artifacts/junkdir")).unwrap();
        std::fs::write(d.join("artifacts/x86_64-cpu.tar.gz"), b"bundle").unwrap();
        std::fs::write(d.join("artifacts/z80.tar.gz"), b"no").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("artifacts/arm64-cpu.tar.gz")).unwrap();
        clean_finished(&d);
        clean_finished(&d); // idempotent
        let mut names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["artifacts", "job.json", "log.txt", "worker.log"]);
        let arts: Vec<String> = std::fs::read_dir(d.join("artifacts"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(arts, ["x86_64-cpu.tar.gz"]);
        assert_eq!(
            std::fs::metadata(d.join("worker.log")).unwrap().len(),
            LOG_KEEP_BYTES
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
