//! The job queue seam: what the runner and the routes need from a queue, and the SQLite
//! implementation of the embedded server. A Postgres queue (`SELECT … FOR UPDATE SKIP LOCKED`)
//! can implement the same trait so that several servers share one queue.

use futures_util::future::BoxFuture;
use sqlx::{Row, SqlitePool};

/// One row of the `jobs` table.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: String,
    pub tenant_id: String,
    pub package_id: String,
    pub status: String,
    pub targets: Vec<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub failure_reason: Option<String>,
    pub result_json: Option<String>,
    pub log_tail: Option<String>,
}

/// How a job ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: &'static str,
    pub failure_reason: Option<String>,
    pub result_json: Option<String>,
    pub log_tail: Option<String>,
}

pub trait JobQueue: Send + Sync + 'static {
    /// Add a job unless `max_queued` jobs are already waiting; `None` when the queue is full.
    fn enqueue<'a>(
        &'a self,
        tenant: &'a str,
        package_id: &'a str,
        targets: &'a [String],
        max_queued: u64,
    ) -> BoxFuture<'a, Result<Option<JobRow>, sqlx::Error>>;
    /// Take the oldest queued job and mark it running.
    fn claim(&self) -> BoxFuture<'_, Result<Option<JobRow>, sqlx::Error>>;
    /// Record how a running job ended (only if it is still running).
    fn finish<'a>(
        &'a self,
        id: &'a str,
        outcome: Outcome,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>>;
    /// Cancel a job that has not started; `false` if it was not queued.
    fn cancel_queued<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, sqlx::Error>>;
    /// A job of this tenant.
    fn get<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<JobRow>, sqlx::Error>>;
    /// The jobs of one package of this tenant, newest first.
    fn for_package<'a>(
        &'a self,
        tenant: &'a str,
        package_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<JobRow>, sqlx::Error>>;
    /// Count jobs per state (for metrics).
    fn counts(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, sqlx::Error>>;
    /// After a restart: jobs left `running` by a dead server are marked failed. Returns how many.
    fn fail_orphans(&self) -> BoxFuture<'_, Result<u64, sqlx::Error>>;
    /// The state of any job, whichever tenant's (`None`: no such job). For the start-up sweep
    /// of job directories.
    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<String>, sqlx::Error>>;
}

pub struct SqliteQueue {
    db: SqlitePool,
}

impl SqliteQueue {
    pub fn new(db: SqlitePool) -> SqliteQueue {
        SqliteQueue { db }
    }
}

const COLUMNS: &str = "id, tenant_id, package_id, status, targets_json, created_at, started_at, finished_at, failure_reason, result_json, log_tail";

fn row_to_job(row: &sqlx::sqlite::SqliteRow) -> JobRow {
    let targets: String = row.get("targets_json");
    JobRow {
        id: row.get("id"),
        tenant_id: row.get("tenant_id"),
        package_id: row.get("package_id"),
        status: row.get("status"),
        targets: serde_json::from_str(&targets).unwrap_or_default(),
        created_at: row.get("created_at"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        failure_reason: row.get("failure_reason"),
        result_json: row.get("result_json"),
        log_tail: row.get("log_tail"),
    }
}

impl JobQueue for SqliteQueue {
    fn enqueue<'a>(
        &'a self,
        tenant: &'a str,
        package_id: &'a str,
        targets: &'a [String],
        max_queued: u64,
    ) -> BoxFuture<'a, Result<Option<JobRow>, sqlx::Error>> {
        Box::pin(async move {
            let id = crate::ids::new_id("job");
            let targets_json = serde_json::to_string(targets).unwrap_or_else(|_| "[]".into());
            // Count and insert in one statement, so concurrent requests cannot overfill the queue.
            let done = sqlx::query(
                "INSERT INTO jobs (id, tenant_id, package_id, status, targets_json, created_at)
                 SELECT ?, ?, ?, 'queued', ?, ?
                 WHERE (SELECT COUNT(*) FROM jobs WHERE status = 'queued') < ?",
            )
            .bind(&id)
            .bind(tenant)
            .bind(package_id)
            .bind(&targets_json)
            .bind(crate::ids::now())
            .bind(i64::try_from(max_queued).unwrap_or(i64::MAX))
            .execute(&self.db)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(None);
            }
            self.get(tenant, &id).await
        })
    }

    fn claim(&self) -> BoxFuture<'_, Result<Option<JobRow>, sqlx::Error>> {
        Box::pin(async move {
            let row = sqlx::query(&format!(
                "UPDATE jobs SET status = 'running', started_at = ?
                 WHERE id = (SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, rowid LIMIT 1)
                   AND status = 'queued'
                 RETURNING {COLUMNS}"
            ))
            .bind(crate::ids::now())
            .fetch_optional(&self.db)
            .await?;
            Ok(row.as_ref().map(row_to_job))
        })
    }

    fn finish<'a>(
        &'a self,
        id: &'a str,
        outcome: Outcome,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            sqlx::query(
                "UPDATE jobs SET status = ?, finished_at = ?, failure_reason = ?, result_json = ?, log_tail = ?
                 WHERE id = ? AND status = 'running'",
            )
            .bind(outcome.status)
            .bind(crate::ids::now())
            .bind(outcome.failure_reason)
            .bind(outcome.result_json)
            .bind(outcome.log_tail)
            .bind(id)
            .execute(&self.db)
            .await?;
            Ok(())
        })
    }

    fn cancel_queued<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, sqlx::Error>> {
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, failure_reason = 'cancelled before it started'
                 WHERE id = ? AND status = 'queued'",
            )
            .bind(crate::ids::now())
            .bind(id)
            .execute(&self.db)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn get<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<JobRow>, sqlx::Error>> {
        Box::pin(async move {
            let row = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE id = ? AND tenant_id = ?"
            ))
            .bind(id)
            .bind(tenant)
            .fetch_optional(&self.db)
            .await?;
            Ok(row.as_ref().map(row_to_job))
        })
    }

    fn for_package<'a>(
        &'a self,
        tenant: &'a str,
        package_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<JobRow>, sqlx::Error>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE package_id = ? AND tenant_id = ? ORDER BY created_at DESC, rowid DESC"
            ))
            .bind(package_id)
            .bind(tenant)
            .fetch_all(&self.db)
            .await?;
            Ok(rows.iter().map(row_to_job).collect())
        })
    }

    fn counts(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, sqlx::Error>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
                .fetch_all(&self.db)
                .await?;
            Ok(rows.iter().map(|r| (r.get("status"), r.get("n"))).collect())
        })
    }

    fn fail_orphans(&self) -> BoxFuture<'_, Result<u64, sqlx::Error>> {
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE jobs SET status = 'failed', finished_at = ?,
                   failure_reason = 'the server stopped while this job was running; submit it again'
                 WHERE status = 'running'",
            )
            .bind(crate::ids::now())
            .execute(&self.db)
            .await?;
            Ok(done.rows_affected())
        })
    }

    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<String>, sqlx::Error>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT status FROM jobs WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.db)
                .await?;
            Ok(row.map(|r| r.get("status")))
        })
    }
}
