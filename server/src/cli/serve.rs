//! `byom-server serve`: start-up (directories, database, admin token, crash recovery), the
//! HTTP server and the job runner, and graceful shutdown on SIGTERM / Ctrl-C. Also the
//! `byom-server worker` node of a cluster, which shares the start-up ([`Node`]) but serves no
//! HTTP.
//!
//! The HTTP accept loop is our own ([`serve_http`]) rather than `axum::serve`, which has neither
//! a limit on how long a client may take to send its request headers nor on how many
//! connections are open: 1100 clients each sending half a request line held 1100 file
//! descriptors for ever, and with the usual limit of 1024 the server could no longer accept
//! `/healthz`, open its database or a blob.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use sqlx::Row;

use crate::app::{router, AppState};
use crate::config::{Config, ServeArgs};
use crate::db::{Db, Engine};
use crate::jobs::queue::{DbQueue, JobQueue};
use crate::jobs::runner::Runner;
use crate::objects::{S3Store, StorageUrl};
use crate::storage::{BlobStore, DiskBudget, FsBlobStore, Stores};

pub fn run(args: ServeArgs) -> ExitCode {
    init_logging();
    let config = match Config::resolve(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("byom-server: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "byom-server stopped");
            eprintln!("byom-server: {e}");
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr; `BYOM_LOG` sets the filter (default `info`), `BYOM_LOG_FORMAT=json`
/// switches to one JSON object per line.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BYOM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if std::env::var("BYOM_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// What every node runs, whichever its role: the database, the blob store, the queue, and
/// the runner with its compile slots (`--workers`, possibly none) and the lease reaper.
struct Node {
    db: Db,
    config: Arc<Config>,
    store: Arc<dyn BlobStore>,
    objects: Option<Arc<S3Store>>,
    budget: Arc<DiskBudget>,
    queue: Arc<dyn JobQueue>,
    runner: Arc<Runner>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    async fn start(config: Config) -> Result<Node, Box<dyn std::error::Error>> {
        let data = config.data_dir.clone();
        for sub in ["tmp", "uploads", "jobs", "blobs"] {
            std::fs::create_dir_all(data.join(sub))?;
        }
        let db = crate::db::open(&config.database).await?;
        let objects = match &config.storage {
            StorageUrl::File(_) => None,
            StorageUrl::S3 { bucket, prefix } => {
                let s3 = S3Store::new(bucket, prefix, config.storage_part_mib)?;
                s3.check().await.map_err(|e| {
                    format!("cannot use --storage {}: {e}", config.storage.describe())
                })?;
                Some(Arc::new(s3))
            }
        };
        recover(&db, &config, objects.as_deref()).await?;
        let budget = DiskBudget::new(config.test_disk_limit, crate::storage::dir_size(&data));
        let blob_dir = match &config.storage {
            StorageUrl::File(dir) => dir.clone(),
            StorageUrl::S3 { .. } => data.join("blobs"),
        };
        let store: Arc<dyn BlobStore> = Arc::new(FsBlobStore::new(blob_dir, Arc::clone(&budget))?);
        match &objects {
            None => sweep_blobs(&db, store.as_ref()).await?,
            Some(s3) => sweep_objects(&db, s3, &config).await?,
        }
        let queue: Arc<dyn JobQueue> = Arc::new(DbQueue::new(db.clone()));
        // One node owns an SQLite database: whatever it left running died with it. On a shared
        // database the other nodes' jobs are running right now; a dead node's jobs are the
        // reaper's once their leases run out.
        if db.engine == Engine::Sqlite {
            let orphans = queue.fail_orphans().await?;
            if orphans > 0 {
                tracing::warn!(
                    jobs = orphans,
                    "marked jobs left running by a previous server as failed"
                );
            }
        }
        // After fail_orphans: a killed server's jobs are `failed` now, so their package copies
        // and scratch go; jobs still queued or running are left alone.
        let swept = crate::jobs::disk::sweep(queue.as_ref(), &data).await?;
        if swept != crate::jobs::disk::Swept::default() {
            tracing::info!(
                cleaned = swept.cleaned,
                removed = swept.removed,
                "cleaned job directories left by a previous server"
            );
        }
        let netns = config.workers > 0 && crate::jobs::sandbox::probe_netns();
        if config.workers > 0 && !netns {
            tracing::warn!(
                "cannot create network namespaces here: compile workers will run WITH network access"
            );
        }
        if config.workers > 0 && crate::jobs::confine::kernel_abi() == 0 {
            tracing::warn!(
                "this kernel has no Landlock: compile workers can read every file the server's user can (database, tokens, other tenants' packages); run the server as its own user with a data directory only it can read"
            );
        }
        // Checked here that it exists; whether it imports torch, torchvision and timm is checked
        // by the first job (importing torch takes seconds, which every start would pay).
        let python = crate::backend::python_path(config.python.as_deref());
        if config.workers > 0 {
            match &python {
                Ok(p) => {
                    tracing::info!(python = %p.display(), "state dicts are rebuilt with this Python")
                }
                Err(e) => tracing::warn!("state dicts will not compile: {e}"),
            }
        }
        let exe = std::env::current_exe()?;
        let config = Arc::new(config);
        let runner = Runner::new(
            Arc::clone(&queue),
            db.clone(),
            Stores {
                blobs: Arc::clone(&store),
                objects: objects.clone(),
            },
            Arc::clone(&config),
            exe,
            netns,
            python.ok(),
        );
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = runner.start(stop_rx.clone());
        tasks.push(runner.start_reaper(stop_rx));
        tracing::info!(node = %runner.lease.owner, database = %config.database.redacted(), storage = %config.storage.describe(), workers = config.workers, lease_s = config.lease_s, "node started");
        Ok(Node {
            db,
            config,
            store,
            objects,
            budget,
            queue,
            runner,
            stop,
            tasks,
        })
    }

    /// Stop the compile slots (a running job ends `failed`, "the server shut down") and close
    /// the database.
    async fn stop(self) {
        tracing::info!("shutting down: stopping workers");
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.db.pool.close().await;
    }
}

/// The multi-threaded runtime both roles run on; a start-up failure is exit code 2.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("byom-server: cannot start the runtime: {e}");
            ExitCode::from(2)
        })
}

