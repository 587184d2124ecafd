//! The job queue seam: what the runner and the routes need from a queue, and its
//! implementation on the database ([`DbQueue`]), which serves both engines: on SQLite one
//! server claims jobs; on Postgres any number of servers and `byom-server worker` nodes share
//! the queue, claiming with `FOR UPDATE SKIP LOCKED`.
//!
//! Leases: a claim records its owner (a node id) and a lease end; the owner renews it with
//! [`JobQueue::heartbeat`] while the compile runs. Only the owner can record the end, so a job
//! whose lease ran out and was re-run elsewhere is never finished twice. [`JobQueue::reap`]
//! (every node runs it) re-queues jobs whose lease expired (their worker died) up to
//! `--job-attempts` claims, then fails them with a reason that says so.

use futures_util::future::BoxFuture;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{JobStatus, Target};
use crate::db::{Db, Engine};

/// One row of the `jobs` table.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: String,
    pub tenant_id: String,
    pub package_id: String,
    pub status: JobStatus,
    pub targets: Vec<Target>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub failure_reason: Option<String>,
    pub result_json: Option<String>,
    pub log_tail: Option<String>,
    /// How many times a worker claimed it (1 on its first run).
    pub attempts: i64,
}

/// How a job ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: JobStatus,
    pub failure_reason: Option<String>,
    pub result_json: Option<String>,
    pub log_tail: Option<String>,
}

/// Who holds a claim, and for how long each renewal lasts.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The node's id (host, process and a random part).
    pub owner: String,
    pub seconds: u64,
}

impl Lease {
    /// The lease's end if renewed now, in Unix seconds.
    fn until(&self) -> i64 {
        unix_now().saturating_add(i64::try_from(self.seconds).unwrap_or(i64::MAX))
    }
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// Still ours; renewed.
    Held,
    /// Still ours, and someone asked to cancel it (possibly through another API server).
    CancelRequested,
    /// Not ours any more (the lease ran out and the reaper took it): stop, record nothing.
    Lost,
}

/// What one pass of the reaper did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reaped {
    pub requeued: u64,
    pub failed: u64,
    pub cancelled: u64,
}

pub trait JobQueue: Send + Sync + 'static {
    /// Add a job unless `max_queued` jobs are already waiting; `None` when the queue is full.
    /// The count and the insert are one step for every node (no check-then-insert race).
    fn enqueue<'a>(
        &'a self,
        tenant: &'a str,
        package_id: &'a str,
        targets: &'a [Target],
        max_queued: u64,
    ) -> BoxFuture<'a, Result<Option<JobRow>, sqlx::Error>>;
    /// Take the oldest queued job, mark it running and hold a lease on it.
    fn claim<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<Option<JobRow>, sqlx::Error>>;
    /// Renew the lease on a running job.
    fn heartbeat<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<Heartbeat, sqlx::Error>>;
    /// Record how a running job ended, if this lease still holds it; `false` if not.
    fn finish<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
        outcome: Outcome,
    ) -> BoxFuture<'a, Result<bool, sqlx::Error>>;
    /// Cancel a job that has not started; `false` if it was not queued.
    fn cancel_queued<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, sqlx::Error>>;
    /// Ask the node running a job to stop it (it sees this with its next heartbeat); `false`
    /// if it is not running.
    fn request_cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, sqlx::Error>>;
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
    fn counts(&self) -> BoxFuture<'_, Result<Vec<(JobStatus, i64)>, sqlx::Error>>;
    /// Embedded server only (one node): after a restart, jobs left `running` by the dead
    /// server are marked failed. Returns how many. A cluster node never calls this: other
    /// nodes' jobs are running; expired leases are the reaper's.
    fn fail_orphans(&self) -> BoxFuture<'_, Result<u64, sqlx::Error>>;
    /// Re-queue (up to `max_attempts` claims) or fail running jobs whose lease expired.
    fn reap(&self, max_attempts: u32) -> BoxFuture<'_, Result<Reaped, sqlx::Error>>;
    /// The state of any job, whichever tenant's (`None`: no such job). For the start-up sweep
    /// of job directories.
    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<JobStatus>, sqlx::Error>>;
}

/// The queue in the `jobs` table, on either engine.
pub struct DbQueue {
    db: Db,
}

impl DbQueue {
    pub fn new(db: Db) -> DbQueue {
        DbQueue { db }
    }

