"""`byom push` (the libtorch-free CLI) against the real server: a valid package is uploaded, an
invalid one never reaches the server (checked on the server's request log)."""

from __future__ import annotations

import subprocess

import pytest

from helpers import bad_package, byom_bin, good_package, serve, sha256


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory, "push")


def test_push_uploads_a_valid_package(server, tmp_path):
    tok = server.tenant_token("pusher", "uploader")
    pkg = tmp_path / "model.tar.gz"
    data = good_package("push")
    pkg.write_bytes(data)
    out = subprocess.run([str(byom_bin()), "push", str(pkg), "--server", server.url, "--token", tok],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    pkg_id = out.stdout.split("package ", 1)[1].split()[0]
    detail = server.check(server.call("GET", f"/api/v1/packages/{pkg_id}", tok), 200, "PackageDetail")
    assert detail["sha256"] == sha256(data) and detail["name"] == "model.tar.gz"
    assert "100%" in out.stderr


def test_push_refuses_an_invalid_package_without_uploading(server, tmp_path):
    tok = server.tenant_token("pusher", "uploader")
    pkg = tmp_path / "bad.tar.gz"
    pkg.write_bytes(bad_package())
    before = server.request_lines("PUT", "/api/v1/packages")
    out = subprocess.run([str(byom_bin()), "push", str(pkg), "--server", server.url, "--token", tok],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert "BYOM203" in out.stderr and "not uploaded" in out.stderr
    assert server.request_lines("PUT", "/api/v1/packages") == before, "an invalid package reached the server"
    assert server.request_lines("GET", "/api/v1/format-spec"), "push fetched the server's settings first"


def test_push_with_a_bad_token_exits_2(server, tmp_path):
    pkg = tmp_path / "model.tar.gz"
    pkg.write_bytes(good_package("push-bad-token"))
    out = subprocess.run([str(byom_bin()), "push", str(pkg), "--server", server.url, "--token", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "401" in out.stderr, out.stderr
