//! Runs queued jobs: at most `workers` at a time, each in its own sandboxed worker process,
//! with a wall-time limit. Whatever the worker does (crash, hang, garbage output), the job ends
//! `failed` with a reason and the server keeps serving.
//!
//! Restart policy: a job left `running` by a server that died is marked `failed` ("the server
//! stopped while this job was running") rather than re-queued, so a model that kills the
//! machine cannot loop forever; queued jobs simply run after the restart.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use sqlx::Row;
use tokio::sync::{watch, Notify};

use super::disk::{self, JobDisk};
use super::queue::{Heartbeat, JobQueue, JobRow, Lease, Outcome};
use super::sandbox;
use super::{JobStatus, Target};
use crate::backend::PythonRuntime;
use crate::config::Config;
use crate::db::Db;
use crate::storage::{BlobStore, Stores};
use byom_compile::{CompileReport, TargetStatus};

/// Lines of `log.txt` / `worker.log` kept with a job.
const LOG_TAIL_LINES: usize = 40;
/// How often idle workers look at the queue even without a wake-up.
const POLL: Duration = Duration::from_secs(1);
/// Bytes of each log file read for the log tail (the worker can make its logs as large as its
/// disk allowance; the server reads only their ends).
const LOG_TAIL_BYTES: u64 = 64 * 1024;
/// Largest `result.json` the server reads; a larger one is no result (an honest report of four
/// targets is a few KiB).
const MAX_RESULT_BYTES: u64 = 16 * 1024 * 1024;

