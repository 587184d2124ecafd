//! The SQLite database of the embedded server: opening, migrations, and the shared row types.
//!
//! Queries are runtime `sqlx::query` calls (no compile-time checked macros), so building needs
//! no database. The schema lives in `server/migrations/`, applied at start.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

/// Open (creating if needed) `<data_dir>/byom.db` and bring its schema up to date.
pub async fn open(data_dir: &Path) -> Result<SqlitePool, sqlx::Error> {
    let path = data_dir.join("byom.db");
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        // WAL: readers never block the writer, and `token create` can run beside the server.
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a committed transaction survives power loss, which "atomic" promises.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}
