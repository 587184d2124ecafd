//! Package bytes: a content-addressed blob store behind a trait.
//!
//! The embedded server keeps blobs in `<data>/blobs/<aa>/<sha256>`; an S3-compatible store can
//! implement [`BlobStore`] later so that many servers share it. Uploads are first written to
//! `<data>/tmp/` (same file system, so committing is an atomic rename) and only become a blob
//! once the whole package is valid and its sha256 is known.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where package bytes live once accepted.
pub trait BlobStore: Send + Sync + 'static {
    /// Make the finished temp file `tmp` the blob `sha256`. When that blob already exists the
    /// temp file is removed instead (identical bytes are stored once).
    fn commit(&self, tmp: &Path, sha256: &str) -> io::Result<()>;
    /// Open a blob for reading.
    fn open(&self, sha256: &str) -> io::Result<File>;
    /// Remove a blob (the caller has checked that nothing references it any more).
    fn delete(&self, sha256: &str) -> io::Result<()>;
    /// Every blob present, for the start-up sweep of unreferenced ones.
    fn list(&self) -> io::Result<Vec<String>>;
}

/// Where a node keeps package bytes: always the local [`BlobStore`] (the embedded default,
/// `--storage file:DIR`), and with `--storage s3://…` the shared object store that then holds
/// packages, artifacts and job logs instead (the local blob directory stays empty).
#[derive(Clone)]
pub struct Stores {
    pub blobs: Arc<dyn BlobStore>,
    pub objects: Option<Arc<crate::objects::S3Store>>,
}

/// Counts bytes written under the data directory against an optional limit.
///
/// A real full disk returns ENOSPC from `write`; tests cannot fill a real disk, so
/// `--test-disk-limit` makes writes fail with the very same ENOSPC error once the data
/// directory would exceed the limit. The code path that turns it into a 507 is the same.
#[derive(Debug, Default)]
pub struct DiskBudget {
    limit: Option<u64>,
    used: AtomicU64,
}

impl DiskBudget {
    pub fn new(limit: Option<u64>, used: u64) -> Arc<DiskBudget> {
        Arc::new(DiskBudget {
            limit,
            used: AtomicU64::new(used),
        })
    }

    /// Account for `n` more bytes, or fail with ENOSPC if that would pass the limit.
    pub fn reserve(&self, n: u64) -> io::Result<()> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let before = self.used.fetch_add(n, Ordering::SeqCst);
        if before.saturating_add(n) > limit {
            self.used.fetch_sub(n, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    /// Give back `n` bytes (a temp file or blob was removed).
    pub fn release(&self, n: u64) {
        if self.limit.is_some() {
            let _ = self
                .used
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                    Some(u.saturating_sub(n))
                });
        }
    }
}

impl DiskBudget {
    /// Free bytes under the test limit (`None` without one: the real file system decides).
    fn test_free(&self) -> Option<u64> {
        self.limit
            .map(|l| l.saturating_sub(self.used.load(Ordering::SeqCst)))
    }
}

/// Free bytes an unprivileged process may use on the file system holding `dir` (statvfs).
#[allow(unsafe_code)] // statvfs(3) has no safe wrapper in std
pub fn free_space(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a plain C struct statvfs fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    let (blocks, block_size) = (st.f_bavail as u64, st.f_frsize as u64);
    Ok(blocks.saturating_mul(block_size))
}

/// The gate every upload byte passes before it is written: the test budget, and the disk
/// reserve. Upload bytes may never eat into the last `reserve` free bytes of the data disk, so
/// that on a "full" disk deleting an upload or a package, expiring uploads, the audit log and
/// SQLite's WAL still have room (a full disk once made every DELETE fail, which then freed
/// nothing). Past the reserve a write fails with ENOSPC, which becomes the usual 507.
#[derive(Debug, Clone)]
pub struct DiskGate {
    pub budget: Arc<DiskBudget>,
    pub dir: PathBuf,
    pub reserve: u64,
}