pub struct Runner {
    pub queue: Arc<dyn JobQueue>,
    pub db: Db,
    /// This node's claims: its id and the lease length.
    pub lease: Lease,
    pub store: Arc<dyn BlobStore>,
    /// With `--storage s3://…`: packages come from there, artifacts and logs go there.
    pub objects: Option<Arc<crate::objects::S3Store>>,
    pub config: Arc<Config>,
    pub exe: PathBuf,
    pub netns: bool,
    /// The Python that rebuilds state dicts (`--python`), and what its probe found, once the
    /// first job has asked (`None` inside: it failed, and state dicts fail saying so).
    python: Option<PathBuf>,
    python_runtime: tokio::sync::OnceCell<Option<PythonRuntime>>,
    /// Woken when a job is enqueued.
    pub wake: Notify,
    /// Running jobs that were asked to stop.
    cancels: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Runner {
    pub fn new(
        queue: Arc<dyn JobQueue>,
        db: Db,
        stores: Stores,
        config: Arc<Config>,
        exe: PathBuf,
        netns: bool,
        python: Option<PathBuf>,
    ) -> Arc<Runner> {
        let lease = Lease {
            owner: crate::ids::node_id(),
            seconds: config.lease_s,
        };
        Arc::new(Runner {
            queue,
            db,
            lease,
            store: stores.blobs,
            objects: stores.objects,
            config,
            exe,
            netns,
            python,
            python_runtime: tokio::sync::OnceCell::new(),
            wake: Notify::new(),
            cancels: Mutex::default(),
        })
    }

    /// Start the worker slots; they stop when `shutdown` turns true.
    pub fn start(
        self: &Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.config.workers)
            .map(|_| {
                let runner = Arc::clone(self);
                let mut shutdown = shutdown.clone();
                tokio::spawn(async move {
                    loop {
                        if *shutdown.borrow() {
                            return;
                        }
                        match runner.queue.claim(&runner.lease).await {
                            Ok(Some(job)) => runner.run(job, shutdown.clone()).await,
                            Ok(None) => {
                                tokio::select! {
                                    _ = runner.wake.notified() => {}
                                    _ = tokio::time::sleep(POLL) => {}
                                    _ = shutdown.changed() => {}
                                }
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "cannot claim a job");
                                tokio::time::sleep(POLL).await;
                            }
                        }
                    }
                })
            })
            .collect()
    }

    /// Every node (API server or worker) reaps: a job whose lease ran out is re-queued or
    /// failed (see `JobQueue::reap`) within about half a lease of its end.
    pub fn start_reaper(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let runner = Arc::clone(self);
        let every =
            Duration::from_millis((self.lease.seconds.saturating_mul(1000) / 2).clamp(500, 15_000));
        tokio::spawn(async move {
            loop {
                match runner.queue.reap(runner.config.job_attempts).await {
                    Ok(r) if r == Default::default() => {}
                    Ok(r) => tracing::warn!(
                        requeued = r.requeued,
                        failed = r.failed,
                        cancelled = r.cancelled,
                        "jobs whose worker stopped renewing its lease"
                    ),
                    Err(e) => tracing::warn!(error = %e, "cannot reap expired job leases"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.changed() => return,
                }
            }
        })
    }

    /// Ask a running job to stop; `false` if it is not running here.
    pub fn cancel(&self, job_id: &str) -> bool {
        let map = self.cancels.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(job_id) {
            Some(n) => {
                n.notify_one();
                true
            }
            None => false,
        }
    }

    async fn run(&self, job: JobRow, shutdown: watch::Receiver<bool>) {
        tracing::info!(job = %job.id, tenant = %job.tenant_id, package = %job.package_id, targets = ?job.targets, attempt = job.attempts, "job started");
        // From here until the end is recorded, one task renews the lease; every step below
        // stops when it says the lease is lost.
        let mut lease =
            LeaseKeeper::start(Arc::clone(&self.queue), job.id.clone(), self.lease.clone());
        let cancel = Arc::new(Notify::new());
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.id.clone(), Arc::clone(&cancel));
        let ended = self.run_leased(&job, &mut lease, &cancel, shutdown).await;
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job.id);
        // No renewal may race with the end being recorded (or come after it).
        drop(lease);
        let outcome = match ended {
            Ok(outcome) => outcome,
            Err(LeaseLost) => {
                tracing::warn!(job = %job.id, attempt = job.attempts, "lost the job's lease (it was not renewed for --lease-s, and the reaper re-queued or failed the job); its compile was stopped, and nothing of this attempt is stored or recorded");
                return;
            }
        };
        tracing::info!(job = %job.id, status = %outcome.status, reason = ?outcome.failure_reason, "job finished");
        match self.queue.finish(&job.id, &self.lease, outcome).await {
            Ok(true) => {}
            // The lease ran out after the last heartbeat (the reaper has re-queued or failed
            // the job); this run counts for nothing, so the job is never finished twice.
            Ok(false) => {
                tracing::warn!(job = %job.id, "lost the job's lease before it ended; its outcome here is not recorded")
            }
            Err(e) => tracing::error!(job = %job.id, error = %e, "cannot record the job's end"),
        }
    }

    /// Prepare, compile and store one job while `lease` holds; `Err(LeaseLost)` as soon as it
    /// does not (the compile is killed, nothing more is stored). Whatever happens, the job's
    /// local directory is reduced to what it keeps (with an object store: removed).
    async fn run_leased(
        &self,
        job: &JobRow,
        lease: &mut LeaseKeeper,
        cancel: &Notify,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Outcome, LeaseLost> {
        let dir = self.work_dir(job);
        let outcome = match lease.while_held(self.prepare(job)).await {
            Ok(Ok((dir, allowance))) => {
                self.supervise(job, &dir, allowance, cancel, lease, shutdown)
                    .await
            }
            Ok(Err(e)) => Ok(failed(format!("could not prepare the job: {e}"), None)),
            Err(lost) => Err(lost),
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(lost) => {
                // The directory is this attempt's own (`work_dir`): the job's new holder works
                // in another, even on a data directory the nodes share.
                let _ = tokio::fs::remove_dir_all(&dir).await;
                return Err(lost);
            }
        };
        // Only the bundles and logs stay: the package copy, scratch and whatever the model
        // wrote go, also when preparing failed half-way.
        let d = dir.clone();
        let _ = tokio::task::spawn_blocking(move || disk::clean_finished(&d)).await;
        let Some(objects) = &self.objects else {
            // Without an object store, the attempt's directory becomes the job's, which the
            // API serves; only while the lease is held, so a cut-off attempt never replaces
            // the one that took its job over.
            let job_dir = sandbox::job_dir(&self.config.data_dir, &job.id);
            let from = dir.clone();
            let moved = lease
                .while_held(tokio::task::spawn_blocking(move || {
                    match std::fs::remove_dir_all(&job_dir) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                    std::fs::rename(&from, &job_dir)
                }))
                .await;
            return match moved {
                Err(lost) => {
                    let _ = tokio::fs::remove_dir_all(&dir).await;
                    Err(lost)
                }
                Ok(Ok(Ok(()))) => Ok(outcome),
                Ok(Ok(Err(e))) => Ok(not_kept(outcome, &job.id, "kept", e.to_string())),
                Ok(Err(e)) => Ok(not_kept(outcome, &job.id, "kept", e.to_string())),
            };
        };
        // With an object store, what the job keeps goes there (before the job's end is
        // recorded, so every API server can serve it as soon as it says "succeeded"), and the
        // local directory goes. Storing stops if the lease is lost: the job's keys are then
        // its new holder's.
        let stored = lease
            .while_held(store_job_outputs(objects, &job.id, &dir))
            .await;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        match stored? {
            Ok(()) => Ok(outcome),
            Err(e) => Ok(not_kept(outcome, &job.id, "stored", e.to_string())),
        }
    }

    /// Where this attempt at `job` runs: a directory of the attempt's own, so that on a data
    /// directory several nodes share, an attempt cut off from the database (which keeps going
    /// until a heartbeat fails) and the one that took the job over never meet. At the end what
    /// the job keeps goes to the object store, or (without one) the directory becomes the job's.
    fn work_dir(&self, job: &JobRow) -> std::path::PathBuf {
        sandbox::attempt_dir(&self.config.data_dir, &job.id, job.attempts)
    }

    /// The probed Python for state dicts; probed once, by the first job that asks.
    async fn python_runtime(&self) -> Option<PythonRuntime> {
        self.python_runtime
            .get_or_init(|| async {
                let exe = self.python.clone()?;
                let probed =
                    tokio::task::spawn_blocking(move || crate::backend::probe_python(&exe))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r);
                match probed {
                    Ok(runtime) => {
                        tracing::info!(python = %runtime.exe.display(), libraries = %runtime.libraries, "state dicts are rebuilt with this Python");
                        Some(runtime)
                    }
                    Err(e) => {
                        tracing::warn!("state dicts will not compile: {e}");
                        None
                    }
                }
            })
            .await
            .clone()
    }

    /// Create the job directory with a private copy of the package and `job.json`; returns it
    /// with the job's disk allowance (which grows with the package).
    async fn prepare(&self, job: &JobRow) -> Result<(PathBuf, JobDisk), String> {
        let row = sqlx::query("SELECT sha256, size FROM packages WHERE id = $1")
            .bind(&job.package_id)
            .fetch_optional(&self.db.pool)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the package was deleted")?;
        let sha: String = row.get("sha256");
        let size = u64::try_from(row.get::<i64, _>("size")).unwrap_or(0);
        let dir = self.work_dir(job);
        let store = Arc::clone(&self.store);
        let targets = job.targets.clone();
        let settings = self.config.settings.clone();
        let python = self.python_runtime().await;
        let dir2 = dir.clone();
        let local = self.objects.is_none();
        let sha2 = sha.clone();
        let copied = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            // A re-run (the worker of an earlier attempt died) starts from a clean directory.
            match std::fs::remove_dir_all(&dir2) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            std::fs::create_dir_all(dir2.join("tmp"))?;
            std::fs::create_dir_all(dir2.join("out"))?;
            if !local {
                return Ok(0);
            }
            let mut src = store.open(&sha2)?;
            let mut dst = std::fs::File::create(dir2.join("package.tar.gz"))?;
            std::io::copy(&mut src, &mut dst)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        // From the object store: no more bytes than the package's row says, so the job's
        // disk allowance (computed from that size) also bounds the download.
        let package_bytes = match &self.objects {
            None => copied,
            Some(objects) => {
                let key = objects.blob_key(&sha).map_err(|e| e.to_string())?;
                objects
                    .download(&key, &dir.join("package.tar.gz"), size)
                    .await
                    .map_err(|e| format!("cannot fetch the package from the object store: {e}"))?
            }
        };
        let dir2 = dir.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let spec = json!({
                "package": dir2.join("package.tar.gz"),
                "targets": targets,
                "options": { "settings": settings, "python": python },
            });
            write_atomic(&dir2.join("job.json"), spec.to_string().as_bytes())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let allowance = JobDisk::new(&self.config, package_bytes);
        Ok((dir, allowance))
    }

    async fn supervise(
        &self,
        job: &JobRow,
        dir: &Path,
        allowance: JobDisk,
        cancel: &Notify,
        lease: &mut LeaseKeeper,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Outcome, LeaseLost> {
        let spec = sandbox::Spec {
            exe: &self.exe,
            job_dir: dir,
            memory_bytes: self.config.worker_memory_mb.saturating_mul(1024 * 1024),
            max_file_bytes: allowance.limit,
            new_netns: self.netns,
            test_delay_ms: self.config.test_worker_delay_ms,
        };
        let mut child = match sandbox::spawn(&spec) {
            Ok(c) => c,
            Err(e) => return Ok(failed(format!("could not start the worker: {e}"), None)),
        };
        let pid = child.id().unwrap_or(0);
        let limit = Duration::from_secs(self.config.job_timeout_s);
        enum End {
            Exited(std::io::Result<std::process::ExitStatus>),
            Timeout,
            Cancelled,
            Shutdown,
            DiskFull(u64),
            LeaseLost,
        }
        let deadline = tokio::time::sleep(limit);
        let watch = disk::watch(dir, allowance.limit);
        tokio::pin!(deadline, watch);
        let end = tokio::select! {
            status = child.wait() => End::Exited(status),
            _ = &mut deadline => End::Timeout,
            _ = cancel.notified() => End::Cancelled,
            _ = shutdown.changed() => End::Shutdown,
            used = &mut watch => End::DiskFull(used),
            // A cancel made through any API server arrives with a heartbeat.
            news = lease.news() => match news {
                LeaseNews::Lost => End::LeaseLost,
                LeaseNews::CancelRequested => End::Cancelled,
            },
        };
        if !matches!(end, End::Exited(_)) {
            sandbox::kill_group(pid);
            let _ = child.wait().await;
        } else {
            // Anything the worker left behind in its group goes too.
            sandbox::kill_group(pid);
        }
        let log_tail = tail_of(dir);
        // Once more after the end: a worker may write past the allowance between two
        // measurements and exit before the next. (Not after SIGXFSZ: its file is at the
        // allowance, so the directory is always over it, and the per-file reason is the
        // precise one.)
        let end = match end {
            End::Exited(Ok(status)) if status.signal() == Some(libc::SIGXFSZ) => {
                return Ok(failed(allowance.file_too_large(), log_tail))
            }
            End::Exited(_) => {
                let d = dir.to_path_buf();
                let used = tokio::task::spawn_blocking(move || disk::usage(&d, allowance.limit))
                    .await
                    .unwrap_or(0);
                if used > allowance.limit {
                    End::DiskFull(used)
                } else {
                    end
                }
            }
            other => other,
        };
        let status = match end {
            End::Timeout => {
                return Ok(failed(
                    format!(
                        "the job ran past its time limit of {} s and was killed",
                        self.config.job_timeout_s
                    ),
                    log_tail,
                ))
            }
            End::Cancelled => {
                return Ok(Outcome {
                    status: JobStatus::Cancelled,
                    failure_reason: Some("cancelled while running; the worker was killed".into()),
                    result_json: None,
                    log_tail,
                })
            }
            End::Shutdown => {
                return Ok(failed(
                    "the server shut down while this job was running".into(),
                    log_tail,
                ))
            }
            End::DiskFull(used) => return Ok(failed(allowance.total_exceeded(used), log_tail)),
            End::LeaseLost => return Err(LeaseLost),
            End::Exited(Err(e)) => return Ok(failed(format!("lost the worker: {e}"), log_tail)),
            End::Exited(Ok(status)) => status,
        };
        if let Some(sig) = status.signal() {
            let mut reason = format!(
                "the worker crashed: killed by {}",
                byom_compile::isolate::signal_name(sig)
            );
            // Where: the compile announces each libtorch step on stderr (worker.log).
            if let Some(step) = read_end(&dir.join("worker.log"), LOG_TAIL_BYTES)
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .and_then(|t| byom_compile::progress::last_step(&t).map(str::to_string))
            {
                reason.push_str(&format!(" while {step}"));
            }
            if sig == libc::SIGKILL {
                reason.push_str(&format!(
                    " (killed from outside, or out of memory; the worker memory limit is {} MiB)",
                    self.config.worker_memory_mb
                ));
            }
            return Ok(failed(reason, log_tail));
        }
        let result = match read_result(dir) {
            Ok(result) => result,
            Err(why) => return Ok(failed(why, log_tail)),
        };
        if let Some(report) = &result {
            collect_bundles(dir, report);
        }
        Ok(match (status.code(), result) {
            (_, Some(report)) => {
                let failed_targets: Vec<&str> = job
                    .targets
                    .iter()
                    .filter(|&&t| {
                        !report
                            .targets
                            .iter()
                            .any(|r| r.target == t && r.status == TargetStatus::Succeeded)
                    })
                    .map(|t| t.as_str())
                    .collect();
                let (st, reason) = if failed_targets.is_empty() {
                    (JobStatus::Succeeded, None)
                } else {
                    (
                        JobStatus::Failed,
                        Some(format!("failed targets: {}", failed_targets.join(", "))),
                    )
                };
                Outcome {
                    status: st,
                    failure_reason: reason,
                    result_json: serde_json::to_string(&report).ok(),
                    log_tail,
                }
            }
            (Some(code), None) => failed(
                format!("the worker exited with status {code} without a result"),
                log_tail,
            ),
            (None, None) => failed("the worker ended without a result".into(), log_tail),
        })
    }
}

