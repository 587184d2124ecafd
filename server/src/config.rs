//! Server configuration: flags, `BYOM_*` environment variables and an optional TOML file.
//!
//! Precedence: flag / environment variable > config file > built-in default. Every limit the
//! server enforces is a named setting here with its default written next to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// `byom-server serve` flags. All optional so that a config file can fill what flags leave out.
#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the real address is printed).
    #[arg(long, env = "BYOM_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the database, package blobs, uploads and jobs [default: ./data].
    #[arg(long, env = "BYOM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database: `sqlite:PATH` (one server; the default is `<data-dir>/byom.db`) or
    /// `postgres://user:password@host/db`, shared by any number of `serve` and `worker` nodes.
    #[arg(long, env = "BYOM_DATABASE")]
    pub database: Option<crate::db::DatabaseUrl>,
    /// Where package bytes, artifacts and job logs live: `file:DIR` (package blobs in DIR on
    /// this machine; the default is `<data-dir>/blobs`) or `s3://bucket/prefix`, an
    /// S3-compatible store shared by any number of `serve` and `worker` nodes, each with only a
    /// local `--data-dir` for scratch. Endpoint, region and credentials: the `AWS_*` variables
    /// (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP).
    #[arg(long, env = "BYOM_STORAGE")]
    pub storage: Option<crate::objects::StorageUrl>,
    /// Size of the parts an upload is sent to an s3:// store in, in MiB (5 to 256); one part
    /// is held in memory per upload receiving at once [default: 8].
    #[arg(long, env = "BYOM_STORAGE_PART_MIB")]
    pub storage_part_mib: Option<u64>,
    /// Directory of the portal page served at `/` [default: web].
    #[arg(long, env = "BYOM_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// TOML file with any of these settings (keys as the flags, with `_` for `-`).
    #[arg(long, env = "BYOM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Largest accepted upload in bytes [default: 8 GiB].
    #[arg(long, env = "BYOM_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<u64>,
    /// Compile jobs run at the same time [default: 1]. `serve --workers 0` serves the API only
    /// (needs a postgres:// database and `byom-server worker` nodes to run the jobs).
    #[arg(long, env = "BYOM_WORKERS")]
    pub workers: Option<usize>,
    /// Seconds a worker's claim on a job lasts without a heartbeat; a job whose worker died is
    /// re-queued or failed this long after its last heartbeat [default: 30].
    #[arg(long, env = "BYOM_LEASE_S")]
    pub lease_s: Option<u64>,
    /// Claims a job may have before a lost worker fails it instead of re-queueing it (a model
    /// that kills its worker host must not loop for ever) [default: 2].
    #[arg(long, env = "BYOM_JOB_ATTEMPTS")]
    pub job_attempts: Option<u32>,
    /// Most queued (not yet running) jobs; more are refused with 503 [default: 16].
    #[arg(long, env = "BYOM_QUEUE_SIZE")]
    pub queue_size: Option<u64>,
    /// Wall-time limit of one compile job in seconds [default: 1800].
    #[arg(long, env = "BYOM_JOB_TIMEOUT_S")]
    pub job_timeout_s: Option<u64>,
    /// Memory cap of a worker process (RLIMIT_DATA) in MiB [default: 8192]; a worker briefly
    /// runs a second process under the same cap (an isolated load-time candidate, isolate.rs).
    #[arg(long, env = "BYOM_WORKER_MEMORY_MB")]
    pub worker_memory_mb: Option<u64>,
    /// Seconds an upload may send nothing before it is dropped (not a total limit) [default: 60].
    #[arg(long, env = "BYOM_IDLE_TIMEOUT_S")]
    pub idle_timeout_s: Option<u64>,
    /// Seconds a resumable upload may go without new bytes before it is deleted [default: 86400].
    #[arg(long, env = "BYOM_UPLOAD_EXPIRY_S")]
    pub upload_expiry_s: Option<u64>,
    /// Oldest torch that must load uploaded models ("major.minor") [default: the core's default].
    #[arg(long, env = "BYOM_REQUIRED_TORCH")]
    pub required_torch: Option<String>,
    /// JSON file with the validation settings (byom_core::Settings).
    #[arg(long, env = "BYOM_SETTINGS")]
    pub settings: Option<PathBuf>,
    /// Bytes each tenant may store unless its own quota says otherwise [default: 100 GiB].
    #[arg(long, env = "BYOM_DEFAULT_QUOTA_BYTES")]
    pub default_quota_bytes: Option<u64>,
    // --- connection and per-job disk limits (hardening) ---
    /// Seconds a client may take to send a request's line and headers; also how long an idle
    /// keep-alive connection is kept [default: 15].
    #[arg(long, env = "BYOM_HEADER_READ_TIMEOUT_S")]
    pub header_read_timeout_s: Option<u64>,
    /// Most open client connections; at the limit the server stops accepting until one closes
    /// [default: 512].
    #[arg(long, env = "BYOM_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Fixed part of a compile job's disk allowance in MiB (largest file and whole job directory)
    /// [default: 4096].
    #[arg(long, env = "BYOM_JOB_DISK_MB")]
    pub job_disk_mb: Option<u64>,
    /// Part of a job's disk allowance that grows with its package: this many times the package's
    /// size is added to --job-disk-mb [default: 16].
    #[arg(long, env = "BYOM_JOB_DISK_PER_PACKAGE")]
    pub job_disk_per_package: Option<u64>,
    // --- end of connection and per-job disk limits ---
    /// Python with torch, torchvision and timm that rebuilds state dicts with their library's
    /// own constructor, in the sandboxed worker; checked at start (without one, state dicts
    /// fail to compile with a message saying so) [default: python3 on PATH].
    #[arg(long, env = "BYOM_PYTHON")]
    pub python: Option<PathBuf>,
    /// TEST ONLY: pretend the disk is full once the data directory holds this many bytes.
    #[arg(long, env = "BYOM_TEST_DISK_LIMIT", hide = true)]
    pub test_disk_limit: Option<u64>,
    /// TEST ONLY: every worker sleeps this long before compiling (to test kills and queues).
    #[arg(long, env = "BYOM_TEST_WORKER_DELAY_MS", hide = true)]
    pub test_worker_delay_ms: Option<u64>,
    // --- audit of refused requests (admin scope) ---
    /// Audit rows per minute for refused (401/403) requests, per tenant and for anonymous
    /// callers; the rest are counted into one summary row [default: 30].
    #[arg(long, env = "BYOM_AUDIT_AUTH_FAILURES_PER_MINUTE")]
    pub audit_auth_failures_per_minute: Option<u32>,
    /// Most audit rows of refused requests kept; the oldest are deleted [default: 10000].
    #[arg(long, env = "BYOM_AUDIT_AUTH_FAILURES_MAX_ROWS")]
    pub audit_auth_failures_max_rows: Option<u64>,

    // --- Upload resources per tenant (see docs/security.md) ---
    /// Resumable uploads a tenant may have open at once; more are refused with 429 [default: 4].
    #[arg(long, env = "BYOM_MAX_OPEN_UPLOADS_PER_TENANT")]
    pub max_open_uploads_per_tenant: Option<u64>,
    /// Upload requests (PUT or PATCH) of one tenant receiving at once; more get 429 [default: 4].
    #[arg(long, env = "BYOM_MAX_CONCURRENT_UPLOADS_PER_TENANT")]
    pub max_concurrent_uploads_per_tenant: Option<u64>,
    /// Upload requests of all tenants receiving at once; more get 429 [default: 64].
    #[arg(long, env = "BYOM_MAX_CONCURRENT_UPLOADS")]
    pub max_concurrent_uploads: Option<u64>,
    /// Free bytes on the data disk that uploads may never use, so deletes, expiry and the
    /// database keep working when it fills; uploads get 507 instead [default: 64 MiB].
    #[arg(long, env = "BYOM_DISK_RESERVE_BYTES")]
    pub disk_reserve_bytes: Option<u64>,
}

