"""The cluster: two API servers (`serve --workers 0`) and two compile workers
(`byom-server worker`) on one throwaway PostgreSQL (tests/pg.py) and one shared data
directory. Uploads land on either API server and are visible on both, tenants stay apart
across nodes, a resumable upload started on one server finishes on the other, the queue limit
holds against concurrent requests to both servers, jobs spread over both workers, a cancel
made on an API server reaches the worker running the job, and a worker killed with SIGKILL
mid-compile loses its job to the other worker after its lease: the job ends succeeded,
recorded once."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import pg
from helpers import Server, Worker, good_package

# Long enough that a loaded 2-core CI machine (two compiles, two API servers, PostgreSQL) renews
# every lease in time (heartbeats every 2 s at most): with 3 s a job lost its lease twice and
# failed. The killed-worker step waits this long once.
LEASE_S = 8
ADMIN = "byom_" + "c1" * 32


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    data = root / "data"
    database = pg.shared().fresh_database()
    env = {"BYOM_ADMIN_TOKEN": ADMIN}
    apis = []
    for name in ("api1", "api2"):
        s = Server(data, "--workers", "0", "--database", database, "--queue-size", "3", env=env)
        s.log_path = root / f"{name}.log"
        apis.append(s.start())  # one after the other: the first creates the schema
    workers = []
    try:
        yield {"apis": apis, "workers": workers, "data": data, "database": database}
    finally:
        for w in workers:
            w.stop()
        for s in apis:
            s.stop()


def start_workers(cluster, *args: str) -> list[Worker]:
    for i in (1, 2):
        name = f"worker{i}-{len(cluster['workers'])}"
        log = cluster["data"].parent / f"{name}.log"
        cluster["workers"].append(
            Worker(name, cluster["data"], log, cluster["database"], "--lease-s", str(LEASE_S), *args).start())
    return cluster["workers"][-2:]


def assert_succeeded(job: dict, *workers: Worker) -> None:
    """A failed job says why: its failure reason, its log tail and the workers' logs."""
    if job["status"] != "succeeded":
        logs = "\n".join(f"--- {w.name}:\n{w.log()[-3000:]}" for w in workers)
        raise AssertionError(f"job {job['id']} {job['status']}: {job.get('failure_reason')}\n"
                             f"log tail: {job.get('log_tail')}\n{logs}")


