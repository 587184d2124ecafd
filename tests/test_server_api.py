"""byom-server end-to-end: the real binary on a loopback port, real packages made by PyTorch.

Covers auth and roles, tenant isolation, uploads (valid, invalid with the CLI's report, too large,
over quota, disk full), dedup without leaks, the audit log, metrics, the OpenAPI document and the
static page. Robustness (kills, restarts, resumable uploads, queue) is in test_server_robustness.py.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from helpers import Server, bad_package, byom_bin, byom_server_bin, files_under, good_package, serve, sha256


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory, "api")


@pytest.fixture(scope="module")
def good() -> bytes:
    return good_package()


@pytest.fixture(scope="module")
def bad() -> bytes:
    return bad_package()


def test_meta_routes(server):
    r = server.call("GET", "/healthz")
    assert r.status_code == 200 and r.text == "ok"
    spec = server.check(server.call("GET", "/api/v1/format-spec"), 200, "FormatSpec")
    assert spec["settings"]["required_torch"] == "2.11"
    assert spec["settings_hash"].startswith("sha256:")
    server.error(server.call("GET", "/metrics"), 401, "unauthorized")
    metrics = server.call("GET", "/metrics", server.admin).text
    for name in ["byom_uploads_total", "byom_upload_bytes_total", "byom_jobs{state=\"queued\"}", "byom_queue_depth",
                 "byom_http_requests_total", "byom_validation_rejects_total"]:
        assert name in metrics, name


def test_openapi_covers_every_route(server):
    doc = server.openapi()
    assert doc["openapi"].startswith("3.1")
    expected = {
        ("/healthz", "get"), ("/metrics", "get"), ("/api/v1/openapi.json", "get"), ("/api/v1/format-spec", "get"),
        ("/api/v1/packages", "put"), ("/api/v1/packages", "get"), ("/api/v1/packages/{id}", "get"),
        ("/api/v1/packages/{id}", "delete"), ("/api/v1/packages/{id}/compile", "post"), ("/api/v1/uploads", "post"),
        ("/api/v1/uploads/{id}", "head"), ("/api/v1/uploads/{id}", "get"), ("/api/v1/uploads/{id}", "patch"),
        ("/api/v1/uploads/{id}", "delete"), ("/api/v1/uploads", "options"), ("/api/v1/uploads/{id}", "options"),
        ("/api/v1/jobs", "get"), ("/api/v1/jobs/{id}", "get"),
        ("/api/v1/jobs/{id}/cancel", "post"), ("/api/v1/jobs/{id}/artifacts/{target}", "get"),
        ("/api/v1/admin/tenants", "post"), ("/api/v1/admin/tenants", "get"), ("/api/v1/admin/tokens", "post"),
        ("/api/v1/admin/tokens", "get"), ("/api/v1/admin/tokens/{id}", "delete"), ("/api/v1/admin/audit", "get"),
    }
    have = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert expected <= have, expected - have


def test_auth_required(server):
    server.error(server.call("GET", "/api/v1/packages"), 401, "unauthorized")
    server.error(server.call("GET", "/api/v1/packages", "byom_not_a_token"), 401, "unauthorized")
    server.error(server.call("PUT", "/api/v1/packages", "wrong", data=b"x"), 401, "unauthorized")


def test_valid_upload_is_stored(server, good):
    token = server.tenant_token("alpha", "uploader")
    r = server.upload(token, good, "tiny.tar.gz")
    pkg = server.check(r, 201, "PackageResponse")["package"]
    assert pkg["sha256"] == sha256(good) and pkg["size"] == len(good) and pkg["name"] == "tiny.tar.gz"
    assert pkg["report"]["valid"] is True
    listed = server.check(server.call("GET", "/api/v1/packages", token), 200, "PackageList")["packages"]
    assert pkg["id"] in [p["id"] for p in listed]
    detail = server.check(server.call("GET", f"/api/v1/packages/{pkg['id']}", token), 200, "PackageDetail")
    assert detail["jobs"] == [] and detail["report"] == pkg["report"]
    assert server.blob(pkg["sha256"]) == good


def byom_validate_json(path) -> dict:
    out = subprocess.run([str(byom_bin()), "validate", "--format", "json", str(path)], capture_output=True, timeout=120)
    assert out.returncode in (0, 1), out.stderr.decode()
    doc = json.loads(out.stdout)
    # One report, or a list/wrapper of reports for several files.
    if isinstance(doc, list):
        doc = doc[0]
    if "reports" in doc:
        doc = doc["reports"][0]
    return doc.get("report", doc)


def test_invalid_upload_gets_the_cli_report_and_nothing_is_kept(server, bad, tmp_path):
    token = server.tenant_token("beta", "uploader")
    before = len(server.request_lines("PUT", "/api/v1/packages"))
    r = server.upload(token, bad, "bad.tar.gz")
    body = server.error(r, 422, "invalid_package")
    report = body["report"]
    assert report["valid"] is False
    assert "BYOM203" in [e["code"] for e in report["errors"]]
    (tmp_path / "bad.tar.gz").write_bytes(bad)
    cli = byom_validate_json(tmp_path / "bad.tar.gz")
    for key in ["valid", "errors", "warnings", "summary", "settings_hash", "byom_version", "model"]:
        assert report[key] == cli[key], key
    assert server.check(server.call("GET", "/api/v1/packages", token), 200, "PackageList")["packages"] == []
    assert files_under(server.data_dir / "tmp") == []
    assert len(server.request_lines("PUT", "/api/v1/packages")) == before + 1
    assert any("status=422" in line for line in server.request_lines("PUT", "/api/v1/packages"))


def test_roles(server, good):
    viewer = server.tenant_token("gamma", "viewer")
    uploader = server.tenant_token("gamma", "uploader")
    server.error(server.upload(viewer, good), 403, "forbidden")
    pkg = server.check(server.upload(uploader, good), 201, "PackageResponse")["package"]
    # viewer reads its tenant's packages, but may not delete, compile or administer
    server.check(server.call("GET", f"/api/v1/packages/{pkg['id']}", viewer), 200, "PackageDetail")
    server.error(server.call("DELETE", f"/api/v1/packages/{pkg['id']}", viewer), 403, "forbidden")
    server.error(server.call("POST", f"/api/v1/packages/{pkg['id']}/compile", viewer, json={"targets": ["x86_64-cpu"]}),
                 403, "forbidden")
    for tok in (viewer, uploader):
        server.error(server.call("POST", "/api/v1/admin/tokens", tok, json={"tenant": "gamma", "role": "admin"}),
                     403, "forbidden")
        server.error(server.call("GET", "/api/v1/admin/audit", tok), 403, "forbidden")
    server.error(server.call("POST", f"/api/v1/packages/{pkg['id']}/compile", uploader, json={"targets": ["z80"]}),
                 400, "bad_request")
    server.check(server.call("GET", "/api/v1/admin/tenants", server.admin), 200, "TenantList")
    server.check(server.call("GET", "/api/v1/admin/tokens", server.admin), 200, "TokenList")


def test_malformed_json_bodies_get_the_documented_error_shape(server, good):
    """Every JSON body the API reads (compile, tenants, tokens) refuses a malformed one with the
    documented {"error", "message"} body, never the framework's plain text."""
    uploader = server.tenant_token("malformed", "uploader")
    pkg = server.check(server.upload(uploader, good), 201, "PackageResponse")["package"]
    compile_path = f"/api/v1/packages/{pkg['id']}/compile"
    json_type = {"Content-Type": "application/json"}
    for path, token in [(compile_path, uploader), ("/api/v1/admin/tenants", server.admin),
                        ("/api/v1/admin/tokens", server.admin)]:
        body = server.error(server.call("POST", path, token, data=b'{"targets": [', headers=json_type),
                            400, "bad_request")
        assert "JSON" in body["message"], body
        # JSON, but not the request's shape (a required field missing)
        body = server.error(server.call("POST", path, token, json={"unexpected": 1}), 400, "bad_request")
        assert "missing field" in body["message"], body
        server.error(server.call("POST", path, token, data=b"{}", headers={"Content-Type": "text/plain"}),
                     415, "unsupported_media_type")
    # a list where the targets belong, named in the message
    body = server.error(server.call("POST", compile_path, uploader, json={"targets": "x86_64-cpu"}),
                        400, "bad_request")
    assert "targets" in body["message"], body
    # nothing was queued by any of these
    assert server.call("GET", "/api/v1/jobs", uploader).json()["jobs"] == []