/// The same settings as read from a `--config` TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database: Option<String>,
    storage: Option<String>,
    storage_part_mib: Option<u64>,
    web_dir: Option<PathBuf>,
    max_upload_bytes: Option<u64>,
    workers: Option<usize>,
    lease_s: Option<u64>,
    job_attempts: Option<u32>,
    queue_size: Option<u64>,
    job_timeout_s: Option<u64>,
    worker_memory_mb: Option<u64>,
    idle_timeout_s: Option<u64>,
    upload_expiry_s: Option<u64>,
    required_torch: Option<String>,
    settings: Option<PathBuf>,
    default_quota_bytes: Option<u64>,
    // --- audit of refused requests (admin scope) ---
    audit_auth_failures_per_minute: Option<u32>,
    audit_auth_failures_max_rows: Option<u64>,
    // Upload resources per tenant.
    max_open_uploads_per_tenant: Option<u64>,
    max_concurrent_uploads_per_tenant: Option<u64>,
    max_concurrent_uploads: Option<u64>,
    disk_reserve_bytes: Option<u64>,
    // connection and per-job disk limits (hardening)
    header_read_timeout_s: Option<u64>,
    max_connections: Option<usize>,
    job_disk_mb: Option<u64>,
    job_disk_per_package: Option<u64>,
    python: Option<PathBuf>,
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database: crate::db::DatabaseUrl,
    pub storage: crate::objects::StorageUrl,
    /// Part size of multipart uploads to an s3:// store (bytes held per upload).
    pub storage_part_mib: u64,
    pub web_dir: PathBuf,
    pub max_upload_bytes: u64,
    pub workers: usize,
    pub lease_s: u64,
    pub job_attempts: u32,
    pub queue_size: u64,
    pub job_timeout_s: u64,
    pub worker_memory_mb: u64,
    pub idle_timeout_s: u64,
    pub upload_expiry_s: u64,
    pub default_quota_bytes: u64,
    pub settings: byom_core::Settings,
    // --- connection and per-job disk limits (hardening) ---
    /// Time limit for a request's line and headers (and for an idle keep-alive connection).
    pub header_read_timeout_s: u64,
    /// Most open client connections.
    pub max_connections: usize,
    /// A compile job may use `job_disk_mb` MiB + `job_disk_per_package` × its package's size,
    /// for its largest file and for its whole directory (see `jobs::disk`).
    pub job_disk_mb: u64,
    pub job_disk_per_package: u64,
    // --- end of connection and per-job disk limits ---
    /// The configured Python for state dicts (`None`: python3 on PATH).
    pub python: Option<PathBuf>,
    pub test_disk_limit: Option<u64>,
    pub test_worker_delay_ms: Option<u64>,
    // --- audit of refused requests (admin scope) ---
    pub audit_auth_failures_per_minute: u32,
    pub audit_auth_failures_max_rows: u64,
    // Upload resources per tenant.
    pub max_open_uploads_per_tenant: u64,
    pub max_concurrent_uploads_per_tenant: u64,
    pub max_concurrent_uploads: u64,
    pub disk_reserve_bytes: u64,
}

