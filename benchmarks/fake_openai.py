"""A fast local fake of the OpenAI Images API, so the client side is all a benchmark measures.

    python benchmarks/fake_openai.py                 # serve on a free port; prints the port
    python benchmarks/fake_openai.py --port 8080     # a fixed port
    python benchmarks/fake_openai.py --self-check    # measure its own requests per second

A raw `asyncio.Protocol` HTTP/1.1 server on 127.0.0.1 (no framework, keep-alive, pipelining):
`POST /v1/images/generations` answers 200 with `n` tiny base64 PNGs (`n` read from the JSON
body, 1 to 10), in the shape the openai SDK parses. A request whose JSON `model` is
`broken-model` gets a 500 with an OpenAI-shaped error body, the primary of the fallback
workload. Any other path is a 404. The replies are built once, so a request costs a buffer
scan, one small `json.loads` and a write.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import socket
import sys
import time
from typing import Any

#: A 1x1 transparent PNG.
TINY_PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
    "60e6kgAAAABJRU5ErkJggg=="
)
IMAGES_PATH = b"/v1/images/generations"
BROKEN_MODEL = "broken-model"
CREATED = 1_700_000_000
MAX_N = 10
MAX_HEADER_BYTES = 64 * 1024


def _reply(status: int, reason: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n"
        "x-request-id: req_bench\r\n"
        "\r\n"
    ).encode()
    return head + payload


#: The 200 for n = 1..10 images.
OK_REPLIES = {
    n: _reply(
        200,
        "OK",
        {"created": CREATED, "data": [{"b64_json": TINY_PNG_B64}] * n, "size": "1024x1024"},
    )
    for n in range(1, MAX_N + 1)
}
SERVER_ERROR = _reply(
    500,
    "Internal Server Error",
    {"error": {"message": "boom", "type": "server_error", "code": None}},
)
NOT_FOUND = _reply(
    404,
    "Not Found",
    {"error": {"message": "no such route", "type": "invalid_request_error", "code": None}},
)
BAD_REQUEST = _reply(
    400,
    "Bad Request",
    {"error": {"message": "bad JSON body", "type": "invalid_request_error", "code": None}},
)


TOO_MANY = _reply(
    429,
    "Too Many Requests",
    {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
).replace(b"x-request-id: req_bench\r\n", b"x-request-id: req_bench\r\nretry-after: 30\r\n")

#: The outage workload's primary: --fault makes every images request hang (no reply, ever),
#: answer 500, or answer 429 with Retry-After: 30. `GET /stats` reports the images requests seen.
FAULT: str | None = None
HITS = 0
HANG = b""


def answer(method: bytes, path: bytes, body: bytes) -> bytes:
    """The reply to one request (HANG: none)."""
    global HITS
    if method == b"GET" and path == b"/stats":
        payload = json.dumps({"hits": HITS, "fault": FAULT}).encode()
        return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload) + payload
    if method == b"POST" and FAULT is not None:
        HITS += 1
        return {"hang": HANG, "500": SERVER_ERROR, "429": TOO_MANY}[FAULT]
    if method == b"POST" and path.split(b"?", 1)[0] == IMAGES_PATH:
        HITS += 1
    if method != b"POST" or path.split(b"?", 1)[0] != IMAGES_PATH:
        return NOT_FOUND
    try:
        fields = json.loads(body)
        model = fields.get("model")
        n = fields.get("n") or 1
    except (ValueError, AttributeError):
        return BAD_REQUEST
    if model == BROKEN_MODEL:
        return SERVER_ERROR
    if not isinstance(n, int) or not 1 <= n <= MAX_N:
        return BAD_REQUEST
    return OK_REPLIES[n]


class FakeOpenAI(asyncio.Protocol):
    """One connection: cut requests out of the byte stream (Content-Length), answer each."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        out: list[bytes] = []
        close = False
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEADER_BYTES:
                    close = True
                break
            head = bytes(buffer[:end])
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3:
                close = True
                break
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                lowered = name.strip().lower()
                if lowered == b"content-length":
                    length = int(value.strip())
                elif lowered == b"connection" and value.strip().lower() == b"close":
                    close = True
            start = end + 4
            if len(buffer) < start + length:
                close = False  # the body is still coming; the header is parsed again then
                break
            body = bytes(buffer[start : start + length])
            del buffer[: start + length]
            reply = answer(parts[0], parts[1], body)
            if reply:
                out.append(reply)
            if close:
                break
        if out and self.transport is not None:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
        if close and self.transport is not None:
            self.transport.close()