def test_cluster_uploads_tenants_queue_limit_jobs_cancel_and_a_killed_worker(cluster):
    a, b = cluster["apis"]
    assert a.admin == ADMIN
    alice = a.tenant_token("alice", "uploader")
    bob = b.tenant_token("bob", "uploader")

    # Uploads spread over both API servers; each is visible on the other, to its tenant only.
    pkgs = []
    for i, server in enumerate([a, b, a, b]):
        pkgs.append(server.check(server.upload(alice, good_package(f"cluster-{i}")), 201, "PackageResponse")["package"])
    listed = b.check(b.call("GET", "/api/v1/packages", alice), 200, "PackageList")
    assert {p["id"] for p in pkgs} <= {p["id"] for p in listed["packages"]}
    for p in pkgs:
        other = a if p is pkgs[1] or p is pkgs[3] else b
        other.check(other.call("GET", f"/api/v1/packages/{p['id']}", alice), 200, "PackageDetail")
        other.error(other.call("GET", f"/api/v1/packages/{p['id']}", bob), 404, "not_found")

    # A resumable upload started on one server finishes on the other.
    data = good_package("cluster-resumed")
    r = a.call("POST", "/api/v1/uploads?name=resumed.tar.gz", alice, headers={"Upload-Length": str(len(data))})
    uid = a.check(r, 201, "UploadStatus")["upload_id"]
    half = len(data) // 2
    r = a.call("PATCH", f"/api/v1/uploads/{uid}", alice, headers={"Upload-Offset": "0"}, data=data[:half])
    a.check(r, 204)
    assert int(r.headers["Upload-Offset"]) == half
    head = b.call("HEAD", f"/api/v1/uploads/{uid}", alice)
    assert head.status_code == 200 and int(head.headers["Upload-Offset"]) == half
    r = b.call("PATCH", f"/api/v1/uploads/{uid}", alice, headers={"Upload-Offset": str(half)}, data=data[half:])
    b.check(r, 204)
    resumed = b.check(b.call("GET", f"/api/v1/uploads/{uid}", alice), 200, "UploadStatus")["package"]
    assert resumed["id"] == r.headers["Byom-Package-Id"]
    assert a.check(a.call("GET", f"/api/v1/packages/{resumed['id']}", alice), 200, "PackageDetail")["size"] == len(data)

    # The queue limit (3) holds against concurrent requests to both servers (no workers yet).
    def compile_on(i: int):
        server = (a, b)[i % 2]
        return server.call("POST", f"/api/v1/packages/{pkgs[0]['id']}/compile", alice, json={"targets": ["x86_64-cpu"]})

    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = sorted(r.status_code for r in pool.map(compile_on, range(10)))
    assert codes == [202] * 3 + [503] * 7, codes
    queued = [j for j in a.check(a.call("GET", "/api/v1/jobs", alice), 200, "JobList")["jobs"]]
    assert len(queued) == 3 and all(j["status"] == "queued" for j in queued)
    # Cancel them: queued jobs are cancelled by whichever server is asked.
    for j, server in zip(queued, [a, b, a]):
        assert server.check(server.call("POST", f"/api/v1/jobs/{j['id']}/cancel", alice), 200,
                            "JobResponse")["job"]["status"] == "cancelled"

    # Two workers; each compile waits 4 s first, so both are busy at once.
    w1, w2 = start_workers(cluster, "--test-worker-delay-ms", "4000")
    jobs = []
    for p, server in zip(pkgs[:2], [a, b]):
        r = server.call("POST", f"/api/v1/packages/{p['id']}/compile", alice, json={"targets": ["x86_64-cpu"]})
        jobs.append(server.check(r, 202, "JobResponse")["job"]["id"])

    # A cancel made on an API server reaches the worker running the job (on another host).
    r = b.call("POST", f"/api/v1/packages/{pkgs[2]['id']}/compile", alice, json={"targets": ["x86_64-cpu"]})
    victim = b.check(r, 202, "JobResponse")["job"]["id"]
    a.wait_job(alice, victim, timeout=60, until=("running",))
    cancelled = a.check(a.call("POST", f"/api/v1/jobs/{victim}/cancel", alice), 200, "JobResponse")["job"]
    if cancelled["status"] == "running":  # the answer waits 5 s at most
        cancelled = a.wait_job(alice, victim, timeout=30)
    assert cancelled["status"] == "cancelled", cancelled

    for j in jobs:
        assert_succeeded(b.wait_job(alice, j, timeout=600), w1, w2)
    ran = {j: [w.name for w in (w1, w2) if w.lines("job finished", j)] for j in jobs}
    assert sorted(sum(ran.values(), [])) == sorted([w1.name, w2.name]), f"jobs did not spread: {ran}"
    # The artifact is served by either API server.
    target = b.wait_job(alice, jobs[0])["targets"][0]
    for server in (a, b):
        r = server.call("GET", target["artifact_url"], alice)
        assert r.status_code == 200 and r.headers["content-type"] == "application/gzip"
        server.error(server.call("GET", target["artifact_url"], bob), 404, "not_found")

    # kill -9 of the worker running a job: after its lease the other worker runs it again.
    r = a.call("POST", f"/api/v1/packages/{pkgs[3]['id']}/compile", alice, json={"targets": ["x86_64-cpu"]})
    job = a.check(r, 202, "JobResponse")["job"]["id"]
    a.wait_job(alice, job, timeout=60, until=("running",))
    deadline = time.time() + 20
    holder = None
    while holder is None and time.time() < deadline:
        holder = next((w for w in (w1, w2) if w.lines("job started", job)), None)
        time.sleep(0.1)
    assert holder is not None, "no worker logged the job's start"
    survivor = w2 if holder is w1 else w1
    killed_at = time.time()
    holder.stop(signal.SIGKILL)
    assert_succeeded(b.wait_job(alice, job, timeout=600), w1, w2)
    assert time.time() - killed_at >= LEASE_S - 1, "re-run before the lease ran out"
    assert not holder.lines("job finished", job)
    assert len(survivor.lines("job finished", job)) == 1, survivor.log()[-3000:]
    assert len(survivor.lines("job started", job)) == 1
    # Whichever node's reaper re-queued it said so.
    logs = a.log() + b.log() + survivor.log()
    assert any("stopped renewing its lease" in ln and "requeued=1" in ln for ln in logs.splitlines()), \
        "no node logged the re-queue"
