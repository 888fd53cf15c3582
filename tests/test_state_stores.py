"""The state stores' rules, the same cases on the memory store and on a real Redis; then Redis
shared by several `Layer`s and processes, its round trips counted, and an outage ridden out."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import layer_openai
import openai  # noqa: F401 - imported here, not inside the first request's short timeout
import pytest
from layer_openai.testing import KEY, ROUTE, PerModel

from layer_core import Layer
from layer_core.state import NO_LIMITS, HealthRules, Limits, StateStore
from layer_core.state.memory import MemoryStore
from layer_core.state.redis import RedisStore
from layer_core.testing import NO_REPLY, FakeServer
from tests.redis_server import RedisServer

RULES = HealthRules()
D = "dall-e-3@openai"
ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[tuple[StateStore, Clock]]:
    clock = Clock()
    if request.param == "memory":
        yield MemoryStore(clock=clock), clock
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    # a generous timeout: these tests check the rules on Redis, not the fall-back when it is
    # slow (a loaded CI machine can take over 0.1 s to answer)
    prefix = f"t{secrets.token_hex(4)}:"
    yield RedisStore(server.url, prefix=prefix, clock=clock, timeout=5.0), clock


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def admit(store: StateStore, images: int = 1, limits: Limits = NO_LIMITS, **kw: Any) -> Any:
    return await store.admit(
        D,
        images=images,
        per_call=kw.pop("per_call", 1),
        limits=limits,
        allow_open=kw.pop("allow_open", False),
        lease_seconds=kw.pop("lease_seconds", 30.0),
        **kw,
    )


async def record(store: StateStore, error: str | None, **kw: Any) -> None:
    store.record(D, error=error, retry_after=kw.pop("retry_after", None), rules=RULES, **kw)
    if isinstance(store, RedisStore):
        await store.flush()


def test_three_failures_open_the_circuit_and_one_probe_follows_the_cooldown(
    store: tuple[StateStore, Clock],
) -> None:
    state, clock = store

    async def scenario() -> None:
        for _ in range(3):
            assert (await admit(state)).images == 1
            await record(state, "timeout")
        refused = await admit(state)
        assert refused.images == 0
        assert refused.refused is not None
        assert refused.refused.describe() == f"{D}: circuit open for 5 s more after 3 timeouts"
        assert (await admit(state, allow_open=True)).images == 1, "demoted, never refused"
        clock.now += 5
        probe = await admit(state, images=3)
        assert (probe.images, probe.calls) == (1, 1), "the probe is one call"
        assert (await admit(state)).refused is not None, "one probe at a time"
        await record(state, None)
        assert (await admit(state, images=3)).images == 3, "a success closes it"
        await state.aclose()

    run(scenario())


def test_a_failed_probe_opens_the_circuit_for_twice_as_long(
    store: tuple[StateStore, Clock],
) -> None:
    state, clock = store

    async def scenario() -> None:
        for _ in range(3):
            await admit(state)
            await record(state, "unavailable")
        clock.now += 5
        assert (await admit(state)).images == 1
        await record(state, "unavailable")
        refused = (await admit(state)).refused
        assert refused is not None
        assert (refused.state, refused.retry_in) == ("open", 10.0)
        assert refused.reason == "circuit open for 10 s more after 4 failures (unavailable)"
        await state.aclose()

    run(scenario())


def test_a_429_cools_the_deployment_for_its_retry_after(store: tuple[StateStore, Clock]) -> None:
    state, clock = store

    async def scenario() -> None:
        await admit(state)
        await record(state, "rate_limited", retry_after=30.0)
        refused = (await admit(state)).refused
        assert refused is not None
        assert refused.reason == "rate limited: cooling for 30 s more (Retry-After 30 s)"
        clock.now += 30
        assert (await admit(state)).images == 1
        await state.aclose()

    run(scenario())


def test_images_per_minute_are_granted_in_part_and_never_exceeded(
    store: tuple[StateStore, Clock],
) -> None:
    state, clock = store
    limits = Limits(images_per_minute=5)

    async def scenario() -> None:
        assert (await admit(state, 4, limits, per_call=10)).images == 4
        assert (await admit(state, 4, limits, per_call=10)).images == 1, "the rest moves on"
        refused = (await admit(state, 1, limits)).refused
        assert refused is not None
        assert (refused.state, refused.headroom) == ("limited", 0)
        clock.now += 59
        assert (await admit(state, 1, limits)).images == 0
        clock.now += 1.5
        assert (await admit(state, 9, limits, per_call=10)).images == 5
        await state.aclose()

    run(scenario())


def test_rpm_counts_calls_and_max_concurrency_counts_calls_until_they_report_back(
    store: tuple[StateStore, Clock],
) -> None:
    state, _ = store

    async def scenario() -> None:
        rpm = Limits(rpm=3)
        grant = await store_admit(state, "a@p", 10, rpm)
        assert (grant.images, grant.calls) == (3, 3), "three calls of one image"
        assert (await store_admit(state, "a@p", 1, rpm)).images == 0
        two = Limits(max_concurrency=2)
        first = await store_admit(state, "b@p", 2, two)
        assert (first.images, first.calls) == (2, 2)
        assert first.lease is not None
        assert (await store_admit(state, "b@p", 1, two)).images == 0
        state.record("b@p", error=None, retry_after=None, rules=RULES, lease=f"{first.lease}:0")
        if isinstance(state, RedisStore):
            await state.flush()
        assert (await store_admit(state, "b@p", 2, two)).images == 1
        await state.aclose()

    run(scenario())


async def store_admit(state: StateStore, deployment: str, images: int, limits: Limits) -> Any:
    return await state.admit(
        deployment,
        images=images,
        per_call=1,
        limits=limits,
        allow_open=False,
        lease_seconds=30.0,
    )


# --- through layer, with Redis ------------------------------------------------------------


def openai_layer(fake_url: str, redis_url: str, prefix: str, **settings: Any) -> Layer:
    return Layer(
        {
            "ledger": False,
            "state": redis_url,
            "state_prefix": prefix,
            "state_timeout": 2.0,  # a loaded test machine is slow, not Redis down
            "plugins": {
                "openai": {
                    "base_url": f"{fake_url}/v1",
                    "response_format": "b64_json",
                    **settings,
                }
            },
            "gates": {"g": {"model": "dall-e-3", "fallback_models": ["dall-e-2"], "timeout": 0.3}},
        },
        plugins=[layer_openai],
        load_entry_points=False,
        environ={"OPENAI_API_KEY": KEY},
    )


@pytest.fixture
def fake() -> Iterator[tuple[FakeServer, PerModel]]:
    per_model = PerModel()
    with FakeServer() as server:
        server.add("POST", ROUTE, per_model)
        yield server, per_model


def test_a_breaker_opened_by_one_process_is_respected_by_the_next_within_one_request(
    redis_server: RedisServer, fake: tuple[FakeServer, PerModel]
) -> None:
    server, per_model = fake
    prefix = f"t{secrets.token_hex(4)}:"
    with openai_layer(server.url, redis_server.url, prefix) as first:
        first.image("g", {"prompt": "warm up"})  # the SDK's client, outside the timeouts
        per_model.faults["dall-e-3"] = NO_REPLY
        for _ in range(3):
            first.image("g", {"prompt": "a heron"})
        assert first.state_store.snapshot()[D].state == "open"
        hits = per_model.hits["dall-e-3"]
    # another app, with no state of its own: its first request already stays off the primary
    with openai_layer(server.url, redis_server.url, prefix) as second:
        response = second.image("g", {"prompt": "a heron"})
        assert response.model == "dall-e-2"
        assert [(a.model, a.outcome) for a in response.attempts] == [
            ("dall-e-3", "skipped"),
            ("dall-e-2", "ok"),
        ]
        message = response.attempts[0].message or ""
        assert message.startswith("not sent: dall-e-3@openai: circuit open for ")
        assert message.endswith(" more after 3 timeouts")
        # and from then on it plans with it: the primary is demoted, not even asked
        later = second.image("g", {"prompt": "a heron"})
        assert [(a.model, a.outcome) for a in later.attempts] == [("dall-e-2", "ok")]
        assert per_model.hits["dall-e-3"] == hits


def test_one_redis_round_trip_per_request_on_its_critical_path(
    redis_server: RedisServer, fake: tuple[FakeServer, PerModel]
) -> None:
    server, _ = fake
    with openai_layer(
        server.url, redis_server.url, f"t{secrets.token_hex(4)}:", images_per_minute=1000
    ) as layer:
        layer.image("g", {"prompt": "warm up"})  # loads the scripts (SCRIPT LOAD, once)
        layer._run(layer.state_store.aclose())  # and writes its outcome
        before = redis_server.command_calls("evalsha")
        for _ in range(20):
            layer.image("g", {"prompt": "a heron"})
        layer._run(layer.state_store.aclose())
        after = redis_server.command_calls("evalsha")
    # one ADMIT awaited by each request, one RECORD written off its path
    assert after - before == 40


def test_three_processes_share_60_images_per_minute(
    redis_server: RedisServer, fake: tuple[FakeServer, PerModel]
) -> None:
    server, per_model = fake
    prefix = f"t{secrets.token_hex(4)}:"
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.state_worker",
                server.url,
                redis_server.url,
                prefix,
                "40",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [json.loads(w.communicate(timeout=120)[0]) for w in workers]
    assert all(w.returncode == 0 for w in workers)
    assert per_model.hits["dall-e-3"] == 60, "120 asked within a minute: 60 sent, across three"
    assert sum(r["served"] for r in results) == 60
    refused = [outcome for r in results for outcome in r["refused"]]
    assert refused == ["skipped"] * 60, "the rest were refused before sending, each said so"


def test_redis_stopped_mid_run_fails_no_request_and_is_used_again_after_restart(
    tmp_path: Path, fake: tuple[FakeServer, PerModel], caplog: pytest.LogCaptureFixture
) -> None:
    server, per_model = fake
    redis_server = RedisServer(tmp_path).start()
    prefix = "outage:"
    try:
        with openai_layer(server.url, redis_server.url, prefix) as layer:
            store = layer.state_store
            assert isinstance(store, RedisStore)
            store.retry_every = 0.0  # try Redis again on every request once it is back
            for _ in range(3):
                layer.image("g", {"prompt": "a heron"})
            redis_server.stop()
            with caplog.at_level(logging.WARNING, logger="layer"):
                served = [layer.image("g", {"prompt": "a heron"}).model for _ in range(5)]
            assert served == ["dall-e-3"] * 5, "no request failed because of Redis"
            unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
            assert len(unreachable) == 1, "said once"
            assert store.down is not None
            # the primary starts hanging during the outage: this process's own state opens it
            per_model.faults["dall-e-3"] = NO_REPLY
            for _ in range(4):
                assert layer.image("g", {"prompt": "a heron"}).model == "dall-e-2"
            assert per_model.hits["dall-e-3"] == 3 + 5 + 3
            redis_server.start()
            per_model.faults.clear()
            layer.image("g", {"prompt": "a heron"})
            assert store.down is None, "shared again from the first command that succeeds"
            # shared again: a breaker opened now is seen by another app
            per_model.faults["dall-e-3"] = NO_REPLY
            store.local = MemoryStore()  # forget the outage's local state
            hits = per_model.hits["dall-e-3"]
            while per_model.hits["dall-e-3"] < hits + 3:
                layer.image("g", {"prompt": "a heron"})
            layer._run(store.flush())
        with openai_layer(server.url, redis_server.url, prefix) as other:
            response = other.image("g", {"prompt": "a heron"})
            assert [a.outcome for a in response.attempts] == ["skipped", "ok"]
    finally:
        redis_server.stop()
