"""Routing defaults in the scenarios measured against other image routers, on the real SDK:
a transient failure on a gate with nothing else to try, a refusal, a pool member the request rules
out, and what an image's URL and size promise."""

from __future__ import annotations

import pytest
from layer_openai.testing import api_error, images_api, serving

from layer_core.errors import AllAttemptsFailed, ContentRejected, ProviderError

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
