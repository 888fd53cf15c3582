"""Test helpers for plugin authors and users (install `layer-core[testing]`).

- `FakeServer`, `Reply`, `Recorded`, `NO_REPLY`, `wait_until`: a fake provider HTTP server on
  127.0.0.1.
- `ScriptedProvider`, `plugin_for`, `make_spec`, `OK`, `Hang`, `tiny_png`: scripted providers
  registered through the real plugin path.
- `generate_once`: one call straight to a provider (no router), on a loop of its own.
- `layer_core.testing.conformance`: the standard tests a provider plugin subclasses.
- `layer_core.testing.strategies`: hypothesis strategies (requests, specs, catalogues, gates).
- `layer_core.testing.pytest_plugin`: opt-in fixtures (`pytest_plugins = [...]`).
- `layer_core.testing.images`: an image's format and pixel size, read from its header.

Importing this package needs neither pytest nor hypothesis; the modules above that do import
them are imported only when you import them.
"""

from __future__ import annotations

from layer_core.testing.direct import generate_once
from layer_core.testing.fakeserver import NO_REPLY, FakeServer, Recorded, Reply, wait_until
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
    "NO_REPLY",
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
    "wait_until",
]
