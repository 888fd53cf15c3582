"""Test helpers for plugin authors and users (install `layer-core[testing]`).

- `FakeServer`, `Reply`, `Recorded`: a fake provider HTTP server on 127.0.0.1.
- `ScriptedProvider`, `plugin_for`, `make_spec`, `OK`, `Hang`, `tiny_png`: scripted providers
  registered through the real plugin path.
- `generate_once`: one call straight to a provider (no router), on a loop of its own.
- `layer_core.testing.strategies`: hypothesis strategies (requests, specs, catalogues, gates).
"""

from __future__ import annotations

from layer_core.testing.direct import generate_once
from layer_core.testing.fakeserver import FakeServer, Recorded, Reply
from layer_core.testing.scripted import (
    OK,
    Hang,
    ScriptedProvider,
    Step,
    fake_images,
    make_spec,
    plugin_for,
    tiny_png,
)

__all__ = [
    "OK",
    "FakeServer",
    "Hang",
    "Recorded",
    "Reply",
    "ScriptedProvider",
    "Step",
    "fake_images",
    "generate_once",
    "make_spec",
    "plugin_for",
    "tiny_png",
]
