//! Packages: upload (streamed, validated in the same pass), commit (also of resumable
//! uploads), list, find, delete, and the tenant's usage and quota.
//!
//! Identical bytes are stored once, but nothing tells one tenant that another uploaded them:
//! every upload is received and written to a temp file in full, validated, and answered with a
//! new package of the caller's own; only at commit is the temp file either renamed into the
//! blob store or removed because the blob exists. A tenant's quota counts its own packages'
//! sizes, shared or not, plus the declared length of each of its open resumable uploads (from
//! the moment it is created), so open uploads cannot take more disk than the quota.
//!
//! Refused uploads (413, 422, 507) are audited as `upload.reject`.

use axum::body::Body;
use sqlx::Row;

use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::ingest::{self, Allowance, IngestState, OverLimit};
use crate::jobs::queue::JobRow;
use crate::metrics::Metrics;
use crate::views::packages::{PackageState, PackageView};

/// The file name as given by the client, reduced to something safe to show and store.
pub fn clean_name(name: Option<&str>) -> Result<String, ApiError> {
    let raw = name.unwrap_or("model.tar.gz");
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw).trim();
    if base.is_empty() || base.len() > 255 || base.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "name must be a file name of 1 to 255 characters".into(),
        ));
    }
    Ok(base.to_string())
}

/// (bytes in use, quota) of a tenant.
pub async fn usage(state: &AppState, tenant: &str) -> Result<(u64, u64), ApiError> {
    let row = sqlx::query(
        "SELECT (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM packages WHERE tenant_id = $1) AS used,
                (SELECT quota_bytes FROM tenants WHERE id = $1) AS quota",
    )
    .bind(tenant)
    .fetch_one(&state.db)
    .await?;
    let used: i64 = row.get("used");
    let quota: Option<i64> = row.get("quota");
    let quota = quota.map_or(state.config.default_quota_bytes, |q| {
        u64::try_from(q).unwrap_or(0)
    });
    Ok((u64::try_from(used).unwrap_or(0), quota))
}

/// Bytes reserved by the tenant's open resumable uploads (their declared lengths), but for
/// `except` (an upload being completed, whose reservation becomes its package).
pub async fn open_reserved<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    tenant: &str,
    except: &str,
) -> Result<u64, ApiError> {
    let reserved: i64 = sqlx::query(
        "SELECT CAST(COALESCE(SUM(length), 0) AS BIGINT) AS n FROM uploads WHERE tenant_id = $1 AND id != $2",
    )
    .bind(tenant)
    .bind(except)
    .fetch_one(db)
    .await?
    .get("n");
    Ok(u64::try_from(reserved).unwrap_or(0))
}

/// (bytes stored or reserved by open resumable uploads, quota) of a tenant.
pub async fn usage_and_reserved(state: &AppState, tenant: &str) -> Result<(u64, u64), ApiError> {
    let (used, quota) = usage(state, tenant).await?;
    let reserved = open_reserved(&state.db, tenant, "").await?;
    Ok((used.saturating_add(reserved), quota))
}

/// The gate upload bytes pass before they are written (test budget, disk reserve).
pub fn disk_gate(state: &AppState) -> crate::storage::DiskGate {
    crate::storage::DiskGate {
        budget: state.budget.clone(),
        dir: state.config.data_dir.clone(),
        reserve: state.config.disk_reserve_bytes,
    }
}

/// Audit a refused upload (413, 422, 507): who tried what, and why it was refused. Best
/// effort: on a full disk the record itself may not fit, which must not turn a 507 into a 500.
pub async fn audit_rejected(
    state: &AppState,
    principal: &Principal,
    subject: &str,
    name: &str,
    error: &ApiError,
) {
    let status = error.status().as_u16();
    if !matches!(status, 413 | 422 | 507) {
        return;
    }
    let detail = format!(
        "name={name} status={status} error={}: {error}",
        error.code()
    );
    if let Err(e) = crate::audit::record(
        &state.db,
        Some(principal),
        crate::audit::Action::UploadReject,
        subject,
        &detail,
    )
    .await
    {
        tracing::warn!(error = %e, "could not audit a refused upload");
    }
}

/// What this request may still send: the smaller of the size limit and the quota left (open
/// resumable uploads' declared lengths count as used).
pub async fn allowance(
    state: &AppState,
    tenant: &str,
    already: u64,
) -> Result<Allowance, ApiError> {
    let (used, quota) = usage_and_reserved(state, tenant).await?;
    let limit = state.config.max_upload_bytes;
    let size_left = limit.saturating_sub(already);
    let quota_left = quota.saturating_sub(used).saturating_sub(already);
    Ok(if quota_left < size_left {
        Allowance {
            max_bytes: quota_left,
            over: OverLimit::Quota { quota, used },
        }
    } else {
        Allowance {
            max_bytes: size_left,
            over: OverLimit::Size { limit },
        }
    })
}