/// Send a finished job's bundles (`artifacts/<target>.tar.gz`, which [`disk::clean_finished`]
/// has reduced to regular files of known targets) and logs to the object store.
async fn store_job_outputs(
    objects: &crate::objects::S3Store,
    job: &str,
    dir: &Path,
) -> std::io::Result<()> {
    for target in Target::ALL {
        let path = dir.join("artifacts").join(format!("{target}.tar.gz"));
        if path.symlink_metadata().is_ok() {
            objects
                .upload_file(&path, &objects.artifact_key(job, target.as_str()))
                .await?;
        }
    }
    let prefix = objects.job_prefix(job);
    for name in ["log.txt", "worker.log"] {
        let path = dir.join(name);
        if path.symlink_metadata().is_ok() {
            objects.upload_file(&path, &prefix.child(name)).await?;
        }
    }
    Ok(())
}

/// How often a running job's lease is renewed: a third of the lease (so two heartbeats may
/// fail before it runs out), and at least every 2 s so that a cancel made through another API
/// server reaches the worker quickly.
fn heartbeat_every(lease_s: u64) -> Duration {
    Duration::from_millis((lease_s.saturating_mul(1000) / 3).clamp(200, 2000))
}

/// The job's lease was lost: the reaper re-queued or failed it, and whatever this node does with
/// it from then on counts for nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LeaseLost;

