"""Fixtures: a configured `ReplicateProvider` and the fake Replicate (on 127.0.0.1) it talks to.

`rig` yields `(provider, fake)`; `make_layer` builds a `Layer` whose gates route through that
provider (plus any other providers given, e.g. a fallback), closed after the test by layer's
`layer_factory` fixture; `generate` makes one call on the provider directly, as the core would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from layer_replicate import MODELS, ReplicateProvider
from layer_replicate.testing import FAST_POLLS, FakeReplicate

from layer_core import GenerationCall, ImageOutput, Layer, Provider
from layer_core.config import provider_settings
from layer_core.testing import FakeServer, generate_once
from layer_core.testing.pytest_plugin import layer_factory

__all__ = ["layer_factory"]  # the fixture, for make_layer

KEY = "r8_fake0token0for0tests0only"

Rig = tuple[ReplicateProvider, FakeReplicate]
MakeLayer = Callable[..., Layer]
Generate = Callable[..., list[ImageOutput]]


@pytest.fixture(autouse=True)
def no_real_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    monkeypatch.delenv("REPLICATE_BASE_URL", raising=False)


@pytest.fixture
def token() -> str:
    """The API token the rig's provider sends."""
    return KEY


@pytest.fixture
def rig() -> Iterator[Rig]:
    """A provider configured against a fresh fake Replicate, and the fake."""
    with FakeServer() as server:
        fake = FakeReplicate(server, token=KEY)
        provider = ReplicateProvider()
        table = {"base_url": server.url, **FAST_POLLS}
        env = {"REPLICATE_API_TOKEN": KEY}
        provider.configure(provider_settings(provider, table, source="test", environ=env))
        yield provider, fake


@pytest.fixture
def make_layer(rig: Rig, layer_factory: MakeLayer) -> MakeLayer:
    """`make_layer(gates, *other_providers, **replicate_settings)` → a Layer over the rig."""
    provider, fake = rig

    def build(gates: Mapping[str, Mapping[str, Any]], *others: Provider, **settings: Any) -> Layer:
        table = {"base_url": fake.server.url, **FAST_POLLS, **settings}
        return layer_factory(
            {"ledger": False, "plugins": {"replicate": table}, "gates": dict(gates)},
            plugins=[provider, *others],
            load_entry_points=False,
            environ={"REPLICATE_API_TOKEN": KEY},
        )

    return build


@pytest.fixture
def generate(rig: Rig) -> Generate:
    """`generate(model_id, size=..., n=..., seed=..., timeout=...)`: one call, on a fresh loop."""
    provider, _ = rig

    def run(model_id: str, **fields: Any) -> list[ImageOutput]:
        spec = next(m.spec for m in MODELS if m.spec.id == model_id)
        fields = {"prompt": "a red fox in the snow", "size": "1024x1024", "n": 1, **fields}
        return generate_once(provider, GenerationCall(model=spec, **fields))

    return run
