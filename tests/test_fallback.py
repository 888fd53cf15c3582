"""Execution through real plugins: retry, fall back or stop, per error kind; counts; costs."""

from __future__ import annotations

import asyncio
import base64
import pickle
import time
from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from layer_core import (
    AllAttemptsFailed,
    AuthenticationFailed,
    ContentRejected,
    GenerationCall,
    ImageOutput,
    InvalidProviderRequest,
    ProviderUnavailable,
    RateLimited,
)
from layer_core.execution import retry_wait
from layer_core.gates import Gate
from layer_core.testing import OK, Hang, ScriptedProvider, fake_images, make_spec, tiny_png
from tests.helpers import layer_with, two_model_provider

PROMPT = {"prompt": "a red bicycle"}


def fallback_gate(**fields: object) -> dict[str, object]:
    return {"g": {"model": "primary", "fallback_models": ["backup"], **fields}}


def outcomes(response_or_error: object) -> list[tuple[str, str, str | None, int]]:
    attempts = response_or_error.attempts  # type: ignore[attr-defined]
    return [(a.model, a.outcome, a.error, a.retry) for a in attempts]


def test_rate_limited_is_retried_after_retry_after_on_the_same_model() -> None:
    acme = two_model_provider({"primary": [RateLimited("slow down", retry_after=0.2), OK]})
    layer = layer_with(acme, gates=fallback_gate(retries=1))
    started = time.perf_counter()
    response = layer.image("g", PROMPT)
    assert time.perf_counter() - started >= 0.2
    assert outcomes(response) == [
        ("primary", "error", "rate_limited", 0),
        ("primary", "ok", None, 1),
    ]
    assert response.attempts[0].retry_after == 0.2
    assert response.model == "primary"
    assert acme.calls_to("backup") == []


def test_rate_limited_without_retries_falls_back_at_once() -> None:
    acme = two_model_provider({"primary": [RateLimited("slow down", retry_after=30)]})
    layer = layer_with(acme, gates=fallback_gate())
    started = time.perf_counter()
    response = layer.image("g", PROMPT)
    assert time.perf_counter() - started < 5
    assert outcomes(response) == [
        ("primary", "error", "rate_limited", 0),
        ("backup", "ok", None, 0),
    ]
    assert response.model == "backup"
    assert response.cost_exact == Decimal("0.01")


def test_a_retry_after_longer_than_max_retry_wait_moves_on_instead_of_waiting() -> None:
    acme = two_model_provider({"primary": [RateLimited("come back tomorrow", retry_after=86400)]})
    layer = layer_with(acme, gates=fallback_gate(retries=3, max_retry_wait=1))
    response = layer.image("g", PROMPT)
    assert outcomes(response) == [
        ("primary", "error", "rate_limited", 0),
        ("backup", "ok", None, 0),
    ]


def test_by_default_a_gate_with_nothing_else_to_try_retries_once_after_retry_after() -> None:
    acme = two_model_provider({"primary": [RateLimited("slow down", retry_after=0.2), OK]})
    layer = layer_with(acme, gates={"g": {"model": "primary"}})
    started = time.perf_counter()
    response = layer.image("g", PROMPT)
    assert time.perf_counter() - started >= 0.2
    assert outcomes(response) == [
        ("primary", "error", "rate_limited", 0),
        ("primary", "ok", None, 1),
    ]


def test_by_default_a_gate_with_a_fallback_moves_on_at_once_and_retries_only_the_last() -> None:
    down = ProviderUnavailable("503 Service Unavailable", status=503)
    acme = two_model_provider({"primary": [down, OK], "backup": [down, OK]})
    layer = layer_with(acme, gates=fallback_gate(retry_backoff=0.01))
    response = layer.image("g", PROMPT)
    assert outcomes(response) == [
        ("primary", "error", "unavailable", 0),
        ("backup", "error", "unavailable", 0),
        ("backup", "ok", None, 1),
    ]


def test_by_default_a_placeholder_after_a_model_is_not_something_else_to_try() -> None:
    acme = ScriptedProvider(
        "acme",
        [
            make_spec("primary", "acme", price="0.04"),
            make_spec("stand-in", "acme", price="0", placeholder=True),
        ],
        {"primary": [ProviderUnavailable("502 Bad Gateway", status=502), OK]},
    )
    layer = layer_with(
        acme,
        gates={"g": {"model": "primary", "fallback_models": ["stand-in"], "retry_backoff": 0.01}},
    )
    response = layer.image("g", PROMPT)
    assert outcomes(response) == [
        ("primary", "error", "unavailable", 0),
        ("primary", "ok", None, 1),
    ]
    assert acme.calls_to("stand-in") == []


