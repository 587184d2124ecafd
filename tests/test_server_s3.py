"""Object storage: two API servers (`serve --workers 0`) and two compile workers on one
PostgreSQL (tests/pg.py) and one bucket of a throwaway S3 server (tests/s3.py), with NO shared
data directory (every node has its own local scratch directory). Uploads on either server are
visible on the other, a resumable upload started on one finishes on the other (also after a
PATCH cut off mid-way: what arrived counts; and with a standard tus client), a worker fetches
the package from the bucket and puts the artifact there, both API servers serve it, tenants
stay apart, identical bytes are stored once, refused uploads leave no object behind, a worker
that loses its lease mid-compile or is killed with SIGKILL mid-compile never completes its job
(another worker re-runs it once, after the lease), and an API server killed with SIGKILL
mid-upload leaves nothing half-visible."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from tusclient import client as tus_client

import pg
import s3
from helpers import Server, Worker, bad_package, good_package, sha256

ADMIN = "byom_" + "5e" * 32
LEASE_S = 8


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3cluster")
    server = s3.shared()
    bucket = server.fresh_bucket()
    storage = f"s3://{bucket}/byom"
    database = pg.shared().fresh_database()
    env = {"BYOM_ADMIN_TOKEN": ADMIN, **server.env()}
    apis, workers = [], []
    try:
        for name in ("api1", "api2"):
            # Parts of 5 MiB (the least S3 allows), so a 12 MiB upload is sent in three.
            s = Server(root / name, "--workers", "0", "--database", database, "--storage", storage,
                       "--storage-part-mib", "5", env=env)
            apis.append(s.start())  # one after the other: the first creates the schema
        for name in ("worker1", "worker2"):
            workers.append(Worker(name, root / name, root / f"{name}.log", database, "--storage", storage,
                                  "--lease-s", str(LEASE_S), env=env).start())
        yield {"apis": apis, "workers": workers, "s3": server, "bucket": bucket, "root": root,
               "database": database, "storage": storage, "env": env}
    finally:
        for w in workers:
            w.stop()
        for s in apis:
            s.stop()


def keys(cluster, area: str) -> list[str]:
    return cluster["s3"].keys(cluster["bucket"], f"byom/{area}")


def local_files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def psql(cluster, sql: str) -> list[list[str]]:
    """Rows of a query on the cluster's database, as strings."""
    out = pg.shared().psql(sql, db=cluster["database"].rsplit("/", 1)[1])
    return [line.split("|") for line in out.splitlines()]


