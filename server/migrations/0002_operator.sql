-- byom-server schema v2: the operator role.
--
-- Before, every `admin` token administered every tenant. Now `admin` administers its own
-- tenant and `operator` (only in the operator tenant `admin`) administers the server. The
-- admin tokens of tenant `admin` (the bootstrap token and those minted for it) were the
-- server's administrators, so they become operators; admin tokens of other tenants keep the
-- role `admin`, now scoped to their own tenant.
--
-- Except: a live admin token of tenant `admin` that the audit log says another tenant's token
-- minted could only come from the flaw this fixes (a tenant admin making itself a server
-- admin). Promoting it would keep that foothold, so it is revoked, with an audit record.
--
-- SQLite cannot change a CHECK constraint in place: rebuild the table, keeping every row.
-- Nothing references tokens by foreign key (audit.token_id is informational), so the drop
-- is safe with foreign keys on.

CREATE TEMP TABLE foreign_minted AS
SELECT t.id AS id, (SELECT a.tenant_id FROM audit a WHERE a.action = 'token.create' AND a.subject = t.id) AS by_tenant
FROM tokens t
WHERE t.tenant_id = 'admin' AND t.role = 'admin' AND t.revoked_at IS NULL
  AND EXISTS (SELECT 1 FROM audit a WHERE a.action = 'token.create' AND a.subject = t.id
              AND a.tenant_id IS NOT NULL AND a.tenant_id != 'admin');

UPDATE tokens SET revoked_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
WHERE id IN (SELECT id FROM foreign_minted);

INSERT INTO audit (at, tenant_id, token_id, action, subject, detail)
SELECT strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), NULL, NULL, 'token.revoke', id,
       'migration 0002: an admin token of the operator tenant minted by tenant ' || by_tenant
FROM foreign_minted;

DROP TABLE foreign_minted;

CREATE TABLE tokens_v2 (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    role         TEXT NOT NULL CHECK (role IN ('viewer', 'uploader', 'admin', 'operator')),
    token_sha256 TEXT NOT NULL UNIQUE,       -- the secret itself is never stored
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);

INSERT INTO tokens_v2 (id, tenant_id, role, token_sha256, created_at, revoked_at)
SELECT id,
       tenant_id,
       CASE WHEN role = 'admin' AND tenant_id = 'admin' THEN 'operator' ELSE role END,
       token_sha256,
       created_at,
       revoked_at
FROM tokens;

DROP TABLE tokens;
ALTER TABLE tokens_v2 RENAME TO tokens;
CREATE INDEX tokens_by_tenant ON tokens (tenant_id, created_at);

-- A tenant admin reads its own tenant's events; auth-failure rows are capped by pruning the
-- oldest of them (see audit.rs), which these indexes keep cheap.
CREATE INDEX audit_by_tenant ON audit (tenant_id, id);
CREATE INDEX audit_by_action ON audit (action, id);