def test_by_default_an_error_the_gate_stops_on_is_retried_once_before_it_stops() -> None:
    acme = two_model_provider({"primary": [RateLimited("slow down", retry_after=0.01), OK]})
    layer = layer_with(acme, gates=fallback_gate(fallback_on=["unavailable"]))
    response = layer.image("g", PROMPT)
    assert outcomes(response) == [
        ("primary", "error", "rate_limited", 0),
        ("primary", "ok", None, 1),
    ]


def test_retries_zero_set_on_the_gate_still_means_no_retry() -> None:
    acme = two_model_provider({"primary": [RateLimited("slow down", retry_after=0.01), OK]})
    layer = layer_with(acme, gates={"g": {"model": "primary", "retries": 0}})
    with pytest.raises(AllAttemptsFailed) as caught:
        layer.image("g", PROMPT)
    assert outcomes(caught.value) == [("primary", "error", "rate_limited", 0)]


@given(
    retry=st.integers(0, 5),
    backoff=st.floats(0, 60),
    jitter=st.floats(0, 1, exclude_max=True),
    retry_after=st.none() | st.floats(0, 100),
)
def test_a_retry_waits_retry_after_as_given_or_a_jittered_doubling_backoff(
    retry: int, backoff: float, jitter: float, retry_after: float | None
) -> None:
    gate = Gate(id="g", model="m", retry_backoff=backoff, max_retry_wait=50)
    wait = retry_wait(gate, retry, retry_after, jitter)
    if retry_after is not None:
        assert wait == (retry_after if retry_after <= 50 else None)
        return
    doubled = backoff * 2**retry
    if wait is None:
        assert doubled * (0.5 + jitter) > 50
    else:
        assert doubled / 2 <= wait <= doubled * 1.5
        assert wait == doubled * (0.5 + jitter)


def test_backoff_waits_differ_between_calls_that_failed_together() -> None:
    down = ProviderUnavailable("503 Service Unavailable", status=503)
    acme = ScriptedProvider(
        "acme", [make_spec("primary", "acme", price="0.01")], {"primary": [down, down, OK, OK] * 5}
    )
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        waits.append(delay)
        await real_sleep(0)

    layer = layer_with(acme, gates={"g": {"model": "primary", "retry_backoff": 1}})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(asyncio, "sleep", sleep)
        for _ in range(5):
            layer.image("g", {**PROMPT, "count": 2})
    assert len(waits) == 10
    assert all(0.5 <= wait < 1.5 for wait in waits)
    assert len(set(waits)) == 10


def test_server_errors_are_retried_then_fall_back() -> None:
    acme = two_model_provider(
        {"primary": [ProviderUnavailable("503 Service Unavailable", status=503)]}
    )
    layer = layer_with(acme, gates=fallback_gate(retries=1, retry_backoff=0.01))
    response = layer.image("g", PROMPT)
    assert outcomes(response) == [
        ("primary", "error", "unavailable", 0),
        ("primary", "error", "unavailable", 1),
        ("backup", "ok", None, 0),
    ]


def test_a_timeout_is_per_attempt_and_falls_back() -> None:
    acme = two_model_provider({"primary": [Hang(5)]})
    layer = layer_with(acme, gates=fallback_gate(timeout=0.2))
    started = time.perf_counter()
    response = layer.image("g", PROMPT)
    assert time.perf_counter() - started < 2
    assert outcomes(response) == [("primary", "error", "timeout", 0), ("backup", "ok", None, 0)]
    assert "0.2s" in (response.attempts[0].message or "")


def test_authentication_failure_is_not_retried_but_falls_back() -> None:
    acme = two_model_provider({"primary": [AuthenticationFailed("invalid api key", status=401)]})
    layer = layer_with(acme, gates=fallback_gate(retries=3))
    response = layer.image("g", PROMPT)
    assert outcomes(response) == [
        ("primary", "error", "authentication", 0),
        ("backup", "ok", None, 0),
    ]


def test_a_content_refusal_stops_and_is_never_sent_elsewhere_by_default() -> None:
    acme = two_model_provider({"primary": [ContentRejected("safety system", status=400)]})
    layer = layer_with(acme, gates=fallback_gate(retries=3))
    with pytest.raises(AllAttemptsFailed) as caught:
        layer.image("g", PROMPT)
    assert isinstance(caught.value.stopped_by, ContentRejected)
    assert outcomes(caught.value) == [("primary", "error", "content_rejected", 0)]
    assert acme.calls_to("backup") == []
    assert "content_rejected" in str(caught.value)


