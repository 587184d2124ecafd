"""A throwaway PostgreSQL for the cluster tests: Debian's binaries (scripts/setup.sh installs
them), a fresh cluster in a temp directory, run as an unprivileged user (the `postgres` user
when the tests run as root: PostgreSQL refuses to run as root), trust auth on 127.0.0.1 and a
free port. Started once per pytest process, on first use, and stopped at exit.

`BYOM_TEST_CLUSTER=1` makes every `helpers.Server` use a fresh database on it
(`--database postgres://…`), so the server test modules run against the cluster configuration
too (scripts/test.sh does this for test_server_api.py and test_server_compile.py).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed; run `bash scripts/setup.sh` (it installs Debian's postgresql)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """One throwaway PostgreSQL cluster."""

    def __init__(self) -> None:
        self.bin = _bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="byom-pg-"))
        self.port = _free_port()
        self.user = None
        self.proc: subprocess.Popen | None = None
        if os.geteuid() == 0:
            name = "postgres" if _has_user("postgres") else "nobody"
            self.user = pwd.getpwnam(name)
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)

    def _run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), check=True, capture_output=True, timeout=120, **self._as_user(), **kw)

    def _as_user(self) -> dict:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": [],
                "env": {**os.environ, "HOME": str(self.dir)}}

    def start(self) -> "Postgres":
        data = self.dir / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")
        log = open(self.dir / "postgres.log", "ab")
        # fsync off: a throwaway cluster; durability is SQLite's and Postgres' own business.
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.dir),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=300"],
            stdout=log, stderr=log, **self._as_user())
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited:\n{(self.dir / 'postgres.log').read_text()}")
            ok = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                capture_output=True)
            if ok.returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError("postgres did not become ready in 30 s")

    def psql(self, sql: str, db: str = "postgres") -> str:
        out = subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                              "-d", db, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
                             check=True, capture_output=True, text=True, timeout=60)
        return out.stdout

    def fresh_database(self) -> str:
        """A new empty database; its URL."""
        name = "byom_" + uuid.uuid4().hex[:12]
        self.psql(f"CREATE DATABASE {name}")
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: SIGTERM would wait for clients
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


_shared: Postgres | None = None


def shared() -> Postgres:
    """The pytest process's PostgreSQL, started on first use."""
    global _shared
    if _shared is None:
        _shared = Postgres().start()
        atexit.register(_shared.stop)
    return _shared


_by_dir: dict[str, str] = {}


def database_for(data_dir: Path) -> str:
    """The database of a server's data directory (created on first use)."""
    key = str(Path(data_dir).resolve())
    if key not in _by_dir:
        _by_dir[key] = shared().fresh_database()
    return _by_dir[key]


def cluster_mode() -> bool:
    return os.environ.get("BYOM_TEST_CLUSTER", "") not in ("", "0")
