"""Cluster benchmark (loopback only): byom-server on PostgreSQL + S3 (moto), 1 vs 2 API servers
and 1 vs 2 compile workers.

1. uploads: `--clients` threads PUT a small real fixture package (tests/out/fixtures) `--uploads`
   times in all, spread round-robin over 1, then 2 API servers (`serve --workers 0`):
   packages/s, p50 and p95 latency of one upload, and the API servers' CPU seconds per upload.
2. compiles: `--jobs` x86_64-cpu compile jobs of that package, run by 1, then 2 workers
   (`byom-server worker --workers 1`, OMP_NUM_THREADS=1 each): jobs/min from the first
   enqueue to the last end, and the workers' CPU seconds (worker + compile child) per job.

The load average (1/5/15 min) is printed with every figure: on a shared machine it says how
much the figure is worth. Uses tests/pg.py (a throwaway PostgreSQL), tests/s3.py (moto) and the
Server/Worker helpers of tests/helpers.py; nothing is kept. Not part of the test command.

Usage: python bench/cluster.py [--fixture gzip_level_1] [--uploads 200] [--clients 8]
       [--jobs 6] [--server target/release/byom-server]
Prints a Markdown table (pasted into docs/bench-cluster.md). About 2-4 minutes.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import requests  # noqa: E402

import pg  # noqa: E402
import s3  # noqa: E402
from helpers import Server, Worker, fixtures_dir_path  # noqa: E402

ADMIN = "byom_" + "be" * 32


def load() -> str:
    return "{:.2f} / {:.2f} / {:.2f}".format(*os.getloadavg())


def children_cpu() -> float:
    """User + system CPU seconds of this process's waited-for children (and theirs)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def proc_cpu(pid: int) -> float:
    """CPU seconds of a running process and its waited-for children (PostgreSQL's backends are
    counted once their connection closes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def others_cpu() -> tuple[float, float]:
    """CPU seconds so far of moto (the S3 server) and PostgreSQL."""
    return proc_cpu(s3.shared().proc.pid), proc_cpu(pg.shared().proc.pid)


def percentile(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(p / 100 * len(v) + 0.5) - 1))]


class Cluster:
    def __init__(self, root: Path, database: str, storage: str, env: dict):
        self.root, self.database, self.storage, self.env = root, database, storage, env
        self.n = 0

    def api(self) -> Server:
        self.n += 1
        # One tenant sends all uploads: the per-tenant upload limits (4 at once per server by
        # default) would otherwise answer 429 to the benchmark's own clients.
        return Server(self.root / f"api{self.n}", "--workers", "0", "--database", self.database,
                      "--storage", self.storage, "--max-concurrent-uploads-per-tenant", "256",
                      "--queue-size", "1000", env=self.env).start()

    def worker(self) -> Worker:
        self.n += 1
        name = f"worker{self.n}"
        # One thread per compile, so that two workers could use two cores if the box had them.
        env = {**self.env, "OMP_NUM_THREADS": "1"}
        return Worker(name, self.root / name, self.root / f"{name}.log", self.database, "--storage",
                      self.storage, env=env).start()


def upload_round(servers: list[Server], token: str, data: bytes, uploads: int, clients: int) -> dict:
    local = threading.local()

    def one(i: int) -> float:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        server = servers[i % len(servers)]
        t0 = time.perf_counter()
        r = session.put(f"{server.url}/api/v1/packages?name=bench-{i}.tar.gz", data=data,
                        headers={"Authorization": f"Bearer {token}"}, timeout=300)
        took = time.perf_counter() - t0
        if r.status_code != 201:
            raise AssertionError(f"upload {i}: {r.status_code} {r.text[:500]}")
        return took

    with ThreadPoolExecutor(max_workers=clients) as pool:  # warm-up: connections, caches
        list(pool.map(one, range(clients)))
    cpu0, others0 = children_cpu(), others_cpu()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        latencies = list(pool.map(one, range(uploads)))
    wall = time.perf_counter() - t0
    figures = {"rate": uploads / wall, "p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
               "wall": wall, "load": load()}
    for s in servers:
        s.stop()  # its connections close: PostgreSQL's backends are counted
    figures["cpu_per_upload"] = (children_cpu() - cpu0) / uploads
    others = others_cpu()
    figures["moto_per_upload"] = (others[0] - others0[0]) / uploads
    figures["pg_per_upload"] = (others[1] - others0[1]) / uploads
    return figures


def compile_round(api: Server, workers: list[Worker], token: str, package: str, jobs: int) -> dict:
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    ids = []
    for _ in range(jobs):
        r = api.call("POST", f"/api/v1/packages/{package}/compile", token, json={"targets": ["x86_64-cpu"]})
        assert r.status_code == 202, r.text
        ids.append(r.json()["job"]["id"])
    for job_id in ids:
        job = api.wait_job(token, job_id, timeout=900)
        if job["status"] != "succeeded":
            raise AssertionError(f"job {job_id} {job['status']}: {job.get('failure_reason')}")
    wall = time.perf_counter() - t0
    figures = {"rate": jobs / wall * 60, "wall": wall, "load": load()}
    ran = [sum(1 for j in ids if w.lines("job finished", j)) for w in workers]
    for w in workers:
        w.stop()
    figures["cpu_per_job"] = (children_cpu() - cpu0) / jobs
    figures["spread"] = "+".join(map(str, ran))
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixture", default="gzip_level_1", help="package fixture name in tests/out/fixtures")
    ap.add_argument("--uploads", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=6)
    ap.add_argument("--server", help="byom-server binary [default: target/debug/byom-server]")
    args = ap.parse_args()
    if args.server:
        os.environ["BYOM_SERVER_BIN"] = str(Path(args.server).resolve())
    package = fixtures_dir_path() / f"{args.fixture}.tar.gz"
    if not package.is_file():
        print(f"{package} not found: generate the fixtures with "
              f"`python tests/fixtures/make_packages.py tests/out/fixtures`", file=sys.stderr)
        return 2
    data = package.read_bytes()
    binary = os.environ.get("BYOM_SERVER_BIN", str(REPO / "target" / "debug" / "byom-server"))

    root = Path(tempfile.mkdtemp(prefix="byom-bench-cluster-"))
    try:
        store = s3.shared()
        cluster = Cluster(root, pg.shared().fresh_database(), f"s3://{store.fresh_bucket()}/byom",
                          {"BYOM_ADMIN_TOKEN": ADMIN, **store.env()})
        print(f"load before: {load()}", file=sys.stderr)
        first = cluster.api()
        token = first.tenant_token("bench", "uploader")
        up = {1: upload_round([first], token, data, args.uploads, args.clients)}
        print(f"1 API server: {up[1]}", file=sys.stderr)
        up[2] = upload_round([cluster.api(), cluster.api()], token, data, args.uploads, args.clients)
        print(f"2 API servers: {up[2]}", file=sys.stderr)

        api = cluster.api()
        r = api.upload(token, data)
        api.check(r, 201)
        pkg_id = r.json()["package"]["id"]
        comp = {}
        for n in (1, 2):
            workers = [cluster.worker() for _ in range(n)]
            comp[n] = compile_round(api, workers, token, pkg_id, args.jobs)
            print(f"{n} worker(s): {comp[n]}", file=sys.stderr)
        api.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    cpus = os.cpu_count()
    print(f"byom-server cluster benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{platform.machine()}, {cpus} CPUs, binary {os.path.relpath(binary, REPO)}")
    print(f"PostgreSQL (tests/pg.py, fsync off) + moto S3 (tests/s3.py), loopback; package "
          f"{args.fixture}.tar.gz ({len(data) / 1024:.0f} KiB)\n")
    print(f"| uploads ({args.uploads}, {args.clients} clients) | packages/s | p50 latency | p95 latency "
          "| CPU ms / upload: API servers, moto, PostgreSQL | load avg 1/5/15 |")
    print("|---|---|---|---|---|---|")
    for n, f in up.items():
        print(f"| {n} API server{'s' if n > 1 else ''} | {f['rate']:.1f} | {f['p50'] * 1000:.0f} ms "
              f"| {f['p95'] * 1000:.0f} ms | {f['cpu_per_upload'] * 1000:.0f}, {f['moto_per_upload'] * 1000:.0f}, "
              f"{f['pg_per_upload'] * 1000:.0f} | {f['load']} |")
    print(f"\n| compiles ({args.jobs} x86_64-cpu jobs) | jobs/min | wall | jobs per worker "
          "| worker CPU s / job | load avg 1/5/15 |")
    print("|---|---|---|---|---|---|")
    for n, f in comp.items():
        print(f"| {n} worker{'s' if n > 1 else ''} | {f['rate']:.1f} | {f['wall']:.0f} s | {f['spread']} "
              f"| {f['cpu_per_job']:.1f} | {f['load']} |")
    print(f"\nload after: {load()}; `uptime`: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