def test_the_error_that_stops_a_request_is_raised_as_its_own_class_too() -> None:
    acme = two_model_provider({"primary": [RateLimited("slow down", retry_after=7.5, status=429)]})
    layer = layer_with(acme, gates=fallback_gate(fallback_on=["unavailable"], retries=0))
    with pytest.raises(RateLimited) as caught:
        layer.image("g", PROMPT)
    error = caught.value
    assert isinstance(error, AllAttemptsFailed)
    assert (error.retry_after, error.status, error.message) == (7.5, 429, "slow down")
    assert outcomes(error) == [("primary", "error", "rate_limited", 0)]
    assert type(error) is type(AllAttemptsFailed("g", [], stopped_by=RateLimited("again")))
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, RateLimited)
    assert isinstance(copy, AllAttemptsFailed)
    assert (copy.retry_after, outcomes(copy), str(copy)) == (7.5, outcomes(error), str(error))


def test_a_content_refusal_falls_back_when_the_gate_says_so() -> None:
    acme = two_model_provider({"primary": [ContentRejected("safety system")]})
    layer = layer_with(acme, gates=fallback_gate(fallback_on=["content_rejected", "unavailable"]))
    response = layer.image("g", PROMPT)
    assert outcomes(response) == [
        ("primary", "error", "content_rejected", 0),
        ("backup", "ok", None, 0),
    ]


def test_an_invalid_request_stops() -> None:
    acme = two_model_provider({"primary": [InvalidProviderRequest("prompt too long", status=400)]})
    layer = layer_with(acme, gates=fallback_gate(retries=2))
    with pytest.raises(AllAttemptsFailed) as caught:
        layer.image("g", PROMPT)
    assert isinstance(caught.value.stopped_by, InvalidProviderRequest)
    assert acme.calls_to("backup") == []


def test_count_four_on_one_per_call_where_the_third_call_fails() -> None:
    def third_fails(call: GenerationCall) -> list[ImageOutput]:
        if call.seed == 102:  # the third image's call
            raise ProviderUnavailable("500 Internal Server Error", status=500)
        return fake_images(call)

    acme = ScriptedProvider(
        "acme",
        [
            make_spec("primary", "acme", price="0.04", supports_seed=True),
            make_spec("backup", "acme", price="0.01", supports_seed=True, max_images_per_call=10),
        ],
        {"primary": [third_fails]},
    )
    layer = layer_with(acme, gates=fallback_gate())
    response = layer.image("g", {**PROMPT, "count": 4, "seed": 100})
    assert len(response.images) == 4
    assert [i.model for i in response.images] == ["primary", "primary", "backup", "primary"]
    assert [i.seed for i in response.images] == [100, 101, 102, 103]
    assert response.cost_exact == Decimal("0.04") * 3 + Decimal("0.01")
    assert sorted(c.n for c in acme.calls_to("primary")) == [1, 1, 1, 1]
    assert [c.n for c in acme.calls_to("backup")] == [1]
    assert sorted(outcomes(response)) == sorted(
        [("primary", "ok", None, 0)] * 3
        + [("primary", "error", "unavailable", 0), ("backup", "ok", None, 0)]
    )


def test_count_is_split_by_max_images_per_call_and_run_concurrently() -> None:
    in_flight = {"now": 0, "peak": 0}

    async def slow(call: GenerationCall) -> list[ImageOutput]:
        in_flight["now"] += 1
        in_flight["peak"] = max(in_flight["peak"], in_flight["now"])
        await asyncio.sleep(0.05)
        in_flight["now"] -= 1
        return fake_images(call)

    acme = two_model_provider({"primary": [slow]}, max_images_per_call=3)
    layer = layer_with(acme, gates=fallback_gate())
    response = layer.image("g", {**PROMPT, "count": 7})
    assert sorted(c.n for c in acme.calls_to("primary")) == [1, 3, 3]
    assert in_flight["peak"] == 3
    assert len(response.images) == 7
    assert response.cost_exact == Decimal("0.28")


def test_when_every_candidate_fails_the_error_carries_every_attempt() -> None:
    down = ProviderUnavailable("502 Bad Gateway", status=502)
    acme = two_model_provider({"primary": [down], "backup": [down]})
    layer = layer_with(acme, gates=fallback_gate())
    with pytest.raises(AllAttemptsFailed) as caught:
        layer.image("g", PROMPT)
    assert outcomes(caught.value) == [
        ("primary", "error", "unavailable", 0),  # another model follows: moved on at once
        ("backup", "error", "unavailable", 0),
        ("backup", "error", "unavailable", 1),  # nothing else to try: retried once
    ]
    assert caught.value.stopped_by is None
    assert caught.value.images == []
    assert "502 Bad Gateway" in str(caught.value)


def test_images_delivered_before_a_total_failure_are_kept_on_the_error() -> None:
    acme = two_model_provider(
        {"primary": [OK, ProviderUnavailable("boom")], "backup": [ProviderUnavailable("boom")]},
    )
    layer = layer_with(acme, gates=fallback_gate())
    with pytest.raises(AllAttemptsFailed) as caught:
        layer.image("g", {**PROMPT, "count": 2})
    assert len(caught.value.images) == 1
    assert caught.value.cost == Decimal("0.04")


