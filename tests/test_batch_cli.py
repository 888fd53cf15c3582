"""`layer batch` and `layer gallery`: a folder that a rerun completes, never duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from layer_core.cli import cli
from tests.test_plugins import install

# A provider distribution for the subprocess runs: it logs each prompt it is asked for, can take
# its time, can fail every Nth call, and notes each call cancelled in flight.
FLAKY = """
import asyncio
import os

from layer_core import Provider, ProviderUnavailable, hookimpl
from layer_core.testing import fake_images, make_spec


def note(variable, text):
    path = os.environ.get(variable)
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(text + "\\n")


class Flaky(Provider):
    name = "flaky"

    def __init__(self):
        super().__init__()
        self.count = 0

    def models(self):
        return [make_spec("flaky-1", "flaky", price="0.01")]

    async def generate(self, call):
        self.count += 1
        number = self.count  # this call's number: others may count on while it sleeps
        note("FLAKY_CALLS", call.prompt)
        try:
            await asyncio.sleep(float(os.environ.get("FLAKY_DELAY", "0")))
        except asyncio.CancelledError:
            note("FLAKY_CANCELLED", call.prompt)
            raise
        every = int(os.environ.get("FLAKY_FAIL_EVERY", "0"))
        if every and number % every == 0:
            raise ProviderUnavailable(f"scripted outage on call {number}")
        return fake_images(call)


@hookimpl
def register_providers(register):
    register(Flaky())
"""

CONFIG = """
ledger = false

[gates.default]
model = "local"
routing_strategy = "single"

[plugins.local]
prices = { local = { "*/*" = 0.002 } }
"""
# only where the flaky plugin is installed: a gate naming a model no plugin declares is an error
FLAKY_GATE = """
[gates.flaky]
model = "flaky-1"
routing_strategy = "single"
retries = 0
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "plugins.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def flaky_config(tmp_path: Path) -> Path:
    path = tmp_path / "flaky.toml"
    path.write_text(CONFIG + FLAKY_GATE)
    return path


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site folder with the flaky plugin installed, for the subprocesses' PYTHONPATH."""
    site = tmp_path / "site"
    site.mkdir()
    install(site, "layer-flaky", "flaky", FLAKY)
    return site


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def assert_lines_match_files(out: Path) -> list[dict[str, Any]]:
    """Every line names files that exist, and every image on disk is named by exactly one line."""
    lines = records(out)
    named = [name for record in lines for name in record["files"]]
    assert len(named) == len(set(named))
    on_disk = {p.name for p in out.iterdir() if p.suffix == ".png"}
    assert on_disk == set(named)
    return lines


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_a_200_line_batch_on_the_local_provider_completes(tmp_path: Path, config: Path) -> None:
    prompts = [f"a lighthouse, variation {i}" for i in range(200)]
    file = tmp_path / "prompts.txt"
    file.write_text("\n".join(prompts) + "\n")
    out = tmp_path / "out"

    code, output = invoke(
        "-c", str(config), "batch", str(file), "--size", "256x256", "-j", "8", "-o", str(out)
    )

    assert code == 0, output
    lines = assert_lines_match_files(out)
    assert len(lines) == 200
    assert sorted(r["prompt"] for r in lines) == sorted(prompts)
    assert len({r["id"] for r in lines}) == 200
    assert all(r["status"] == "ok" and r["model"] == "local" for r in lines)
    for record in lines:
        (name,) = record["files"]
        with Image.open(out / name) as image:
            assert (image.format, image.size) == ("PNG", (256, 256))
    assert sum(Decimal(r["cost"]) for r in lines) == Decimal("0.4")
    assert "succeeded now\t200" in output.splitlines()
    assert "spent\t$0.4" in output.splitlines()
    assert (out / "index.html").is_file()


def run_layer(
    args: list[str], site: Path, cwd: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "layer_core", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200", **env},
        cwd=cwd,
        timeout=300,
    )


def test_failures_are_recorded_and_a_rerun_retries_only_them(
    tmp_path: Path, flaky_config: Path, site: Path
) -> None:
    file = tmp_path / "requests.jsonl"
    prompts = [f"product shot {i}" for i in range(40)]
    file.write_text("".join(json.dumps({"data": {"prompt": p}}) + "\n" for p in prompts))
    args = ["-c", str(flaky_config), "batch", str(file), "--gate", "flaky", "-o", "out", "-j", "4"]
    calls = tmp_path / "calls.log"

    first = run_layer(args, site, tmp_path, FLAKY_FAIL_EVERY="5", FLAKY_CALLS=str(calls))

    assert first.returncode == 1, first.stderr
    out = tmp_path / "out"
    lines = assert_lines_match_files(out)
    assert len(lines) == 40
    failed = [r for r in lines if r["status"] == "failed"]
    assert len(failed) == 8
    for record in failed:
        assert record["error"]["type"] == "AllAttemptsFailed"
        assert "scripted outage" in record["error"]["message"]
        assert record["gate"] == "flaky"
    assert "8 failed" in first.stderr  # the progress line
    assert "scripted outage" in first.stdout  # the failures table
    calls.unlink()

    second = run_layer(args, site, tmp_path, FLAKY_FAIL_EVERY="0", FLAKY_CALLS=str(calls))

    assert second.returncode == 0, second.stderr
    assert sorted(calls.read_text().splitlines()) == sorted(r["prompt"] for r in failed)
    lines = assert_lines_match_files(out)
    assert len(lines) == 40
    assert sorted(r["prompt"] for r in lines) == sorted(prompts)
    assert all(r["status"] == "ok" for r in lines)
    assert sum(Decimal(r["cost"]) for r in lines) == Decimal("0.40")