/// Why the configuration could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("invalid settings file {path}: {source}")]
    Settings {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid --required-torch {0:?}: expected major.minor, e.g. 2.11")]
    Torch(String),
    #[error("--workers 0 (API only) needs a shared database (--database postgres://…) and `byom-server worker` nodes; with SQLite give --workers 1 or more")]
    Workers,
    #[error("invalid --database: {0}")]
    Database(String),
    #[error("invalid --storage: {0}")]
    Storage(String),
    #[error("--storage-part-mib must be 5 to 256 (S3 parts are at least 5 MiB; one is held in memory per upload)")]
    StoragePart,
    #[error("--max-connections must be at least 1")]
    MaxConnections,
    #[error("--job-disk-mb must be at least 1")]
    JobDisk,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl Config {
    pub fn resolve(args: ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                toml::from_str::<FileConfig>(&read(path)?).map_err(|e| ConfigError::Toml {
                    path: path.clone(),
                    message: e.to_string(),
                })?
            }
            None => FileConfig::default(),
        };
        let settings_path = args.settings.or(file.settings);
        let mut settings = match &settings_path {
            Some(path) => {
                serde_json::from_str::<byom_core::Settings>(&read(path)?).map_err(|source| {
                    ConfigError::Settings {
                        path: path.clone(),
                        source,
                    }
                })?
            }
            None => byom_core::Settings::default(),
        };
        if let Some(torch) = args.required_torch.or(file.required_torch) {
            settings.required_torch = match torch.parse() {
                Ok(v) => v,
                Err(_) => return Err(ConfigError::Torch(torch)),
            };
        }
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("data"));
        let database = match (args.database, file.database) {
            (Some(d), _) => d,
            (None, Some(s)) => s.parse().map_err(ConfigError::Database)?,
            (None, None) => crate::db::DatabaseUrl::default_for(&data_dir),
        };
        let storage = match (args.storage, file.storage) {
            (Some(s), _) => s,
            (None, Some(s)) => s.parse().map_err(ConfigError::Storage)?,
            (None, None) => crate::objects::StorageUrl::File(data_dir.join("blobs")),
        };
        let storage_part_mib = args.storage_part_mib.or(file.storage_part_mib).unwrap_or(8);
        if !(crate::objects::PART_MIB_MIN..=crate::objects::PART_MIB_MAX)
            .contains(&storage_part_mib)
        {
            return Err(ConfigError::StoragePart);
        }
        let workers = args.workers.or(file.workers).unwrap_or(1);
        if workers == 0 && database.engine() == crate::db::Engine::Sqlite {
            return Err(ConfigError::Workers);
        }
        // Connection and per-job disk limits (hardening).
        let max_connections = args.max_connections.or(file.max_connections).unwrap_or(512);
        if max_connections == 0 {
            return Err(ConfigError::MaxConnections);
        }
        let job_disk_mb = args.job_disk_mb.or(file.job_disk_mb).unwrap_or(4096);
        if job_disk_mb == 0 {
            return Err(ConfigError::JobDisk);
        }
        Ok(Config {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir,
            database,
            storage,
            storage_part_mib,
            web_dir: args
                .web_dir
                .or(file.web_dir)
                .unwrap_or_else(|| PathBuf::from("web")),
            max_upload_bytes: args
                .max_upload_bytes
                .or(file.max_upload_bytes)
                .unwrap_or(8 * GIB),
            workers,
            lease_s: args.lease_s.or(file.lease_s).unwrap_or(30).max(1),
            job_attempts: args.job_attempts.or(file.job_attempts).unwrap_or(2).max(1),
            queue_size: args.queue_size.or(file.queue_size).unwrap_or(16),
            job_timeout_s: args.job_timeout_s.or(file.job_timeout_s).unwrap_or(1800),
            worker_memory_mb: args
                .worker_memory_mb
                .or(file.worker_memory_mb)
                .unwrap_or(8192),
            idle_timeout_s: args
                .idle_timeout_s
                .or(file.idle_timeout_s)
                .unwrap_or(60)
                .max(1),
            upload_expiry_s: args
                .upload_expiry_s
                .or(file.upload_expiry_s)
                .unwrap_or(24 * 3600)
                .max(1),
            default_quota_bytes: args
                .default_quota_bytes
                .or(file.default_quota_bytes)
                .unwrap_or(100 * GIB),
            settings,
            header_read_timeout_s: args
                .header_read_timeout_s
                .or(file.header_read_timeout_s)
                .unwrap_or(15)
                .max(1),
            max_connections,
            job_disk_mb,
            job_disk_per_package: args
                .job_disk_per_package
                .or(file.job_disk_per_package)
                .unwrap_or(16),
            python: args.python.or(file.python),
            test_disk_limit: args.test_disk_limit,
            test_worker_delay_ms: args.test_worker_delay_ms,
            // --- audit of refused requests (admin scope) ---
            audit_auth_failures_per_minute: args
                .audit_auth_failures_per_minute
                .or(file.audit_auth_failures_per_minute)
                .unwrap_or(30),
            audit_auth_failures_max_rows: args
                .audit_auth_failures_max_rows
                .or(file.audit_auth_failures_max_rows)
                .unwrap_or(10_000),
            // Upload resources per tenant; a limit of 0 would refuse every upload, so 1 is the least.
            max_open_uploads_per_tenant: args
                .max_open_uploads_per_tenant
                .or(file.max_open_uploads_per_tenant)
                .unwrap_or(4)
                .max(1),
            max_concurrent_uploads_per_tenant: args
                .max_concurrent_uploads_per_tenant
                .or(file.max_concurrent_uploads_per_tenant)
                .unwrap_or(4)
                .max(1),
            max_concurrent_uploads: args
                .max_concurrent_uploads
                .or(file.max_concurrent_uploads)
                .unwrap_or(64)
                .max(1),
            disk_reserve_bytes: args
                .disk_reserve_bytes
                .or(file.disk_reserve_bytes)
                .unwrap_or(64 * MIB),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::StorageUrl;

    #[test]
    fn storage_defaults_to_the_data_directory_and_parts_are_bounded() {
        let args = ServeArgs {
            data_dir: Some("d".into()),
            ..Default::default()
        };
        let config = Config::resolve(args).unwrap();
        assert_eq!(config.storage, StorageUrl::File("d/blobs".into()));
        assert_eq!(config.storage_part_mib, 8);
        for bad in [4, 257] {
            let args = ServeArgs {
                storage_part_mib: Some(bad),
                ..Default::default()
            };
            assert!(matches!(
                Config::resolve(args),
                Err(ConfigError::StoragePart)
            ));
        }
    }
}