/// `byom-server worker --database postgres://…`: a node that only runs compile jobs.
pub fn run_worker(args: ServeArgs) -> ExitCode {
    init_logging();
    let config = match Config::resolve(args) {
        Ok(c) if c.database.engine() == Engine::Sqlite => {
            eprintln!("byom-server: a separate worker needs a shared database (--database postgres://…); the embedded server (`serve`) runs its own workers");
            return ExitCode::from(2);
        }
        Ok(c) if c.workers == 0 => {
            eprintln!("byom-server: a worker needs --workers 1 or more");
            return ExitCode::from(2);
        }
        Ok(c) => c,
        Err(e) => {
            eprintln!("byom-server: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let run = async {
        let node = Node::start(config).await?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "worker {} ready", node.runner.lease.owner)?;
            out.flush()?;
        }
        shutdown_signal().await;
        node.stop().await;
        Ok::<(), Box<dyn std::error::Error>>(())
    };
    match rt.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "byom-server worker stopped");
            eprintln!("byom-server: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let node = Node::start(config).await?;
    let config = Arc::clone(&node.config);
    let data = config.data_dir.clone();
    let token_file =
        crate::auth::bootstrap_admin(&node.db.pool, &data, std::env::var("BYOM_ADMIN_TOKEN").ok())
            .await?;
    let state = AppState {
        db: node.db.pool.clone(),
        database: node.db.clone(),
        config: Arc::clone(&config),
        store: Arc::clone(&node.store),
        objects: node.objects.clone(),
        budget: Arc::clone(&node.budget),
        metrics: Arc::default(),
        queue: Arc::clone(&node.queue),
        runner: Arc::clone(&node.runner),
        uploads: Arc::default(),
        auth_failures: Arc::default(),
    };
    let max_connections = connection_limit(config.max_connections);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        match &token_file {
            Some(path) => writeln!(out, "admin token file: {}", path.display())?,
            None => writeln!(out, "admin token: from BYOM_ADMIN_TOKEN")?,
        }
        out.flush()?;
    }
    let sweeper = tokio::spawn(sweep_uploads(state.clone()));
    tracing::info!(%addr, data_dir = %data.display(), web_dir = %config.web_dir.display(), workers = config.workers, netns = node.runner.netns, landlock_abi = crate::jobs::confine::kernel_abi(), "byom-server listening");
    let limits = HttpLimits {
        header_read_timeout: Duration::from_secs(config.header_read_timeout_s),
        max_connections,
    };
    serve_http(listener, router(state), limits, shutdown_signal()).await;
    sweeper.abort();
    node.stop().await;
    Ok(())
}

