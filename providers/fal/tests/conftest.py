"""Fixtures: a configured `FalProvider` and the fake fal queue (on 127.0.0.1) it talks to.

`rig` yields `(provider, fake)`; `make_layer` builds a `Layer` whose gates route through that
provider (plus any other providers given), closed after the test by layer's `layer_factory`
fixture; `generate` makes one call on the provider directly, as the core would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from layer_fal import MODELS, FalProvider
from layer_fal.testing import FAST_POLLS, FakeFal

from layer_core import GenerationCall, ImageOutput, Layer, Provider
from layer_core.config import provider_settings
from layer_core.testing import FakeServer, generate_once
from layer_core.testing.pytest_plugin import layer_factory

__all__ = ["layer_factory"]  # the fixture, for make_layer

KEY = "fal-key-0fake0for0tests0only:9d2c"

Rig = tuple[FalProvider, FakeFal]
MakeLayer = Callable[..., Layer]
Generate = Callable[..., list[ImageOutput]]


@pytest.fixture(autouse=True)
def no_real_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_QUEUE_RUN_HOST", "FAL_RUN_HOST"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def key() -> str:
    """The key the rig's provider sends."""
    return KEY


@pytest.fixture
def rig() -> Iterator[Rig]:
    """A provider configured against a fresh fake fal, and the fake."""
    with FakeServer() as server:
        fake = FakeFal(server, key=KEY)
        provider = FalProvider()
        table = {"base_url": server.url, **FAST_POLLS}
        provider.configure(
            provider_settings(provider, table, source="test", environ={"FAL_KEY": KEY})
        )
        yield provider, fake


@pytest.fixture
def make_layer(rig: Rig, layer_factory: MakeLayer) -> MakeLayer:
    """`make_layer(gates, *other_providers, **fal_settings)` → a Layer over the rig."""
    provider, fake = rig

    def build(gates: Mapping[str, Mapping[str, Any]], *others: Provider, **settings: Any) -> Layer:
        table = {"base_url": fake.server.url, **FAST_POLLS, **settings}
        return layer_factory(
            {"ledger": False, "plugins": {"fal": table}, "gates": dict(gates)},
            plugins=[provider, *others],
            load_entry_points=False,
            environ={"FAL_KEY": KEY},
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
