"""Every way a Replicate call fails comes out as a layer error of its kind, never an SDK one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from layer_replicate import ReplicateProvider
from layer_replicate.testing import MODEL_PREDICTIONS, PREDICTION, FakeReplicate, Run, problem

from layer_core import (
    AllAttemptsFailed,
    AuthenticationFailed,
    BillingError,
    ContentRejected,
    ImageOutput,
    InvalidProviderRequest,
    Layer,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from layer_core.testing import Reply

Rig = tuple[ReplicateProvider, FakeReplicate]
MakeLayer = Callable[..., Layer]
Generate = Callable[..., list[ImageOutput]]


@pytest.mark.parametrize(
    ("reply", "error", "status", "text"),
    [
        (problem(401, "Invalid token."), AuthenticationFailed, 401, "Invalid token."),
        (
            problem(402, "You have insufficient credit to run this model."),
            BillingError,
            402,
            "insufficient credit",
        ),
        (
            Reply(
                422,
                json={
                    "title": "Input validation failed",
                    "detail": "- input.num_outputs: Must be less than or equal to 4",
                    "status": 422,
                    "invalid_fields": [{"field": "input.num_outputs"}],
                },
            ),
            InvalidProviderRequest,
            422,
            "input.num_outputs: Must be less than or equal to 4",
        ),
        (problem(500, "Internal server error"), ProviderUnavailable, 500, "Internal server error"),
        (Reply(503, body=b"<html>upstream down</html>"), ProviderUnavailable, 503, "upstream"),
        (Reply(201, json={"unexpected": True}), ProviderUnavailable, None, "malformed reply"),
        (Reply(201, json=["a", "list"]), ProviderUnavailable, None, "malformed reply"),
        (Reply(201, body=b"<html>not json</html>"), ProviderUnavailable, None, "malformed reply"),
        (Reply(drop=True), ProviderUnavailable, None, "Replicate unreachable"),
    ],
    ids=[
        "401",
        "402",
        "422",
        "500",
        "503-html",
        "wrong-fields",
        "wrong-shape",
        "not-json",
        "dropped-connection",
    ],
)
def test_each_failed_create_is_a_layer_error_of_its_kind_with_replicates_words(
    generate: Generate,
    rig: Rig,
    reply: Reply,
    error: type[ProviderError],
    status: int | None,
    text: str,
) -> None:
    _, fake = rig
    fake.server.add("POST", MODEL_PREDICTIONS, reply)
    with pytest.raises(error) as caught:
        generate("flux-schnell")
    assert type(caught.value) is error
    assert caught.value.status == status
    assert text in caught.value.message
    assert (caught.value.provider, caught.value.model) == ("replicate", "flux-schnell")
    assert caught.value.__cause__ is None  # no SDK exception chained behind it


def test_429_carries_retry_after_and_the_sdk_does_not_retry_on_its_own(
    generate: Generate, rig: Rig
) -> None:
    _, fake = rig
    throttled = problem(429, "Request was throttled.")
    throttled.headers["Retry-After"] = "7"
    fake.server.add("POST", MODEL_PREDICTIONS, throttled)
    with pytest.raises(RateLimited) as caught:
        generate("flux-schnell")
    assert caught.value.retry_after == 7.0
    assert caught.value.retryable
    assert len(fake.server.requests) == 1


def test_a_poll_that_fails_is_not_retried_by_the_sdk_and_the_prediction_is_canceled(
    generate: Generate, rig: Rig
) -> None:
    _, fake = rig
    fake.next(Run(polls=5))
    fake.server.add("GET", PREDICTION, problem(503, "Service Unavailable"))
    with pytest.raises(ProviderUnavailable, match="Service Unavailable"):
        generate("flux-schnell", timeout=1.0)
    assert len(fake.polls) == 1
    assert fake.created[0].canceled


def test_402_is_not_retried_even_when_the_gate_allows_retries(
    make_layer: MakeLayer, rig: Rig
) -> None:
    _, fake = rig
    fake.server.add("POST", MODEL_PREDICTIONS, problem(402, "Payment required."))
    gates = {"g": {"model": "flux-schnell", "retries": 2, "retry_backoff": 0.01}}
    with pytest.raises(AllAttemptsFailed) as caught:
        make_layer(gates).image("g", {"prompt": "p"})
    assert [a.error for a in caught.value.attempts] == ["billing"]
    assert len(fake.server.requests) == 1


@pytest.mark.parametrize(
    "message",
    [
        "All generated images contained NSFW content. Try running it again with a different "
        "prompt.",
        "NSFW content detected. Try running it again, or try a different prompt.",
        "Prediction failed: the input or output was flagged as sensitive. (E005)",
    ],
)
def test_a_prediction_failed_by_the_safety_checker_is_a_content_rejection(
    generate: Generate, rig: Rig, message: str
) -> None:
    _, fake = rig
    fake.next(Run(status="failed", error=message))
    with pytest.raises(ContentRejected) as caught:
        generate("flux-schnell")
    assert caught.value.message == message
    assert not fake.created[0].canceled


def test_a_content_rejection_stops_the_gate_instead_of_rerouting_the_prompt(
    make_layer: MakeLayer, rig: Rig
) -> None:
    _, fake = rig
    fake.next(Run(status="failed", error="NSFW content detected."))
    gates = {"g": {"model": "flux-schnell", "fallback_models": ["flux-dev"]}}
    with pytest.raises(AllAttemptsFailed) as caught:
        make_layer(gates).image("g", {"prompt": "p"})
    assert isinstance(caught.value.stopped_by, ContentRejected)
    assert [p.model for p in fake.created] == ["black-forest-labs/flux-schnell"]


def test_any_other_failure_is_unavailable_with_the_models_error_text(
    generate: Generate, rig: Rig
) -> None:
    _, fake = rig
    fake.next(Run(polls=1, status="failed", error="CUDA out of memory"))
    with pytest.raises(ProviderUnavailable, match="CUDA out of memory"):
        generate("sdxl", timeout=1.0)


def test_a_size_the_model_does_not_list_is_refused_before_any_request(
    generate: Generate, rig: Rig
) -> None:
    _, fake = rig
    with pytest.raises(InvalidProviderRequest, match="256x256"):
        generate("sdxl", size="256x256")
    assert fake.server.requests == []


def test_a_prediction_canceled_on_replicate_is_a_timeout(generate: Generate, rig: Rig) -> None:
    _, fake = rig
    fake.next(Run(status="canceled"))
    with pytest.raises(ProviderTimeout, match="canceled on Replicate"):
        generate("flux-dev")


def test_a_success_whose_output_is_not_file_urls_is_unavailable(
    generate: Generate, rig: Rig
) -> None:
    _, fake = rig
    finished = {**_prediction("p9"), "status": "succeeded", "output": 42}
    fake.server.add("POST", MODEL_PREDICTIONS, Reply(201, json=finished))
    with pytest.raises(ProviderUnavailable, match="output is not file URLs: 42"):
        generate("flux-schnell")


def test_the_key_never_shows_in_an_error_even_when_the_server_echoes_it(
    make_layer: MakeLayer, rig: Rig, token: str
) -> None:
    _, fake = rig
    fake.server.add(
        "POST",
        MODEL_PREDICTIONS,
        lambda request: problem(401, f"bad {request.headers['authorization']}"),
    )
    with pytest.raises(AllAttemptsFailed) as caught:
        make_layer({"g": {"model": "flux-schnell"}}).image("g", {"prompt": "p"})
    assert token not in str(caught.value)
    assert token not in str(caught.value.attempts)
    assert "***" in str(caught.value)


def _prediction(prediction_id: str) -> dict[str, Any]:
    return {
        "id": prediction_id,
        "model": "black-forest-labs/flux-schnell",
        "version": "v",
        "input": {},
        "status": "starting",
        "output": None,
        "error": None,
        "logs": "",
        "metrics": {},
        "created_at": None,
        "started_at": None,
        "completed_at": None,
        "urls": {},
    }
