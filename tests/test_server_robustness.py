"""byom-server under failure: resumable uploads across interruptions and restarts, kill -9 of the
server mid-upload and mid-job, kill -9 of a worker, job time limits, the bounded queue (503 +
Retry-After), cancellation, and the worker sandbox (own network namespace, cleared environment,
RLIMIT_DATA)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests

from pathlib import Path

from helpers import FIXTURES_SRC, Server, bad_package, files_under, good_package, sha256, worker_pids

ADMIN = "byom_robustness_admin_secret"


def test_resumable_upload_continues_from_the_last_byte_across_a_restart(tmp_path):
    good = good_package("resumable")
    s = Server(tmp_path / "data").start()
    try:
        tok = s.tenant_token("r", "uploader")
        r = s.call("POST", "/api/v1/uploads?name=resumed.tar.gz", tok, headers={"Upload-Length": str(len(good))})
        up = s.check(r, 201, "UploadStatus")
        uid = up["upload_id"]
        assert up["offset"] == 0 and r.headers["Upload-Offset"] == "0"
        r = s.call("PATCH", f"/api/v1/uploads/{uid}", tok, headers={"Upload-Offset": "0"}, data=good[:1500])
        s.check(r, 204)
        assert r.headers["Upload-Offset"] == "1500" and r.headers["Tus-Resumable"] == "1.0.0"
        # An interrupted request: some bytes arrive, then the client dies.
        def dying():
            yield good[1500:2500]
            time.sleep(0.5)
            raise ConnectionError("client died")

        with pytest.raises(Exception):
            s.call("PATCH", f"/api/v1/uploads/{uid}", tok, headers={"Upload-Offset": "1500"}, data=dying())
        time.sleep(0.3)
        head = s.call("HEAD", f"/api/v1/uploads/{uid}", tok)
        assert head.status_code == 200 and int(head.headers["Upload-Offset"]) == 2500
        # a wrong offset is refused and told the right one
        body = s.error(s.call("PATCH", f"/api/v1/uploads/{uid}", tok, headers={"Upload-Offset": "10"}, data=b"xx"),
                       409, "offset_mismatch")
        assert body["offset"] == 2500
        s.stop()
        s.start()  # validator state is rebuilt from the bytes on disk
        offset = s.check(s.call("GET", f"/api/v1/uploads/{uid}", tok), 200, "UploadStatus")["offset"]
        assert offset == 2500
        r = s.call("PATCH", f"/api/v1/uploads/{uid}", tok, headers={"Upload-Offset": str(offset)}, data=good[offset:])
        s.check(r, 204)
        # the verdict: the package id on the last PATCH, the package from GET on the upload
        done = s.check(s.call("GET", f"/api/v1/uploads/{uid}", tok), 200, "UploadStatus")
        assert done["state"] == "stored" and done["package_id"] == r.headers["Byom-Package-Id"]
        pkg = done["package"]
        assert pkg["sha256"] == sha256(good) and pkg["report"]["valid"] and pkg["name"] == "resumed.tar.gz"
        # the same through PUT gives the same report
        put = s.check(s.upload(tok, good), 201, "PackageResponse")["package"]
        assert put["report"] == pkg["report"]
        # an invalid package through the resumable route: 422 with the report, nothing kept
        bad = bad_package()
        uid = s.check(s.call("POST", "/api/v1/uploads", tok, headers={"Upload-Length": str(len(bad))}), 201,
                      "UploadStatus")["upload_id"]
        body = s.error(s.call("PATCH", f"/api/v1/uploads/{uid}", tok, headers={"Upload-Offset": "0"}, data=bad),
                       422, "invalid_package")
        assert "BYOM203" in [e["code"] for e in body["report"]["errors"]]
        assert files_under(s.data_dir / "uploads") == []
        done = s.check(s.call("GET", f"/api/v1/uploads/{uid}", tok), 200, "UploadStatus")
        assert done["state"] == "rejected" and done["status"] == 422 and done["error"]["report"] == body["report"]
    finally:
        s.stop()


def test_abandoned_resumable_upload_expires_and_an_active_one_does_not(tmp_path):
    good = good_package("expiring")
    s = Server(tmp_path / "data", "--upload-expiry-s", "3").start()
    try:
        tok = s.tenant_token("x", "uploader")

        def open_upload():
            r = s.call("POST", "/api/v1/uploads?name=e.tar.gz", tok, headers={"Upload-Length": str(len(good))})
            uid = s.check(r, 201, "UploadStatus")["upload_id"]
            r = s.call("PATCH", f"/api/v1/uploads/{uid}", tok, headers={"Upload-Offset": "0"}, data=good[:1000])
            s.check(r, 204)
            assert r.headers["Upload-Offset"] == "1000"
            return uid

        abandoned, active = open_upload(), open_upload()
        # The active one sends every second (2 s of slack on a loaded machine); the abandoned one
        # stays idle past its 3 s expiry plus one sweep period (1 s).
        for offset in (1000, 1100, 1200, 1300, 1400, 1500):
            time.sleep(1.0)
            r = s.call("PATCH", f"/api/v1/uploads/{active}", tok, headers={"Upload-Offset": str(offset)},
                       data=good[offset:offset + 100])
            s.check(r, 204)
            assert int(r.headers["Upload-Offset"]) == offset + 100
        s.error(s.call("GET", f"/api/v1/uploads/{abandoned}", tok), 404, "not_found")
        assert [p.name for p in files_under(s.data_dir / "uploads")] == [f"{active}.part"]
        r = s.call("PATCH", f"/api/v1/uploads/{active}", tok, headers={"Upload-Offset": "1600"}, data=good[1600:])
        s.check(r, 204)
        pkg = s.check(s.call("GET", f"/api/v1/packages/{r.headers['Byom-Package-Id']}", tok), 200, "PackageDetail")
        assert pkg["report"]["valid"]
        events = s.check(s.call("GET", "/api/v1/admin/audit", s.admin), 200, "AuditList")["events"]
        expired = [e for e in events if e["action"] == "upload.expire"]
        assert [e["subject"] for e in expired] == [abandoned]
        assert expired[0]["detail"].startswith("tenant x:")
    finally:
        s.stop()


def test_kill_9_mid_upload_leaves_nothing_visible(tmp_path):
    good = good_package("killed-upload")
    s = Server(tmp_path / "data").start()
    tok = s.tenant_token("k", "uploader")
    half_sent = threading.Event()

    def slow():
        yield good[: len(good) // 2]
        half_sent.set()
        time.sleep(30)
        yield good[len(good) // 2:]

    errors = []

    def put():
        try:
            s.call("PUT", "/api/v1/packages", tok, data=slow(), timeout=60)
        except Exception as e:  # the server dies under it
            errors.append(e)

    t = threading.Thread(target=put, daemon=True)
    t.start()
    assert half_sent.wait(20)
    time.sleep(0.5)
    assert files_under(s.data_dir / "tmp"), "the upload should be streaming into a temp file"
    s.kill9()
    s.start()
    try:
        assert s.check(s.call("GET", "/api/v1/packages", tok), 200, "PackageList")["packages"] == []
        assert files_under(s.data_dir / "tmp") == [] and files_under(s.data_dir / "blobs") == []
        # and the server works as before
        s.check(s.upload(tok, good), 201, "PackageResponse")
    finally:
        s.stop()


@pytest.fixture()
def slow_server(tmp_path):
    """One worker, a queue of one, and workers that sleep 60 s before compiling."""
    s = Server(tmp_path / "data", "--workers", "1", "--queue-size", "1", "--worker-memory-mb", "3000",
               env={"BYOM_TEST_WORKER_DELAY_MS": "60000", "BYOM_ADMIN_TOKEN": ADMIN}).start()
    yield s
    s.stop()


def _compile(s, tok, pkg_id, targets=("x86_64-cpu",)):
    return s.call("POST", f"/api/v1/packages/{pkg_id}/compile", tok, json={"targets": list(targets)})


def _wait_running(s, tok, job_id):
    job = s.wait_job(tok, job_id, timeout=30, until=("running",))
    deadline = time.time() + 60  # a loaded 2-core machine can take seconds to start the child
    while not worker_pids(s) and time.time() < deadline:
        time.sleep(0.1)
    return job


def test_worker_killed_mid_job_fails_the_job_and_the_server_keeps_serving(slow_server):
    s = slow_server
    tok = s.tenant_token("w", "uploader")
    pkg = s.check(s.upload(tok, good_package("worker-kill")), 201, "PackageResponse")["package"]
    job = s.check(_compile(s, tok, pkg["id"]), 202, "JobResponse")["job"]
    assert job["status"] == "queued" and [t["status"] for t in job["targets"]] == ["queued"]
    _wait_running(s, tok, job["id"])
    pids = worker_pids(s)
    assert len(pids) == 1
    pid = pids[0]
    # the sandbox: no secrets in its environment, its own network namespace, a data limit
    environ = open(f"/proc/{pid}/environ", "rb").read()
    assert ADMIN.encode() not in environ and b"BYOM_ADMIN_TOKEN" not in environ
    # each attempt runs in a directory of its own (jobs/<job>.attempt-<n>)
    assert os.readlink(f"/proc/{pid}/cwd").endswith(f"{job['id']}.attempt-1")
    limits = open(f"/proc/{pid}/limits").read()
    data_line = [l for l in limits.splitlines() if l.startswith("Max data size")][0]
    assert str(3000 * 1024 * 1024) in data_line, data_line
    if "WITH network access" not in s.log():
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink(f"/proc/{s.proc.pid}/ns/net")
    os.kill(pid, signal.SIGKILL)
    done = s.wait_job(tok, job["id"], timeout=30)
    assert done["status"] == "failed"
    assert "killed by signal 9" in done["failure_reason"], done
    assert done["targets"][0]["status"] == "failed" and done["targets"][0]["failure_reason"]
    assert s.call("GET", "/healthz").status_code == 200
    s.check(s.call("GET", f"/api/v1/packages/{pkg['id']}", tok), 200, "PackageDetail")


def test_queue_full_gives_503_with_retry_after_and_cancel_works(slow_server):
    s = slow_server
    tok = s.tenant_token("q", "uploader")
    pkg = s.check(s.upload(tok, good_package("queue")), 201, "PackageResponse")["package"]
    first = s.check(_compile(s, tok, pkg["id"]), 202, "JobResponse")["job"]
    _wait_running(s, tok, first["id"])
    second = s.check(_compile(s, tok, pkg["id"]), 202, "JobResponse")["job"]
    r = _compile(s, tok, pkg["id"])
    s.error(r, 503, "queue_full")
    assert int(r.headers["Retry-After"]) > 0
    assert "byom_jobs_refused_total 1" in s.call("GET", "/metrics", s.admin).text
    assert "byom_queue_depth 1" in s.call("GET", "/metrics", s.admin).text
    # deleting a package with live jobs is refused
    s.error(s.call("DELETE", f"/api/v1/packages/{pkg['id']}", tok), 409, "conflict")
    # cancel the queued one, then the running one
    job = s.check(s.call("POST", f"/api/v1/jobs/{second['id']}/cancel", tok), 200, "JobResponse")["job"]
    assert job["status"] == "cancelled"
    job = s.check(s.call("POST", f"/api/v1/jobs/{first['id']}/cancel", tok), 200, "JobResponse")["job"]
    assert job["status"] == "cancelled" and [t["status"] for t in job["targets"]] == ["cancelled"]
    deadline = time.time() + 10
    while worker_pids(s) and time.time() < deadline:
        time.sleep(0.1)
    assert worker_pids(s) == [], "the cancelled worker's process group was killed"
    s.error(s.call("POST", f"/api/v1/jobs/{first['id']}/cancel", tok), 409, "conflict")
    assert s.call("DELETE", f"/api/v1/packages/{pkg['id']}", tok).status_code == 204


def test_job_time_limit(tmp_path):
    s = Server(tmp_path / "data", "--job-timeout-s", "1", env={"BYOM_TEST_WORKER_DELAY_MS": "30000"}).start()
    try:
        tok = s.tenant_token("t", "uploader")
        pkg = s.check(s.upload(tok, good_package("timeout")), 201, "PackageResponse")["package"]
        job = s.check(_compile(s, tok, pkg["id"]), 202, "JobResponse")["job"]
        done = s.wait_job(tok, job["id"], timeout=30)
        assert done["status"] == "failed" and "time limit of 1 s" in done["failure_reason"], done
        assert worker_pids(s) == []
    finally:
        s.stop()


def test_server_killed_mid_job_marks_it_failed_on_restart(slow_server):
    s = slow_server
    tok = s.tenant_token("m", "uploader")
    pkg = s.check(s.upload(tok, good_package("server-kill")), 201, "PackageResponse")["package"]
    job = s.check(_compile(s, tok, pkg["id"]), 202, "JobResponse")["job"]
    _wait_running(s, tok, job["id"])
    worker = worker_pids(s)[0]
    s.kill9()
    # PR_SET_PDEATHSIG: the worker dies with the server
    def alive(pid):
        try:
            return not open(f"/proc/{pid}/stat").read().split(") ", 1)[1].startswith("Z")
        except OSError:
            return False

    deadline = time.time() + 10
    while alive(worker) and time.time() < deadline:
        time.sleep(0.1)
    assert not alive(worker), "the worker outlived the server"
    s.start()
    done = s.check(s.call("GET", f"/api/v1/jobs/{job['id']}", tok), 200, "JobResponse")["job"]
    assert done["status"] == "failed" and "server stopped" in done["failure_reason"]
    s.check(s.call("GET", f"/api/v1/packages/{pkg['id']}", tok), 200, "PackageDetail")


def test_idle_timeout_is_per_chunk_not_total(tmp_path):
    good = good_package("idle")
    s = Server(tmp_path / "data", "--idle-timeout-s", "2").start()
    try:
        tok = s.tenant_token("i", "uploader")

        def slow_but_steady():  # 4 s in total, never idle for 2 s
            step = len(good) // 8 + 1
            for i in range(0, len(good), step):
                yield good[i:i + step]
                time.sleep(0.5)

        s.check(s.call("PUT", "/api/v1/packages", tok, data=slow_but_steady()), 201, "PackageResponse")

        def stalls():
            yield good[:1000]
            time.sleep(4)
            yield good[1000:]

        try:
            r = s.call("PUT", "/api/v1/packages", tok, data=stalls())
            assert r.status_code == 408, r.text
        except requests.ConnectionError:
            pass  # the server answered 408 and closed while the client was still sending
        assert len(s.check(s.call("GET", "/api/v1/packages", tok), 200, "PackageList")["packages"]) == 1
        assert files_under(s.data_dir / "tmp") == []
        assert any("status=408" in line for line in s.request_lines("PUT", "/api/v1/packages"))
    finally:
        s.stop()


def test_a_worker_that_crashes_says_at_which_step(tmp_path):
    """libtorch running a model can crash the worker (SIGSEGV) before any report is written.
    The compile announces each libtorch step on stderr (byom_compile::progress), so the job's
    failure says where. Here the crash is a SIGABRT sent while a slow scripted model runs on
    its declared input (a SIGSEGV sent by kill() would not do: Rust's stack-overflow handler
    returns from one that is not a fault): the reason must name that step."""
    import io
    import sys

    import torch

    sys.path.insert(0, str(FIXTURES_SRC))
    import make_packages as mp

    class Slow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 2)

        def forward(self, x):
            for _ in range(3_000_000):
                x = x * 1.0
            return self.fc(x.mean(dim=(2, 3)))

    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(Slow().eval()), buf)
    shape = [1, 3, 8, 8]
    spec = mp.Package("unused", "model.pt", "classification", shape, [1, 2], 2, ["a", "b"],
                      preprocessing={"resize": [8, 8], "normalize": mp.IMAGENET, "channel_order": "RGB"},
                      postprocessing={"type": "softmax"})
    s = Server(tmp_path / "data", "--workers", "1").start()
    try:
        tok = s.tenant_token("crash", "uploader")
        pkg = s.check(s.upload(tok, mp.gz(mp.tar_bytes(mp.members_of(spec, pt_data=buf.getvalue())))), 201,
                      "PackageResponse")["package"]
        job = s.check(_compile(s, tok, pkg["id"]), 202, "JobResponse")["job"]
        _wait_running(s, tok, job["id"])
        [pid] = worker_pids(s)
        log = Path(os.readlink(f"/proc/{pid}/cwd")) / "worker.log"
        deadline = time.time() + 120
        while "step: running the model" not in (log.read_text() if log.exists() else ""):
            assert time.time() < deadline, log.read_text() if log.exists() else "no worker.log"
            time.sleep(0.05)
        os.kill(pid, signal.SIGABRT)
        done = s.wait_job(tok, job["id"], timeout=60)
        assert done["status"] == "failed"
        assert ("killed by signal 6 (SIGABRT) while running the model on its declared input [1, 3, 8, 8]"
                in done["failure_reason"]), done["failure_reason"]
    finally:
        s.stop()
