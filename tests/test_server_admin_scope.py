"""Admin scope (issue 9, finding 1): a tenant admin administers only its own tenant; the operator
(the bootstrap token and the operator tokens it mints) administers the server.

For every admin route, a tenant-C admin acting on tenant D is refused (404 for foreign ids, 403
for what no tenant admin may do) and works on its own tenant; the operator can do all of it.
Also: /metrics needs the operator token, refused requests are audited within a bound, the
bootstrap token survives tenant admins and restarts, and a v1 database upgrades.
"""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from helpers import REPO, Server, good_package, serve


def mint(server: Server, by: str, tenant: str, role: str) -> dict:
    return server.check(server.call("POST", "/api/v1/admin/tokens", by, json={"tenant": tenant, "role": role}),
                        201, "NewToken")


def tokens(server: Server, by: str) -> list[dict]:
    return server.check(server.call("GET", "/api/v1/admin/tokens", by), 200, "TokenList")["tokens"]


def audit(server: Server, by: str) -> list[dict]:
    return server.check(server.call("GET", "/api/v1/admin/audit?limit=10000", by), 200, "AuditList")["events"]


def bootstrap_id(server: Server) -> str:
    ops = [t for t in tokens(server, server.admin) if t["role"] == "operator" and not t["revoked_at"]]
    assert len(ops) == 1, ops
    return ops[0]["id"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory, "scope")


@pytest.fixture(scope="module")
def tenants(server):
    """Tenants c and d, each with an admin and an uploader, and a package in d."""
    out = {}
    for t in ("c", "d"):
        server.check(server.call("POST", "/api/v1/admin/tenants", server.admin, json={"name": t}), 201, "TenantResponse")
        out[t] = {"admin": mint(server, server.admin, t, "admin"), "uploader": mint(server, server.admin, t, "uploader")}
    pkg = server.check(server.upload(out["d"]["uploader"]["token"], good_package("scope")), 201, "PackageResponse")
    out["d"]["package"] = pkg["package"]["id"]
    return out


def test_tenant_admin_cannot_create_tenants(server, tenants):
    c = tenants["c"]["admin"]["token"]
    server.error(server.call("POST", "/api/v1/admin/tenants", c, json={"name": "c-made"}), 403, "forbidden")
    names = [t["name"] for t in server.check(server.call("GET", "/api/v1/admin/tenants", server.admin), 200,
                                             "TenantList")["tenants"]]
    assert "c-made" not in names
    server.check(server.call("POST", "/api/v1/admin/tenants", server.admin, json={"name": "op-made"}), 201,
                 "TenantResponse")


def test_tenant_admin_lists_only_its_tenant(server, tenants):
    c = tenants["c"]["admin"]["token"]
    listed = server.check(server.call("GET", "/api/v1/admin/tenants", c), 200, "TenantList")["tenants"]
    assert [t["name"] for t in listed] == ["c"]
    everyone = server.check(server.call("GET", "/api/v1/admin/tenants", server.admin), 200, "TenantList")["tenants"]
    assert {"admin", "c", "d"} <= {t["name"] for t in everyone}


def test_tenant_admin_mints_only_for_its_tenant(server, tenants):
    c = tenants["c"]["admin"]["token"]
    d_pkg = tenants["d"]["package"]
    # another tenant, existing or not, is "not found"; nothing is minted
    for tenant in ("d", "admin", "no-such-tenant"):
        for role in ("viewer", "admin"):
            server.error(server.call("POST", "/api/v1/admin/tokens", c, json={"tenant": tenant, "role": role}),
                         404, "not_found")
    # never an operator, not even in its own tenant
    server.error(server.call("POST", "/api/v1/admin/tokens", c, json={"tenant": "c", "role": "operator"}),
                 403, "forbidden")
    assert all(t["tenant"] == "c" and t["role"] != "operator" for t in tokens(server, c))
    # its own tenant: up to admin, and the tokens work there only
    up = mint(server, c, "c", "uploader")
    assert up["tenant"] == "c"
    server.check(server.call("GET", "/api/v1/packages", up["token"]), 200, "PackageList")
    server.error(server.call("GET", f"/api/v1/packages/{d_pkg}", up["token"]), 404, "not_found")
    sub_admin = mint(server, c, "c", "admin")
    server.check(server.call("GET", "/api/v1/admin/tokens", sub_admin["token"]), 200, "TokenList")
    # the operator mints for anyone
    d_viewer = mint(server, server.admin, "d", "viewer")
    server.check(server.call("GET", f"/api/v1/packages/{d_pkg}", d_viewer["token"]), 200, "PackageDetail")


