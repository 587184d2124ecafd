//! The database: which engine (`--database sqlite:PATH|postgres://…`), opening it, migrations,
//! and the cluster-wide lock that quota checks and blob commits take.
//!
//! One code path: every query goes through sqlx's `any` driver with `$N` placeholders, which
//! both SQLite and Postgres read. What the engines do differently (claiming a job, locking)
//! is chosen by [`Engine`] in the few places that need it. Queries are runtime `sqlx::query`
//! calls (no compile-time checked macros), so building needs no database.
//!
//! Migrations: `server/migrations/` for SQLite (the embedded default, unchanged) and
//! `server/migrations-postgres/` for Postgres, kept in step by a test (same versions and
//! names; the e2e tests compare the resulting columns).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

/// The database engine behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// One file beside the data; one server process (the embedded default).
    Sqlite,
    /// Shared by any number of API servers and workers (the cluster).
    Postgres,
}

/// Where the database is, as `--database` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite:PATH` (or `sqlite://PATH`): created if missing.
    Sqlite(PathBuf),
    /// `postgres://user:password@host:port/db` (or `postgresql://`), passed to sqlx as is.
    Postgres(String),
}

impl DatabaseUrl {
    /// The embedded default: `<data_dir>/byom.db`.
    pub fn default_for(data_dir: &Path) -> DatabaseUrl {
        DatabaseUrl::Sqlite(data_dir.join("byom.db"))
    }

    pub fn engine(&self) -> Engine {
        match self {
            DatabaseUrl::Sqlite(_) => Engine::Sqlite,
            DatabaseUrl::Postgres(_) => Engine::Postgres,
        }
    }

    /// For logs: the engine and where, never the password.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(p) => format!("sqlite:{}", p.display()),
            DatabaseUrl::Postgres(url) => match url.split_once('@') {
                Some((_, host)) => format!("postgres://…@{host}"),
                None => url.clone(),
            },
        }
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<DatabaseUrl, String> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(s.to_string()));
        }
        if let Some(rest) = s.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err("sqlite: needs a file path, e.g. sqlite:data/byom.db".into());
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        Err(format!(
            "{s:?} is not a database URL; use sqlite:PATH or postgres://user:password@host/db"
        ))
    }
}

/// The open database.
#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub engine: Engine,
    locks: Arc<tokio::sync::Mutex<()>>,
}

/// Open (creating if needed) the database and bring its schema up to date. Several nodes may
/// start at once on one Postgres: sqlx's migrator holds an advisory lock while it migrates.
pub async fn open(url: &DatabaseUrl) -> Result<Db, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let pool = match url {
        DatabaseUrl::Sqlite(path) => {
            let options =
                AnyConnectOptions::from_str(&format!("sqlite://{}?mode=rwc", path.display()))?;
            let pool = AnyPoolOptions::new()
                .max_connections(8)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        // WAL: readers never block the writer, and `token create` can run
                        // beside the server. FULL: a committed transaction survives power loss,
                        // which "atomic" promises.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await?;
            sqlx::migrate!("./migrations").run(&pool).await?;
            pool
        }
        DatabaseUrl::Postgres(url) => {
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(std::time::Duration::from_secs(30))
                .connect(url)
                .await?;
            sqlx::migrate!("./migrations-postgres").run(&pool).await?;
            pool
        }
    };
    Ok(Db {
        pool,
        engine: url.engine(),
        locks: Arc::default(),
    })
}

/// Key of the Postgres advisory lock that serialises blob commits, deletes and quota checks
/// across every node (an arbitrary constant, "byomblob" in ASCII).
const BLOB_LOCK_KEY: i64 = 0x6279_6f6d_626c_6f62;

/// Held while a quota is checked and a blob committed or deleted: one at a time in this
/// process (a mutex) and, on Postgres, in the whole cluster (a session advisory lock on a
/// connection kept for the guard's lifetime).
pub struct BlobGuard {
    _local: tokio::sync::OwnedMutexGuard<()>,
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
}

impl Db {
    /// Take the blob lock (see [`BlobGuard`]).
    pub async fn blob_lock(&self) -> Result<BlobGuard, sqlx::Error> {
        let local = Arc::clone(&self.locks).lock_owned().await;
        let conn = match self.engine {
            Engine::Sqlite => None,
            Engine::Postgres => {
                let mut conn = self.pool.acquire().await?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(BLOB_LOCK_KEY)
                    .execute(&mut *conn)
                    .await?;
                Some(conn)
            }
        };
        Ok(BlobGuard {
            _local: local,
            conn,
        })
    }
}

impl Drop for BlobGuard {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        // Unlock on the same session before the connection goes back to the pool; if that
        // cannot run, the connection is closed instead, which ends the session and its lock.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                        .bind(BLOB_LOCK_KEY)
                        .execute(&mut *conn)
                        .await;
                    if unlocked.is_err() {
                        conn.close_on_drop();
                    }
                });
            }
            Err(_) => conn.close_on_drop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_name_the_engine() {
        assert_eq!(
            "sqlite:data/byom.db".parse::<DatabaseUrl>().unwrap(),
            DatabaseUrl::Sqlite("data/byom.db".into())
        );
        assert_eq!(
            "sqlite:///abs/byom.db".parse::<DatabaseUrl>().unwrap(),
            DatabaseUrl::Sqlite("/abs/byom.db".into())
        );
        let pg = "postgres://byom:secret@db:5432/byom"
            .parse::<DatabaseUrl>()
            .unwrap();
        assert_eq!(pg.engine(), Engine::Postgres);
        assert!(!pg.redacted().contains("secret"));
        assert!("mysql://x".parse::<DatabaseUrl>().is_err());
        assert!("sqlite:".parse::<DatabaseUrl>().is_err());
    }

    /// The two migration sets are kept in step: the same versions with the same names, so a
    /// schema change cannot land for one engine only.
    #[test]
    fn migrations_are_in_step_for_both_engines() {
        let names = |dir: &str| -> Vec<String> {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            let mut v: Vec<String> = std::fs::read_dir(&root)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect();
            v.sort();
            v
        };
        let sqlite = names("migrations");
        assert!(sqlite.len() >= 3, "{sqlite:?}");
        assert_eq!(sqlite, names("migrations-postgres"));
    }
}