def test_tenants_are_isolated(server, good):
    a = server.tenant_token("iso-a", "uploader")
    b = server.tenant_token("iso-b", "uploader")
    pkg = server.check(server.upload(a, good), 201, "PackageResponse")["package"]
    job = server.check(server.call("POST", f"/api/v1/packages/{pkg['id']}/compile", a, json={"targets": ["x86_64-cpu"]}),
                       202, "JobResponse")["job"]
    assert server.check(server.call("GET", "/api/v1/packages", b), 200, "PackageList")["packages"] == []
    assert server.check(server.call("GET", "/api/v1/jobs", b), 200, "JobList")["jobs"] == []
    for method, path, kw in [
        ("GET", f"/api/v1/packages/{pkg['id']}", {}),
        ("DELETE", f"/api/v1/packages/{pkg['id']}", {}),
        ("POST", f"/api/v1/packages/{pkg['id']}/compile", {"json": {"targets": ["x86_64-cpu"]}}),
        ("GET", f"/api/v1/jobs/{job['id']}", {}),
        ("POST", f"/api/v1/jobs/{job['id']}/cancel", {}),
        ("GET", f"/api/v1/jobs/{job['id']}/artifacts/x86_64-cpu", {}),
    ]:
        server.error(server.call(method, path, b, **kw), 404, "not_found")
    # a still sees its own
    server.check(server.call("GET", f"/api/v1/packages/{pkg['id']}", a), 200, "PackageDetail")
    server.wait_job(a, job["id"])