async def serve(port: int = 0, *, ready: Any = None) -> None:
    """Serve until cancelled; call `ready(port)` once listening."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FakeOpenAI, "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    if ready is not None:
        ready(bound)
    async with server:
        await server.serve_forever()


def main_serve(port: int) -> None:
    def ready(bound: int) -> None:
        print(bound, flush=True)

    loop = asyncio.new_event_loop()
    task = loop.create_task(serve(port, ready=ready))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        loop.run_until_complete(task)
    loop.close()


# --- self-check: how many requests per second it serves -------------------------------------

REQUEST = (
    b"POST /v1/images/generations HTTP/1.1\r\n"
    b"host: 127.0.0.1\r\n"
    b"content-type: application/json\r\n"
    b"content-length: %d\r\n"
    b"\r\n"
)


class _LoadClient(asyncio.Protocol):
    """One keep-alive connection keeping `depth` pipelined requests in flight; counts replies."""

    def __init__(self, request: bytes, depth: int, deadline: float, done: asyncio.Future[int]):
        self.batch = request * depth
        self.depth = depth
        self.deadline = deadline
        self.done = done
        self.buffer = bytearray()
        self.replies = 0
        self.pending = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.pending = self.depth
        self.transport.write(self.batch)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name == b"content-length":
                    length = int(value)
            if len(buffer) < end + 4 + length:
                return
            if not head.startswith(b"http/1.1 200"):
                raise RuntimeError(f"unexpected reply: {head[:40]!r}")
            del buffer[: end + 4 + length]
            self.replies += 1
            self.pending -= 1
            if self.pending == 0:
                if time.perf_counter() < self.deadline:
                    self._send()
                else:
                    assert self.transport is not None
                    self.transport.close()
                    return

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.replies)


async def _load(port: int, connections: int, depth: int, seconds: float) -> int:
    loop = asyncio.get_running_loop()
    body = json.dumps({"model": "dall-e-2", "prompt": "a fox", "n": 1}).encode()
    request = REQUEST % len(body) + body
    deadline = time.perf_counter() + seconds
    futures = []
    for _ in range(connections):
        done: asyncio.Future[int] = loop.create_future()
        await loop.create_connection(
            lambda done=done: _LoadClient(request, depth, deadline, done), "127.0.0.1", port
        )
        futures.append(done)
    return sum(await asyncio.gather(*futures))


def _load_process(port: int, connections: int, depth: int, seconds: float, results: Any) -> None:
    results.put(asyncio.run(_load(port, connections, depth, seconds)))


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_check(
    *, clients: int = 1, connections: int = 8, depth: int = 8, seconds: float = 3.0
) -> dict[str, Any]:
    """Start a server process and load it from `clients` processes of raw-socket clients.

    Each connection keeps `depth` pipelined requests in flight, so a client spends little per
    request and the server is the bottleneck. Reports requests per wall second, and per second
    of the server's own CPU time (its capacity when it has a core to itself: the number that
    holds on a busy machine).
    """
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    server = context.Process(target=_serve_process, args=(ports,), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=10)
        assert server.pid is not None
        cpu_before = cpu_seconds(server.pid)
        results = context.Queue()
        loaders = [
            context.Process(target=_load_process, args=(port, connections, depth, seconds, results))
            for _ in range(clients)
        ]
        for loader in loaders:
            loader.start()
        total = sum(results.get(timeout=seconds + 30) for _ in loaders)
        for loader in loaders:
            loader.join()
        cpu_after = cpu_seconds(server.pid)
    finally:
        server.terminate()
        server.join()
    server_cpu = (
        cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    )
    return {
        "requests": total,
        "seconds": seconds,
        "requests_per_second": round(total / seconds),
        "server_cpu_seconds": round(server_cpu, 2) if server_cpu is not None else None,
        "requests_per_server_cpu_second": round(total / server_cpu) if server_cpu else None,
        "clients": clients,
        "connections": clients * connections,
        "pipeline_depth": depth,
    }


def _serve_process(ports: Any) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(0, ready=ports.put))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument(
        "--self-check", action="store_true", help="measure its own requests per second"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="self-check duration")
    parser.add_argument("--clients", type=int, default=1, help="self-check client processes")
    parser.add_argument("--connections", type=int, default=8, help="per client process")
    parser.add_argument("--depth", type=int, default=8, help="pipelined requests per connection")
    parser.add_argument(
        "--fault", choices=("hang", "500", "429"), help="every images request hangs / 500s / 429s"
    )
    args = parser.parse_args(argv)
    global FAULT
    FAULT = args.fault
    if args.self_check:
        result = self_check(
            clients=args.clients,
            connections=args.connections,
            depth=args.depth,
            seconds=args.seconds,
        )
        print(json.dumps(result))
        return 0
    main_serve(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
