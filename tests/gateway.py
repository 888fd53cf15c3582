"""`layer serve` as a real process, for the gateway's tests: a config whose `openai` provider
points at the OpenAI fake (layer_openai.testing), keys made with the real `layer keys` command,
and the server started on a free 127.0.0.1 port and stopped with SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from layer_openai.testing import IMAGE_ROUTE, KEY, ROUTE, api_error, image_file, images_api

from layer_core.testing import FakeServer, Recorded, Reply
from tests.ledger_backends import free_port


def scripted_openai(request: Recorded) -> Reply:
    """The OpenAI fake, and failures on demand by prompt: `fail:503` (overloaded), `fail:content`
    (a content refusal), `slow:` (answers after a second)."""
    try:
        prompt = str(request.json().get("prompt", ""))
    except ValueError:
        prompt = ""
    if prompt.startswith("fail:503"):
        return api_error(503, "The engine is currently overloaded.", kind="server_error")
    if prompt.startswith("fail:content"):
        return api_error(400, "Your request was rejected by the safety system.",
                         "content_policy_violation")  # fmt: skip
    reply = images_api(request)
    if prompt.startswith("slow:"):
        reply.delay = 1.0
    return reply


@contextlib.contextmanager
def openai_fake() -> Iterator[FakeServer]:
    with FakeServer() as server:
        server.add("POST", ROUTE, scripted_openai)
        server.add("GET", IMAGE_ROUTE, image_file)
        yield server


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(
    path: Path, *, ledger: str, openai_url: str, gates: Mapping[str, Mapping[str, Any]]
) -> Path:
    lines = [f"ledger = {toml_value(ledger)}", "", "[plugins.openai]"]
    lines.append(f"base_url = {toml_value(openai_url + '/v1')}")
    for gate_id, table in gates.items():
        lines += ["", f"[gates.{gate_id}]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class Serving:
    """One `layer serve` process (or more, on one config): its URL, its environment, its CLI."""

    def __init__(self, config: Path, home: Path, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.home = home
        inherited = {k: v for k, v in os.environ.items() if k != "LAYER_LEDGER_URL"}
        self.env = {
            **inherited,
            "OPENAI_API_KEY": KEY,
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "LAYER_CONFIG": str(config),
            **(env or {}),
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []
        self.logs: list[Path] = []

    @property
    def url(self) -> str:
        return self.urls[0]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `layer ARGS` with this gateway's config and environment."""
        done = subprocess.run(
            [sys.executable, "-m", "layer_core", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"layer {' '.join(args)} failed:\n{done.stderr}")
        return done

    def create_key(self, name: str, *options: str) -> str:
        """`layer keys create NAME OPTIONS`: the token it prints (once)."""
        return self.cli("keys", "create", name, *options).stdout.strip()

    def start(self, *args: str) -> str:
        """Start one more server process; its URL once it answers /healthz."""
        port = free_port()
        log = self.home / f"serve-{port}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "layer_core", "serve", "--port", str(port), *args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
        )
        self.processes.append(process)
        self.logs.append(log)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"layer serve exited {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"layer serve did not start:\n{log.read_text()}")
            time.sleep(0.1)
        self.urls.append(url)
        return url

    def log(self, index: int = 0) -> str:
        return self.logs[index].read_text()

    def stop(self, index: int | None = None, *, sig: int = signal.SIGTERM) -> list[int]:
        """Signal the server(s) and wait for them to end; their exit codes."""
        chosen = self.processes if index is None else [self.processes[index]]
        for process in chosen:
            if process.poll() is None:
                process.send_signal(sig)
        codes = []
        for process in chosen:
            try:
                codes.append(process.wait(timeout=60))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
        return codes