/// What a running job's lease keeper has to say, once there is something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseNews {
    /// Someone asked (through any API server) to cancel the job; the lease is still held.
    CancelRequested,
    /// The lease is lost; the keeper has stopped renewing it.
    Lost,
}

/// The one task that renews a job's lease, from its claim until its end is recorded (preparing
/// a job, compiling it and storing its outputs can each take longer than a lease). It reports
/// a cancel request and, once, the loss of the lease, after which it stops; dropping the
/// keeper stops it too.
struct LeaseKeeper {
    state: watch::Receiver<Heartbeat>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseKeeper {
    fn start(queue: Arc<dyn JobQueue>, job: String, lease: Lease) -> LeaseKeeper {
        let (tx, state) = watch::channel(Heartbeat::Held);
        let task = tokio::spawn(async move {
            let mut beat = tokio::time::interval(heartbeat_every(lease.seconds));
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            beat.tick().await; // the first tick is immediate; the claim has just set the lease
            loop {
                beat.tick().await;
                match queue.heartbeat(&job, &lease).await {
                    Ok(Heartbeat::Lost) => {
                        tx.send_replace(Heartbeat::Lost);
                        return;
                    }
                    Ok(news) => {
                        tx.send_if_modified(|s| std::mem::replace(s, news) != news);
                    }
                    // The database is unreachable: keep going; if it stays away past the
                    // lease, the next heartbeat that gets through says Lost.
                    Err(e) => {
                        tracing::warn!(job = %job, error = %e, "cannot renew the job's lease")
                    }
                }
            }
        });
        LeaseKeeper { state, task }
    }

    /// Resolves when there is news: at once if there already is. Never while the lease is
    /// merely held.
    async fn news(&mut self) -> LeaseNews {
        // Copied out at once: the channel's read guard must not live across an await.
        let news = self
            .state
            .wait_for(|s| *s != Heartbeat::Held)
            .await
            .map(|s| *s);
        match news {
            Ok(Heartbeat::Lost) => LeaseNews::Lost,
            Ok(_) => LeaseNews::CancelRequested,
            // The keeper ended without news: only when it is being dropped.
            Err(_) => std::future::pending().await,
        }
    }

    /// Resolves when the lease is lost: at once if it already is.
    async fn lost(&mut self) -> LeaseLost {
        let lost = self.state.wait_for(|s| *s == Heartbeat::Lost).await.is_ok();
        if !lost {
            // The keeper ended without news: only when it is being dropped.
            std::future::pending::<()>().await;
        }
        LeaseLost
    }

    /// Run `work` unless the lease is lost first (then `work` is dropped unfinished).
    async fn while_held<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, LeaseLost> {
        tokio::select! {
            biased;
            lost = self.lost() => Err(lost),
            done = work => Ok(done),
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn failed(reason: String, log_tail: Option<String>) -> Outcome {
    Outcome {
        status: JobStatus::Failed,
        failure_reason: Some(reason),
        result_json: None,
        log_tail,
    }
}

/// The worker's report (`result.json`, byom-compile's [`CompileReport`]); `Ok(None)` when it
/// wrote none. It is untrusted output, read only as data: a link, a file over
/// [`MAX_RESULT_BYTES`] or one that is not a report is an error that fails the job, saying so.
fn read_result(dir: &Path) -> Result<Option<CompileReport>, String> {
    let path = dir.join("result.json");
    match path.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        _ => {}
    }
    let bytes = read_capped(&path, MAX_RESULT_BYTES).ok_or_else(|| {
        format!(
            "the worker's result.json is unreadable (not a regular file, or over {} MiB)",
            MAX_RESULT_BYTES / (1024 * 1024)
        )
    })?;
    serde_json::from_slice::<CompileReport>(&bytes)
        .map(Some)
        .map_err(|e| format!("the worker's result.json is not a compile report: {e}"))
}

/// The last lines of the worker's logs.
fn tail_of(dir: &Path) -> Option<String> {
    let mut lines: Vec<String> = Vec::new();
    for name in ["log.txt", "worker.log"] {
        if let Ok(text) = read_end(&dir.join(name), LOG_TAIL_BYTES) {
            lines.extend(String::from_utf8_lossy(&text).lines().map(str::to_string));
        }
    }
    if lines.is_empty() {
        return None;
    }
    let start = lines.len().saturating_sub(LOG_TAIL_LINES);
    Some(lines[start..].join("\n"))
}

/// Open a file the worker wrote without following a symbolic link: a worker that replaced its
/// log with a link to the admin-token file must not get the token into its job's log tail.
pub fn open_nofollow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// The whole file if it is a regular file of at most `max` bytes.
fn read_capped(path: &Path, max: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let f = open_nofollow(path).ok()?;
    if f.metadata().ok()?.len() > max {
        return None;
    }
    let mut bytes = Vec::new();
    f.take(max).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// The last `max` bytes of a regular file.
fn read_end(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = open_nofollow(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut bytes = Vec::new();
    f.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Write a file atomically: temp file, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// `outcome` when what the job keeps could not be `verb` ("stored" in the object store, "kept"
/// as the job's directory): a success becomes a failure saying so; otherwise only logged.
fn not_kept(outcome: Outcome, job: &str, verb: &str, why: String) -> Outcome {
    if outcome.status != JobStatus::Succeeded {
        tracing::warn!(job, error = %why, "the job's logs could not be {verb}");
        return outcome;
    }
    Outcome {
        status: JobStatus::Failed,
        failure_reason: Some(format!(
            "compiled, but the artifacts could not be {verb}: {why}"
        )),
        ..outcome
    }
}

/// Move each target's bundle to `<job>/artifacts/<target>.tar.gz`, where downloads are served
/// from. The worker's report is untrusted: a bundle path is used only if it resolves inside
/// the job directory and is a regular file (no symlinks out to the database or tokens).
fn collect_bundles(dir: &Path, report: &CompileReport) {
    let Ok(root) = dir.canonicalize() else { return };
    let artifacts = dir.join("artifacts");
    if std::fs::create_dir_all(&artifacts).is_err() {
        return;
    }
    for entry in &report.targets {
        let (target, Some(bundle)) = (entry.target, entry.bundle.as_deref()) else {
            continue;
        };
        let candidate = if bundle.is_absolute() {
            bundle.to_path_buf()
        } else {
            dir.join(bundle)
        };
        let Ok(meta) = std::fs::symlink_metadata(&candidate) else {
            continue;
        };
        let inside = candidate.canonicalize().is_ok_and(|c| c.starts_with(&root));
        if meta.is_file() && inside {
            let _ = std::fs::rename(&candidate, artifacts.join(format!("{target}.tar.gz")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::queue;

    #[test]
    fn worker_output_is_read_bounded_and_never_through_links() {
        let d = std::env::temp_dir().join(format!("byom-runner-read-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let secret = d.join("admin-token");
        std::fs::write(&secret, "SECRET-TOKEN\n").unwrap();
        // A log replaced by a link to a server file, and a huge one: neither is read whole.
        std::os::unix::fs::symlink(&secret, d.join("log.txt")).unwrap();
        let mut big = "x".repeat(10 * LOG_TAIL_BYTES as usize);
        big.push_str("\nlast line\n");
        std::fs::write(d.join("worker.log"), big).unwrap();
        let tail = tail_of(&d).unwrap();
        assert!(!tail.contains("SECRET"), "{tail}");
        assert!(tail.ends_with("last line"));
        assert!(tail.len() <= LOG_TAIL_BYTES as usize);
        // result.json: none is no result; a link, or JSON that is not a report, fails the job
        assert_eq!(read_result(&d), Ok(None));
        std::os::unix::fs::symlink(&secret, d.join("result.json")).unwrap();
        assert!(read_result(&d).unwrap_err().contains("unreadable"));
        std::fs::remove_file(d.join("result.json")).unwrap();
        std::fs::write(d.join("result.json"), br#"{"targets":[]}"#).unwrap();
        let why = read_result(&d).unwrap_err();
        assert!(
            why.contains("not a compile report") && why.contains("missing field"),
            "{why}"
        );
        let report = CompileReport::job_failed(
            &[Target::Arm64Cpu],
            byom_compile::Failure::new(byom_compile::FailureKind::Forward, "boom"),
            vec![],
        );
        std::fs::write(d.join("result.json"), serde_json::to_vec(&report).unwrap()).unwrap();
        assert_eq!(read_result(&d), Ok(Some(report)));
        assert!(read_capped(&d.join("result.json"), 3).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    async fn sql(db: &Db, statement: &str) {
        sqlx::query(statement).execute(&db.pool).await.unwrap();
    }

    /// Wait (up to a minute: a hang guard, not a timing) until `check` holds.
    async fn eventually(what: &str, check: impl Fn() -> bool) {
        for _ in 0..1200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("still not the case after a minute: {what}");
    }

    async fn lease_until(db: &Db) -> i64 {
        sqlx::query("SELECT lease_until FROM jobs")
            .fetch_one(&db.pool)
            .await
            .unwrap()
            .get("lease_until")
    }

    async fn within_a_minute<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .unwrap_or_else(|_| panic!("{what}: still waiting after a minute"))
    }

    #[tokio::test]
    async fn the_lease_keeper_renews_reports_a_cancel_and_the_loss_once_then_stops() {
        let (q, db, _dir) = queue::test_support::queue_with_a_package("keeper").await;
        let q: Arc<dyn JobQueue> = Arc::new(q);
        let job = q
            .enqueue("t", "p", &[Target::X86_64Cpu], 16)
            .await
            .unwrap()
            .unwrap();
        // A one-second lease: renewed every third of a second.
        let lease = Lease {
            owner: "a".into(),
            seconds: 1,
        };
        q.claim(&lease).await.unwrap().unwrap();
        // As if the lease were about to run out: the keeper renews it.
        sql(&db, "UPDATE jobs SET lease_until = 0").await;
        let mut keeper = LeaseKeeper::start(Arc::clone(&q), job.id.clone(), lease.clone());
        within_a_minute("the lease renewed", async {
            while lease_until(&db).await == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(q.request_cancel(&job.id).await.unwrap());
        assert_eq!(
            within_a_minute("the cancel request", keeper.news()).await,
            LeaseNews::CancelRequested
        );
        // The reaper handed the job to another node.
        sql(&db, "UPDATE jobs SET lease_owner = 'b'").await;
        within_a_minute("the loss", keeper.lost()).await;
        assert_eq!(keeper.news().await, LeaseNews::Lost);
        // Work under a lost lease stops at once, and the keeper has stopped renewing.
        assert_eq!(
            keeper.while_held(std::future::pending::<()>()).await,
            Err(LeaseLost)
        );
        within_a_minute("the keeper's end", &mut keeper.task)
            .await
            .unwrap();
    }

    /// A worker whose lease is taken while it compiles kills the compile and records nothing:
    /// the job stays its new holder's.
    #[tokio::test]
    async fn a_lost_lease_kills_the_compile_and_records_nothing() {
        let (q, db, dir) = queue::test_support::queue_with_a_package("lost").await;
        let data = dir.0.clone();
        // The package's bytes (what they are does not matter: the "worker" never reads them).
        let sha = "ab".repeat(32);
        sql(
            &db,
            &format!("INSERT INTO blobs (sha256, size, created_at) VALUES ('{sha}', 1, 'x')"),
        )
        .await;
        sql(&db, &format!("UPDATE packages SET sha256 = '{sha}'")).await;
        std::fs::create_dir_all(data.join("blobs/ab")).unwrap();
        std::fs::write(data.join("blobs/ab").join(&sha), b"x").unwrap();
        // The compile child: says who it is, then takes "for ever".
        let exe = data.join("compile.sh");
        std::fs::write(&exe, "#!/bin/sh\necho $$ > pid.txt\nexec sleep 600\n").unwrap();
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let config = Config::resolve(crate::config::ServeArgs {
            data_dir: Some(data.clone()),
            lease_s: Some(1),
            ..Default::default()
        })
        .unwrap();
        let stores = Stores {
            blobs: Arc::new(
                crate::storage::FsBlobStore::new(
                    data.join("blobs"),
                    crate::storage::DiskBudget::new(None, 0),
                )
                .unwrap(),
            ),
            objects: None,
        };
        let runner = Runner::new(
            Arc::new(q),
            db.clone(),
            stores,
            Arc::new(config),
            exe,
            false,
            None,
        );
        let job = runner
            .queue
            .enqueue("t", "p", &[Target::X86_64Cpu], 16)
            .await
            .unwrap()
            .unwrap();
        let claimed = runner.queue.claim(&runner.lease).await.unwrap().unwrap();
        // Once the compile runs, the reaper hands the job to node "b".
        let pid_file = sandbox::attempt_dir(&data, &job.id, claimed.attempts).join("pid.txt");
        let thief = {
            let db = db.clone();
            tokio::spawn(async move {
                eventually("the compile started", || {
                    std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
                })
                .await;
                sql(&db, "UPDATE jobs SET lease_owner = 'b'").await;
                std::fs::read_to_string(&pid_file)
                    .unwrap()
                    .trim()
                    .to_string()
            })
        };
        let (_stop, shutdown) = watch::channel(false);
        within_a_minute(
            "the run after its lease was lost",
            runner.run(claimed, shutdown),
        )
        .await;
        let pid = thief.await.unwrap();
        assert!(
            !Path::new("/proc").join(&pid).exists(),
            "the compile (pid {pid}) outlived the lease"
        );
        let row = sqlx::query("SELECT status, lease_owner, finished_at FROM jobs")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(row.get::<String, _>("status"), "running");
        assert_eq!(row.get::<String, _>("lease_owner"), "b");
        assert_eq!(row.get::<Option<String>, _>("finished_at"), None);
    }
}
