"""byom-server upload resources per tenant (issue 9, findings 4, 5 and 7): open resumable uploads
count against the quota from creation and against a per-tenant limit on open uploads; a disk
reserve keeps deletes working on a full disk; slow uploads of one tenant hold no threads and are
bounded per tenant, so another tenant's upload gets through; a DELETE while a PATCH is sending
cancels that PATCH and frees its bytes; refused uploads and the resumable-upload lifecycle are
audited. Slow clients are raw sockets on 127.0.0.1, bounded in count and time."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import pytest

from helpers import Server, bad_package, byom_server_bin, files_under, good_package, sha256

ADMIN = "byom_upload_limits_admin_secret"


def create(s: Server, tok: str, length: int, name: str = "m.tar.gz"):
    return s.call("POST", f"/api/v1/uploads?name={name}", tok, headers={"Upload-Length": str(length)})


def audit_actions(s: Server) -> list[dict]:
    return s.check(s.call("GET", "/api/v1/admin/audit?limit=1000", s.admin), 200, "AuditList")["events"]


def slow_request(s: Server, method: str, path: str, tok: str, total: int, first: bytes,
                 headers: dict | None = None) -> socket.socket:
    """Start a request whose body declares `total` bytes but sends only `first` (and then nothing)."""
    url = urlparse(s.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=15)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {url.hostname}", f"Authorization: Bearer {tok}",
             f"Content-Length: {total}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + first)
    return sock


def status_of(sock: socket.socket, timeout: float) -> int:
    """The status code of the response on `sock`, waiting at most `timeout` seconds."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


# --- finding 4: open uploads count against the quota and a per-tenant limit ---------------------


def test_open_resumable_uploads_reserve_quota_from_creation_and_are_limited(tmp_path):
    good = good_package("limits")
    n = len(good)
    s = Server(tmp_path / "data", "--max-open-uploads-per-tenant", "2").start()
    try:
        tok = s.tenant_token("q", "uploader", quota=3 * n)
        a = s.check(create(s, tok, 2 * n), 201, "UploadStatus")["upload_id"]
        # the open upload's declared length is reserved: another one that would pass the quota
        # with it is refused, before a single byte is sent
        body = s.error(create(s, tok, 2 * n), 413, "quota_exceeded")
        assert "reserved by open resumable uploads" in body["message"]
        s.check(s.upload(tok, good), 201, "PackageResponse")  # n stored + 2n reserved = quota
        s.error(s.upload(tok, good_package("limits2")), 413, "quota_exceeded")
        # deleting the upload frees its reservation
        s.check(s.call("DELETE", f"/api/v1/uploads/{a}", tok), 204)
        c = s.check(create(s, tok, n), 201, "UploadStatus")["upload_id"]
        d = s.check(create(s, tok, 1), 201, "UploadStatus")["upload_id"]
        # at most 2 open uploads per tenant; another tenant is not affected
        body = s.error(create(s, tok, 1), 429, "too_many_open_uploads")
        assert "2 resumable uploads open" in body["message"]
        other = s.tenant_token("other", "uploader")
        s.check(create(s, other, 1), 201, "UploadStatus")
        # completing turns the reservation into the package's size (n + n stored, 1 reserved)
        r = s.call("PATCH", f"/api/v1/uploads/{c}", tok, headers={"Upload-Offset": "0"}, data=good)
        s.check(r, 204)
        assert r.headers["Byom-Package-Id"].startswith("pkg_")
        s.error(create(s, tok, n), 413, "quota_exceeded")
        s.check(s.call("DELETE", f"/api/v1/uploads/{d}", tok), 204)
        s.check(create(s, tok, n), 201, "UploadStatus")
        # an invalid package through PUT: refused and audited
        s.error(s.upload(other, bad_package(), name="bad.tar.gz"), 422, "invalid_package")
        events = audit_actions(s)
        actions = [e["action"] for e in events]
        for action in ("upload.create", "upload.abort", "upload.complete", "upload.reject"):
            assert action in actions, actions
        rejects = [e["detail"] for e in events if e["action"] == "upload.reject"]
        assert any("status=413 error=quota_exceeded" in d for d in rejects), rejects
        assert any("status=422 error=invalid_package" in d and "bad.tar.gz" in d for d in rejects), rejects
        assert [e for e in events if e["action"] == "upload.abort" and e["subject"] == a]
        assert files_under(s.data_dir / "tmp") == []
    finally:
        s.stop()