def test_tenant_admin_lists_only_its_tokens(server, tenants):
    c = tenants["c"]["admin"]["token"]
    mine = tokens(server, c)
    assert mine and {t["tenant"] for t in mine} == {"c"}
    ids = {t["id"] for t in mine}
    assert tenants["c"]["admin"]["id"] in ids and tenants["d"]["admin"]["id"] not in ids
    everyone = {t["id"]: t for t in tokens(server, server.admin)}
    assert tenants["d"]["admin"]["id"] in everyone
    assert any(t["role"] == "operator" for t in everyone.values())


def test_tenant_admin_revokes_only_its_tokens(server, tenants):
    c = tenants["c"]["admin"]["token"]
    d_admin = tenants["d"]["admin"]
    boot = bootstrap_id(server)
    for victim in (d_admin["id"], boot, "tok_does_not_exist"):
        server.error(server.call("DELETE", f"/api/v1/admin/tokens/{victim}", c), 404, "not_found")
    server.check(server.call("GET", "/api/v1/admin/tokens", d_admin["token"]), 200, "TokenList")
    server.check(server.call("GET", "/api/v1/admin/tenants", server.admin), 200, "TenantList")
    # its own tenant's token: yes
    victim = mint(server, c, "c", "viewer")
    assert server.call("DELETE", f"/api/v1/admin/tokens/{victim['id']}", c).status_code == 204
    server.error(server.call("GET", "/api/v1/packages", victim["token"]), 401, "unauthorized")
    # the operator revokes any tenant's token
    d_victim = mint(server, server.admin, "d", "viewer")
    assert server.call("DELETE", f"/api/v1/admin/tokens/{d_victim['id']}", server.admin).status_code == 204


def test_tenant_admin_reads_only_its_audit(server, tenants):
    c = tenants["c"]["admin"]
    d = tenants["d"]["admin"]
    mint(server, c["token"], "c", "viewer")  # an event of c's
    mint(server, d["token"], "d", "viewer")  # an event of d's
    mine = audit(server, c["token"])
    assert mine and {e["tenant"] for e in mine} == {"c"}
    assert not any(e["token_id"] == d["id"] for e in mine)
    everyone = audit(server, server.admin)
    assert any(e["token_id"] == d["id"] and e["action"] == "token.create" for e in everyone)
    assert any(e["tenant"] == "admin" for e in everyone)


def test_metrics_need_the_operator_token(server, tenants):
    server.error(server.call("GET", "/metrics"), 401, "unauthorized")
    server.error(server.call("GET", "/metrics", "byom_not_a_token"), 401, "unauthorized")
    for role in ("admin", "uploader"):
        server.error(server.call("GET", "/metrics", tenants["c"][role]["token"]), 403, "forbidden")
    r = server.call("GET", "/metrics", server.admin)
    assert r.status_code == 200 and "byom_upload_bytes_total" in r.text


def test_refused_requests_are_audited(server, tenants):
    bad = "byom_refused_secret_0123456789"
    server.error(server.call("GET", "/api/v1/packages", bad), 401, "unauthorized")
    server.error(server.call("GET", "/api/v1/jobs"), 401, "unauthorized")
    viewer = mint(server, tenants["c"]["admin"]["token"], "c", "viewer")
    server.error(server.call("GET", "/api/v1/admin/audit", viewer["token"]), 403, "forbidden")
    revoked = mint(server, tenants["c"]["admin"]["token"], "c", "viewer")
    assert server.call("DELETE", f"/api/v1/admin/tokens/{revoked['id']}", server.admin).status_code == 204
    server.error(server.call("GET", "/api/v1/packages", revoked["token"]), 401, "unauthorized")
    events = audit(server, server.admin)
    unauth = [e for e in events if e["action"] == "auth.unauthorized"]
    assert any(e["subject"] == "GET /api/v1/packages" and "unknown token" in e["detail"] for e in unauth)
    assert any(e["subject"] == "GET /api/v1/jobs" and "no bearer token" in e["detail"] for e in unauth)
    assert any(e["token_id"] == revoked["id"] and e["tenant"] == "c" and "revoked" in e["detail"] for e in unauth)
    forbidden = [e for e in events if e["action"] == "auth.forbidden"]
    assert any(e["token_id"] == viewer["id"] and e["tenant"] == "c" and e["subject"] == "GET /api/v1/admin/audit"
               for e in forbidden)
    # secrets are never stored
    assert not any(bad in str(e) or viewer["token"] in str(e) for e in events)
    # c's admin sees the refusals of c's tokens, not the anonymous ones
    mine = audit(server, tenants["c"]["admin"]["token"])
    assert any(e["action"] == "auth.forbidden" and e["token_id"] == viewer["id"] for e in mine)
    assert any(e["action"] == "auth.unauthorized" and e["token_id"] == revoked["id"] for e in mine)
    assert not any(e["action"] == "auth.unauthorized" and e["tenant"] is None for e in mine)


