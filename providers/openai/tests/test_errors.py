"""Every failure the Images API can produce becomes the right core error; the router acts on it.

Each test runs over both HTTP transports the provider offers (`http_client`): they report the
same failures differently (aiohttp's, for one, calls a dropped connection a timeout).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from layer_openai.testing import KEY, OpenAIHarness, api_error, images_api, serving

from layer_core.errors import (
    AllAttemptsFailed,
    AuthenticationFailed,
    BillingError,
    ContentRejected,
    InvalidProviderRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from layer_core.testing import Recorded, Reply

REFUSAL = (
    "Your request was rejected as a result of our safety system. Your prompt may contain text "
    "that is not allowed by our safety system."
)
QUOTA = "You exceeded your current quota, please check your plan and billing details."


@pytest.fixture(params=["aiohttp", "httpx"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def harness(transport: str) -> Iterator[OpenAIHarness]:
    with serving(http_client=transport) as pair:
        yield pair


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        pytest.param(
            api_error(429, "Rate limit reached for images", "rate_limit_exceeded"),
            RateLimited,
            "Rate limit reached for images",
            id="429",
        ),
        pytest.param(
            api_error(500, "The server had an error"), ProviderUnavailable, None, id="500"
        ),
        pytest.param(
            Reply(502, body=b"Bad gateway", content_type="text/html"),
            ProviderUnavailable,
            None,
            id="502 html",
        ),
        pytest.param(api_error(503, "Overloaded"), ProviderUnavailable, "Overloaded", id="503"),
        pytest.param(
            api_error(401, "Incorrect API key provided", "invalid_api_key"),
            AuthenticationFailed,
            "Incorrect API key provided",
            id="401",
        ),
        pytest.param(
            api_error(403, "Organization must be verified", None),
            AuthenticationFailed,
            "Organization must be verified",
            id="403",
        ),
        pytest.param(
            api_error(429, QUOTA, "insufficient_quota", kind="insufficient_quota"),
            BillingError,
            QUOTA,
            id="429 insufficient_quota",
        ),
        pytest.param(
            api_error(429, QUOTA, kind="insufficient_quota", **{"Retry-After": "20"}),
            BillingError,
            QUOTA,
            id="429 of type insufficient_quota, no code",
        ),
        pytest.param(
            api_error(400, "Billing hard limit has been reached", "billing_hard_limit_reached"),
            BillingError,
            "Billing hard limit has been reached",
            id="400 billing_hard_limit_reached",
        ),
        pytest.param(
            api_error(400, REFUSAL, "content_policy_violation"),
            ContentRejected,
            REFUSAL,
            id="400 content_policy_violation",
        ),
        pytest.param(
            api_error(400, "Your request was rejected by the safety system.", "moderation_blocked"),
            ContentRejected,
            "Your request was rejected by the safety system.",
            id="400 moderation_blocked (gpt-image)",
        ),
        pytest.param(
            api_error(
                400, "Invalid size '1024x1024'. Supported sizes are 256x256.", "invalid_size"
            ),
            InvalidProviderRequest,
            "Invalid size '1024x1024'. Supported sizes are 256x256.",
            id="400 invalid_size",
        ),
        pytest.param(
            api_error(404, "The model 'dall-e-3' does not exist", "model_not_found"),
            InvalidProviderRequest,
            "The model 'dall-e-3' does not exist",
            id="404",
        ),
    ],
)
def test_an_error_status_maps_to_its_core_error_without_sdk_retries(
    harness: OpenAIHarness, reply: Reply, error: type[ProviderError], message: str | None
) -> None:
    harness.reply(reply)
    with pytest.raises(error) as caught:
        harness.generate("dall-e-3")
    assert type(caught.value) is error
    assert caught.value.status == reply.status
    assert (caught.value.provider, caught.value.model) == ("openai", "dall-e-3")
    if message is not None:
        assert caught.value.message == message
    assert len(harness.server.requests) == 1  # the SDK's own retries are off


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after-ms": "1500", "Retry-After": "2"}, 1.5),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        ({}, None),
    ],
)
def test_rate_limits_carry_the_retry_after_hint(
    harness: OpenAIHarness, headers: dict[str, str], seconds: float | None
) -> None:
    harness.reply(api_error(429, "Rate limit reached", "rate_limit_exceeded", **headers))
    with pytest.raises(RateLimited) as caught:
        harness.generate("gpt-image-1.5")
    assert caught.value.retry_after == seconds


def test_a_dropped_connection_is_unavailable(harness: OpenAIHarness) -> None:
    harness.reply(Reply(drop=True))
    with pytest.raises(ProviderUnavailable, match="could not reach OpenAI"):
        harness.generate("gpt-image-1")


def test_a_refused_connection_is_unavailable(transport: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        serving(base_url=f"http://127.0.0.1:{port}/v1", http_client=transport) as harness,
        pytest.raises(ProviderUnavailable, match="could not reach OpenAI"),
    ):
        harness.generate("gpt-image-1")


def test_the_sdk_timeout_is_a_provider_timeout(harness: OpenAIHarness) -> None:
    harness.reply(Reply(json={"created": 1, "data": []}, delay=10))
    with pytest.raises(ProviderTimeout):
        harness.generate("dall-e-2", timeout=0.3)


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(body=b"{not json", content_type="application/json"), id="bad json"),
        pytest.param(Reply(body=b"<html>hi</html>", content_type="text/html"), id="html"),
        pytest.param(Reply(json={"created": 1}), id="no data"),
        pytest.param(Reply(json={"created": 1, "data": []}), id="empty data"),
        pytest.param(Reply(json={"created": 1, "data": "an image"}), id="data not a list"),
        pytest.param(Reply(json={"created": 1, "data": [{"foo": 1}]}), id="no url or b64"),
        pytest.param(Reply(json={"created": 1, "data": [{"url": 7}]}), id="url not text"),
        pytest.param(Reply(json={"created": 1, "data": [5]}), id="item not an object"),
        pytest.param(Reply(json=[1, 2]), id="a list"),
    ],
)
def test_a_malformed_200_is_a_core_error(harness: OpenAIHarness, reply: Reply) -> None:
    harness.reply(reply)
    with pytest.raises(ProviderUnavailable, match="malformed reply") as caught:
        harness.generate("dall-e-3")
    assert caught.value.status == 200


def test_a_gate_timeout_shorter_than_the_server_is_recorded_as_a_timeout(transport: str) -> None:
    gates = {"quick": {"model": "dall-e-3", "timeout": 0.5, "retries": 0}}
    with serving(gates, http_client=transport) as harness:
        harness.reply(Reply(json={"created": 1, "data": [{"url": "http://x/1.png"}]}, delay=10))
        with pytest.raises(AllAttemptsFailed) as caught:
            harness.layer.image("quick", {"prompt": "a fox"})
    (attempt,) = caught.value.attempts
    assert attempt.error == "timeout"
    assert attempt.model == "dall-e-3"


def _fails_for(model: str, failure: Reply) -> object:
    def answer(request: Recorded) -> Reply:
        return failure if request.json()["model"] == model else images_api(request)

    return answer


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (
            api_error(429, "Rate limit reached", "rate_limit_exceeded", **{"Retry-After": "60"}),
            "rate_limited",
        ),
        (api_error(503, "Overloaded"), "unavailable"),
        (Reply(drop=True), "unavailable"),
        (api_error(401, "Incorrect API key provided", "invalid_api_key"), "authentication"),
        (api_error(429, QUOTA, "insufficient_quota", kind="insufficient_quota"), "billing"),
        (Reply(json={"created": 1, "data": "nope"}), "unavailable"),
        (Reply(json={"created": 1, "data": [{"url": "http://x/1.png"}]}, delay=10), "timeout"),
    ],
)
def test_a_gate_falls_back_to_its_next_model_and_records_both_attempts(
    failure: Reply, kind: str, transport: str
) -> None:
    gates = {"g": {"model": "dall-e-3", "fallback_models": ["gpt-image-1.5"], "timeout": 3}}
    with serving(gates, http_client=transport) as harness:
        harness.reply(_fails_for("dall-e-3", failure))  # type: ignore[arg-type]
        response = harness.layer.image("g", {"prompt": "a fox"})
        models = [body["model"] for body in harness.bodies()]
    assert response.model == "gpt-image-1.5"
    assert models == ["dall-e-3", "gpt-image-1.5"]
    first, second = response.attempts
    assert (first.model, first.outcome, first.error) == ("dall-e-3", "error", kind)
    assert (second.model, second.outcome) == ("gpt-image-1.5", "ok")
    assert len(response.images) == 1


def test_a_content_refusal_is_not_rerouted(transport: str) -> None:
    gates = {"g": {"model": "dall-e-3", "fallback_models": ["gpt-image-1.5"]}}
    with serving(gates, http_client=transport) as harness:
        harness.reply(api_error(400, REFUSAL, "content_policy_violation"))
        with pytest.raises(AllAttemptsFailed) as caught:
            harness.layer.image("g", {"prompt": "a fox"})
        assert [body["model"] for body in harness.bodies()] == ["dall-e-3"]
    assert isinstance(caught.value.stopped_by, ContentRejected)
    assert caught.value.attempts[0].message == REFUSAL


def test_the_key_never_appears_in_errors_even_when_the_server_echoes_it(transport: str) -> None:
    with serving(http_client=transport) as harness:
        harness.reply(api_error(401, f"Incorrect API key provided: {KEY}", "invalid_api_key"))
        with pytest.raises(AllAttemptsFailed) as caught:
            harness.layer.image("gpt-image-1", {"prompt": "a fox"})
    assert KEY not in str(caught.value)
    assert all(KEY not in (a.message or "") for a in caught.value.attempts)
    assert KEY not in repr(harness.layer.providers["openai"])


def test_an_exhausted_quota_is_a_billing_error_that_is_not_retried_as_a_rate_limit(
    transport: str,
) -> None:
    gates = {"g": {"model": "gpt-image-1", "retries": 2, "timeout": 5}}
    with serving(gates, http_client=transport) as harness:
        harness.reply(api_error(429, QUOTA, "insufficient_quota", kind="insufficient_quota"))
        with pytest.raises(AllAttemptsFailed) as caught:
            harness.layer.image("g", {"prompt": "a fox"})
        assert len(harness.bodies()) == 1
    (attempt,) = caught.value.attempts
    assert (attempt.error, attempt.message) == ("billing", QUOTA)