    /// [`JobQueue::reap`] as if it were `now` (Unix seconds).
    pub async fn reap_at(&self, max_attempts: u32, now: i64) -> Result<Reaped, sqlx::Error> {
        let at = crate::ids::now();
        // Asked to cancel and then lost its worker: cancelled is what was asked for.
        let cancelled = sqlx::query(
                "UPDATE jobs SET status = 'cancelled', finished_at = $1, lease_owner = NULL, lease_until = NULL,
                   failure_reason = 'cancelled; its worker stopped renewing its lease meanwhile'
                 WHERE status = 'running' AND lease_until < $2 AND cancel_requested != 0",
            )
            .bind(&at)
            .bind(now)
            .execute(&self.db.pool)
            .await?
            .rows_affected();
        let requeued = sqlx::query(
                "UPDATE jobs SET status = 'queued', started_at = NULL, lease_owner = NULL, lease_until = NULL
                 WHERE status = 'running' AND lease_until < $1 AND attempts < $2",
            )
            .bind(now)
            .bind(i64::from(max_attempts))
            .execute(&self.db.pool)
            .await?
            .rows_affected();
        // A job that lost its worker this often is likely what kills it: not retried.
        let failed = sqlx::query(
                "UPDATE jobs SET status = 'failed', finished_at = $1, lease_owner = NULL, lease_until = NULL,
                   failure_reason = 'its worker stopped renewing its lease (the worker host died or the worker was killed) on each of '
                     || attempts || ' attempts; not retried again, submit it again'
                 WHERE status = 'running' AND lease_until < $2",
            )
            .bind(&at)
            .bind(now)
            .execute(&self.db.pool)
            .await?
            .rows_affected();
        Ok(Reaped {
            requeued,
            failed,
            cancelled,
        })
    }
}

/// Key of the Postgres advisory lock that makes "count queued jobs, then insert" one step
/// across nodes ("byomqueu" in ASCII).
const QUEUE_LOCK_KEY: i64 = 0x6279_6f6d_7175_6575;

/// Now in Unix seconds (lease ends are compared as numbers; nodes' clocks must agree to well
/// within a lease, which NTP gives).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

const COLUMNS: &str = "id, tenant_id, package_id, status, targets_json, created_at, started_at, finished_at, failure_reason, result_json, log_tail, attempts";

fn row_to_job(row: &AnyRow) -> JobRow {
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
        attempts: row.get("attempts"),
    }
}