def test_refusal_audit_is_bounded(tmp_path):
    s = Server(tmp_path / "rate", "--audit-auth-failures-per-minute", "5").start()
    try:
        for i in range(40):
            assert s.call("GET", "/api/v1/packages", f"byom_flood_{i}").status_code == 401
        rows = [e for e in audit(s, s.admin) if e["action"] == "auth.unauthorized"]
        assert len(rows) == 5, rows
        assert "byom_http_requests_total{method=\"GET\",status=\"401\"} 40" in s.call("GET", "/metrics", s.admin).text
    finally:
        s.stop()
    s = Server(tmp_path / "cap", "--audit-auth-failures-max-rows", "3").start()
    try:
        s.tenant_token("kept", "viewer")
        for i in range(12):
            assert s.call("GET", f"/api/v1/jobs?n={i}", f"byom_flood_{i}").status_code == 401
        events = audit(s, s.admin)
        assert len([e for e in events if e["action"].startswith("auth.")]) == 3
        # the rows of real changes are never pruned
        assert {"tenant.create", "token.create"} <= {e["action"] for e in events}
    finally:
        s.stop()


def test_operator_tokens_and_the_last_operator(tmp_path):
    s = Server(tmp_path / "data").start()
    try:
        boot = bootstrap_id(s)
        s.error(s.call("DELETE", f"/api/v1/admin/tokens/{boot}", s.admin), 409, "conflict")
        s.check(s.call("POST", "/api/v1/admin/tenants", s.admin, json={"name": "e"}), 201, "TenantResponse")
        # operators live in the operator tenant only, and it has no tenant admins
        s.error(s.call("POST", "/api/v1/admin/tokens", s.admin, json={"tenant": "e", "role": "operator"}),
                400, "bad_request")
        s.error(s.call("POST", "/api/v1/admin/tokens", s.admin, json={"tenant": "admin", "role": "admin"}),
                400, "bad_request")
        op2 = mint(s, s.admin, "admin", "operator")
        s.check(s.call("GET", "/api/v1/admin/tenants", op2["token"]), 200, "TenantList")
        e_admin = mint(s, op2["token"], "e", "admin")
        s.error(s.call("DELETE", f"/api/v1/admin/tokens/{op2['id']}", e_admin["token"]), 404, "not_found")
        # with two operators, one may retire the other; then the survivor is the last
        assert s.call("DELETE", f"/api/v1/admin/tokens/{boot}", op2["token"]).status_code == 204
        s.error(s.call("GET", "/api/v1/admin/tenants", s.admin), 401, "unauthorized")
        s.error(s.call("DELETE", f"/api/v1/admin/tokens/{op2['id']}", op2["token"]), 409, "conflict")
        s.stop()
        # a revoked bootstrap token in the file is replaced at start, not revived
        old = s.admin
        s.start()
        assert s.admin != old
        s.check(s.call("GET", "/api/v1/admin/tenants", s.admin), 200, "TenantList")
        s.error(s.call("GET", "/api/v1/admin/tenants", old), 401, "unauthorized")
        s.check(s.call("GET", "/api/v1/admin/tenants", op2["token"]), 200, "TenantList")
    finally:
        s.stop()