def test_dedup_does_not_leak_and_delete_keeps_the_other_tenants_bytes(server):
    good = good_package("dedup")
    a = server.tenant_token("dup-a", "uploader")
    b = server.tenant_token("dup-b", "uploader")
    ra = server.upload(a, good, "same.tar.gz")
    rb = server.upload(b, good, "same.tar.gz")
    pa = server.check(ra, 201, "PackageResponse")["package"]
    pb = server.check(rb, 201, "PackageResponse")["package"]
    # Same status, same headers, same body shape; only the id and timestamp differ.
    assert ra.status_code == rb.status_code and sorted(ra.headers) == sorted(rb.headers)
    strip = lambda p: {k: v for k, v in p.items() if k not in ("id", "created_at")}
    assert strip(pa) == strip(pb) and pa["id"] != pb["id"]
    assert server.blob(pa["sha256"]) is not None
    assert server.call("DELETE", f"/api/v1/packages/{pb['id']}", b).status_code == 204
    server.error(server.call("GET", f"/api/v1/packages/{pb['id']}", b), 404, "not_found")
    assert server.blob(pa["sha256"]) == good, "b's delete removed bytes a still references"
    server.check(server.call("GET", f"/api/v1/packages/{pa['id']}", a), 200, "PackageDetail")
    # a's package still compiles (the worker gets a copy of the blob)
    job = server.check(server.call("POST", f"/api/v1/packages/{pa['id']}/compile", a, json={"targets": ["x86_64-cpu"]}),
                       202, "JobResponse")["job"]
    done = server.wait_job(a, job["id"])
    assert "package was deleted" not in (done["failure_reason"] or "")
    assert server.call("DELETE", f"/api/v1/packages/{pa['id']}", a).status_code == 204
    assert server.blob(pa["sha256"]) is None, "the last reference is gone, so are the bytes"


def test_token_revoke_and_audit(server, good):
    up = server.tenant_token("audited", "uploader")
    pkg = server.check(server.upload(up, good), 201, "PackageResponse")["package"]
    server.check(server.call("POST", f"/api/v1/packages/{pkg['id']}/compile", up, json={"targets": ["x86_64-cpu"]}),
                 202, "JobResponse")
    r = server.call("POST", "/api/v1/admin/tokens", server.admin, json={"tenant": "audited", "role": "uploader"})
    tok = server.check(r, 201, "NewToken")
    server.check(server.call("GET", "/api/v1/packages", tok["token"]), 200, "PackageList")
    assert server.call("DELETE", f"/api/v1/admin/tokens/{tok['id']}", server.admin).status_code == 204
    server.error(server.call("GET", "/api/v1/packages", tok["token"]), 401, "unauthorized")
    server.error(server.call("DELETE", f"/api/v1/admin/tokens/{tok['id']}", server.admin), 404, "not_found")
    listed = server.check(server.call("GET", "/api/v1/admin/tokens", server.admin), 200, "TokenList")["tokens"]
    assert not any("token" in t for t in listed)
    assert [t for t in listed if t["id"] == tok["id"]][0]["revoked_at"]
    events = server.check(server.call("GET", "/api/v1/admin/audit?limit=1000", server.admin), 200, "AuditList")["events"]
    actions = {e["action"] for e in events}
    assert {"token.create", "token.revoke", "tenant.create", "package.upload", "job.create"} <= actions
    revoke = [e for e in events if e["action"] == "token.revoke" and e["subject"] == tok["id"]]
    assert revoke and revoke[0]["tenant"] == "admin"