def job_row(cluster, job_id: str) -> tuple[str, int, str]:
    """The job's status, attempts (claims) and lease holder, from its row."""
    [[status, attempts, owner]] = psql(
        cluster, f"SELECT status, attempts, coalesce(lease_owner, '') FROM jobs WHERE id = '{job_id}'")
    return status, int(attempts), owner


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an orphan's may wait for a reaper that does
    not come, in a container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def compile_child(worker: Worker, timeout: float = 60) -> int:
    """The pid of the worker's sandboxed compile process (`byom-server worker --job-dir …`)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for proc in Path("/proc").iterdir():
            try:
                if not proc.name.isdigit():
                    continue
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == worker.proc.pid and b"--job-dir" in (proc / "cmdline").read_bytes():
                    return int(proc.name)
            except OSError:
                continue
        time.sleep(0.1)
    raise AssertionError(f"{worker.name} started no compile:\n{worker.log()[-3000:]}")


def until(what: str, check, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, f"not the case after {timeout} s: {what}"
        time.sleep(0.1)


def test_packages_uploads_jobs_and_artifacts_live_in_the_bucket(cluster):
    a, b = cluster["apis"]
    alice = a.tenant_token("alice", "uploader")
    bob = b.tenant_token("bob", "uploader")

    # Uploads on either server are visible on the other, to their tenant only.
    p1 = a.check(a.upload(alice, good_package("s3-1")), 201, "PackageResponse")["package"]
    p2 = b.check(b.upload(alice, good_package("s3-2")), 201, "PackageResponse")["package"]
    for p, other in ((p1, b), (p2, a)):
        assert other.check(other.call("GET", f"/api/v1/packages/{p['id']}", alice), 200, "PackageDetail")["sha256"] == p["sha256"]
        other.error(other.call("GET", f"/api/v1/packages/{p['id']}", bob), 404, "not_found")
    blobs = keys(cluster, "blobs/")
    assert blobs == sorted(f"byom/blobs/{p['sha256'][:2]}/{p['sha256']}" for p in (p1, p2))
    # Nothing of the packages is on any node's disk.
    for s in (a, b):
        assert local_files(s.data_dir / "blobs") == [] and local_files(s.data_dir / "tmp") == []

    # Identical bytes from another tenant: a package of bob's own, the same one object.
    dup = b.check(b.upload(bob, good_package("s3-1")), 201, "PackageResponse")["package"]
    assert dup["id"] != p1["id"] and dup["sha256"] == p1["sha256"]
    assert keys(cluster, "blobs/") == blobs
    b.check(b.call("DELETE", f"/api/v1/packages/{dup['id']}", bob), 204)
    assert keys(cluster, "blobs/") == blobs, "bob's delete removed bytes alice still uses"

    # A resumable upload started on one server finishes on the other.
    data = good_package("s3-resumed")
    r = a.call("POST", "/api/v1/uploads?name=resumed.tar.gz", alice, headers={"Upload-Length": str(len(data))})
    uid = a.check(r, 201, "UploadStatus")["upload_id"]
    half = len(data) // 2
    r = a.call("PATCH", f"/api/v1/uploads/{uid}", alice, headers={"Upload-Offset": "0"}, data=data[:half])
    a.check(r, 204)
    assert int(r.headers["Upload-Offset"]) == half
    assert int(b.call("HEAD", f"/api/v1/uploads/{uid}", alice).headers["Upload-Offset"]) == half
    assert b.call("HEAD", f"/api/v1/uploads/{uid}", bob).status_code == 404
    r = b.call("PATCH", f"/api/v1/uploads/{uid}", alice, headers={"Upload-Offset": "0"}, data=data)
    assert b.error(r, 409, "offset_mismatch")["offset"] == half
    r = b.call("PATCH", f"/api/v1/uploads/{uid}", alice, headers={"Upload-Offset": str(half)}, data=data[half:])
    b.check(r, 204)
    resumed = b.check(b.call("GET", f"/api/v1/uploads/{uid}", alice), 200, "UploadStatus")["package"]
    assert resumed["sha256"] == sha256(data)
    assert a.check(a.call("GET", f"/api/v1/packages/{resumed['id']}", alice), 200, "PackageDetail")["size"] == len(data)
    assert keys(cluster, "uploads/") == [] and keys(cluster, "tmp/") == []

    # A compile job: a worker fetches the package from the bucket, puts the artifact there,
    # and both API servers serve it (to its tenant only).
    r = b.call("POST", f"/api/v1/packages/{p1['id']}/compile", alice, json={"targets": ["x86_64-cpu"]})
    job_id = b.check(r, 202, "JobResponse")["job"]["id"]
    job = a.wait_job(alice, job_id, timeout=300)
    assert job["status"] == "succeeded", (job.get("failure_reason"), job.get("log_tail"))
    target = job["targets"][0]
    bodies = []
    for s in (a, b):
        r = s.call("GET", target["artifact_url"], alice)
        assert r.status_code == 200 and r.headers["content-type"] == "application/gzip"
        bodies.append(r.content)
        s.error(s.call("GET", target["artifact_url"], bob), 404, "not_found")
    # The same bundle from both (the job's sha256 is the model's inside it, not the bundle's).
    assert bodies[0] == bodies[1] and bodies[0][:2] == b"\x1f\x8b" and len(bodies[0]) > 1000
    job_keys = keys(cluster, f"jobs/{job_id}/")
    assert f"byom/jobs/{job_id}/artifacts/x86_64-cpu.tar.gz" in job_keys
    assert f"byom/jobs/{job_id}/log.txt" in job_keys
    for w in cluster["workers"]:
        assert local_files(w.data_dir / "jobs") == [], "a worker kept the job's files"

    # Deleting the package removes its job's artifacts and, unreferenced now, its bytes.
    a.check(a.call("DELETE", f"/api/v1/packages/{p1['id']}", alice), 204)
    assert keys(cluster, f"jobs/{job_id}/") == []
    assert f"byom/blobs/{p1['sha256'][:2]}/{p1['sha256']}" not in keys(cluster, "blobs/")


def test_refused_uploads_leave_no_object(cluster):
    a, b = cluster["apis"]
    alice = a.tenant_token("alice", "uploader")
    before = keys(cluster, "")
    listed = len(b.check(b.call("GET", "/api/v1/packages", alice), 200, "PackageList")["packages"])
    # An invalid package, and 12 MiB of garbage (three parts sent before the verdict).
    a.error(a.upload(alice, bad_package()), 422, "invalid_package")
    b.error(b.upload(alice, os.urandom(12 * 1024 * 1024)), 422, "invalid_package")
    # An invalid resumable upload, split over both servers.
    data = bad_package()
    r = a.call("POST", "/api/v1/uploads", alice, headers={"Upload-Length": str(len(data))})
    uid = a.check(r, 201, "UploadStatus")["upload_id"]
    a.check(a.call("PATCH", f"/api/v1/uploads/{uid}", alice, headers={"Upload-Offset": "0"}, data=data[:100]), 204)
    b.error(b.call("PATCH", f"/api/v1/uploads/{uid}", alice, headers={"Upload-Offset": "100"}, data=data[100:]),
            422, "invalid_package")
    # A resumable upload deleted half-way.
    r = b.call("POST", "/api/v1/uploads", alice, headers={"Upload-Length": "1000"})
    uid = b.check(r, 201, "UploadStatus")["upload_id"]
    b.check(b.call("PATCH", f"/api/v1/uploads/{uid}", alice, headers={"Upload-Offset": "0"}, data=b"x" * 10), 204)
    assert keys(cluster, f"uploads/{uid}/")
    a.check(a.call("DELETE", f"/api/v1/uploads/{uid}", alice), 204)
    assert keys(cluster, "") == before
    assert cluster["s3"].multipart_uploads(cluster["bucket"]) == [], "a refused upload was not aborted"
    assert len(a.check(a.call("GET", "/api/v1/packages", alice), 200, "PackageList")["packages"]) == listed


def test_a_patch_cut_off_keeps_what_arrived_and_another_server_continues(cluster):
    a, b = cluster["apis"]
    alice = a.tenant_token("alice", "uploader")
    data = good_package("s3-cut")
    r = a.call("POST", "/api/v1/uploads?name=cut.tar.gz", alice, headers={"Upload-Length": str(len(data))})
    uid = a.check(r, 201, "UploadStatus")["upload_id"]
    sent = len(data) // 3

    def cut():
        yield data[:sent]
        time.sleep(0.5)  # let the first chunk reach the server
        raise ConnectionError("dropped")

    with pytest.raises(Exception):
        a.call("PATCH", f"/api/v1/uploads/{uid}", alice, headers={"Upload-Offset": "0"}, data=cut())
    deadline = time.time() + 10
    offset = 0
    while time.time() < deadline and offset == 0:
        offset = int(b.call("HEAD", f"/api/v1/uploads/{uid}", alice).headers["Upload-Offset"])
        time.sleep(0.1)
    assert 0 < offset <= sent, offset
    r = b.call("PATCH", f"/api/v1/uploads/{uid}", alice, headers={"Upload-Offset": str(offset)}, data=data[offset:])
    b.check(r, 204)
    done = a.check(a.call("GET", f"/api/v1/uploads/{uid}", alice), 200, "UploadStatus")
    assert done["state"] == "stored" and done["package"]["sha256"] == sha256(data)
    assert keys(cluster, "uploads/") == [] and keys(cluster, "tmp/") == []


def test_a_standard_tus_client_starts_on_one_server_and_resumes_on_the_other(cluster):
    a, b = cluster["apis"]
    alice = a.tenant_token("alice", "uploader")
    auth = {"Authorization": f"Bearer {alice}"}
    data = good_package("s3-tuspy")
    half = len(data) // 2 + 1
    first = tus_client.TusClient(a.url + "/api/v1/uploads", headers=auth).uploader(
        file_stream=io.BytesIO(data), chunk_size=half, metadata={"filename": "tuspy.tar.gz"})
    first.upload_chunk()  # creates the upload and sends the first half, to api1
    assert first.offset == half
    path = first.url[len(a.url):]
    # The client resumes through api2: it asks there for the offset, then sends the rest.
    second = tus_client.TusClient(b.url + "/api/v1/uploads", headers=auth).uploader(
        file_stream=io.BytesIO(data), url=b.url + path, chunk_size=half)
    assert second.offset == half
    second.upload()
    done = b.check(b.call("GET", path, alice), 200, "UploadStatus")
    assert done["state"] == "stored" and done["package"]["sha256"] == sha256(data)
    assert done["package"]["name"] == "tuspy.tar.gz"
    a.check(a.call("GET", f"/api/v1/packages/{done['package']['id']}", alice), 200, "PackageDetail")
    assert keys(cluster, "uploads/") == [] and keys(cluster, "tmp/") == []


# Next to last: it stops the module's workers.
def test_a_worker_that_loses_its_lease_or_is_killed_mid_compile_never_completes_its_job(cluster):
    a, b = cluster["apis"]
    alice = a.tenant_token("alice", "uploader")
    root = cluster["root"]
    for w in cluster["workers"]:
        w.stop()
    p = a.check(a.upload(alice, good_package("s3-lease")), 201, "PackageResponse")["package"]

    def worker(name: str, *args: str) -> Worker:
        w = Worker(name, root / name, root / f"{name}.log", cluster["database"], "--storage", cluster["storage"],
                   "--lease-s", str(LEASE_S), *args, env=cluster["env"]).start()
        cluster["workers"].append(w)
        return w

    def compile_job() -> str:
        r = a.call("POST", f"/api/v1/packages/{p['id']}/compile", alice, json={"targets": ["x86_64-cpu"]})
        job = a.check(r, 202, "JobResponse")["job"]["id"]
        a.wait_job(alice, job, timeout=60, until=("running",))
        return job

    # The only worker, and every compile of it waits a minute first: stopped mid-compile.
    slow = worker("slow", "--test-worker-delay-ms", "60000")

    # Its lease is taken while it compiles (as when the reaper hands a job on after the worker
    # was cut off from the database for longer than the lease): it kills the compile, and
    # stores and records nothing; the job stays its new holder's.
    lost = compile_job()
    child = compile_child(slow)
    # (Its lease_until moves an hour on, so that no reaper re-queues it meanwhile.)
    psql(cluster, f"UPDATE jobs SET lease_owner = 'test-thief', lease_until = lease_until + 3600 WHERE id = '{lost}'")
    until("the compile killed", lambda: not alive(child), timeout=30)
    until("the loss logged", lambda: slow.lines("lost the job's lease", lost), timeout=30)
    assert not slow.lines("job finished", lost)
    assert job_row(cluster, lost) == ("running", 1, "test-thief")
    assert keys(cluster, f"jobs/{lost}/") == []
    until("its scratch removed", lambda: local_files(slow.data_dir / "jobs") == [], timeout=10)

    # kill -9 of the worker mid-compile; a worker that compiles at once takes over.
    killed = compile_job()
    child = compile_child(slow)
    slow.stop(signal.SIGKILL)
    killed_at = time.time()
    until("the compile died with its worker", lambda: not alive(child), timeout=10)
    fast = worker("fast")
    # The first job's thief was asked to cancel it and died too (no compile spent on it here).
    psql(cluster, f"UPDATE jobs SET cancel_requested = 1, lease_until = 0 WHERE id = '{lost}'")
    job = b.wait_job(alice, killed, timeout=300)
    assert job["status"] == "succeeded", (job.get("failure_reason"), job.get("log_tail"), fast.log()[-3000:])
    assert time.time() - killed_at >= LEASE_S - 1, "re-run before the lease ran out"
    # It ran to completion once, on its second claim, and the bucket holds that run's outputs.
    assert job_row(cluster, killed) == ("succeeded", 2, "")
    assert not slow.lines("job finished", killed)
    assert len(fast.lines("job finished", killed)) == 1, fast.log()[-3000:]
    assert keys(cluster, f"jobs/{killed}/") == [f"byom/jobs/{killed}/{k}" for k in (
        "artifacts/x86_64-cpu.tar.gz", "log.txt", "worker.log")]
    r = a.call("GET", job["targets"][0]["artifact_url"], alice)
    assert r.status_code == 200 and r.content[:2] == b"\x1f\x8b"
    logs = a.log() + b.log() + fast.log()
    assert any("stopped renewing its lease" in ln and "requeued=1" in ln for ln in logs.splitlines()), \
        "no node logged the re-queue"
    # The first job: cancelled by the reaper, never finished by anyone, nothing in the bucket.
    lost_job = b.wait_job(alice, lost, timeout=60)
    assert lost_job["status"] == "cancelled", lost_job
    assert job_row(cluster, lost) == ("cancelled", 1, "")
    assert not slow.lines("job finished", lost) and not fast.lines("job started", lost)
    assert keys(cluster, f"jobs/{lost}/") == []


# Last: it kills api1.
def test_an_api_server_killed_mid_upload_leaves_nothing_visible(cluster):
    a, b = cluster["apis"]
    alice = b.tenant_token("alice", "uploader")
    before = keys(cluster, "")
    listed = len(b.check(b.call("GET", "/api/v1/packages", alice), 200, "PackageList")["packages"])
    data = good_package("s3-killed")
    sent = threading.Event()

    def slow():
        yield data[:1000]
        sent.set()
        while True:  # never finishes: the server dies first, and the next send fails
            time.sleep(0.2)
            yield b"x"

    def put():
        try:
            a.call("PUT", "/api/v1/packages?name=killed.tar.gz", alice, data=slow(), timeout=30)
        except Exception:
            pass

    t = threading.Thread(target=put, daemon=True)
    t.start()
    assert sent.wait(10)
    time.sleep(0.5)
    a.kill9()
    t.join(timeout=30)
    assert keys(cluster, "") == before, "a killed upload left a visible object"
    after = b.check(b.call("GET", "/api/v1/packages", alice), 200, "PackageList")["packages"]
    assert len(after) == listed
