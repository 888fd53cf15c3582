"""The fake provider server that provider tests build on."""

from __future__ import annotations

import time

import httpx
import pytest

from layer_core.testing import NO_REPLY, FakeServer, Recorded, Reply, wait_until


def test_scripted_replies_in_order_the_last_repeating_and_requests_recorded() -> None:
    with FakeServer() as server:
        server.add(
            "POST",
            "/v1/things",
            Reply(429, json={"e": 1}, headers={"Retry-After": "2"}),
            Reply(json={"ok": True}),
        )
        assert server.url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=server.url) as client:
            first = client.post("/v1/things", json={"a": 1})
            second = client.post("/v1/things", json={"a": 2})
            third = client.post("/v1/things", json={"a": 3})
        assert first.status_code == 429
        assert first.headers["retry-after"] == "2"
        assert second.json() == third.json() == {"ok": True}
        assert [r.json()["a"] for r in server.requests_to("/v1/things")] == [1, 2, 3]


def test_path_parameters_and_handlers() -> None:
    def echo(request: Recorded) -> Reply:
        return Reply(json={"id": request.params["id"], "q": request.query.get("x")})

    with FakeServer() as server:
        server.add("GET", "/v1/predictions/{id}", echo)
        reply = httpx.get(f"{server.url}/v1/predictions/abc?x=1")
        assert reply.json() == {"id": "abc", "q": ["1"]}
        assert httpx.get(f"{server.url}/nowhere").status_code == 404


def test_multipart_forms_are_parsed() -> None:
    with FakeServer() as server:
        server.add("POST", "/form", Reply(json={}))
        httpx.post(
            f"{server.url}/form", data={"prompt": "hi", "seed": "3"}, files={"none": ("", b"")}
        )
        form = server.requests[0].form()
        assert form["prompt"] == "hi"
        assert form["seed"] == "3"


def test_dropped_connections_and_delays() -> None:
    with FakeServer() as server:
        server.add("GET", "/drop", Reply(drop=True))
        server.add("GET", "/slow", Reply(json={}, delay=2))
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/drop")
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(f"{server.url}/slow", timeout=0.2)


def test_open_connections_counts_what_clients_hold_until_they_close() -> None:
    with FakeServer() as server:
        server.add("GET", "/ok", Reply(json={}))
        assert server.open_connections == 0
        with httpx.Client(base_url=server.url) as client:
            client.get("/ok")
            assert server.open_connections == 1  # kept alive for the next request
        assert wait_until(lambda: server.open_connections == 0)


def test_a_call_that_never_answers_is_abandoned_when_the_client_hangs_up() -> None:
    with FakeServer() as server:
        server.add("POST", "/hang", NO_REPLY)
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.url}/hang", json={}, timeout=0.2)
        assert wait_until(lambda: server.open_connections == 0)
        assert time.monotonic() - started < NO_REPLY.delay
        assert len(server.requests_to("/hang")) == 1
