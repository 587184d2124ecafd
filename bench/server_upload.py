"""byom-server upload benchmarks (loopback only).

1. throughput: PUT a large valid package through byom-server (validate + sha256 + write, one pass)
   vs a raw upload of the same bytes to a minimal sink that only writes them to a file (same
   client: curl -T, streaming). Goal: byom-server >= 0.8x the raw sink.
2. concurrency: N concurrent PUTs of a M MB package; every one must be stored (201 and a package
   row), and the server's peak RSS (VmHWM) must stay bounded (not grow with N x M).

Usage: python bench/server_upload.py [--size-mb 300] [--concurrent 50] [--concurrent-mb 100]
       [--server target/release/byom-server] [--work /tmp/byom-bench] [--rates 0,119M]
Prints a Markdown table (pasted into docs/bench-server.md).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "fixtures"))


def make_package(path: Path, size_mb: int, variant: str) -> None:
    """A valid package whose traced model carries `size_mb` of random float32 weights."""
    if path.exists():
        return
    import io

    import make_packages as m
    import torch
    import torch.nn as nn

    import pt_models

    torch.manual_seed(0)
    model = pt_models.TinyClassifier(3, 2)
    model.register_buffer("ballast", torch.randn(size_mb * 1024 * 1024 // 4))
    model.eval()
    traced = torch.jit.trace(model, torch.zeros(1, 3, 224, 224))
    buf = io.BytesIO()
    torch.jit.save(traced, buf)

    def version(config, mochi, manifest):
        mochi["model_info"]["version"] = variant

    members = m.members_of(m.BASE, mutate=version, pt_data=buf.getvalue())
    tar = m.tar_bytes(members)
    import gzip

    path.write_bytes(gzip.compress(tar, compresslevel=1))


class RawSink(threading.Thread):
    """Minimal HTTP/1.1 PUT sink: reads Content-Length bytes into a file, fsyncs, answers 201."""

    def __init__(self, out_dir: Path):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.out_dir = out_dir

    def run(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, rest = data.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
            if k.strip().lower() == b"expect":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        path = self.out_dir / f"raw-{threading.get_ident()}"
        buf = bytearray(1 << 20)
        with open(path, "wb") as f:
            f.write(rest)
            got = len(rest)
            while got < length:
                n = conn.recv_into(buf)
                if n == 0:
                    break
                f.write(memoryview(buf)[:n])
                got += n
            f.flush()
            os.fsync(f.fileno())
        conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        conn.close()
        path.unlink()


def curl_put(url: str, path: Path, token: str | None = None, rate: str = "0") -> tuple[float, str]:
    cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-T", str(path), url]
    if rate != "0":
        cmd += ["--limit-rate", rate]  # a link slower than loopback (curl units: bytes/s, K/M/G)
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - t, out.stdout


def vm_hwm_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrent", type=int, default=50)
    ap.add_argument("--concurrent-mb", type=int, default=100)
    ap.add_argument("--server", default=str(REPO / "target" / "release" / "byom-server"))
    ap.add_argument("--work", default="/tmp/byom-bench")
    ap.add_argument("--rates", default="0",
                    help="comma-separated client rate limits for the throughput test (0: loopback speed; "
                         "e.g. 0,119M for loopback and ~1 Gbit/s)")
    args = ap.parse_args()
    os.environ["BYOM_SERVER_BIN"] = args.server
    from test_server_harness import Server

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    big = work / f"pkg-{args.size_mb}mb.tar.gz"
    make_package(big, args.size_mb, "bench-big")
    size = big.stat().st_size
    data_dir = work / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    server = Server(data_dir, "--workers", "1").start()
    try:
        tok = server.tenant_token("bench", "uploader")
        sink = RawSink(work)
        sink.start()
        mb = size / 1e6
        for rate in args.rates.split(","):
            raw_t, byom_t = [], []
            for i in range(args.runs):
                t, code = curl_put(f"http://127.0.0.1:{sink.port}/upload", big, rate=rate)
                assert code == "201", code
                raw_t.append(t)
                t, code = curl_put(f"{server.url}/api/v1/packages?name=big.tar.gz", big, tok, rate=rate)
                assert code == "201", code
                byom_t.append(t)
            raw, byom = min(raw_t), min(byom_t)
            link = "loopback, unlimited" if rate == "0" else f"client limited to {rate}B/s"
            print(f"\n### Upload throughput, {mb:.0f} MB package, {link}, best of {args.runs}\n")
            print("| path | MB/s |\n|---|---|")
            print(f"| raw upload (write only) | {mb / raw:.0f} |")
            print(f"| byom-server PUT (validate + sha256 + write) | {mb / byom:.0f} |")
            print(f"\nratio byom/raw = {raw / byom:.2f} (goal >= 0.8)")

        # Concurrency
        pkg = work / f"pkg-{args.concurrent_mb}mb.tar.gz"
        make_package(pkg, args.concurrent_mb, "bench-concurrent")
        base_rss = vm_hwm_mb(server.proc.pid)
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.concurrent) as ex:
            codes = list(ex.map(lambda i: curl_put(f"{server.url}/api/v1/packages?name=c{i}.tar.gz", pkg, tok)[1],
                                range(args.concurrent)))
        wall = time.perf_counter() - t0
        listed = server.call("GET", "/api/v1/packages", tok).json()["packages"]
        stored = [p for p in listed if p["name"].startswith("c")]
        peak = vm_hwm_mb(server.proc.pid)
        total_mb = args.concurrent * pkg.stat().st_size / 1e6
        print(f"\n### {args.concurrent} concurrent uploads of a {pkg.stat().st_size / 1e6:.0f} MB package\n")
        print("| measure | value |\n|---|---|")
        print(f"| responses 201 | {codes.count('201')} / {args.concurrent} |")
        print(f"| packages stored | {len(stored)} |")
        print(f"| wall time | {wall:.1f} s ({total_mb / wall:.0f} MB/s aggregate) |")
        print(f"| server peak RSS (VmHWM) before / after | {base_rss:.0f} MiB / {peak:.0f} MiB |")
        print(f"| bytes received in total | {total_mb:.0f} MB |")
        ok = codes.count("201") == args.concurrent and len(stored) == args.concurrent
        return 0 if ok else 1
    finally:
        server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
