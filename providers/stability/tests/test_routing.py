"""Stability through the router: count is split into one request per image, and a filtered
image falls back only when the gate's `fallback_on` says so."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from layer_core import AllAttemptsFailed, ContentRejected
from layer_core.testing import FakeServer, Recorded, Reply

SD3 = "/v2beta/stable-image/generate/sd3"
CORE = "/v2beta/stable-image/generate/core"
PROMPT = {"prompt": "three lighthouses", "count": 3, "seed": 100}
GATE = {"model": "sd3.5-large", "fallback_models": ["stable-image-core"], "retries": 0}


def filter_seed(seed: int, reply_image: Any) -> Any:
    """Answer like Stability, but withhold the image asked with `seed` as CONTENT_FILTERED."""

    def reply(request: Recorded) -> Reply:
        if request.form()["seed"] == str(seed):
            return Reply(json={"image": "", "seed": seed, "finish_reason": "CONTENT_FILTERED"})
        return reply_image(request)  # type: ignore[no-any-return]

    return reply


def test_count_three_on_sd35_large_makes_three_requests(
    make_layer: Any, server: FakeServer
) -> None:
    layer = make_layer(gates={"g": GATE})
    response = layer.image("g", PROMPT)
    sent = server.requests_to(SD3)
    assert len(sent) == 3
    assert sorted(r.form()["seed"] for r in sent) == ["100", "101", "102"]
    assert {r.form()["model"] for r in sent} == {"sd3.5-large"}
    assert [i.seed for i in response.images] == [100, 101, 102]
    assert response.cost_exact == 3 * Decimal("0.065")
    assert [a.requested for a in response.attempts] == [1, 1, 1]


def test_a_filtered_image_falls_back_when_the_gate_names_content_rejected(
    make_layer: Any, server: FakeServer, reply_image: Any
) -> None:
    gate = {**GATE, "fallback_on": ["unavailable", "content_rejected"]}
    layer = make_layer(gates={"g": gate})
    server.add("POST", SD3, filter_seed(101, reply_image))
    response = layer.image("g", PROMPT)
    assert len(server.requests_to(SD3)) == 3
    (fallback,) = server.requests_to(CORE)
    assert fallback.form()["seed"] == "101"  # the filtered image's own seed, on the next model
    assert [i.model for i in response.images] == ["sd3.5-large", "stable-image-core", "sd3.5-large"]
    assert response.cost_exact == 2 * Decimal("0.065") + Decimal("0.03")
    errors = [a.error for a in response.attempts if a.error]
    assert errors == ["content_rejected"]


def test_by_default_a_filtered_image_stops_and_is_never_retried_elsewhere(
    make_layer: Any, server: FakeServer, reply_image: Any
) -> None:
    layer = make_layer(gates={"g": GATE})
    server.add("POST", SD3, filter_seed(101, reply_image))
    with pytest.raises(AllAttemptsFailed) as caught:
        layer.image("g", PROMPT)
    error = caught.value
    assert isinstance(error.stopped_by, ContentRejected)
    assert error.stopped_by.model == "sd3.5-large"
    assert server.requests_to(CORE) == []
    assert len(server.requests_to(SD3)) == 3
    assert sorted(i.seed or 0 for i in error.images) == [100, 102]  # delivered, kept, paid
    assert error.cost == 2 * Decimal("0.065")