/// Limits of the HTTP accept loop.
#[derive(Debug, Clone, Copy)]
struct HttpLimits {
    /// A client must have sent its whole request line and headers this long after the
    /// connection is accepted (or after its previous response, so this is also how long an idle
    /// keep-alive connection lives). Bodies are not covered: uploads have `--idle-timeout-s`.
    header_read_timeout: Duration,
    /// Connections served at once.
    max_connections: usize,
}

/// File descriptors kept free of client connections: the database, blobs being read or
/// written, upload temp files, worker logs, the listener.
const FD_RESERVE: u64 = 256;
/// How long shutdown waits for requests in flight before it stops anyway.
const DRAIN: Duration = Duration::from_secs(30);

/// Raise the soft open-files limit to the hard one (a connection is a descriptor; the usual soft
/// limit of 1024 is a default, not a policy) and return how many connections to serve at most:
/// `configured`, lowered (with a warning) if the descriptors would not suffice.
#[allow(unsafe_code)] // getrlimit / setrlimit
fn connection_limit(configured: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write to / read from a valid rlimit on our stack.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return configured;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    };
    let fit = usize::try_from(soft.saturating_sub(FD_RESERVE))
        .unwrap_or(usize::MAX)
        .max(1);
    if configured > fit {
        tracing::warn!(
            max_connections = configured,
            open_files_limit = soft,
            using = fit,
            "--max-connections does not fit the open-files limit (RLIMIT_NOFILE) with {FD_RESERVE} descriptors kept for the server; raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower --max-connections"
        );
        return fit;
    }
    configured
}

/// Serve HTTP/1 on `listener` until `shutdown` resolves, then let requests in flight finish
/// (at most [`DRAIN`]).
///
/// At `max_connections` the loop stops accepting rather than accepting and closing: new
/// clients wait in the kernel's listen backlog, which costs the server no descriptor, and are
/// served as soon as a connection ends; since a connection that has not sent its headers is
/// closed after `header_read_timeout`, a flood of half-sent requests delays other clients by
/// at most that long instead of locking them out for good.
async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break, // never closed
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // A header-read timeout, a client that went away, a malformed request.
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => {
            tracing::warn!("requests still running {} s after the shutdown signal; stopping anyway", DRAIN.as_secs());
        }
    }
}

/// An `accept` that failed: a connection that died before it was accepted is skipped; running
/// out of descriptors or memory is waited out (the loop retries) instead of ending the server.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %e, "cannot accept a connection; retrying shortly");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Crash recovery: temp files of interrupted uploads are deleted (they were never visible),
/// resumable uploads whose file is gone are forgotten.
///
/// On a shared database the data directory is shared too, and other nodes are receiving
/// uploads right now: only temp files nobody wrote to for twice `--idle-timeout-s` go (an
/// upload that sends nothing for that long has been dropped).
///
/// With an object store, resumable uploads' bytes are there, not in `<data>/uploads`: the rows
/// stay (expiry removes abandoned ones).
async fn recover(
    db: &Db,
    config: &Config,
    objects: Option<&S3Store>,
) -> Result<(), Box<dyn std::error::Error>> {
    let tmp = config.data_dir.join("tmp");
    let idle = Duration::from_secs(config.idle_timeout_s.saturating_mul(2));
    let mut removed = 0u32;
    for entry in std::fs::read_dir(&tmp)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let stale = match db.engine {
            Engine::Sqlite => true,
            Engine::Postgres => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > idle),
        };
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(files = removed, "removed temp files of interrupted uploads");
    }
    if objects.is_some() {
        return Ok(());
    }
    let uploads = sqlx::query("SELECT id FROM uploads")
        .fetch_all(&db.pool)
        .await?;
    for row in uploads {
        let id: String = row.get("id");
        if !config
            .data_dir
            .join("uploads")
            .join(format!("{id}.part"))
            .exists()
        {
            sqlx::query("DELETE FROM uploads WHERE id = $1")
                .bind(&id)
                .execute(&db.pool)
                .await?;
        }
    }
    Ok(())
}

