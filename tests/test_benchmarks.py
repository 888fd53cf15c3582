"""benchmarks/ works: the fake speaks the wire protocol the openai SDK reads, a worker measures.

Nothing here is timed: the harness shows the targets, tests never assert a speed.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
WORKER_KEYS = {
    "status",
    "contender",
    "workload",
    "requests",
    "errors",
    "first_error",
    "concurrency",
    "wall_s",
    "throughput_rps",
    "median_ms",
    "p99_ms",
    "cpu_ms_per_request",
    "peak_rss_mib",
    "budget_hit",
}


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    """fake_openai.py in its own process, on a free port; its base URL (ending /v1)."""
    process = subprocess.Popen(
        [sys.executable, str(BENCHMARKS / "fake_openai.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_sdk_gets_images_from_the_fake(fake: str) -> None:
    with openai.OpenAI(base_url=fake, api_key="sk-test", max_retries=0) as client:
        response = client.images.generate(model="dall-e-2", prompt="a fox", n=3)
    assert response.data is not None
    assert len(response.data) == 3
    assert response.data[0].b64_json is not None
    assert base64.b64decode(response.data[0].b64_json).startswith(b"\x89PNG\r\n\x1a\n")


def test_the_broken_model_is_a_server_error_to_the_sdk(fake: str) -> None:
    with (
        openai.OpenAI(base_url=fake, api_key="sk-test", max_retries=0) as client,
        pytest.raises(openai.InternalServerError) as caught,
    ):
        client.images.generate(model="broken-model", prompt="a fox")
    assert caught.value.status_code == 500
    assert "boom" in str(caught.value)


def _replies(sock: socket.socket, count: int) -> list[tuple[str, dict[str, object]]]:
    """Read `count` HTTP replies (status line, JSON body) off a keep-alive socket."""
    buffer = b""
    replies = []
    while len(replies) < count:
        chunk = sock.recv(65536)
        assert chunk, "the fake closed the connection"
        buffer += chunk
        while b"\r\n\r\n" in buffer:
            head, rest = buffer.split(b"\r\n\r\n", 1)
            lines = head.decode().split("\r\n")
            length = next(
                int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k == "content-length"
            )
            if len(rest) < length:
                break
            replies.append((lines[0], json.loads(rest[:length])))
            buffer = rest[length:]
    return replies


def test_the_fake_handles_pipelined_and_split_requests(fake: str) -> None:
    port = int(fake.rsplit(":", 1)[1].split("/")[0])

    def request(body: dict[str, object]) -> bytes:
        raw = json.dumps(body).encode()
        return (
            b"POST /v1/images/generations HTTP/1.1\r\nhost: x\r\n"
            b"content-length: %d\r\n\r\n" % len(raw)
        ) + raw

    two = request({"model": "dall-e-2", "prompt": "a", "n": 2}) + request(
        {"model": "broken-model", "prompt": "b"}
    )
    split = request({"model": "dall-e-2", "prompt": "c", "n": 1})
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(two)  # two requests in one write
        sock.sendall(split[:30])  # one request cut inside the head...
        first = _replies(sock, 2)
        sock.sendall(split[30:-5])  # ...and inside the body
        sock.sendall(split[-5:])
        second = _replies(sock, 1)
    (status_a, body_a), (status_b, body_b) = first
    assert status_a == "HTTP/1.1 200 OK"
    assert len(body_a["data"]) == 2  # type: ignore[arg-type]
    assert status_b.startswith("HTTP/1.1 500")
    assert body_b == {"error": {"message": "boom", "type": "server_error", "code": None}}
    assert second[0][0] == "HTTP/1.1 200 OK"


# every contender this environment has (LiteLLM lives in the benchmark's own environment)
@pytest.mark.parametrize("contender", ["httpx", "sdk", "sdk-aiohttp", "layer", "ledger"])
def test_a_worker_prints_one_json_line(fake: str, contender: str) -> None:
    # the fallback workload: the primary answers 500, its fallback serves (one worker, a fresh
    # interpreter importing the contender, is most of this file's time)
    out = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "worker.py"),
            f"--contender={contender}",
            "--workload=fallback",
            f"--base-url={fake}",
            "--requests=5",
            "--warmup=2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert set(result) == WORKER_KEYS
    assert result["status"] == "ok", result["first_error"]
    assert (result["contender"], result["workload"]) == (contender, "fallback")
    assert result["requests"] == 5
    assert result["errors"] == 0
    assert result["peak_rss_mib"] > 0


def test_micro_times_layers_own_work_without_io() -> None:
    # the SDK's images.generate answers at once; the gate's base URL is a port nothing listens
    # on, so a request that reached the network would fail the run instead of being timed
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "micro.py"), "own", "--requests=20"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=BENCHMARKS,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["requests"] == 20 * 7
    assert 0 < result["min_us"] <= result["median_us"]
    assert result["stand_in_us"] > 0


@pytest.mark.parametrize("fault", ["500", "429", "hang"])
def test_an_outage_cell_counts_the_hits_on_the_dead_primary(fault: str) -> None:
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "outage.py"), "--cell=layer", f"--fault={fault}",
         "--requests=3", "--timeout=0.3", "--after=1"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["status"] == "ok", row
    assert row["requests"] == 3
    # the fallback served all three; the fake saw the primary's hits (every one without a breaker)
    assert 1 <= row["primary_hits"] <= 3
