"""Routing defaults in the scenarios measured against other image routers, on the real SDK:
a transient failure on a gate with nothing else to try, a refusal, a pool member the request rules
out, and what an image's URL and size promise."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from layer_openai.testing import api_error, images_api, serving

from layer_core.errors import AllAttemptsFailed, ContentRejected, ProviderError
from layer_core.testing.images import image_info

REFUSAL = "Your request was rejected as a result of our safety system."


def test_a_refusal_is_caught_as_content_rejected_with_every_attempt_and_image() -> None:
    gates = {"g": {"model": "dall-e-3", "fallback_models": ["gpt-image-1.5"]}}
    with serving(gates) as harness:
        # two calls of one image each: one is drawn, the other refused
        harness.reply(images_api, api_error(400, REFUSAL, "content_policy_violation"))
        with pytest.raises(ContentRejected) as caught:
            harness.layer.image("g", {"prompt": "a fox", "count": 2})
        assert [body["model"] for body in harness.bodies()] == ["dall-e-3", "dall-e-3"]
        error = caught.value
        assert len(error.images) == 1
        assert error.images[0].bytes()  # the delivered image is kept, and paid for
    assert isinstance(error, AllAttemptsFailed)  # `except AllAttemptsFailed` still catches it
    assert isinstance(error.stopped_by, ContentRejected)
    assert (error.kind, error.provider, error.model, error.status) == (
        "content_rejected",
        "openai",
        "dall-e-3",
        400,
    )
    assert error.message == REFUSAL
    assert sorted(a.outcome for a in error.attempts) == ["error", "ok"]
    assert error.cost == error.images[0].cost_exact > 0
    assert str(error).startswith("gate 'g': stopped after content_rejected from dall-e-3")
    assert type(error).__name__ == "AllAttemptsFailed"  # as recorded in the ledger and results


def test_an_error_that_is_not_a_stop_is_not_raised_as_a_provider_error() -> None:
    with serving({"g": {"model": "dall-e-2", "retries": 0}}) as harness:
        harness.reply(api_error(500, "The server had an error"))
        with pytest.raises(AllAttemptsFailed) as caught:
            harness.layer.image("g", {"prompt": "a fox"})
    assert not isinstance(caught.value, ProviderError)
    assert caught.value.stopped_by is None


def test_a_single_429_on_a_gate_with_no_fallback_is_retried_after_its_retry_after() -> None:
    with serving({"g": {"model": "dall-e-2"}}) as harness:
        harness.reply(api_error(429, "Rate limit reached", **{"retry-after": "0.3"}), images_api)
        started = time.perf_counter()
        response = harness.layer.image("g", {"prompt": "a fox"})
        waited = time.perf_counter() - started
    assert waited >= 0.3
    assert [(a.outcome, a.error, a.retry, a.retry_after) for a in response.attempts] == [
        ("error", "rate_limited", 0, 0.3),
        ("ok", None, 1, None),
    ]
    assert len(response.images) == 1


def test_a_single_5xx_on_a_gate_with_no_fallback_is_retried_after_a_backoff() -> None:
    with serving({"g": {"model": "dall-e-2", "retry_backoff": 0.05}}) as harness:
        harness.reply(api_error(503, "The engine is currently overloaded"), images_api)
        response = harness.layer.image("g", {"prompt": "a fox"})
        assert [body["model"] for body in harness.bodies()] == ["dall-e-2", "dall-e-2"]
    assert [(a.error, a.retry) for a in response.attempts] == [("unavailable", 0), (None, 1)]


def test_a_gate_with_a_fallback_moves_on_at_once_instead_of_waiting() -> None:
    gates = {"g": {"model": "dall-e-3", "fallback_models": ["gpt-image-1.5"]}}
    with serving(gates) as harness:
        harness.reply(api_error(429, "Rate limit reached", **{"retry-after": "20"}), images_api)
        started = time.perf_counter()
        response = harness.layer.image("g", {"prompt": "a fox"})
        assert time.perf_counter() - started < 10
        assert [body["model"] for body in harness.bodies()] == ["dall-e-3", "gpt-image-1.5"]
    assert [(a.model, a.error, a.retry) for a in response.attempts] == [
        ("dall-e-3", "rate_limited", 0),
        ("gpt-image-1.5", None, 0),
    ]


def test_a_response_says_why_the_primary_did_not_serve_it() -> None:
    with serving({"g": {"model": "dall-e-3", "fallback_models": ["dall-e-2"]}}) as harness:
        response = harness.layer.image("g", {"prompt": "a fox", "size": "512x512"})
        assert [body["model"] for body in harness.bodies()] == ["dall-e-2"]
    assert response.model == "dall-e-2"
    assert (
        "dall-e-3 skipped: size 512x512 not supported (1024x1024, 1792x1024, 1024x1792)"
        in response.warnings
    )


def test_a_response_from_the_primary_names_no_model_skipped() -> None:
    with serving({"g": {"model": "dall-e-2", "fallback_models": ["dall-e-3"]}}) as harness:
        response = harness.layer.image("g", {"prompt": "a fox", "size": "512x512"})
    assert response.model == "dall-e-2"
    assert not [w for w in response.warnings if "skipped" in w]


def test_a_dall_e_url_says_when_it_expires_and_that_its_size_is_expected() -> None:
    with serving() as harness:
        before = datetime.now(UTC).replace(microsecond=0)
        response = harness.layer.image("dall-e-3", {"prompt": "a fox", "size": "1792x1024"})
        after = datetime.now(UTC)
        (image,) = response.images
        assert image.url is not None
        assert image.base64 is None
        assert image.expires_at is not None
        assert before + timedelta(hours=1) <= image.expires_at <= after + timedelta(hours=1)
        assert (image.size, image.size_source) == ("1792x1024", "expected")
        image.bytes()
        assert (image.size, image.size_source) == ("1792x1024", "image")


def test_a_gate_can_ask_dall_e_for_base64_instead_of_an_expiring_url() -> None:
    gates = {
        "inline": {"model": "dall-e-2", "response_format": "b64_json"},
        "links": {"model": "dall-e-2"},
        "gpt": {"model": "gpt-image-1-mini", "response_format": "b64_json"},
    }
    with serving(gates) as harness:
        inline = harness.layer.image("inline", {"prompt": "a fox", "size": "512x512"})
        links = harness.layer.image("links", {"prompt": "a fox", "size": "512x512"})
        harness.layer.image("gpt", {"prompt": "a fox"})
        sent = harness.bodies()
    assert sent[0]["response_format"] == "b64_json"
    assert "response_format" not in sent[1]  # the provider's default: URLs
    assert "response_format" not in sent[2]  # gpt-image takes none (always base64)
    (image,) = inline.images
    assert (image.url, image.expires_at) == (None, None)
    assert (image.size, image.size_source) == ("512x512", "image")
    assert image_info(image.bytes()) == ("image/png", 512, 512)
    assert links.images[0].url is not None


def test_a_gate_asking_for_urls_overrides_the_provider_setting() -> None:
    gates = {"g": {"model": "dall-e-2", "response_format": "url"}}
    with serving(gates, response_format="b64_json") as harness:
        response = harness.layer.image("g", {"prompt": "a fox", "size": "256x256"})
        assert harness.bodies()[0]["response_format"] == "url"
    assert response.images[0].url is not None
