"""`Guard`: what every request goes through, as plain ASGI (no per-request objects beyond what
it needs): a request id, the body size cap, the HTTP metrics, and one JSON access-log line.

The access log names the route template, the status, the time taken, the request id and the
key's name, never the key itself, the query string or the body.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from layer_core.server import metrics

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

access = logging.getLogger("layer.access")

#: request ids a client may set (x-request-id): printable, short
_MAX_ID = 64


def request_id_of(request: Request) -> str:
    rid: str = request.scope.get("state", {}).get("request_id", "")
    return rid


def _client_id(value: bytes) -> str | None:
    text = value.decode("latin-1")
    if 0 < len(text) <= _MAX_ID and text.isascii() and text.isprintable():
        return text
    return None


class BodyTooLarge(Exception):
    pass


class Guard:
    """Request id, body cap, metrics and the access log, around the app."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        rid = _client_id(headers.get(b"x-request-id", b"")) or os.urandom(12).hex()
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        status = 500
        sent = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                sent = True
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode())]
            await send(message)

        declared = headers.get(b"content-length")
        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge
            return message

        metrics.IN_FLIGHT.inc()
        try:
            if declared is not None and declared.isdigit() and int(declared) > self.max_body:
                await self._too_large(scope, send_with_id)
            else:
                try:
                    await self.app(scope, capped_receive, send_with_id)
                except BodyTooLarge:
                    if not sent:
                        await self._too_large(scope, send_with_id)
        finally:
            metrics.IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            route = _route(scope)
            metrics.REQUESTS.labels(route, scope["method"], str(status)).inc()
            metrics.LATENCY.labels(route).observe(elapsed)
            if access.isEnabledFor(logging.INFO):
                access.info(_line(scope, state, rid, route, status, elapsed))

    async def _too_large(self, scope: Scope, send: Send) -> None:
        message = f"the body is over {self.max_body} bytes"
        if scope["path"].startswith("/v1/"):
            body: dict[str, Any] = {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "body_too_large",
                }
            }
        else:
            body = {"error": "body_too_large", "message": message, "details": {}}
        data = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})


def _route(scope: Scope) -> str:
    """The matched route's template (bounded label values), or "other"."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "other"


def _line(
    scope: Scope, state: dict[str, Any], rid: str, route: str, status: int, elapsed: float
) -> str:
    record: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "request_id": rid,
        "method": scope["method"],
        "route": route,
        "status": status,
        "ms": round(elapsed * 1000, 1),
    }
    for name in ("key", "gate", "error"):
        if name in state:
            record[name] = state[name]
    client = scope.get("client")
    if client:
        record["client"] = client[0]
    return json.dumps(record, separators=(",", ":"))
