"""Harness for the byom-server end-to-end tests (no tests here): start the real binary on a free
loopback port with a temp data directory, talk to it with `requests`, and check every JSON
response against the server's own OpenAPI document with `jsonschema`."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "fixtures"))


def server_bin() -> Path:
    p = Path(os.environ.get("BYOM_SERVER_BIN", REPO / "target" / "debug" / "byom-server"))
    if not p.is_file():
        import pytest

        pytest.fail(f"{p} not found: build it with `cargo build -p byom-server`", pytrace=False)
    return p


def good_package(variant: str = "1.0.0") -> bytes:
    """A small valid package (a real traced PyTorch classifier) from the fixtures helpers;
    each `variant` (the model version in mochi.json) gives different bytes."""
    import make_packages as m

    def version(config, mochi, manifest):
        mochi["model_info"]["version"] = variant

    return m.gz(m.tar_bytes(m.members_of(m.BASE, mutate=version)))


def bad_package() -> bytes:
    """A package whose config.yaml is missing its dataset section (BYOM203)."""
    import make_packages as m

    def drop_dataset(config, mochi, manifest):
        config.pop("dataset")

    return m.gz(m.tar_bytes(m.members_of(m.BASE, mutate=drop_dataset)))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    """One byom-server process."""

    def __init__(self, data_dir: Path, *args: str, env: dict | None = None, web_dir: Path | None = None):
        self.data_dir = Path(data_dir)
        self.args = list(args)
        self.env = dict(os.environ)
        self.env.pop("BYOM_ADMIN_TOKEN", None)
        self.env.update(env or {})
        self.web_dir = web_dir or (REPO / "web")
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self._openapi: dict | None = None

    def start(self) -> "Server":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(server_bin()), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir),
             "--web-dir", str(self.web_dir), *self.args],
            stdout=subprocess.PIPE, stderr=log, env=self.env,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                raise AssertionError(f"server exited early:\n{self.log()}")
            if line.startswith("listening on "):
                self.url = line.split("listening on ", 1)[1].strip()
                break
        else:
            raise AssertionError("server did not print its address")
        self.proc.stdout.readline()  # the admin token line
        return self

    @property
    def admin(self) -> str:
        return self.env.get("BYOM_ADMIN_TOKEN") or (self.data_dir / "admin-token").read_text().strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request_lines(self, method: str, path_prefix: str) -> list[str]:
        """Access-log lines (target byom_server::access) for this method and path prefix."""
        out = []
        for line in self.log().splitlines():
            if "byom_server::access" in line and f"method={method}" in line and f"path={path_prefix}" in line:
                out.append(line)
        return out

    def stop(self, sig=signal.SIGTERM, timeout=20) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    # --- HTTP ------------------------------------------------------------------------------

    def call(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.url + path, headers=headers, timeout=kw.pop("timeout", 60), **kw)

    def openapi(self) -> dict:
        if self._openapi is None:
            self._openapi = requests.get(self.url + "/api/v1/openapi.json", timeout=10).json()
        return self._openapi

    def check(self, resp: requests.Response, status: int, schema: str | None = None):
        """Assert the status, and that the JSON body matches the OpenAPI schema for it."""
        assert resp.status_code == status, f"{resp.request.method} {resp.url}: {resp.status_code} {resp.text[:2000]}"
        if schema is None:
            return None
        body = resp.json()
        doc = self.openapi()
        jsonschema.validate(body, {"$ref": f"#/components/schemas/{schema}", "components": doc["components"]})
        return body

    def error(self, resp: requests.Response, status: int, code: str) -> dict:
        body = self.check(resp, status, "Error")
        assert body["error"] == code, body
        return body

    # --- shortcuts ---------------------------------------------------------------------------

    def tenant_token(self, tenant: str, role: str, quota: int | None = None) -> str:
        r = self.call("POST", "/api/v1/admin/tenants", self.admin, json={"name": tenant, "quota_bytes": quota})
        assert r.status_code in (201, 409), r.text
        r = self.call("POST", "/api/v1/admin/tokens", self.admin, json={"tenant": tenant, "role": role})
        return self.check(r, 201, "NewToken")["token"]

    def upload(self, token: str, data: bytes, name: str = "model.tar.gz") -> requests.Response:
        return self.call("PUT", f"/api/v1/packages?name={name}", token, data=data)

    def wait_job(self, token: str, job_id: str, timeout: float = 600, until=("succeeded", "failed", "cancelled")) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = self.check(self.call("GET", f"/api/v1/jobs/{job_id}", token), 200, "JobResponse")["job"]
            if job["status"] in until:
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s")


def worker_pids(server: Server) -> list[int]:
    """Worker processes started by this server (children running `byom-server worker`)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == server.proc.pid and b"worker" in cmd:
            pids.append(int(proc.name))
    return pids


def files_under(d: Path) -> list[Path]:
    return [p for p in Path(d).rglob("*") if p.is_file()] if Path(d).exists() else []


def dumps(x) -> str:
    return json.dumps(x, indent=1, sort_keys=True)
