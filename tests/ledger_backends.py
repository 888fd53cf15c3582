"""The databases the ledger tests run on: a SQLite file, and PostgreSQL.

PostgreSQL: the server at `LAYER_TEST_POSTGRES_URL` (default: 127.0.0.1:5432, database `test`,
user `postgres`, trust auth). Each test gets its own schema (dropped afterwards), so parallel
runs never see each other's tables. With no server there, PostgreSQL tests skip, saying why;
`LAYER_REQUIRE_POSTGRES=1` (as CI sets it) turns that skip into a failure.

`PrivateCluster` is a throwaway PostgreSQL server in a temp dir on a free port, for tests that
kill the database: the shared server is never stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from layer_core import hookimpl

WORKER = str(Path(__file__).with_name("ledger_worker.py"))

POSTGRES_URL = os.environ.get(
    "LAYER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRED = os.environ.get("LAYER_REQUIRE_POSTGRES", "").strip() in ("1", "true", "yes")


def run_worker(*args: str) -> subprocess.CompletedProcess[str]:
    """Run tests/ledger_worker.py (a separate app process) to its end."""
    return subprocess.run(
        [sys.executable, WORKER, *args], capture_output=True, text=True, timeout=600
    )


class LedgerHooks:
    """A plugin that records what the budget and ledger hooks were called with."""

    def __init__(self) -> None:
        self.alerts: list[tuple[str, Decimal, Decimal, bool]] = []
        self.errors: list[tuple[str, int]] = []

    @hookimpl
    def on_budget_alert(self, gate: Any, spent: Decimal, estimate: Decimal, blocked: bool) -> None:
        self.alerts.append((gate.id, spent, estimate, blocked))

    @hookimpl
    def on_ledger_error(self, error: Exception, records: list[Any]) -> None:
        self.errors.append((str(error), len(records)))


def skip_or_fail(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason}; LAYER_REQUIRE_POSTGRES=1 makes PostgreSQL mandatory")
    pytest.skip(f"{reason} (set LAYER_REQUIRE_POSTGRES=1 to make this a failure)")


def conninfo(url: str) -> str:
    """A libpq URL for psycopg itself (the SQLAlchemy driver suffix dropped)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


_reachable: dict[str, str | None] = {}


def require_postgres() -> str:
    """The server's URL, or skip/fail with the reason it cannot be used."""
    if POSTGRES_URL not in _reachable:
        try:
            import psycopg
        except ImportError:
            _reachable[POSTGRES_URL] = "psycopg is not installed (layer-core[postgres])"
        else:
            try:
                with psycopg.connect(conninfo(POSTGRES_URL), connect_timeout=3):
                    _reachable[POSTGRES_URL] = None
            except psycopg.Error as exc:
                _reachable[POSTGRES_URL] = f"no PostgreSQL at {POSTGRES_URL}: {exc}".strip()
    reason = _reachable[POSTGRES_URL]
    if reason is not None:
        skip_or_fail(reason)
    return POSTGRES_URL


def with_schema(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def postgres_schema(base: str | None = None) -> Iterator[str]:
    """A ledger URL whose tables live in a fresh schema, dropped on exit."""
    import psycopg

    base = base or require_postgres()
    name = f"layer_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(conninfo(base), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield with_schema(base, name)
    finally:
        with psycopg.connect(conninfo(base), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateCluster:
    """A PostgreSQL server of our own: initdb in a temp dir, started on a free port.

    As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root).
    """

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        initdb = str(found[-1]) if found else shutil.which("initdb")
        if initdb is None:
            skip_or_fail("no initdb to start a private PostgreSQL server")
        assert initdb is not None
        self.bin = Path(initdb).parent
        self.root = os.geteuid() == 0
        if self.root and shutil.which("runuser") is None:
            skip_or_fail("running as root without runuser to start PostgreSQL as postgres")
        self.dir = Path(tempfile.mkdtemp(prefix="layer-pg-"))
        if self.root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c shared_buffers=16MB"
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self._run(
                    "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"),
                    "-w", "start",
                )  # fmt: skip
                return
            except subprocess.CalledProcessError:
                # backends of a killed server may still hold its shared memory for a moment
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def postmaster(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def kill(self) -> None:
        """SIGKILL the server and each of its processes: the database is gone mid-run."""
        pid = self.postmaster()
        children = _children(pid)
        for target in (pid, *children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in (pid, *children)) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                children.append(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