impl JobQueue for DbQueue {
    fn enqueue<'a>(
        &'a self,
        tenant: &'a str,
        package_id: &'a str,
        targets: &'a [Target],
        max_queued: u64,
    ) -> BoxFuture<'a, Result<Option<JobRow>, sqlx::Error>> {
        Box::pin(async move {
            let id = crate::ids::new_id("job");
            let targets_json = serde_json::to_string(targets).unwrap_or_else(|_| "[]".into());
            let mut tx = self.db.pool.begin().await?;
            if self.db.engine == Engine::Postgres {
                // Under READ COMMITTED two nodes could both count 15 of 16 and both insert:
                // the lock makes count-and-insert one step for the whole cluster. (SQLite has
                // one writer at a time, which does the same.)
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(QUEUE_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
            }
            // Count and insert in one statement, so concurrent requests cannot overfill the queue.
            let done = sqlx::query(
                "INSERT INTO jobs (id, tenant_id, package_id, status, targets_json, created_at)
                 SELECT $1, $2, $3, 'queued', $4, $5
                 WHERE (SELECT COUNT(*) FROM jobs WHERE status = 'queued') < $6",
            )
            .bind(&id)
            .bind(tenant)
            .bind(package_id)
            .bind(&targets_json)
            .bind(crate::ids::now())
            .bind(i64::try_from(max_queued).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            if done.rows_affected() == 0 {
                return Ok(None);
            }
            self.get(tenant, &id).await
        })
    }

    fn claim<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<Option<JobRow>, sqlx::Error>> {
        Box::pin(async move {
            // Postgres: a row another node is claiming right now is skipped, not waited for.
            // SQLite: one writer at a time; the outer `status = 'queued'` re-checks the row.
            let pick = match self.db.engine {
                Engine::Postgres => "SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, rowid LIMIT 1 FOR UPDATE SKIP LOCKED",
                Engine::Sqlite => "SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, rowid LIMIT 1",
            };
            let row = sqlx::query(&format!(
                "UPDATE jobs SET status = 'running', started_at = $1, lease_owner = $2,
                   lease_until = $3, attempts = attempts + 1, cancel_requested = 0
                 WHERE id = ({pick}) AND status = 'queued'
                 RETURNING {COLUMNS}"
            ))
            .bind(crate::ids::now())
            .bind(&lease.owner)
            .bind(lease.until())
            .fetch_optional(&self.db.pool)
            .await?;
            Ok(row.as_ref().map(row_to_job))
        })
    }

    fn heartbeat<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<Heartbeat, sqlx::Error>> {
        Box::pin(async move {
            let row = sqlx::query(
                "UPDATE jobs SET lease_until = $1
                 WHERE id = $2 AND status = 'running' AND lease_owner = $3
                 RETURNING cancel_requested",
            )
            .bind(lease.until())
            .bind(id)
            .bind(&lease.owner)
            .fetch_optional(&self.db.pool)
            .await?;
            Ok(match row {
                None => Heartbeat::Lost,
                Some(r) if r.get::<i64, _>("cancel_requested") != 0 => Heartbeat::CancelRequested,
                Some(_) => Heartbeat::Held,
            })
        })
    }

    fn finish<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
        outcome: Outcome,
    ) -> BoxFuture<'a, Result<bool, sqlx::Error>> {
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE jobs SET status = $1, finished_at = $2, failure_reason = $3, result_json = $4,
                   log_tail = $5, lease_owner = NULL, lease_until = NULL
                 WHERE id = $6 AND status = 'running' AND lease_owner = $7",
            )
            .bind(outcome.status)
            .bind(crate::ids::now())
            .bind(outcome.failure_reason)
            .bind(outcome.result_json)
            .bind(outcome.log_tail)
            .bind(id)
            .bind(&lease.owner)
            .execute(&self.db.pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn request_cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, sqlx::Error>> {
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = $1 AND status = 'running'",
            )
            .bind(id)
            .execute(&self.db.pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn reap(&self, max_attempts: u32) -> BoxFuture<'_, Result<Reaped, sqlx::Error>> {
        Box::pin(self.reap_at(max_attempts, unix_now()))
    }

    fn cancel_queued<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, sqlx::Error>> {
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE jobs SET status = 'cancelled', finished_at = $1, failure_reason = 'cancelled before it started'
                 WHERE id = $2 AND status = 'queued'",
            )
            .bind(crate::ids::now())
            .bind(id)
            .execute(&self.db.pool)
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
                "SELECT {COLUMNS} FROM jobs WHERE id = $1 AND tenant_id = $2"
            ))
            .bind(id)
            .bind(tenant)
            .fetch_optional(&self.db.pool)
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
                "SELECT {COLUMNS} FROM jobs WHERE package_id = $1 AND tenant_id = $2 ORDER BY created_at DESC, rowid DESC"
            ))
            .bind(package_id)
            .bind(tenant)
            .fetch_all(&self.db.pool)
            .await?;
            Ok(rows.iter().map(row_to_job).collect())
        })
    }

    fn counts(&self) -> BoxFuture<'_, Result<Vec<(JobStatus, i64)>, sqlx::Error>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
                .fetch_all(&self.db.pool)
                .await?;
            Ok(rows.iter().map(|r| (r.get("status"), r.get("n"))).collect())
        })
    }

    fn fail_orphans(&self) -> BoxFuture<'_, Result<u64, sqlx::Error>> {
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE jobs SET status = 'failed', finished_at = $1,
                   failure_reason = 'the server stopped while this job was running; submit it again'
                 WHERE status = 'running'",
            )
            .bind(crate::ids::now())
            .execute(&self.db.pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<JobStatus>, sqlx::Error>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT status FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.db.pool)
                .await?;
            Ok(row.map(|r| r.get("status")))
        })
    }
}

