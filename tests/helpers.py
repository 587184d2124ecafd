"""Helpers shared by the pytest suite (no tests here, hence not named test_*).

- where things are: the repository, the generated fixtures, the picklescan corpus;
- the binaries under test (`target/debug/…`; BYOM_BIN, BYOM_SERVER_BIN and BYOM_COMPILE_BIN
  override), a missing one being a test FAILURE that says how to build it, never a skip;
- tar members of a package or bundle, gzipped or not;
- the byom-server harness: start the real binary on a free loopback port with a temp data
  directory, talk to it with `requests`, and check every JSON response against the server's own
  OpenAPI document with `jsonschema`.

Import what you need: `from helpers import REPO, Server, byom_bin, serve, tar_members`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import jsonschema
import pytest
import requests

import pg

REPO = Path(__file__).resolve().parent.parent
FIXTURES_SRC = REPO / "tests" / "fixtures"
OUT = REPO / "tests" / "out"

# make_packages, make_pt, pt_models and guide_validator are imported by name.
if str(FIXTURES_SRC) not in sys.path:
    sys.path.insert(0, str(FIXTURES_SRC))

CORPUS_MISSING_MESSAGE = (
    "picklescan corpus NOT FOUND at ../shared/corpus/picklescan (or $BYOM_CORPUS): "
    "the corpus placement tests are SKIPPED"
)


def fixtures_dir_path() -> Path:
    """Where make_packages.py writes the package fixtures ($BYOM_FIXTURES overrides)."""
    return Path(os.environ.get("BYOM_FIXTURES", OUT / "fixtures"))


def corpus_dir_path() -> Path | None:
    """The picklescan corpus ($BYOM_CORPUS overrides), or None when it is not there."""
    d = Path(os.environ.get("BYOM_CORPUS", REPO.parent / "shared" / "corpus" / "picklescan"))
    return d if (d / "data").is_dir() else None


# ---------------------------------------------------------------------------- binaries


def binary(env_name: str, name: str, build_hint: str) -> Path:
    """`target/debug/<name>`, or $<env_name>; fails the test if it is not a file."""
    p = Path(os.environ.get(env_name, REPO / "target" / "debug" / name))
    if not p.is_file():
        pytest.fail(f"{p} not found: build it with `{build_hint}` (scripts/test.sh does)", pytrace=False)
    return p


def byom_bin() -> Path:
    return binary("BYOM_BIN", "byom", "cargo build --workspace --bins --tests --examples")


def byom_server_bin() -> Path:
    return binary("BYOM_SERVER_BIN", "byom-server", "cargo build --workspace --bins --tests --examples")


def run_byom(byom: Path, *args, env_extra: dict | None = None, timeout: float = 120, **kw):
    """Run `byom` with colour off unless asked; returns CompletedProcess (bytes unless text=True)."""
    env = dict(os.environ)
    env.pop("CLICOLOR_FORCE", None)
    env.pop("FORCE_COLOR", None)
    if env_extra:
        env.update(env_extra)
    return subprocess.run([str(byom), *map(str, args)], capture_output=True, env=env, timeout=timeout, **kw)


# ---------------------------------------------------------------------------- tar members


def run_on_tty(argv: list[str], env: dict, timeout: float = 60) -> bytes:
    """Run with stdout and stderr on a pseudo-terminal; returns everything written."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(master)
    return b"".join(chunks)


def _tar(src: bytes | Path) -> tarfile.TarFile:
    data = Path(src).read_bytes() if isinstance(src, (str, Path)) else src
    # gzip is undone here, not by tarfile, so a gzip defect raises gzip's own error and a tar
    # defect tarfile.ReadError.
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return tarfile.open(fileobj=io.BytesIO(data))


def tar_infos(src: bytes | Path) -> list[tarfile.TarInfo]:
    """Every member header, in archive order, names as stored."""
    with _tar(src) as t:
        return t.getmembers()


def tar_members(src: bytes | Path) -> dict[str, bytes]:
    """Regular files by name (a leading `./` removed), in archive order, with their bytes."""
    out = {}
    with _tar(src) as t:
        for m in t.getmembers():
            if m.isfile():
                out[m.name.removeprefix("./")] = t.extractfile(m).read()
    return out


# ---------------------------------------------------------------------------- packages


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


# ---------------------------------------------------------------------------- server


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
        # BYOM_TEST_CLUSTER=1: the same tests on PostgreSQL (tests/pg.py), one database per data
        # directory, so a restarted server finds its data again.
        if pg.cluster_mode() and "--database" not in self.args:
            self.args += ["--database", pg.database_for(self.data_dir)]
        # BYOM_TEST_STORAGE=s3: packages, artifacts and logs in a fresh bucket of a throwaway S3
        # server (tests/s3.py), one per data directory, instead of under the data directory.
        if os.environ.get("BYOM_TEST_STORAGE") == "s3" and "--storage" not in self.args:
            import s3
            url, s3_env = s3.storage_for(self.data_dir)
            self.args += ["--storage", url]
            self.env.update(s3_env)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(byom_server_bin()), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir),
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

    def db_args(self) -> list[str]:
        """`--database URL` when this server has one (for `byom-server token` beside it)."""
        if "--database" in self.args:
            return ["--database", self.args[self.args.index("--database") + 1]]
        return []

    def storage_url(self) -> str | None:
        """`--storage URL` when this server has one."""
        return self.args[self.args.index("--storage") + 1] if "--storage" in self.args else None

    def blob(self, sha: str) -> bytes | None:
        """A stored package's bytes, from the data directory or the bucket; None if absent."""
        url = self.storage_url()
        if url and url.startswith("s3://"):
            import s3
            bucket, _, prefix = url.removeprefix("s3://").partition("/")
            key = "/".join(p for p in (prefix.strip("/"), "blobs", sha[:2], sha) if p)
            try:
                return s3.shared().client().get_object(Bucket=bucket, Key=key)["Body"].read()
            except Exception:
                return None
        path = self.data_dir / "blobs" / sha[:2] / sha
        return path.read_bytes() if path.exists() else None

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
        if path.startswith("/api/v1/uploads"):
            # The upload routes speak tus 1.0: send its version (and PATCH's body type) unless
            # the test says otherwise (a header given as None is left out).
            tus = {"Tus-Resumable": "1.0.0"}
            if method == "PATCH":
                tus["Content-Type"] = "application/offset+octet-stream"
            headers = tus | headers
        headers = {k: v for k, v in headers.items() if v is not None}
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


class Worker:
    """One `byom-server worker` process (the cluster's compile role); stderr goes to `log_path`."""

    def __init__(self, name: str, data_dir: Path, log_path: Path, database: str, *args: str,
                 env: dict | None = None):
        self.name = name
        self.data_dir = data_dir
        self.log_path = log_path
        self.cmd = [str(byom_server_bin()), "worker", "--database", database, "--data-dir", str(data_dir),
                    "--workers", "1", *args]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Worker":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=log, env=self.env)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("worker "), f"{self.name} did not start:\n{self.log()}"
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def lines(self, what: str, job: str) -> list[str]:
        return [ln for ln in self.log().splitlines() if what in ln and job in ln]

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


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


def serve(tmp_path_factory, name: str, *args: str, **kw):
    """Body of a module-scoped `server` fixture: `yield from serve(tmp_path_factory, "api")`
    starts one server (extra `args` go to `serve`, `kw` to [`Server`]) and stops it after."""
    s = Server(tmp_path_factory.mktemp(name) / "data", *args, **kw).start()
    try:
        yield s
    finally:
        s.stop()
