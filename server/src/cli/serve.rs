//! `byom-server serve`: start-up (directories, database, admin token, crash recovery), the
//! HTTP server and the job runner, and graceful shutdown on SIGTERM / Ctrl-C.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Row, SqlitePool};

use crate::app::{router, AppState};
use crate::config::{Config, ServeArgs};
use crate::jobs::queue::{JobQueue, SqliteQueue};
use crate::jobs::runner::Runner;
use crate::storage::{BlobStore, DiskBudget, FsBlobStore};

pub fn run(args: ServeArgs) -> ExitCode {
    init_logging();
    let config = match Config::resolve(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("byom-server: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("byom-server: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
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

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let data = config.data_dir.clone();
    for sub in ["tmp", "uploads", "jobs", "blobs"] {
        std::fs::create_dir_all(data.join(sub))?;
    }
    let db = crate::db::open(&data).await?;
    let token_file =
        crate::auth::bootstrap_admin(&db, &data, std::env::var("BYOM_ADMIN_TOKEN").ok()).await?;
    recover(&db, &config).await?;
    let budget = DiskBudget::new(config.test_disk_limit, crate::storage::dir_size(&data));
    let store: Arc<dyn BlobStore> =
        Arc::new(FsBlobStore::new(data.join("blobs"), Arc::clone(&budget))?);
    sweep_blobs(&db, store.as_ref()).await?;
    let queue: Arc<dyn JobQueue> = Arc::new(SqliteQueue::new(db.clone()));
    let orphans = queue.fail_orphans().await?;
    if orphans > 0 {
        tracing::warn!(
            jobs = orphans,
            "marked jobs left running by a previous server as failed"
        );
    }
    let netns = crate::jobs::sandbox::probe_netns();
    if !netns {
        tracing::warn!(
            "cannot create network namespaces here: compile workers will run WITH network access"
        );
    }
    let landlock_abi = crate::jobs::confine::kernel_abi();
    if landlock_abi == 0 {
        tracing::warn!(
            "this kernel has no Landlock: compile workers can read every file the server's user can (database, tokens, other tenants' packages); run the server as its own user with a data directory only it can read"
        );
    }
    let exe = std::env::current_exe()?;
    let config = Arc::new(config);
    let runner = Runner::new(
        Arc::clone(&queue),
        db.clone(),
        Arc::clone(&store),
        Arc::clone(&config),
        exe,
        netns,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = runner.start(stop_rx);
    let state = AppState {
        db: db.clone(),
        config: Arc::clone(&config),
        store,
        budget,
        metrics: Arc::default(),
        queue,
        runner,
        uploads: Arc::default(),
        blob_lock: Arc::default(),
        auth_failures: Arc::default(),
    };
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
    tracing::info!(%addr, data_dir = %data.display(), web_dir = %config.web_dir.display(), workers = config.workers, netns, landlock_abi, "byom-server listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    sweeper.abort();
    tracing::info!("shutting down: stopping workers");
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    db.close().await;
    Ok(())
}

/// Crash recovery: temp files of interrupted uploads are deleted (they were never visible),
/// resumable uploads whose file is gone are forgotten.
async fn recover(db: &SqlitePool, config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    let tmp = config.data_dir.join("tmp");
    let mut removed = 0u32;
    for entry in std::fs::read_dir(&tmp)? {
        let entry = entry?;
        if entry.file_type()?.is_file() && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(files = removed, "removed temp files of interrupted uploads");
    }
    let uploads = sqlx::query("SELECT id FROM uploads").fetch_all(db).await?;
    for row in uploads {
        let id: String = row.get("id");
        if !config
            .data_dir
            .join("uploads")
            .join(format!("{id}.part"))
            .exists()
        {
            sqlx::query("DELETE FROM uploads WHERE id = ?")
                .bind(&id)
                .execute(db)
                .await?;
        }
    }
    Ok(())
}

/// Blobs no package references (a crash between rename and commit, or between a delete's
/// commit and the file removal) are removed; rows never point at missing bytes.
async fn sweep_blobs(
    db: &SqlitePool,
    store: &dyn BlobStore,
) -> Result<(), Box<dyn std::error::Error>> {
    for sha in store.list()? {
        let used = sqlx::query("SELECT 1 FROM packages WHERE sha256 = ? LIMIT 1")
            .bind(&sha)
            .fetch_optional(db)
            .await?;
        if used.is_none() {
            tracing::info!(sha256 = %sha, "removing unreferenced blob");
            store.delete(&sha)?;
            sqlx::query("DELETE FROM blobs WHERE sha256 = ?")
                .bind(&sha)
                .execute(db)
                .await?;
        }
    }
    Ok(())
}

/// Expire abandoned resumable uploads, at start-up and then every so often (often enough that
/// nothing outlives its expiry by more than half of it, at most every five minutes).
async fn sweep_uploads(state: AppState) {
    let every = Duration::from_secs((state.config.upload_expiry_s / 2).clamp(1, 300));
    loop {
        match crate::routes::uploads::expire_stale(&state).await {
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
