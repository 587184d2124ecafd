-- byom-server schema v1. Timestamps are RFC 3339 UTC strings; ids are prefixed random hex.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,            -- the tenant's name, a slug
    quota_bytes INTEGER,                     -- NULL: the server's default quota
    created_at  TEXT NOT NULL
);

CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    role         TEXT NOT NULL CHECK (role IN ('viewer', 'uploader', 'admin')),
    token_sha256 TEXT NOT NULL UNIQUE,       -- the secret itself is never stored
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);

-- Content-addressed bytes, shared by every package (of any tenant) with the same sha256.
CREATE TABLE blobs (
    sha256     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE packages (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    sha256      TEXT NOT NULL REFERENCES blobs(sha256),
    size        INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    report_json TEXT NOT NULL
);
CREATE INDEX packages_by_tenant ON packages (tenant_id, created_at);
CREATE INDEX packages_by_sha256 ON packages (sha256);

-- Resumable uploads in progress; their bytes live in <data>/uploads/<id>.part.
CREATE TABLE uploads (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    name       TEXT NOT NULL,
    length     INTEGER NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE jobs (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    package_id     TEXT NOT NULL REFERENCES packages(id),
    status         TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    targets_json   TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    started_at     TEXT,
    finished_at    TEXT,
    failure_reason TEXT,
    result_json    TEXT,
    log_tail       TEXT
);
CREATE INDEX jobs_by_status ON jobs (status, created_at);
CREATE INDEX jobs_by_package ON jobs (package_id);

CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL,
    tenant_id TEXT,
    token_id  TEXT,
    action    TEXT NOT NULL,
    subject   TEXT,
    detail    TEXT
);
