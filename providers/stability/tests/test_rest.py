"""The REST path against a local fake of Stability's v2beta API: what is sent, what comes back,
and how each failure is reported."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from layer_stability.models import REST_MODELS
from layer_stability.testing import (
    CHOSEN_SEED,
    GENERATE,
    StabilityRest,
    picture,
    stability_error,
)

from layer_core import AllAttemptsFailed, Layer, NoEligibleModel
from layer_core.testing import FakeServer, Reply

KEY = "sk-test-9f8e7d6c5b4a39281706"  # the conftest's key
SD3 = "/v2beta/stable-image/generate/sd3"
PROMPT = "a lighthouse on a cliff at dusk"

#: layer size → (aspect_ratio sent, pixel size that comes back)
SENT = {
    "1024x1024": ("1:1", "1024x1024"),
    "512x512": ("1:1", "1024x1024"),
    "1792x1024": ("16:9", "1344x768"),
    "1024x1792": ("9:16", "768x1344"),
}


def failure(layer: Layer, **data: Any) -> AllAttemptsFailed:
    with pytest.raises(AllAttemptsFailed) as caught:
        layer.image("only", {"prompt": PROMPT, **data}, model="sd3.5-large")
    return caught.value


@pytest.mark.parametrize("size", SENT)
@pytest.mark.parametrize("model", REST_MODELS, ids=lambda m: m.id)
def test_each_model_and_size_sends_its_fields_and_reports_what_came_back(
    stability: tuple[Layer, FakeServer], model: Any, size: str
) -> None:
    layer, server = stability
    response = layer.image("only", {"prompt": PROMPT, "size": size, "seed": 1234}, model=model.id)

    (request,) = server.requests
    assert request.path == f"/v2beta/stable-image/generate/{model.endpoint}"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"].startswith("multipart/form-data")
    ratio, pixels = SENT[size]
    expected = {"prompt": PROMPT, "aspect_ratio": ratio, "seed": "1234", "output_format": "png"}
    if model.sd3_model is not None:
        expected["model"] = model.sd3_model
    assert request.form() == expected

    (image,) = response.images
    assert image.size == pixels
    assert image.seed == 1234
    assert image.mime_type == "image/png"
    assert image.bytes() == picture(pixels, model.sd3_model or model.endpoint, PROMPT, 1234)
    assert image.cost_exact == model.usd
    assert (response.model, response.provider) == (model.id, "stability")


def test_without_a_seed_none_is_sent_and_the_seed_stability_chose_is_reported(
    stability: tuple[Layer, FakeServer],
) -> None:
    layer, server = stability
    response = layer.image("only", {"prompt": PROMPT}, model="stable-image-core")
    assert "seed" not in server.requests[0].form()
    assert response.images[0].seed == CHOSEN_SEED  # what the fake chose


def test_the_key_comes_from_settings_when_the_environment_has_none(
    make_layer: Any, server: FakeServer
) -> None:
    server.add("POST", GENERATE, StabilityRest("sk-from-settings-1234"))
    layer = make_layer(settings={"api_key": "sk-from-settings-1234"}, environ={})
    layer.image("only", {"prompt": PROMPT}, model="sd3.5-medium")
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-settings-1234"


def test_without_a_key_it_is_unavailable_and_names_the_variable(make_layer: Any) -> None:
    layer = make_layer(environ={})
    assert layer.unavailable() == {"stability": "STABILITY_API_KEY is not set"}
    with pytest.raises(NoEligibleModel, match="STABILITY_API_KEY is not set"):
        layer.image("only", {"prompt": PROMPT})


def test_a_size_whose_shape_stability_cannot_return_never_reaches_it(
    stability: tuple[Layer, FakeServer],
) -> None:
    layer, server = stability
    plan = layer.explain("only", {"prompt": PROMPT, "size": "1536x1024"})
    (rejection,) = plan.rejected
    assert rejection.reason.startswith("stable-image-ultra: size 1536x1024 not supported")
    with pytest.raises(NoEligibleModel):
        layer.image("only", {"prompt": PROMPT, "size": "1536x1024"})
    assert server.requests == []


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
def test_a_seed_stability_cannot_honour_is_refused_before_any_request(
    stability: tuple[Layer, FakeServer], seed: int
) -> None:
    layer, server = stability
    error = failure(layer, seed=seed)
    assert error.stopped_by is not None
    assert error.stopped_by.kind == "invalid_request"
    assert "4294967294" in error.stopped_by.message
    assert server.requests == []


def test_a_content_filtered_image_is_a_content_rejection(
    stability: tuple[Layer, FakeServer],
) -> None:
    layer, server = stability
    body = {"image": "", "seed": 5, "finish_reason": "CONTENT_FILTERED"}
    server.add("POST", SD3, Reply(json=body))
    error = failure(layer, seed=5)
    assert error.stopped_by is not None
    assert error.stopped_by.kind == "content_rejected"
    assert "CONTENT_FILTERED" in error.stopped_by.message
    assert error.images == []


@pytest.mark.parametrize(
    ("reply", "kind", "says"),
    [
        (stability_error(400, "bad_request", "prompt: too long"), "invalid_request",
         "bad_request: prompt: too long"),
        (stability_error(413, "payload_too_large", "max 10MiB"), "invalid_request",
         "HTTP 413"),
        (stability_error(401, "unauthorized", "bad key"), "authentication",
         "unauthorized"),
        (stability_error(403, "content_moderation", "flagged by moderation"),
         "content_rejected", "content_moderation"),
        (stability_error(403, "forbidden", "no access to this model"),
         "authentication", "forbidden"),
        (stability_error(402, "payment_required", "lack sufficient credits"),
         "billing", "payment_required"),
        (stability_error(400, "bad_request", "insufficient credits"), "billing",
         "insufficient credits"),
        (stability_error(429, "rate_limit_exceeded", "150 per 10s", **{"Retry-After": "45"}),
         "rate_limited", "rate_limit_exceeded"),
        (stability_error(500, "internal_error", "oops"), "unavailable", "HTTP 500"),
        (Reply(503, body=b"<html>upstream down</html>", content_type="text/html"),
         "unavailable", "upstream down"),
    ],
)  # fmt: skip
def test_each_error_reply_maps_to_its_core_error(
    stability: tuple[Layer, FakeServer], reply: Reply, kind: str, says: str
) -> None:
    layer, server = stability
    server.add("POST", SD3, reply)
    error = failure(layer)
    (attempt,) = error.attempts
    assert attempt.error == kind
    assert says in (attempt.message or "")
    if kind == "rate_limited":
        assert attempt.retry_after == 45
    assert len(server.requests) == 1


def test_a_rate_limit_is_retried_after_retry_after_then_succeeds(
    make_layer: Any, server: FakeServer, reply_image: Any
) -> None:
    layer = make_layer(gates={"only": {"model": "sd3.5-large", "retries": 1}})
    server.add(
        "POST", SD3, stability_error(429, "rate_limited", **{"Retry-After": "0"}),
        reply_image,
    )  # fmt: skip
    response = layer.image("only", {"prompt": PROMPT, "seed": 7})
    assert [(a.error, a.retry) for a in response.attempts] == [("rate_limited", 0), (None, 1)]
    assert len(server.requests) == 2
    assert response.images[0].seed == 7


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (Reply(body=b"not json", content_type="text/plain"), "not JSON"),
        (Reply(json=["a", "list"]), "not a JSON object"),
        (Reply(json={"seed": 1, "finish_reason": "SUCCESS"}), "no image"),
        (Reply(json={"image": "@@not base64@@", "finish_reason": "SUCCESS"}), "base64"),
        (Reply(json={"image": "aGVsbG8=", "finish_reason": "SUCCESS"}), "not a PNG"),
        (Reply(json={"image": "aGVsbG8=", "finish_reason": "ERROR"}), "finish_reason 'ERROR'"),
    ],
)
def test_a_malformed_success_is_an_unavailable_provider(
    stability: tuple[Layer, FakeServer], reply: Reply, says: str
) -> None:
    layer, server = stability
    server.add("POST", SD3, reply)
    (attempt,) = failure(layer).attempts
    assert attempt.error == "unavailable"
    assert "malformed reply" in (attempt.message or "")
    assert says in (attempt.message or "")


def test_a_slow_reply_is_a_timeout(make_layer: Any, server: FakeServer) -> None:
    layer = make_layer(gates={"only": {"model": "sd3.5-large", "timeout": 0.5, "retries": 0}})
    server.add("POST", SD3, Reply(json={}, delay=10))
    with pytest.raises(AllAttemptsFailed) as caught:
        layer.image("only", {"prompt": PROMPT})
    (attempt,) = caught.value.attempts
    assert attempt.error == "timeout"


def test_a_dropped_connection_is_an_unavailable_provider(
    stability: tuple[Layer, FakeServer],
) -> None:
    layer, server = stability
    server.add("POST", SD3, Reply(drop=True))
    (attempt,) = failure(layer).attempts
    assert attempt.error == "unavailable"
    assert "connection failed" in (attempt.message or "")


def test_the_key_never_appears_in_errors_even_when_the_server_echoes_it(
    stability: tuple[Layer, FakeServer],
) -> None:
    layer, server = stability
    server.add("POST", SD3, stability_error(401, "unauthorized", f"bad key {KEY}"))
    error = failure(layer)
    assert KEY not in str(error)
    assert all(KEY not in (a.message or "") for a in error.attempts)
    assert KEY not in repr(layer.providers["stability"])


def test_prices_are_credits_at_a_cent_dated_and_every_model_is_one_image_per_call() -> None:
    specs = {m.id: m.spec() for m in REST_MODELS}
    assert {i: s.prices["*/*"] for i, s in specs.items()} == {
        "stable-image-ultra": Decimal("0.08"),
        "sd3.5-large": Decimal("0.065"),
        "sd3.5-large-turbo": Decimal("0.04"),
        "sd3.5-medium": Decimal("0.035"),
        "stable-image-core": Decimal("0.03"),
    }
    for model in REST_MODELS:
        spec = specs[model.id]
        assert f"{model.credits} credits" in spec.price_note
        assert spec.price_date.isoformat() == "2026-11-23"
        assert spec.max_images_per_call == 1
        assert spec.supports_seed
        assert spec.delivered["1792x1024"] == "1344x768"
        assert "1536x1024" not in spec.sizes