/// Blobs no package references (a crash between rename and commit, or between a delete's
/// commit and the file removal) are removed; rows never point at missing bytes. Under the blob
/// lock, so that on a shared database no other node is between its rename and its commit.
async fn sweep_blobs(db: &Db, store: &dyn BlobStore) -> Result<(), Box<dyn std::error::Error>> {
    let _guard = db.blob_lock().await?;
    for sha in store.list()? {
        let bytes = sha.clone();
        remove_if_unreferenced(db, &sha, async move { store.delete(&bytes) }).await?;
    }
    Ok(())
}

/// Blob `sha`'s bytes (through `delete`, which runs only then) and then its row go unless a
/// package references it; for either store. The caller holds the blob lock.
async fn remove_if_unreferenced(
    db: &Db,
    sha: &str,
    delete: impl std::future::Future<Output = std::io::Result<()>>,
) -> Result<(), Box<dyn std::error::Error>> {
    if crate::service::packages::blob_referenced(&db.pool, sha).await? {
        return Ok(());
    }
    tracing::info!(sha256 = %sha, "removing unreferenced blob");
    delete.await?;
    sqlx::query("DELETE FROM blobs WHERE sha256 = $1")
        .bind(sha)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// [`sweep_blobs`] for an object store, plus what interrupted requests left there: `tmp/`
/// objects (a valid upload between its completion and its commit) and the parts of resumable
/// uploads whose row is gone, once nobody has written them for twice `--idle-timeout-s` (other
/// nodes are uploading right now). Blobs are removed under the blob lock, like on disk.
async fn sweep_objects(
    db: &Db,
    objects: &S3Store,
    config: &Config,
) -> Result<(), Box<dyn std::error::Error>> {
    let idle = chrono_age(config.idle_timeout_s.saturating_mul(2));
    {
        let _guard = db.blob_lock().await?;
        for meta in objects.list_area("blobs").await? {
            let Some(sha) = meta.location.filename().map(str::to_string) else {
                continue;
            };
            remove_if_unreferenced(db, &sha, objects.delete(&meta.location)).await?;
        }
    }
    for meta in objects.list_area("tmp").await? {
        if meta.last_modified < idle {
            objects.delete(&meta.location).await?;
        }
    }
    for meta in objects.list_area("uploads").await? {
        // …/uploads/<id>/<offset>
        let parts: Vec<String> = meta
            .location
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        let Some(id) = parts.len().checked_sub(2).map(|i| parts[i].clone()) else {
            continue;
        };
        let open = sqlx::query("SELECT 1 FROM uploads WHERE id = $1")
            .bind(&id)
            .fetch_optional(&db.pool)
            .await?;
        if open.is_none() && meta.last_modified < idle {
            objects.delete(&meta.location).await?;
        }
    }
    Ok(())
}

/// The instant `seconds` ago, as object listings give times.
fn chrono_age(seconds: u64) -> chrono::DateTime<chrono::Utc> {
    let secs = i64::try_from(seconds).unwrap_or(i64::MAX / 2);
    chrono::Utc::now() - chrono::TimeDelta::try_seconds(secs).unwrap_or(chrono::TimeDelta::zero())
}

/// Expire abandoned resumable uploads, at start-up and then every so often (often enough that
/// nothing outlives its expiry by more than half of it, at most every five minutes).
async fn sweep_uploads(state: AppState) {
    let every = Duration::from_secs((state.config.upload_expiry_s / 2).clamp(1, 300));
    loop {
        match crate::service::uploads::expire_stale(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "expired abandoned resumable uploads"),
            Err(e) => tracing::warn!(error = %e, "could not expire abandoned uploads"),
        }
        tokio::time::sleep(every).await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received");
}

#[cfg(test)]
mod tests {
    #[test]
    #[allow(unsafe_code)] // getrlimit
    fn the_connection_limit_fits_the_raised_open_files_limit() {
        assert_eq!(super::connection_limit(1), 1);
        let fit = super::connection_limit(usize::MAX);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes to a valid rlimit on our stack.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, lim.rlim_max, "the soft limit was raised");
        let expected = lim.rlim_cur.saturating_sub(super::FD_RESERVE).max(1);
        assert_eq!(fit as u64, expected);
    }
}