impl DiskGate {
    /// Account for `n` bytes about to be written, or fail with ENOSPC.
    pub fn take(&self, n: u64) -> io::Result<()> {
        self.budget.reserve(n)?;
        let left = match self.budget.test_free() {
            Some(free_after) => Some(free_after),
            None => free_space(&self.dir)
                .map(|free| free.checked_sub(n))
                .unwrap_or(Some(u64::MAX)), // cannot tell: the write itself will say
        };
        if left.is_none_or(|l| l < self.reserve) {
            self.budget.release(n);
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }
}

/// Take an exclusive `flock` on `file` without waiting (`WouldBlock` if another process or
/// open file holds it). It is released when the file is closed.
#[allow(unsafe_code)] // flock(2) has no safe wrapper in std (File::try_lock is newer than our MSRV)
pub fn lock_exclusive(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; flock only changes lock state.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Is this I/O error "no space left" (a real ENOSPC, EDQUOT, or the test budget's)?
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Blobs on the local file system.
pub struct FsBlobStore {
    root: PathBuf,
    budget: Arc<DiskBudget>,
}

impl FsBlobStore {
    pub fn new(root: PathBuf, budget: Arc<DiskBudget>) -> io::Result<FsBlobStore> {
        std::fs::create_dir_all(&root)?;
        Ok(FsBlobStore { root, budget })
    }

    fn path(&self, sha256: &str) -> io::Result<PathBuf> {
        // The name is always our own hex digest; refuse anything else rather than join it.
        if sha256.len() != 64 || !sha256.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a sha256"));
        }
        Ok(self.root.join(&sha256[..2]).join(sha256))
    }
}

impl BlobStore for FsBlobStore {
    fn commit(&self, tmp: &Path, sha256: &str) -> io::Result<()> {
        let dest = self.path(sha256)?;
        if dest.exists() {
            let size = std::fs::metadata(tmp).map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(tmp)?;
            self.budget.release(size);
            return Ok(());
        }
        let dir = dest.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)?;
        std::fs::rename(tmp, &dest)?;
        // Make the rename itself durable before the database row that points at it commits.
        File::open(dir)?.sync_all()
    }

    fn open(&self, sha256: &str) -> io::Result<File> {
        File::open(self.path(sha256)?)
    }

    fn delete(&self, sha256: &str) -> io::Result<()> {
        let path = self.path(sha256)?;
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                self.budget.release(size);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for shard in std::fs::read_dir(&self.root)? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for blob in std::fs::read_dir(shard.path())? {
                if let Some(name) = blob?.file_name().to_str() {
                    out.push(name.to_string());
                }
            }
        }
        Ok(out)
    }
}

/// Total size of the regular files under `dir` (for the disk budget at start-up).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refuses_past_the_limit_with_enospc_and_gives_back() {
        let b = DiskBudget::new(Some(100), 40);
        assert!(b.reserve(60).is_ok());
        let e = b.reserve(1).unwrap_err();
        assert!(is_disk_full(&e));
        b.release(10);
        assert!(b.reserve(10).is_ok());
        assert!(DiskBudget::new(None, u64::MAX).reserve(u64::MAX).is_ok());
    }

    #[test]
    fn the_gate_keeps_the_reserve_free() {
        let gate = DiskGate {
            budget: DiskBudget::new(Some(100), 40),
            dir: std::env::temp_dir(),
            reserve: 20,
        };
        assert!(gate.take(40).is_ok()); // 20 left = the reserve: still fine
        assert!(is_disk_full(&gate.take(1).unwrap_err()));
        gate.budget.release(10);
        assert!(gate.take(10).is_ok());
        // On the real disk: nobody has u64::MAX bytes free.
        let real = DiskGate {
            budget: DiskBudget::new(None, 0),
            dir: std::env::temp_dir(),
            reserve: u64::MAX,
        };
        assert!(is_disk_full(&real.take(1).unwrap_err()));
        assert!(free_space(&std::env::temp_dir()).unwrap() > 0);
    }

    #[test]
    fn blob_names_must_be_sha256() {
        let dir = std::env::temp_dir().join(format!("byom-blob-test-{}", std::process::id()));
        let store = FsBlobStore::new(dir.clone(), DiskBudget::new(None, 0)).unwrap();
        assert!(store.open("../../etc/passwd").is_err());
        assert!(store.delete(&"a".repeat(63)).is_err());
        let tmp = dir.join("t");
        std::fs::write(&tmp, b"x").unwrap();
        let sha = "ab".repeat(32);
        store.commit(&tmp, &sha).unwrap();
        std::fs::write(&tmp, b"x").unwrap();
        store.commit(&tmp, &sha).unwrap(); // exists: the temp file is removed instead
        assert!(!tmp.exists());
        assert_eq!(store.list().unwrap(), vec![sha.clone()]);
        store.delete(&sha).unwrap();
        assert!(store.list().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
