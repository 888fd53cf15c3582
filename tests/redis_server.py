"""A private `redis-server` for the state store's tests: on a free port, stopped by the test, and
stoppable and restartable in the middle of one (to show layer riding out an outage).

Without the `redis-server` program the tests skip, saying so; `LAYER_REQUIRE_REDIS=1` (as CI
sets it) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REQUIRED = os.environ.get("LAYER_REQUIRE_REDIS", "").strip() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason}; LAYER_REQUIRE_REDIS=1 makes Redis mandatory")
    pytest.skip(f"{reason} (set LAYER_REQUIRE_REDIS=1 to make this a failure)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """`redis-server` on 127.0.0.1:`port`, without persistence, in `folder`."""

    def __init__(self, folder: Path) -> None:
        program = shutil.which("redis-server")
        if program is None:
            unavailable("redis-server is not installed (apt-get install redis-server)")
        self.program = str(program)
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                self.program,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        unavailable(f"redis-server did not start on port {self.port}")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def command_calls(self, command: str) -> int:
        """How often `command` (e.g. "evalsha") has run, from INFO commandstats."""
        import redis

        stats = redis.Redis.from_url(self.url).info("commandstats")
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