def test_token_cli_create_and_revoke(server):
    out = subprocess.run([str(byom_server_bin()), "token", "create", "--tenant", "cli-t", "--role", "viewer",
                          "--data-dir", str(server.data_dir), *server.db_args()], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    token_id = out.stderr.split("token id ", 1)[1].split()[0]
    server.check(server.call("GET", "/api/v1/packages", token), 200, "PackageList")
    out = subprocess.run([str(byom_server_bin()), "token", "revoke", token_id, "--data-dir", str(server.data_dir),
                          *server.db_args()],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    server.error(server.call("GET", "/api/v1/packages", token), 401, "unauthorized")


def test_quota(server, good):
    token = server.tenant_token("small", "uploader", quota=len(good) + 10)
    server.check(server.upload(token, good), 201, "PackageResponse")
    server.error(server.upload(token, good), 413, "quota_exceeded")
    assert len(server.check(server.call("GET", "/api/v1/packages", token), 200, "PackageList")["packages"]) == 1


def test_size_limit_and_disk_full(tmp_path, good):
    s = Server(tmp_path / "data", "--max-upload-bytes", str(len(good) - 1)).start()
    try:
        tok = s.tenant_token("t", "uploader")
        s.error(s.upload(tok, good), 413, "too_large")
        # chunked (no Content-Length): refused while streaming
        s.error(s.call("PUT", "/api/v1/packages", tok, data=iter([good[:1000], good[1000:]])), 413, "too_large")
    finally:
        s.stop()
    # The disk-full path is the local disk's (file: storage, also when the suite runs on S3).
    s = Server(tmp_path / "data2", "--storage", f"file:{tmp_path / 'data2' / 'blobs'}",
               env={"BYOM_TEST_DISK_LIMIT": str(len(good) // 2)}).start()
    try:
        tok = s.tenant_token("t", "uploader")
        s.error(s.upload(tok, good), 507, "disk_full")
        assert files_under(s.data_dir / "tmp") == [] and files_under(s.data_dir / "blobs") == []
        assert s.check(s.call("GET", "/api/v1/packages", tok), 200, "PackageList")["packages"] == []
        assert s.call("GET", "/healthz").status_code == 200
    finally:
        s.stop()


def test_static_page_and_wasm_mime(tmp_path):
    web = tmp_path / "web"
    (web / "pkg").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>byom</title>")
    (web / "pkg" / "x.wasm").write_bytes(b"\0asm\1\0\0\0")
    s = Server(tmp_path / "data", web_dir=web).start()
    try:
        r = s.call("GET", "/")
        assert r.status_code == 200 and "byom" in r.text and r.headers["content-type"].startswith("text/html")
        r = s.call("GET", "/pkg/x.wasm")
        assert r.status_code == 200 and r.headers["content-type"] == "application/wasm"
    finally:
        s.stop()


def test_graceful_shutdown(tmp_path):
    s = Server(tmp_path / "data", env={"BYOM_ADMIN_TOKEN": "byom_test_admin_secret"}).start()
    assert s.call("GET", "/api/v1/admin/tenants", "byom_test_admin_secret").status_code == 200
    assert not (s.data_dir / "admin-token").exists()
    assert s.stop() == 0
    assert "shutdown signal received" in s.log()


def test_config_file_and_flags(tmp_path, good):
    cfg = tmp_path / "byom.toml"
    cfg.write_text(f"max_upload_bytes = {len(good) - 1}\nqueue_size = 3\n")
    s = Server(tmp_path / "data", "--config", str(cfg)).start()
    try:
        tok = s.tenant_token("t", "uploader")
        s.error(s.upload(tok, good), 413, "too_large")
        spec = s.check(s.call("GET", "/api/v1/format-spec"), 200, "FormatSpec")
        assert spec["max_upload_bytes"] == len(good) - 1
    finally:
        s.stop()
    # a flag wins over the file
    s = Server(tmp_path / "data", "--config", str(cfg), "--max-upload-bytes", str(len(good) * 2),
               "--required-torch", "1.8").start()
    try:
        tok = s.tenant_token("t", "uploader")
        spec = s.check(s.call("GET", "/api/v1/format-spec"), 200, "FormatSpec")
        assert spec["max_upload_bytes"] == len(good) * 2 and spec["settings"]["required_torch"] == "1.8"
    finally:
        s.stop()
    bad = tmp_path / "bad.toml"
    bad.write_text("no_such_setting = 1\n")
    out = subprocess.run([str(byom_server_bin()), "serve", "--config", str(bad), "--data-dir", str(tmp_path / "d3")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "no_such_setting" in out.stderr