/// A fresh temp file in `<data>/tmp`.
pub fn temp_file(state: &AppState) -> Result<(std::path::PathBuf, std::fs::File), ApiError> {
    let path = state
        .config
        .data_dir
        .join("tmp")
        .join(crate::ids::new_id("upload"));
    let file = std::fs::File::create(&path).map_err(|e| {
        if crate::storage::is_disk_full(&e) {
            ApiError::DiskFull
        } else {
            ApiError::internal(format!("creating temp file: {e}"))
        }
    })?;
    Ok((path, file))
}

/// Remove a temp file and give its bytes back to the disk budget.
pub fn discard(state: &AppState, path: &std::path::Path) {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if std::fs::remove_file(path).is_ok() {
        state.budget.release(size);
    }
}

/// `PUT /api/v1/packages?name=…`: receive the raw `.tar.gz`, validating it as it arrives,
/// and store it as a package of the caller (or refuse it, audited).
pub async fn upload(
    state: &AppState,
    principal: &Principal,
    name: Option<&str>,
    content_length: Option<u64>,
    body: Body,
) -> Result<PackageView, ApiError> {
    principal.require(Role::Uploader)?;
    let name = clean_name(name)?;
    let result = receive_package(state, principal, &name, content_length, body).await;
    if let Err(e) = &result {
        audit_rejected(state, principal, "", &name, e).await;
    }
    result
}

async fn receive_package(
    state: &AppState,
    principal: &Principal,
    name: &str,
    content_length: Option<u64>,
    body: Body,
) -> Result<PackageView, ApiError> {
    let _permit = state
        .uploads
        .limiter
        .try_start(&state.config, &principal.tenant)?;
    let allowance = allowance(state, &principal.tenant, 0).await?;
    if let Some(len) = content_length {
        if len > allowance.max_bytes {
            Metrics::inc(&state.metrics.uploads_failed, 1);
            return Err(match allowance.over {
                OverLimit::Quota { quota, used } => ApiError::QuotaExceeded { quota, used },
                _ => ApiError::TooLarge {
                    limit: state.config.max_upload_bytes,
                },
            });
        }
    }
    let idle = std::time::Duration::from_secs(state.config.idle_timeout_s);
    if let Some(objects) = &state.objects {
        return receive_to_object(state, objects, principal, name, body, allowance, idle).await;
    }
    let (tmp, file) = temp_file(state)?;
    let fresh = IngestState::new(&state.config.settings);
    let (ingest_state, outcome) = ingest::receive(
        fresh,
        file,
        body,
        idle,
        allowance,
        disk_gate(state),
        std::future::pending(),
    )
    .await;
    Metrics::inc(&state.metrics.upload_bytes, ingest_state.bytes);
    if let Err(e) = outcome {
        discard(state, &tmp);
        Metrics::inc(&state.metrics.uploads_failed, 1);
        tracing::warn!(tenant = %principal.tenant, error = %e, "upload failed; nothing stored");
        return Err(e);
    }
    let size = ingest_state.bytes;
    let (report, sha256) = ingest_state.finish();
    commit(
        state,
        principal,
        name,
        Source::Put(&tmp),
        report,
        &sha256,
        size,
    )
    .await
}

/// A `PUT` with an object store: the bytes go to a multipart upload as they arrive, through
/// the same one-pass validation; the upload is completed (as `tmp/<id>`, then committed) only
/// for a valid package, and aborted otherwise, so nothing of a refused upload is ever visible.
async fn receive_to_object(
    state: &AppState,
    objects: &crate::objects::S3Store,
    principal: &Principal,
    name: &str,
    body: Body,
    allowance: Allowance,
    idle: std::time::Duration,
) -> Result<PackageView, ApiError> {
    let key = objects.tmp_key(&crate::ids::new_id("upload"));
    let writer = objects.writer(&key).await.map_err(ApiError::internal)?;
    let fresh = IngestState::new(&state.config.settings);
    let (ingest_state, writer, outcome) =
        ingest::receive_into(fresh, writer, body, idle, allowance, std::future::pending()).await;
    Metrics::inc(&state.metrics.upload_bytes, ingest_state.bytes);
    let size = ingest_state.bytes;
    let (report, sha256) = ingest_state.finish();
    let kept = match (outcome, writer) {
        (Ok(()), Some(w)) if report.valid => w.complete().await.map_err(ApiError::internal),
        (Ok(()), Some(w)) => {
            w.abort().await;
            Ok(()) // commit() answers 422 with the report
        }
        (Ok(()), None) => Err(ApiError::internal("upload pipeline lost its writer")),
        (Err(e), w) => {
            if let Some(w) = w {
                w.abort().await;
            }
            Err(e)
        }
    };
    if let Err(e) = kept {
        Metrics::inc(&state.metrics.uploads_failed, 1);
        tracing::warn!(tenant = %principal.tenant, error = %e, "upload failed; nothing stored");
        return Err(e);
    }
    commit(
        state,
        principal,
        name,
        Source::Object {
            key: &key,
            upload_id: None,
        },
        report,
        &sha256,
        size,
    )
    .await
}

