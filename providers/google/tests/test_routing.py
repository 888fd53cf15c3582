"""A gate mixing Google, OpenAI and Replicate models, each on its real SDK against its fake:
the cheapest goes first, and a failure falls back across providers."""

from __future__ import annotations

from collections.abc import Iterator

import layer_google
import layer_openai
import layer_replicate
import pytest
from layer_google.testing import GEMINI_ROUTE, IMAGEN_ROUTE, KEY, api_error, gemini_api
from layer_openai.testing import KEY as OPENAI_KEY, ROUTE, images_api
from layer_replicate.testing import FAST_POLLS, FakeReplicate

from layer_core import Layer
from layer_core.testing import FakeServer, Reply

GATE = {
    "routing_strategy": "cost",
    "model": "imagen-4.0-generate-001",
    "fallback_models": ["dall-e-3", "flux-schnell", "gemini-2.5-flash-image"],
}


@pytest.fixture
def mixed() -> Iterator[tuple[Layer, FakeServer, FakeServer, FakeReplicate]]:
    with FakeServer() as google, FakeServer() as openai, FakeServer() as replicate:
        google.add("POST", IMAGEN_ROUTE, gemini_api)
        google.add("POST", GEMINI_ROUTE, gemini_api)
        openai.add("POST", ROUTE, images_api)
        fake = FakeReplicate(replicate, token="r8_example")
        config = {
            "ledger": False,
            "plugins": {
                "google": {"base_url": google.url},
                "openai": {"base_url": f"{openai.url}/v1"},
                "replicate": {"base_url": replicate.url, **FAST_POLLS},
            },
            "gates": {"mixed": GATE},
        }
        environ = {
            "GEMINI_API_KEY": KEY,
            "OPENAI_API_KEY": OPENAI_KEY,
            "REPLICATE_API_TOKEN": "r8_example",
        }
        layer = Layer(
            config,
            plugins=[layer_google, layer_openai, layer_replicate],
            load_entry_points=False,
            environ=environ,
        )
        try:
            yield layer, google, openai, fake
        finally:
            layer.close()


def test_the_cheapest_model_serves_and_the_plan_names_every_provider(mixed) -> None:  # type: ignore[no-untyped-def]
    layer, google, _, fake = mixed
    plan = layer.explain("mixed", {"prompt": "a fox"})
    order = [c.model.id for c in plan.candidates]
    # by price: flux-schnell $0.003, gemini-2.5-flash-image $0.039, then the $0.04 ones
    assert order[:2] == ["flux-schnell", "gemini-2.5-flash-image"]
    assert set(order[2:]) == {"imagen-4.0-generate-001", "dall-e-3"}
    response = layer.image("mixed", {"prompt": "a fox"})
    assert response.model == "flux-schnell"
    assert fake.created
    assert google.requests == []


def test_a_failure_falls_back_across_providers(mixed) -> None:  # type: ignore[no-untyped-def]
    layer, google, _, fake = mixed
    fake.answer_next(Reply(500, json={"detail": "Replicate is down"}))
    google.add("POST", GEMINI_ROUTE, api_error(503, "UNAVAILABLE", "The model is overloaded."))
    response = layer.image("mixed", {"prompt": "a fox"})
    tried = [(a.model, a.error) for a in response.attempts]
    assert tried[:2] == [("flux-schnell", "unavailable"), ("gemini-2.5-flash-image", "unavailable")]
    assert response.model in ("imagen-4.0-generate-001", "dall-e-3")
    assert response.images[0].bytes()
