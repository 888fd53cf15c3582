"""Routing around outages and rate limits, through layer and the openai SDK against its fake.

Primary dall-e-3 and fallback dall-e-2 on one fake OpenAI server whose answers are set per model
(`PerModel`): hits are counted at the fake. The state store is a `MemoryStore` on a test clock,
so cooldowns pass without waiting.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import layer_openai
import openai  # noqa: F401 - imported here, not inside the first request's short timeout
import pytest
from layer_openai.testing import IMAGE_ROUTE, KEY, ROUTE, PerModel, api_error, image_file

from layer_core import Layer
from layer_core.errors import AllAttemptsFailed, ConfigError
from layer_core.state import HealthRules
from layer_core.state.memory import MemoryStore
from layer_core.testing import NO_REPLY, FakeServer

PROMPT = {"prompt": "a lighthouse at dusk"}
PRIMARY, FALLBACK = "dall-e-3", "dall-e-2"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Rig:
    def __init__(self, layer: Layer, fake: PerModel, clock: Clock) -> None:
        self.layer, self.fake, self.clock = layer, fake, clock

    def serve(self, n: int = 1) -> list[str]:
        return [self.layer.image("g", PROMPT).model for _ in range(n)]


@pytest.fixture
def rig() -> Iterator[Rig]:
    yield from _rig()


def _rig(**config: Any) -> Iterator[Rig]:
    fake = PerModel()
    clock = Clock()
    with FakeServer() as server:
        server.add("POST", ROUTE, fake)
        server.add("GET", IMAGE_ROUTE, image_file)
        layer = Layer(
            {
                "ledger": False,
                "plugins": {
                    "openai": {
                        "base_url": f"{server.url}/v1",
                        "response_format": "b64_json",
                        **config.pop("openai", {}),
                    }
                },
                "gates": {
                    "g": {
                        "model": PRIMARY,
                        "fallback_models": [FALLBACK],
                        "timeout": 0.3,
                        **config.pop("gate", {}),
                    }
                },
                **config,
            },
            plugins=[layer_openai],
            load_entry_points=False,
            environ={"OPENAI_API_KEY": KEY},
            state=MemoryStore(clock=clock),
        )
        # a success first: the SDK's client is made outside the tests' timeouts, and the
        # success leaves the primary's circuit closed with no failure counted
        for _ in range(3):
            if all(a.outcome == "ok" for a in layer.image("g", PROMPT).attempts):
                break
        fake.hits.clear()
        clock.now += 61  # and its minute of any limit is over
        assert not any(h.demoted for h in layer.state_store.snapshot().values())
        try:
            yield Rig(layer, fake, clock)
        finally:
            layer.close()


def test_after_the_breaker_opens_requests_stop_reaching_a_hung_primary(rig: Rig) -> None:
    rig.fake.faults[PRIMARY] = NO_REPLY
    assert rig.serve(10) == [FALLBACK] * 10
    assert rig.fake.hits[PRIMARY] == 3, "the third timeout opens the circuit"
    assert rig.fake.hits[FALLBACK] == 10
    plan = rig.layer.explain("g", PROMPT)
    assert [c.id for c in plan.candidates] == [FALLBACK, PRIMARY]
    assert plan.candidates[1].health is not None
    assert plan.candidates[1].health.describe() == (
        "dall-e-3@openai: circuit open for 5 s more after 3 timeouts"
    )


def test_the_primary_is_probed_after_its_cooldown_and_used_again_once_it_answers(
    rig: Rig,
) -> None:
    rig.fake.faults[PRIMARY] = NO_REPLY
    rig.serve(4)
    assert rig.fake.hits[PRIMARY] == 3
    rig.clock.now += 5.1  # the cooldown is over: the next request probes the primary
    assert rig.serve(2) == [FALLBACK, FALLBACK]
    assert rig.fake.hits[PRIMARY] == 4, "one probe, which hung: open again"
    health = rig.layer.state_store.snapshot()["dall-e-3@openai"]
    assert (health.state, health.retry_in) == ("open", 10.0), "the cooldown doubles"
    rig.clock.now += 10.1
    del rig.fake.faults[PRIMARY]  # it answers again
    assert rig.serve(3) == [PRIMARY] * 3
    assert rig.fake.hits[PRIMARY] == 7
    assert rig.layer.state_store.snapshot() == {}, "a success closes the circuit"


def test_500s_open_the_circuit_too(rig: Rig) -> None:
    rig.fake.faults[PRIMARY] = api_error(500, "The server had an error", kind="server_error")
    assert rig.serve(8) == [FALLBACK] * 8
    assert rig.fake.hits[PRIMARY] == 3


def test_a_429_with_retry_after_30_is_sent_once_per_cooldown(rig: Rig) -> None:
    rig.fake.faults[PRIMARY] = api_error(
        429, "Rate limit reached", "rate_limit_exceeded", **{"Retry-After": "30"}
    )
    assert rig.serve(10) == [FALLBACK] * 10
    assert rig.fake.hits[PRIMARY] == 1
    plan = rig.layer.explain("g", PROMPT)
    assert plan.candidates[-1].health is not None
    assert plan.candidates[-1].health.reason == (
        "rate limited: cooling for 30 s more (Retry-After 30 s)"
    )
    rig.clock.now += 29
    rig.serve(3)
    assert rig.fake.hits[PRIMARY] == 1
    rig.clock.now += 1.5
    assert rig.serve(1) == [FALLBACK], "tried again after the cooldown: a 429 again"
    assert rig.fake.hits[PRIMARY] == 2
    del rig.fake.faults[PRIMARY]
    rig.clock.now += 31
    assert rig.serve(2) == [PRIMARY, PRIMARY]


def test_openai_rate_limit_headers_cool_a_429_without_retry_after(rig: Rig) -> None:
    rig.fake.faults[PRIMARY] = api_error(
        429,
        "Rate limit reached for images per minute",
        "rate_limit_exceeded",
        **{"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m12s"},
    )
    rig.serve(3)
    assert rig.fake.hits[PRIMARY] == 1
    health = rig.layer.state_store.snapshot()["dall-e-3@openai"]
    assert (health.state, health.retry_in) == ("cooling", 72.0)


def test_with_every_deployment_open_the_one_that_recovers_soonest_is_tried() -> None:
    for rig in _rig(gate={"timeout": 0.2, "retries": 0}):
        rig.fake.faults[PRIMARY] = NO_REPLY
        rig.fake.faults[FALLBACK] = NO_REPLY
        for _ in range(3):
            with pytest.raises(AllAttemptsFailed):
                rig.layer.image("g", PROMPT)
        assert rig.fake.hits == {PRIMARY: 3, FALLBACK: 3}
        rig.clock.now += 1
        plan = rig.layer.explain("g", PROMPT)
        assert [c.id for c in plan.candidates] == [PRIMARY, FALLBACK], "both open: none dropped"
        assert all(c.health and c.health.state == "open" for c in plan.candidates)
        del rig.fake.faults[FALLBACK]
        response = rig.layer.image("g", PROMPT)
        assert response.model == FALLBACK, "not refused: the primary hung, the fallback answered"
        assert [a.outcome for a in response.attempts] == ["error", "ok"]


def test_an_images_per_minute_limit_is_never_exceeded_and_moves_the_rest_on() -> None:
    for rig in _rig(openai={"images_per_minute": 3}):
        models = rig.serve(5)
        assert models == [PRIMARY, PRIMARY, PRIMARY, FALLBACK, FALLBACK]
        # the policy saw the limit: dall-e-3 is demoted with no headroom, nothing sent to it
        response = rig.layer.image("g", PROMPT)
        assert response.model == FALLBACK
        assert rig.fake.hits[PRIMARY] == 3
        plan = rig.layer.explain("g", PROMPT)
        health = plan.candidates[-1].health
        assert health is not None
        assert health.state == "limited"
        assert health.reason.startswith("no headroom: 3 of 3 images/min used")
        rig.clock.now += 61
        assert rig.serve(1) == [PRIMARY]


def test_a_request_over_the_headroom_is_split_and_the_skip_recorded() -> None:
    for rig in _rig(
        openai={"images_per_minute": 3},
        gate={"model": FALLBACK, "fallback_models": [PRIMARY]},
    ):
        # dall-e-2 takes up to 10 a call; 3 fit in its minute, 2 move on to dall-e-3
        response = rig.layer.image("g", {**PROMPT, "count": 5})
        assert len(response.images) == 5
        assert [(a.model, a.outcome, a.requested) for a in response.attempts] == [
            (FALLBACK, "skipped", 2),
            (FALLBACK, "ok", 3),
            (PRIMARY, "ok", 1),
            (PRIMARY, "ok", 1),
        ]
        assert response.attempts[0].message is not None
        assert "not sent" in response.attempts[0].message
        # nothing fits anywhere any more: the request fails, saying why, nothing sent
        with pytest.raises(AllAttemptsFailed) as failed:
            rig.layer.image("g", {**PROMPT, "count": 4})
        assert [(a.model, a.outcome, a.requested) for a in failed.value.attempts] == [
            (PRIMARY, "skipped", 3),
            (PRIMARY, "ok", 1),
            (FALLBACK, "skipped", 3),
        ]
        assert len(failed.value.images) == 1
        assert rig.fake.hits == {FALLBACK: 1, PRIMARY: 3}


def test_health_rules_come_from_the_config_and_the_gate() -> None:
    for rig in _rig(health={"failures": 5, "cooldown": 2}, gate={"health": {"failures": 2}}):
        rule = rig.layer.gates()["g"].health
        assert rule == HealthRules(failures=2, cooldown=2)
        rig.fake.faults[PRIMARY] = NO_REPLY
        rig.serve(4)
        assert rig.fake.hits[PRIMARY] == 2


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"health": {"failures": 0}}, "[health] failures"),
        ({"health": {"cooldown": 10, "max_cooldown": 5}}, "raise max_cooldown"),
        ({"health": {"cooldwn": 1}}, "cooldwn"),
        ({"state": "postgres://x"}, 'use "memory"'),
        ({"state_timeout": 0}, "state_timeout must be over 0"),
        ({"state_timeout": "fast"}, "state_timeout must be a number of seconds"),
        ({"gates": {"g": {"model": "m", "health": {"failures": -1}}}}, "[gates.g]"),
    ],
)
def test_bad_health_and_state_settings_name_the_field(config: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as error:
        Layer({"ledger": False, **config}, load_entry_points=False)
    assert words in str(error.value)
