-- byom-server schema v2 for Postgres: the operator role (see migrations/0002_operator.sql for
-- why). A Postgres database is created at v2 or later, so no token minted under the old rules
-- can exist; the role change is all there is to do.

ALTER TABLE tokens DROP CONSTRAINT tokens_role_check;
ALTER TABLE tokens ADD CONSTRAINT tokens_role_check
    CHECK (role IN ('viewer', 'uploader', 'admin', 'operator'));
UPDATE tokens SET role = 'operator' WHERE role = 'admin' AND tenant_id = 'admin';
CREATE INDEX tokens_by_tenant ON tokens (tenant_id, created_at);
CREATE INDEX audit_by_tenant ON audit (tenant_id, id);
CREATE INDEX audit_by_action ON audit (action, id);
