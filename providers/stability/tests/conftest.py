"""Fixtures: a `Layer` over the real Stability plugin, wired to a local fake of each API
(`layer_stability.testing`).

`stability` yields `(layer, server)`: the REST API (`StabilityRest` with this file's key) on a
`layer_core.testing.FakeServer` on 127.0.0.1; `make_layer` builds Layers over it with other
gates. `grpc_stability` yields `(layer, service)`: the gRPC API served on 127.0.0.1 by
`FakeGenerationService`, built on the SDK's own servicer; it skips when the `[grpc]` extra is not
installed. test_conformance.py runs layer's conformance suite over both fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from layer_stability import StabilityProvider
from layer_stability.models import REST_MODELS
from layer_stability.testing import GENERATE, FakeGenerationService, StabilityRest

from layer_core import Layer
from layer_core.testing import FakeServer, plugin_for
from layer_core.testing.pytest_plugin import layer_factory

__all__ = ["layer_factory"]  # a fixture: a Layer factory that closes what it built after the test

KEY = "sk-test-9f8e7d6c5b4a39281706"
GRPC_EXTRA = "the [grpc] extra is not installed: pip install 'layer-stability[grpc]'"
#: One gate per use: `only` serves exactly the model a request names (no fallback).
ONLY = {
    "model": REST_MODELS[0].id,
    "routing_strategy": "single",
    "allow_overrides": True,
    "retries": 0,
    "timeout": 30,
}

LayerFactory = Callable[..., Layer]


@pytest.fixture
def reply_image() -> StabilityRest:
    """Stability's answer to a generate request with this file's key."""
    return StabilityRest(KEY)


@pytest.fixture
def server(reply_image: StabilityRest) -> Iterator[FakeServer]:
    with FakeServer() as fake:
        fake.add("POST", GENERATE, reply_image)
        yield fake


@pytest.fixture
def make_layer(server: FakeServer, layer_factory: LayerFactory) -> LayerFactory:
    """`make_layer(gates=..., settings=..., environ=...)`: a Layer over the REST fake."""

    def make(
        gates: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Layer:
        return layer_factory(
            {
                "ledger": False,
                "plugins": {"stability": {"base_url": server.url, **(settings or {})}},
                "gates": dict(gates or {"only": ONLY}),
            },
            plugins=[plugin_for(StabilityProvider())],
            load_entry_points=False,
            environ={"STABILITY_API_KEY": KEY} if environ is None else environ,
        )

    return make


@pytest.fixture
def stability(make_layer: LayerFactory, server: FakeServer) -> tuple[Layer, FakeServer]:
    return make_layer(), server


# --- gRPC ------------------------------------------------------------------------------------


@pytest.fixture
def grpc_service() -> Iterator[FakeGenerationService]:
    pytest.importorskip("grpc", reason=GRPC_EXTRA)
    pytest.importorskip("stability_sdk", reason=GRPC_EXTRA)
    with FakeGenerationService() as service:
        yield service


@pytest.fixture
def grpc_stability(
    grpc_service: FakeGenerationService, layer_factory: LayerFactory
) -> tuple[Layer, FakeGenerationService]:
    layer = layer_factory(
        {
            "ledger": False,
            "plugins": {"stability": {"api_key": KEY, "grpc_host": grpc_service.host}},
            "gates": {
                "sdxl": {
                    "model": "stable-diffusion-xl-1024-v1-0",
                    "routing_strategy": "single",
                    "retries": 0,
                    "timeout": 30,
                }
            },
        },
        plugins=[plugin_for(StabilityProvider())],
        load_entry_points=False,
        environ={},
    )
    return layer, grpc_service