def test_concurrent_creates_cannot_together_pass_the_quota(tmp_path):
    s = Server(tmp_path / "data", "--max-open-uploads-per-tenant", "50").start()
    try:
        tok = s.tenant_token("race", "uploader", quota=3000)
        with ThreadPoolExecutor(max_workers=12) as pool:
            codes = list(pool.map(lambda _: create(s, tok, 1000).status_code, range(12)))
        assert sorted(codes) == [201] * 3 + [413] * 9, codes
    finally:
        s.stop()


def test_expiry_frees_the_reservation(tmp_path):
    s = Server(tmp_path / "data", "--upload-expiry-s", "2").start()
    try:
        tok = s.tenant_token("exp", "uploader", quota=10_000)
        uid = s.check(create(s, tok, 10_000), 201, "UploadStatus")["upload_id"]
        s.error(create(s, tok, 1), 413, "quota_exceeded")
        deadline = time.time() + 15
        while (r := create(s, tok, 1)).status_code == 413 and time.time() < deadline:
            time.sleep(0.3)
        s.check(r, 201, "UploadStatus")
        s.error(s.call("GET", f"/api/v1/uploads/{uid}", tok), 404, "not_found")
        assert [e for e in audit_actions(s) if e["action"] == "upload.expire" and e["subject"] == uid]
    finally:
        s.stop()


# --- finding 4: a full disk keeps the reserve, so deletes still work ------------------------------


def _can_mount_tmpfs(tmp_path: Path) -> bool:
    unshare = shutil.which("unshare")
    if not unshare:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    r = subprocess.run([unshare, "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs '{probe}'"],
                       capture_output=True, timeout=30)
    return r.returncode == 0