/// Where the bytes being committed came from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// A `PUT`'s temp file.
    Put(&'a std::path::Path),
    /// A completed resumable upload: its row (and quota reservation) ends in the same
    /// transaction that creates the package.
    Resumable {
        id: &'a str,
        path: &'a std::path::Path,
    },
    /// With an object store: a completed upload object (`tmp/<id>`; none for a refused one),
    /// of a `PUT` or (`upload_id`) of a resumable upload.
    Object {
        key: &'a object_store::path::Path,
        upload_id: Option<&'a str>,
    },
}

impl Source<'_> {
    fn upload_id(&self) -> &str {
        match self {
            Source::Put(_)
            | Source::Object {
                upload_id: None, ..
            } => "",
            Source::Resumable { id, .. }
            | Source::Object {
                upload_id: Some(id),
                ..
            } => id,
        }
    }

    /// Remove the staged bytes (temp file or object); they never became a package.
    async fn discard(&self, state: &AppState) {
        match self {
            Source::Put(p) | Source::Resumable { path: p, .. } => discard(state, p),
            Source::Object { key, .. } => {
                if let Some(objects) = &state.objects {
                    if let Err(e) = objects.delete(key).await {
                        tracing::warn!(error = %e, %key, "could not remove a temp object; the next start removes it");
                    }
                }
            }
        }
    }

    /// Make the staged bytes the blob `sha256`.
    async fn store(&self, state: &AppState, sha256: &str) -> std::io::Result<()> {
        match (self, &state.objects) {
            (Source::Object { key, .. }, Some(objects)) => objects.commit_blob(key, sha256).await,
            (Source::Put(p) | Source::Resumable { path: p, .. }, _) => {
                let store = state.store.clone();
                let (tmp, sha) = (p.to_path_buf(), sha256.to_string());
                tokio::task::spawn_blocking(move || store.commit(&tmp, &sha))
                    .await
                    .map_err(std::io::Error::other)?
            }
            (Source::Object { .. }, None) => Err(std::io::Error::other("no object store")),
        }
    }
}

/// Whether a package of any tenant references blob `sha256` (ask under the blob lock for an
/// answer that holds until it is released).
pub async fn blob_referenced(db: &sqlx::AnyPool, sha256: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT 1 FROM packages WHERE sha256 = $1 LIMIT 1")
        .bind(sha256)
        .fetch_optional(db)
        .await?;
    Ok(row.is_some())
}

/// Remove a blob nothing references (the caller holds the blob lock).
async fn delete_blob(state: &AppState, sha256: &str) -> std::io::Result<()> {
    match &state.objects {
        Some(objects) => objects.delete_blob(sha256).await,
        None => state.store.delete(sha256),
    }
}