def test_an_interrupted_batch_is_completed_by_a_rerun(
    tmp_path: Path, flaky_config: Path, site: Path
) -> None:
    prompts = [f"season {i}" for i in range(60)]
    file = tmp_path / "prompts.txt"
    file.write_text("\n".join(prompts) + "\n")
    out = tmp_path / "out"
    args = ["-c", str(flaky_config), "batch", str(file), "--gate", "flaky", "-o", "out", "-j", "4"]
    cancelled = tmp_path / "cancelled.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "FLAKY_DELAY": "0.2",
        "FLAKY_CANCELLED": str(cancelled),
    }
    running = subprocess.Popen(
        [sys.executable, "-m", "layer_core", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a test runner may ignore SIGINT; the child must see it as a person's Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        for _ in range(1200):  # until some lines are written (bounded, generous)
            results = out / "results.jsonl"
            if results.exists() and len(results.read_text().splitlines()) >= 8:
                break
            assert running.poll() is None, running.communicate()
            time.sleep(0.05)
        running.send_signal(signal.SIGINT)
        _, stderr = running.communicate(timeout=120)
    finally:
        if running.poll() is None:
            running.kill()

    assert running.returncode == 130, stderr
    assert "interrupted" in stderr
    lines = assert_lines_match_files(out)  # whole lines only, and no file without its line
    assert 8 <= len(lines) < 60
    assert all(r["status"] == "ok" for r in lines)
    assert cancelled.read_text().splitlines()  # the calls in flight were cancelled
    assert (out / "index.html").is_file()
    done = {r["prompt"] for r in lines}

    calls = tmp_path / "calls.log"
    rerun = run_layer(args, site, tmp_path, FLAKY_CALLS=str(calls))

    assert rerun.returncode == 0, rerun.stderr
    assert sorted(calls.read_text().splitlines()) == sorted(set(prompts) - done)
    lines = assert_lines_match_files(out)
    assert len(lines) == 60
    assert sorted(r["prompt"] for r in lines) == sorted(prompts)
    assert len({r["id"] for r in lines}) == 60


def test_layer_image_writes_the_gallery_and_layer_gallery_rebuilds_it(
    tmp_path: Path, config: Path
) -> None:
    out = tmp_path / "out"
    code, output = invoke(
        "-c", str(config), "image", "a <b>bold</b> lighthouse", "--size", "256x256", "-o", str(out)
    )
    assert code == 0, output
    page = (out / "index.html").read_text()
    (record,) = records(out)
    assert f'src="{record["files"][0]}"' in page
    assert "a &lt;b&gt;bold&lt;/b&gt; lighthouse" in page
    assert "<b>bold</b>" not in page

    (out / "index.html").unlink()
    code, output = invoke("gallery", str(out))
    assert code == 0, output
    assert "1 request(s), 1 image(s)" in output
    assert (out / "index.html").read_text() == page

    code, output = invoke("gallery", str(tmp_path))
    assert code == 2
    assert "results.jsonl does not exist" in output


def test_batch_exits_2_on_repeated_ids_before_calling_anyone(tmp_path: Path, config: Path) -> None:
    file = tmp_path / "requests.jsonl"
    file.write_text('{"id": "a", "data": {"prompt": "x"}}\n{"id": "a", "data": {"prompt": "y"}}\n')
    code, output = invoke("-c", str(config), "batch", str(file), "-o", str(tmp_path / "out"))
    assert code == 2
    assert "repeats the id of item 0" in output
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_bad_lines_are_recorded_as_failed_and_the_rest_still_run(
    tmp_path: Path, config: Path
) -> None:
    file = tmp_path / "requests.jsonl"
    file.write_text(
        '{"id": "good", "data": {"prompt": "a fox"}}\n'
        "{not json\n"
        '{"id": "bad-size", "data": {"prompt": "a fox", "size": "3x3"}}\n'
        '{"data": {"prompt": "an owl", "seed": 4}}\n'
    )
    out = tmp_path / "out"
    code, output = invoke(
        "-c", str(config), "batch", str(file), "--size", "256x256", "-o", str(out)
    )

    assert code == 1, output
    by_id = {r["id"]: r for r in assert_lines_match_files(out)}
    assert len(by_id) == 4
    assert by_id["good"]["status"] == "ok"
    assert by_id["bad-size"]["status"] == "failed"
    assert by_id["bad-size"]["error"]["type"] == "InvalidRequest"
    assert "data.size" in by_id["bad-size"]["error"]["message"]
    (unreadable,) = [r for r in by_id.values() if r["prompt"] is None]
    assert "line 2: not JSON" in unreadable["error"]["message"]
    (owl,) = [r for r in by_id.values() if r["prompt"] == "an owl"]
    assert owl["status"] == "ok"
    assert owl["images"][0]["seed"] == 4
    assert owl["images"][0]["size"] == "256x256"


def test_an_unknown_gate_flag_stops_before_any_line_runs(tmp_path: Path, config: Path) -> None:
    file = tmp_path / "prompts.txt"
    file.write_text("a fox\n")
    out = tmp_path / "out"
    code, output = invoke("-c", str(config), "batch", str(file), "--gate", "nope", "-o", str(out))
    assert code == 2  # bad input
    assert "no gate named 'nope'" in output
    assert not out.exists()