def test_full_disk_keeps_the_reserve_so_delete_works(tmp_path, monkeypatch):
    """The server runs on a real 48 MiB file system (tmpfs in its own mount namespace): filling it
    with an upload stops at the 16 MiB reserve with 507, and deleting that upload then works and
    frees the space (before, the disk filled to the last byte and every DELETE answered 500
    'database or disk is full')."""
    if not _can_mount_tmpfs(tmp_path):
        pytest.skip("cannot mount a tmpfs in a private mount namespace here (needs unshare -rm)")
    wrapper = tmp_path / "on-tmpfs.sh"
    wrapper.write_text(
        "#!/bin/sh\n"
        "# Run byom-server with its --data-dir on a fresh 48 MiB tmpfs of its own.\n"
        'data=""; prev=""\n'
        'for a in "$@"; do [ "$prev" = "--data-dir" ] && data="$a"; prev="$a"; done\n'
        f"exec unshare -rm sh -c 'mount -t tmpfs -o size=48m tmpfs \"$0\" && exec \"$@\"' "
        f"\"$data\" '{byom_server_bin()}' \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("BYOM_SERVER_BIN", str(wrapper))
    good = good_package("full-disk")
    s = Server(tmp_path / "data", "--disk-reserve-bytes", str(16 << 20),
               env={"BYOM_ADMIN_TOKEN": ADMIN}).start()
    try:
        tok = s.tenant_token("filler", "uploader")
        big = os.urandom(64 << 20)
        a = s.check(create(s, tok, len(big)), 201, "UploadStatus")["upload_id"]
        s.error(s.call("PATCH", f"/api/v1/uploads/{a}", tok, headers={"Upload-Offset": "0"}, data=big),
                507, "disk_full")
        offset = int(s.call("HEAD", f"/api/v1/uploads/{a}", tok).headers["Upload-Offset"])
        assert 16 << 20 < offset <= 32 << 20, offset
        # nothing more than the last chunk's worth gets in: the reserve is not for upload bytes
        b = s.check(create(s, tok, 1 << 20), 201, "UploadStatus")["upload_id"]
        s.error(s.call("PATCH", f"/api/v1/uploads/{b}", tok, headers={"Upload-Offset": "0"}, data=big[:1 << 20]),
                507, "disk_full")
        s.error(s.upload(tok, big[:1 << 20]), 507, "disk_full")
        # but deleting works, and frees the space for the next upload
        s.check(s.call("DELETE", f"/api/v1/uploads/{a}", tok), 204)
        s.error(s.call("GET", f"/api/v1/uploads/{a}", tok), 404, "not_found")
        s.check(s.upload(tok, good), 201, "PackageResponse")
        s.check(s.call("DELETE", f"/api/v1/uploads/{b}", tok), 204)
        rejects = [e["detail"] for e in audit_actions(s) if e["action"] == "upload.reject"]
        assert any("status=507 error=disk_full" in d for d in rejects), rejects
    finally:
        s.stop()


# --- finding 5: slow uploads of one tenant do not starve another ----------------------------------


def test_slow_uploads_are_bounded_per_tenant_and_another_tenant_gets_through(tmp_path):
    good = good_package("starve")
    s = Server(tmp_path / "data", "--max-concurrent-uploads-per-tenant", "3", "--idle-timeout-s", "30").start()
    socks: list[socket.socket] = []
    try:
        slow = s.tenant_token("slow", "uploader")
        fast = s.tenant_token("fast", "uploader")
        for _ in range(3):
            socks.append(slow_request(s, "PUT", "/api/v1/packages", slow, 50_000_000, good[:1000]))
        time.sleep(1.0)
        # the 4th upload of the same tenant is refused at once, with a clear reason and Retry-After
        r = s.upload(slow, good)
        body = s.error(r, 429, "too_many_concurrent_uploads")
        assert "this tenant" in body["message"] and int(r.headers["Retry-After"]) > 0
        uid = s.check(create(s, slow, len(good)), 201, "UploadStatus")["upload_id"]
        s.error(s.call("PATCH", f"/api/v1/uploads/{uid}", slow, headers={"Upload-Offset": "0"}, data=good),
                429, "too_many_concurrent_uploads")
        # another tenant's small upload goes through, quickly
        started = time.time()
        s.check(s.call("PUT", "/api/v1/packages", fast, data=good, timeout=10), 201, "PackageResponse")
        assert time.time() - started < 10
        # once the slow clients go away their permits come back
        for sock in socks:
            sock.close()
        socks.clear()
        deadline = time.time() + 10
        while (r := s.upload(slow, good)).status_code == 429 and time.time() < deadline:
            time.sleep(0.2)
        s.check(r, 201, "PackageResponse")
    finally:
        for sock in socks:
            sock.close()
        s.stop()


def test_a_slow_upload_holds_no_thread_while_it_sends_nothing(tmp_path):
    """30 uploads that sent 1000 bytes and then wait: before, each held two blocking threads for
    its whole life (+60 threads; ~260 such uploads exhausted the pool for every tenant)."""
    good = good_package("threads")
    s = Server(tmp_path / "data", "--max-concurrent-uploads-per-tenant", "40", "--idle-timeout-s", "30").start()
    socks: list[socket.socket] = []
    try:
        tok = s.tenant_token("many", "uploader")
        time.sleep(0.5)
        before = threads_of(s.proc.pid)
        for _ in range(30):
            socks.append(slow_request(s, "PUT", "/api/v1/packages", tok, 50_000_000, good[:1000]))
            time.sleep(0.05)
        time.sleep(1.0)
        during = threads_of(s.proc.pid)
        assert during - before < 20, (before, during)
        assert s.call("GET", "/healthz", timeout=5).status_code == 200
    finally:
        for sock in socks:
            sock.close()
        s.stop()


# --- finding 7: DELETE during a PATCH frees the upload's buffers and bytes ------------------------


def test_delete_while_a_patch_is_sending_cancels_it_and_frees_its_bytes(tmp_path):
    s = Server(tmp_path / "data", "--idle-timeout-s", "30").start()
    sock = None
    try:
        tok = s.tenant_token("del", "uploader")
        total = 50_000_000
        uid = s.check(create(s, tok, total), 201, "UploadStatus")["upload_id"]
        sock = slow_request(s, "PATCH", f"/api/v1/uploads/{uid}", tok, total, os.urandom(4 << 20),
                            headers={"Upload-Offset": "0", "Tus-Resumable": "1.0.0",
                                     "Content-Type": "application/offset+octet-stream"})
        deadline = time.time() + 10
        while int(s.call("HEAD", f"/api/v1/uploads/{uid}", tok).headers["Upload-Offset"]) == 0:
            assert time.time() < deadline, "the PATCH wrote nothing"
            time.sleep(0.1)
        s.check(s.call("DELETE", f"/api/v1/uploads/{uid}", tok), 204)
        # the PATCH ends now, though its client has not finished sending (before: it kept
        # reading, then put its validator state back for an upload that no longer existed)
        assert status_of(sock, timeout=10) == 409
        deadline = time.time() + 10
        while files_under(s.data_dir / "uploads") and time.time() < deadline:
            time.sleep(0.1)
        assert files_under(s.data_dir / "uploads") == []
        s.error(s.call("GET", f"/api/v1/uploads/{uid}", tok), 404, "not_found")
        actions = [(e["action"], e["subject"]) for e in audit_actions(s)]
        assert ("upload.abort", uid) in actions and ("upload.create", uid) in actions
    finally:
        if sock:
            sock.close()
        s.stop()


def test_a_retried_patch_takes_over_from_one_whose_connection_died_unseen(tmp_path):
    """A client whose connection died without the server seeing it (a proxy or NAT dropped it)
    retries: its new PATCH supersedes the old one, which keeps what it wrote, instead of a 409
    until the old one's idle timeout (60 s here)."""
    s = Server(tmp_path / "data", "--idle-timeout-s", "60").start()
    sock = None
    try:
        tok = s.tenant_token("takeover", "uploader")
        data = good_package("takeover")
        uid = s.check(create(s, tok, len(data)), 201, "UploadStatus")["upload_id"]
        first = len(data) // 2
        # The "dead" request: declares every byte, sends half, then nothing (its socket stays open).
        sock = slow_request(s, "PATCH", f"/api/v1/uploads/{uid}", tok, len(data), data[:first],
                            headers={"Upload-Offset": "0", "Tus-Resumable": "1.0.0",
                                     "Content-Type": "application/offset+octet-stream"})
        deadline = time.time() + 10
        while int(s.call("HEAD", f"/api/v1/uploads/{uid}", tok).headers["Upload-Offset"]) < first:
            assert time.time() < deadline, "the first PATCH did not write its half"
            time.sleep(0.1)
        started = time.time()
        r = s.call("PATCH", f"/api/v1/uploads/{uid}", tok, headers={"Upload-Offset": str(first)},
                   data=data[first:])
        s.check(r, 204)
        assert time.time() - started < 30, "the retry waited for the old request's idle timeout"
        done = s.check(s.call("GET", f"/api/v1/uploads/{uid}", tok), 200, "UploadStatus")
        assert done["state"] == "stored" and done["package"]["sha256"] == sha256(data)
        # The superseded request was answered, saying why.
        assert status_of(sock, timeout=10) == 409
    finally:
        if sock:
            sock.close()
        s.stop()