/// How a completed resumable upload ended, kept for `GET /api/v1/uploads/{id}`.
pub enum Verdict<'a> {
    Stored { package_id: &'a str },
    Refused(&'a ApiError),
}

/// End a completed resumable upload's row in `tx` and record its verdict (same transaction);
/// false when it is already gone (deleted while its last bytes arrived), which means nothing
/// may be stored.
async fn end_upload(
    tx: &mut sqlx::AnyConnection,
    principal: &Principal,
    source: Source<'_>,
    (name, size): (&str, u64),
    verdict: Verdict<'_>,
) -> Result<bool, ApiError> {
    let id = source.upload_id();
    if id.is_empty() {
        return Ok(true);
    }
    let gone = sqlx::query("DELETE FROM uploads WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if gone == 0 {
        return Ok(false);
    }
    let (package_id, status, error_json, outcome) = match verdict {
        Verdict::Stored { package_id } => (
            Some(package_id),
            201_i64,
            None,
            format!("package {package_id}"),
        ),
        Verdict::Refused(e) => (
            None,
            i64::from(e.status().as_u16()),
            serde_json::to_string(&e.body()).ok(),
            e.code().to_string(),
        ),
    };
    sqlx::query(
        "INSERT INTO upload_results (id, tenant_id, name, length, package_id, status, error_json, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(&principal.tenant)
    .bind(name)
    .bind(i64::try_from(size).map_err(ApiError::internal)?)
    .bind(package_id)
    .bind(status)
    .bind(error_json)
    .bind(crate::jobs::queue::unix_now())
    .execute(&mut *tx)
    .await?;
    crate::audit::record(
        &mut *tx,
        Some(principal),
        crate::audit::Action::UploadComplete,
        id,
        &outcome,
    )
    .await?;
    Ok(true)
}

fn deleted_meanwhile() -> ApiError {
    ApiError::Conflict("the upload was deleted while its last bytes arrived; nothing stored".into())
}

/// Turn a fully received, validated temp file into a package of the caller (or refuse it).
/// The temp file (and a resumable upload's row) is gone afterwards either way.
pub async fn commit(
    state: &AppState,
    principal: &Principal,
    name: &str,
    source: Source<'_>,
    report: byom_core::Report,
    sha256: &str,
    size: u64,
) -> Result<PackageView, ApiError> {
    if !report.valid {
        let errors = report.errors.len();
        let refused = ApiError::InvalidPackage(Box::new(report));
        let mut tx = state.db.begin().await?;
        let ended = end_upload(
            &mut tx,
            principal,
            source,
            (name, size),
            Verdict::Refused(&refused),
        )
        .await;
        source.discard(state).await;
        if !ended? {
            return Err(deleted_meanwhile());
        }
        tx.commit().await?;
        Metrics::inc(&state.metrics.uploads_rejected, 1);
        tracing::info!(tenant = %principal.tenant, name, errors, "upload rejected: invalid package; nothing stored");
        return Err(refused);
    }
    let report_json = serde_json::to_string(&report).map_err(ApiError::internal)?;
    let _guard = state.database.blob_lock().await?;
    // Quota again, now that concurrent uploads of this tenant are serialised: stored bytes plus
    // the other open uploads' reservations (this upload's own becomes the package).
    let (stored, quota) = usage(state, &principal.tenant).await?;
    let reserved = open_reserved(&state.db, &principal.tenant, source.upload_id()).await?;
    let used = stored.saturating_add(reserved);
    if used.saturating_add(size) > quota {
        // A PUT that lost a race with others of its tenant, or a resumable upload whose
        // tenant's quota was lowered after it reserved its length.
        source.discard(state).await;
        let refused = ApiError::QuotaExceeded { quota, used };
        let mut tx = state.db.begin().await?;
        let verdict = Verdict::Refused(&refused);
        if end_upload(&mut tx, principal, source, (name, size), verdict).await? {
            tx.commit().await?;
        }
        Metrics::inc(&state.metrics.uploads_failed, 1);
        return Err(refused);
    }
    if let Err(e) = source.store(state, sha256).await {
        source.discard(state).await;
        Metrics::inc(&state.metrics.uploads_failed, 1);
        return Err(if crate::storage::is_disk_full(&e) {
            ApiError::DiskFull
        } else {
            ApiError::internal(e)
        });
    }
    let id = crate::ids::new_id("pkg");
    let now = crate::ids::now();
    let size_i = i64::try_from(size).map_err(ApiError::internal)?;
    let mut tx = state.db.begin().await?;
    let verdict = Verdict::Stored { package_id: &id };
    if !end_upload(&mut tx, principal, source, (name, size), verdict).await? {
        drop(tx);
        // The bytes are in the blob store now: remove them unless a package has them (the
        // blob lock is held, so no other commit or delete of this blob runs meanwhile).
        if !blob_referenced(&state.db, sha256).await? {
            let _ = delete_blob(state, sha256).await;
        }
        return Err(deleted_meanwhile());
    }
    sqlx::query(
        "INSERT INTO blobs (sha256, size, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(sha256)
    .bind(size_i)
    .bind(&now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO packages (id, tenant_id, name, sha256, size, created_at, report_json) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(&principal.tenant)
    .bind(name)
    .bind(sha256)
    .bind(size_i)
    .bind(&now)
    .bind(&report_json)
    .execute(&mut *tx)
    .await?;
    crate::audit::record(
        &mut *tx,
        Some(principal),
        crate::audit::Action::PackageUpload,
        &id,
        &format!("name={name} size={size}"),
    )
    .await?;
    tx.commit().await?;
    Metrics::inc(&state.metrics.uploads_accepted, 1);
    tracing::info!(tenant = %principal.tenant, package = %id, name, size, "package stored");
    Ok(PackageView {
        id,
        name: name.to_string(),
        sha256: sha256.to_string(),
        size,
        created_at: now,
        status: PackageState::Stored,
        report: serde_json::to_value(&report).map_err(ApiError::internal)?,
    })
}

/// The tenant's packages, newest first.
pub async fn list(state: &AppState, tenant: &str) -> Result<Vec<PackageView>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, name, sha256, size, created_at, report_json FROM packages WHERE tenant_id = $1 ORDER BY created_at DESC, rowid DESC",
    )
    .bind(tenant)
    .fetch_all(&state.db)
    .await?;
    Ok(rows.iter().map(PackageView::of_row).collect())
}

/// A package of the caller's tenant (404 for anyone else's: not even its existence leaks).
pub async fn find(state: &AppState, tenant: &str, id: &str) -> Result<sqlx::any::AnyRow, ApiError> {
    sqlx::query("SELECT id, name, sha256, size, created_at, report_json FROM packages WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant)
        .fetch_optional(&state.db)
        .await?
        .ok_or(ApiError::NotFound("package"))
}

/// A package of the tenant and its jobs, newest first.
pub async fn get_with_jobs(
    state: &AppState,
    tenant: &str,
    id: &str,
) -> Result<(PackageView, Vec<JobRow>), ApiError> {
    let row = find(state, tenant, id).await?;
    let jobs = state.queue.for_package(tenant, id).await?;
    Ok((PackageView::of_row(&row), jobs))
}

/// Remove a package of the caller, its finished jobs and their artifacts; the bytes go only
/// when no package of any tenant references them any more.
pub async fn delete(state: &AppState, principal: &Principal, id: &str) -> Result<(), ApiError> {
    principal.require(Role::Uploader)?;
    let row = find(state, &principal.tenant, id).await?;
    let sha: String = row.get("sha256");
    let _guard = state.database.blob_lock().await?;
    let mut tx = state.db.begin().await?;
    let active: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM jobs WHERE package_id = $1 AND status IN ('queued', 'running')",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?
    .get("n");
    if active > 0 {
        return Err(ApiError::Conflict(
            "the package has queued or running jobs; cancel them first".into(),
        ));
    }
    let job_ids: Vec<String> = sqlx::query("SELECT id FROM jobs WHERE package_id = $1")
        .bind(id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.get("id"))
        .collect();
    sqlx::query("DELETE FROM jobs WHERE package_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM packages WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let others: i64 = sqlx::query("SELECT COUNT(*) AS n FROM packages WHERE sha256 = $1")
        .bind(&sha)
        .fetch_one(&mut *tx)
        .await?
        .get("n");
    if others == 0 {
        sqlx::query("DELETE FROM blobs WHERE sha256 = $1")
            .bind(&sha)
            .execute(&mut *tx)
            .await?;
    }
    crate::audit::record(
        &mut *tx,
        Some(principal),
        crate::audit::Action::PackageDelete,
        id,
        "",
    )
    .await?;
    tx.commit().await?;
    // Files go after the commit: a crash in between leaves only unreferenced files, which the
    // start-up sweep removes; never a row pointing at missing bytes.
    if others == 0 {
        if let Err(e) = delete_blob(state, &sha).await {
            tracing::warn!(error = %e, "could not remove an unreferenced blob; the next start removes it");
        }
    }
    for job in job_ids {
        let _ =
            std::fs::remove_dir_all(crate::jobs::sandbox::job_dir(&state.config.data_dir, &job));
        if let Some(objects) = &state.objects {
            if let Err(e) = objects.delete_prefix(&objects.job_prefix(&job)).await {
                tracing::warn!(error = %e, job, "could not remove a deleted job's artifacts from the object store");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::clean_name;

    #[test]
    fn names_are_reduced_to_a_safe_base_name() {
        assert_eq!(clean_name(None).unwrap(), "model.tar.gz");
        assert_eq!(clean_name(Some("../../x/y.tar.gz")).unwrap(), "y.tar.gz");
        assert_eq!(clean_name(Some("C:\\a\\b.tgz")).unwrap(), "b.tgz");
        assert!(clean_name(Some("a\nb")).is_err());
        assert!(clean_name(Some("dir/")).is_err());
        assert!(clean_name(Some(&"a".repeat(256))).is_err());
    }
}
