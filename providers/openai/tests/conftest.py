"""The fixtures the tests here build on: a Layer with the openai plugin and a fake Images API
(`harness`), and layer's opt-in `fake_server` and `layer_factory` (Layers closed after the test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from layer_openai.testing import OpenAIHarness, serving

from layer_core.testing.pytest_plugin import fake_server, layer_factory

__all__ = ["fake_server", "harness", "layer_factory"]


@pytest.fixture
def harness() -> Iterator[OpenAIHarness]:
    """`(layer, server)`: a Layer with one `single` gate per model, and the fake it calls."""
    with serving() as pair:
        yield pair
