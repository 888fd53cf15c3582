"""A fake provider HTTP server on 127.0.0.1, for tests that drive a real SDK over the wire.

    with FakeServer() as server:
        server.add("POST", "/v1/images/generations", Reply(json={"data": [...]}))
        server.add("POST", "/v1/images/generations", Reply(429, headers={"Retry-After": "1"}))
        ...  # point the SDK at server.url
        assert server.requests[0].json()["model"] == "dall-e-3"

Routes match method and path (``{name}`` captures a segment into ``request.params``). A route
holds a queue of replies: each call takes the next one and the last one repeats. A reply can be a
`Reply` or a function of the `Recorded` request returning one. Every request is recorded. The
server runs on its own thread, binds a free port on 127.0.0.1, and stops when the `with` ends.

A delayed reply (`Reply(delay=...)`, e.g. `NO_REPLY` for a call that never answers) is abandoned as
soon as the client hangs up, and `open_connections` counts the connections clients still hold,
so a test can check that a cancelled call really closed its connection.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["NO_REPLY", "FakeServer", "Recorded", "Reply", "wait_until"]


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str | bytes]:
        """A multipart/form-data (or urlencoded) body as {field: text, or bytes for files}."""
        content_type = self.headers.get("content-type", "")
        if content_type.startswith("application/x-www-form-urlencoded"):
            return {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}
        if not content_type.startswith("multipart/"):
            raise ValueError(f"not a form body: content-type {content_type!r}")
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + self.body)
        fields: dict[str, str | bytes] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            assert isinstance(name, str)
            assert isinstance(payload, bytes)
            fields[name] = payload if part.get_filename() else payload.decode()
        return fields


@dataclass
class Reply:
    """What the server answers. `json` wins over `body`; `drop` closes the connection unanswered."""

    status: int = 200
    json: Any = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    delay: float = 0.0
    drop: bool = False


NO_REPLY = Reply(status=504, delay=3600.0)
"""A reply that never comes (within a test): the server holds the call until the client hangs up."""

Responder = Reply | Callable[[Recorded], Reply]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    replies: list[Responder]
    calls: int = 0


class FakeServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 with scripted replies and a request log."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._routes: list[_Route] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._open = 0

    # --- scripting -----------------------------------------------------------------------------

    def add(self, method: str, path: str, *replies: Responder) -> FakeServer:
        """Answer `method path` with `replies`, one per call, the last repeating."""
        if not replies:
            raise ValueError("give at least one reply")
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
        with self._lock:
            self._routes.insert(0, _Route(method.upper(), re.compile(f"^{regex}$"), list(replies)))
        return self

    def requests_to(self, path: str, method: str | None = None) -> list[Recorded]:
        """Recorded requests whose path is `path` (and method, if given)."""
        return [
            r for r in self.requests if r.path == path and (method is None or r.method == method)
        ]

    @property
    def open_connections(self) -> int:
        """Connections a client holds open to the server now (idle keep-alive ones included)."""
        with self._lock:
            return self._open

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321 (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("the server is not running; use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- serving -----------------------------------------------------------------------------

    def _answer(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            for route in self._routes:
                if route.method != recorded.method:
                    continue
                match = route.pattern.match(recorded.path)
                if match is None:
                    continue
                recorded.params = match.groupdict()
                responder = route.replies[min(route.calls, len(route.replies) - 1)]
                route.calls += 1
                break
            else:
                return Reply(
                    404, json={"error": f"no fake route for {recorded.method} {recorded.path}"}
                )
        return responder(recorded) if callable(responder) else responder

    def _opened(self, change: int) -> None:
        with self._lock:
            self._open += change

    def _wait(self, seconds: float, connection: socket.socket) -> bool:
        """Sleep `seconds`; False as soon as the client hangs up or the server stops."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stopping.wait(min(left, 0.02)) or _hung_up(connection):
                return False
        return True


def _hung_up(connection: socket.socket) -> bool:
    """Whether the peer closed `connection` (readable, and a peek reads end-of-file)."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _handler_for(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out in two writes: with Nagle's algorithm on, the body waits for
        # the client's delayed ACK of the headers (about 40 ms a reply on Linux)
        disable_nagle_algorithm = True

        def setup(self) -> None:
            server._opened(+1)
            super().setup()

        def finish(self) -> None:
            try:
                super().finish()
            finally:
                server._opened(-1)

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            split = urlsplit(self.path)
            recorded = Recorded(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query),
                headers=self.headers,
                body=body,
            )
            try:
                reply = server._answer(recorded)
            except Exception as exc:  # noqa: BLE001 - a broken test handler answers 599
                reply = Reply(599, json={"error": f"fake handler raised {exc!r}"})
            if reply.delay and not server._wait(reply.delay, self.connection):
                self.close_connection = True  # the client gave up: abandon the reply
                return
            if reply.drop:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            payload = reply.body
            content_type = reply.content_type
            if reply.json is not None:
                payload = json.dumps(reply.json).encode()
                content_type = content_type or "application/json"
            self.send_response(reply.status)
            self.send_header("Content-Type", content_type or "application/octet-stream")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            return

    return Handler


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll `condition` until it holds (True) or `seconds` pass (False): for state another
    thread changes, like `open_connections` after a client hangs up."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