def test_an_sdk_exception_that_escapes_a_provider_is_contained() -> None:
    acme = two_model_provider({"primary": [KeyError("data")]})
    layer = layer_with(acme, gates=fallback_gate())
    response = layer.image("g", PROMPT)
    assert response.attempts[0].error == "unavailable"
    assert "unmapped KeyError" in (response.attempts[0].message or "")


def test_secrets_are_redacted_from_recorded_errors() -> None:
    key = "sk-test-SECRET-0123456789"
    acme = ScriptedProvider(
        "acme",
        [make_spec("primary", "acme"), make_spec("backup", "acme")],
        {"primary": [AuthenticationFailed(f"bad key {key} for org")]},
        key_env_var="ACME_KEY",
    )
    layer = layer_with(acme, gates=fallback_gate(), environ={"ACME_KEY": key})
    response = layer.image("g", PROMPT)
    assert key not in (response.attempts[0].message or "")
    assert "***" in (response.attempts[0].message or "")
    assert key not in response.model_dump_json()
    assert key not in repr(acme)
    assert key not in repr(layer)


def test_soft_parameters_a_model_ignored_are_warned_on_the_response() -> None:
    acme = two_model_provider()
    layer = layer_with(acme, gates={"g": {"model": "primary"}})
    response = layer.image("g", {**PROMPT, "style": "vivid", "quality": "hd"})
    assert response.warnings == [
        "primary: has no quality setting; quality 'hd' ignored",
        "primary: has no style 'vivid'; style ignored",
    ]


def test_a_size_the_provider_did_not_report_is_read_from_the_bytes_or_marked_expected() -> None:
    wide = base64.b64encode(tiny_png(1344, 768)).decode()

    def answer(call: GenerationCall) -> list[ImageOutput]:
        if call.model.id == "inline":
            return [ImageOutput(base64=wide), ImageOutput(url=f"data:image/png;base64,{wide}")]
        if call.model.id == "reported":
            return [ImageOutput(base64=wide, size="1792x1024")]
        return [ImageOutput(url="https://files.example/out-0.png")]

    acme = ScriptedProvider(
        "acme",
        [
            make_spec("inline", "acme", max_images_per_call=2),
            make_spec("reported", "acme"),
            make_spec("linked", "acme", sizes=("1792x1024",), delivered={"1792x1024": "1344x768"}),
        ],
        {"inline": [answer], "reported": [answer], "linked": [answer]},
    )
    layer = layer_with(acme, gates={m: {"model": m} for m in ("inline", "reported", "linked")})
    sized = {
        model: [
            (i.size, i.size_source)
            for i in layer.image(model, {**PROMPT, "size": "1792x1024", "count": 2}).images
        ]
        for model in ("inline", "reported", "linked")
    }
    assert sized == {
        "inline": [("1344x768", "image")] * 2,  # the bytes are here: read from their header
        "reported": [("1792x1024", "provider")] * 2,  # the provider's word
        "linked": [("1344x768", "expected")] * 2,  # only the model's declared delivery
    }


def test_image_output_speaks_the_wire_names_of_its_new_fields() -> None:
    image = ImageOutput.model_validate(
        {"url": "https://x/1.png", "sizeSource": "expected", "expiresAt": "2026-12-02T12:00:00Z"}
    )
    assert image.size_source == "expected"
    assert image.expires_at is not None
    assert image.expires_at.isoformat() == "2026-12-02T12:00:00+00:00"
    wire = image.model_dump(mode="json", by_alias=True)
    assert (wire["sizeSource"], wire["expiresAt"]) == ("expected", "2026-12-02T12:00:00Z")


def test_sync_image_works_inside_a_running_event_loop() -> None:
    layer = layer_with(two_model_provider(), gates=fallback_gate())

    async def inside() -> int:
        return len(layer.image("g", PROMPT).images)

    assert asyncio.run(inside()) == 1
    layer.close()


async def _many(layer, n: int):  # type: ignore[no-untyped-def]
    return await asyncio.gather(*(layer.aimage("g", PROMPT) for _ in range(n)))


def test_many_concurrent_async_requests() -> None:
    acme = two_model_provider({"primary": [Hang(0.01)]})
    layer = layer_with(acme, gates=fallback_gate())
    responses = asyncio.run(_many(layer, 300))
    assert len(responses) == 300
    assert len({r.id for r in responses}) == 300


def test_round_robin_spreads_requests_over_the_pool() -> None:
    acme = two_model_provider()
    layer = layer_with(acme, gates=fallback_gate(routing_strategy="round-robin"))
    models = [layer.image("g", PROMPT).model for _ in range(4)]
    assert models == ["primary", "backup", "primary", "backup"]