/// A queue on a throwaway SQLite database holding tenant `t` and its package `p`, for the
/// queue's and the runner's tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::DbQueue;
    use crate::db::Db;

    /// Removes the test's directory when the test ends, passed or not.
    pub struct TempDir(pub std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub async fn queue_with_a_package(name: &str) -> (DbQueue, Db, TempDir) {
        let dir = std::env::temp_dir().join(format!("byom-queue-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let guard = TempDir(dir.clone());
        let db = crate::db::open(&crate::db::DatabaseUrl::default_for(&dir))
            .await
            .unwrap();
        for sql in [
            "INSERT INTO tenants (id, created_at) VALUES ('t', 'x')",
            "INSERT INTO blobs (sha256, size, created_at) VALUES ('s', 1, 'x')",
            "INSERT INTO packages (id, tenant_id, name, sha256, size, created_at, report_json) VALUES ('p', 't', 'n', 's', 1, 'x', '{}')",
        ] {
            sqlx::query(sql).execute(&db.pool).await.unwrap();
        }
        (DbQueue::new(db.clone()), db, guard)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::queue_with_a_package;
    use super::*;

    fn lease(owner: &str) -> Lease {
        Lease {
            owner: owner.into(),
            seconds: 30,
        }
    }

    /// A dead worker's job is re-queued once its lease runs out, the dead worker can no longer
    /// record an end, and a job that loses its worker on every attempt is failed, saying why.
    #[tokio::test]
    async fn expired_leases_are_requeued_then_failed_and_never_finished_twice() {
        let (q, _db, _dir) = queue_with_a_package("lease").await;
        let targets = vec![Target::X86_64Cpu];
        let job = q.enqueue("t", "p", &targets, 16).await.unwrap().unwrap();
        let (a, b) = (lease("a"), lease("b"));
        let claimed = q.claim(&a).await.unwrap().unwrap();
        assert_eq!(
            (claimed.id.as_str(), claimed.attempts),
            (job.id.as_str(), 1)
        );
        assert!(q.claim(&b).await.unwrap().is_none(), "claimed twice");
        assert_eq!(q.heartbeat(&job.id, &a).await.unwrap(), Heartbeat::Held);
        assert_eq!(q.heartbeat(&job.id, &b).await.unwrap(), Heartbeat::Lost);
        // Not expired yet: nothing to reap.
        assert_eq!(q.reap_at(2, unix_now()).await.unwrap(), Reaped::default());
        let later = unix_now() + 31;
        let r = q.reap_at(2, later).await.unwrap();
        assert_eq!(r.requeued, 1);
        assert_eq!(q.heartbeat(&job.id, &a).await.unwrap(), Heartbeat::Lost);
        let second = q.claim(&b).await.unwrap().unwrap();
        assert_eq!(second.attempts, 2);
        let done = Outcome {
            status: JobStatus::Succeeded,
            failure_reason: None,
            result_json: None,
            log_tail: None,
        };
        assert!(
            !q.finish(&job.id, &a, done.clone()).await.unwrap(),
            "the dead worker finished it"
        );
        let r = q.reap_at(2, later + 31).await.unwrap();
        assert_eq!(r.failed, 1);
        let failed = q.get("t", &job.id).await.unwrap().unwrap();
        assert_eq!(failed.status, JobStatus::Failed);
        let reason = failed.failure_reason.unwrap();
        assert!(
            reason.contains("stopped renewing its lease") && reason.contains("2 attempts"),
            "{reason}"
        );
        assert!(!q.finish(&job.id, &b, done).await.unwrap());
    }

    #[tokio::test]
    async fn a_cancel_reaches_the_worker_through_its_heartbeat_and_the_queue_limit_holds() {
        let (q, _db, _dir) = queue_with_a_package("cancel").await;
        let targets = vec![Target::X86_64Cpu];
        let job = q.enqueue("t", "p", &targets, 1).await.unwrap().unwrap();
        assert!(
            q.enqueue("t", "p", &targets, 1).await.unwrap().is_none(),
            "queue of 1 overfilled"
        );
        let a = lease("a");
        q.claim(&a).await.unwrap().unwrap();
        assert!(q.request_cancel(&job.id).await.unwrap());
        assert_eq!(
            q.heartbeat(&job.id, &a).await.unwrap(),
            Heartbeat::CancelRequested
        );
        // Its worker died before it could act on the cancel: cancelled, not re-run.
        let r = q.reap_at(2, unix_now() + 31).await.unwrap();
        assert_eq!(r.cancelled, 1);
        assert_eq!(
            q.get("t", &job.id).await.unwrap().unwrap().status,
            JobStatus::Cancelled
        );
    }
}