def test_revoked_env_bootstrap_token_is_refused_at_start(tmp_path):
    secret = "byom_env_operator_secret_42"
    s = Server(tmp_path / "data", env={"BYOM_ADMIN_TOKEN": secret}).start()
    try:
        boot = bootstrap_id(s)
        op2 = mint(s, secret, "admin", "operator")
        assert s.call("DELETE", f"/api/v1/admin/tokens/{boot}", op2["token"]).status_code == 204
    finally:
        s.stop()
    with pytest.raises(AssertionError, match="BYOM_ADMIN_TOKEN names a revoked token"):
        s.start()
    s.stop()


V1_TOKENS = [  # (id, tenant, role, secret)
    ("tok_boot", "admin", "admin", "byom_v1_bootstrap"),
    ("tok_cadm", "c", "admin", "byom_v1_c_admin"),
    ("tok_dup", "d", "uploader", "byom_v1_d_uploader"),
    ("tok_op2", "admin", "admin", "byom_v1_second_admin"),  # minted by the bootstrap admin
    ("tok_evil", "admin", "admin", "byom_v1_self_promoted"),  # minted by c's admin through the flaw
]
V1_MINTED_BY = {"tok_op2": ("admin", "tok_boot"), "tok_evil": ("c", "tok_cadm")}


def test_v1_database_upgrades(tmp_path):
    """A database made by the previous release: the bootstrap admin becomes the operator, other
    tenants' admins become tenant admins, nothing is lost."""
    data = tmp_path / "data"
    data.mkdir()
    init = (REPO / "server" / "migrations" / "0001_init.sql").read_bytes()
    db = sqlite3.connect(data / "byom.db")
    db.executescript(init.decode())
    db.execute("CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, "
               "installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, "
               "checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)")
    db.execute("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) "
               "VALUES (1, 'init', 1, ?, 0)", (hashlib.sha384(init).digest(),))
    for t in ("admin", "c", "d"):
        db.execute("INSERT INTO tenants (id, created_at) VALUES (?, '2026-01-01T00:00:00Z')", (t,))
    for tid, tenant, role, secret in V1_TOKENS:
        db.execute("INSERT INTO tokens (id, tenant_id, role, token_sha256, created_at) VALUES (?, ?, ?, ?, ?)",
                   (tid, tenant, role, hashlib.sha256(secret.encode()).hexdigest(), "2026-01-01T00:00:00Z"))
        by = V1_MINTED_BY.get(tid, (None, None))
        db.execute("INSERT INTO audit (at, tenant_id, token_id, action, subject, detail) VALUES (?, ?, ?, ?, ?, ?)",
                   ("2026-01-01T00:00:00Z", by[0], by[1], "token.create", tid, f"tenant={tenant} role={role}"))
    db.commit()
    db.close()
    (data / "admin-token").write_text("byom_v1_bootstrap\n")
    s = Server(data).start()
    try:
        assert s.admin == "byom_v1_bootstrap"
        listed = {t["id"]: t for t in tokens(s, s.admin)}
        roles = {i: (t["tenant"], t["role"]) for i, t in listed.items()}
        assert roles == {"tok_boot": ("admin", "operator"), "tok_cadm": ("c", "admin"), "tok_dup": ("d", "uploader"),
                         "tok_op2": ("admin", "operator"), "tok_evil": ("admin", "operator")}
        # the self-promoted token is revoked, with a record; the legitimate one works
        assert listed["tok_evil"]["revoked_at"] and not listed["tok_op2"]["revoked_at"]
        s.error(s.call("GET", "/api/v1/admin/tenants", "byom_v1_self_promoted"), 401, "unauthorized")
        s.check(s.call("GET", "/api/v1/admin/tenants", "byom_v1_second_admin"), 200, "TenantList")
        assert any(e["action"] == "token.revoke" and e["subject"] == "tok_evil" and "migration 0002" in e["detail"]
                   for e in audit(s, s.admin))
        s.error(s.call("POST", "/api/v1/admin/tokens", "byom_v1_c_admin", json={"tenant": "d", "role": "admin"}),
                404, "not_found")
        s.error(s.call("DELETE", "/api/v1/admin/tokens/tok_boot", "byom_v1_c_admin"), 404, "not_found")
        assert [t["id"] for t in tokens(s, "byom_v1_c_admin")] == ["tok_cadm"]
        s.check(s.call("GET", "/api/v1/packages", "byom_v1_d_uploader"), 200, "PackageList")
    finally:
        s.stop()
