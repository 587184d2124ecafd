"""A throwaway S3-compatible server for the object-storage tests: moto's server (`moto[s3]` and
Flask from PyPI, pinned in tests/requirements.txt), speaking real S3 over HTTP (SigV4-signed
requests, multipart uploads, listings, copies) on 127.0.0.1 and a free port. Started once per
pytest process, on first use, and stopped at exit; it keeps everything in memory, so nothing is
left on disk. Why moto and not MinIO: see docs/deploy.md.

`BYOM_TEST_STORAGE=s3` makes every `helpers.Server` use a fresh bucket on it (`--storage
s3://…`); with `BYOM_TEST_CLUSTER=1` too, the server suites run on PostgreSQL + S3.
"""

from __future__ import annotations

import atexit
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import requests


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """One moto server process."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()

    def start(self) -> "S3Server":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"moto_server exited:\n{self.log.read().decode(errors='replace')}")
            try:
                requests.get(self.endpoint, timeout=5)
                return self
            # Refused while it starts; slow to answer its first request on a loaded machine.
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        raise RuntimeError("moto_server did not answer in 30 s")

    def env(self) -> dict[str, str]:
        """The variables a byom-server node reads for its object store."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

    def client(self):
        import boto3  # moto's own dependency
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def fresh_bucket(self) -> str:
        name = "byom-" + uuid.uuid4().hex[:12]
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out, token = [], None
        while True:
            kw = {"Bucket": bucket, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
            page = self.client().list_objects_v2(**kw)
            out += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(out)
            token = page["NextContinuationToken"]

    def multipart_uploads(self, bucket: str) -> list[str]:
        """Keys of multipart uploads begun and neither completed nor aborted."""
        page = self.client().list_multipart_uploads(Bucket=bucket)
        return sorted(u["Key"] for u in page.get("Uploads", []))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


_shared: S3Server | None = None


def shared() -> S3Server:
    """The pytest process's S3 server, started on first use."""
    global _shared
    if _shared is None:
        _shared = S3Server().start()
        atexit.register(_shared.stop)
    return _shared


_by_dir: dict[str, str] = {}


def storage_for(data_dir) -> tuple[str, dict[str, str]]:
    """The bucket of a server's data directory (created on first use, so a restarted server
    finds its packages again): its --storage URL and the environment that reaches it."""
    from pathlib import Path
    key = str(Path(data_dir).resolve())
    server = shared()
    if key not in _by_dir:
        _by_dir[key] = f"s3://{server.fresh_bucket()}/byom"
    return _by_dir[key], server.env()

