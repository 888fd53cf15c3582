"""pytest fixtures for testing with layer. Opt in from your conftest.py (nothing loads them):

    pytest_plugins = ["layer_core.testing.pytest_plugin"]

- `fake_server`: a running `FakeServer` on 127.0.0.1, stopped after the test.
- `layer_factory`: `layer_factory(config, **kwargs)` builds a `Layer`, closed after the test.
- `install_plugin`: make a plugin discoverable through the `layer` entry-point group for one
  test, as if its distribution were installed: `Layer()` loads it and `layer plugins` lists it.
- `layer_environment`: no LAYER_* variable, provider key or user config reaches the test.

Or import just the fixtures you want into your conftest.py:
`from layer_core.testing.pytest_plugin import layer_factory`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from layer_core.dirs import isolated_environ
from layer_core.layer import Layer
from layer_core.plugins import ENTRY_POINT_GROUP, discovered_entry_points
from layer_core.provider import Provider
from layer_core.testing.fakeserver import FakeServer
from layer_core.testing.scripted import plugin_for

__all__ = ["fake_server", "install_plugin", "layer_environment", "layer_factory"]

InstallPlugin = Callable[..., str]


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """A running `FakeServer`; script it with `.add(...)`, point your client at `.url`."""
    with FakeServer() as server:
        yield server


@pytest.fixture
def layer_factory() -> Iterator[Callable[..., Layer]]:
    """`layer_factory(config, **kwargs)`: a `Layer(config, **kwargs)`, closed when the test ends
    (its providers' clients and the thread of its sync loop), however the test ends."""
    with contextlib.ExitStack() as made:

        def build(*args: Any, **kwargs: Any) -> Layer:
            return made.enter_context(Layer(*args, **kwargs))

        yield build


@pytest.fixture
def layer_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Run the test in an empty folder with no LAYER_* or *_API_KEY/_TOKEN variables set and
    no user config or data (the user dirs under tmp_path), so only what the test configures
    counts."""
    for name in list(os.environ):
        if name.startswith("LAYER_") or name.endswith(("_API_KEY", "_API_TOKEN")):
            monkeypatch.delenv(name)
    for name, value in isolated_environ(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def install_plugin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[InstallPlugin]:
    """`install_plugin(plugin, name="acme")`: installed for this test only; returns `name`.

    `plugin` is a plugin object or module (with `@hookimpl` functions) or a `Provider`, which
    is wrapped with `plugin_for`. It is found the way installed plugins are: an entry point in
    group `layer` of a distribution (`distribution`, default "layer-test-<name>", at `version`).
    """
    site = tmp_path / "layer-test-plugins"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def install(
        plugin: object, *, name: str, distribution: str | None = None, version: str = "0.0.1"
    ) -> str:
        if isinstance(plugin, Provider):
            plugin = plugin_for(plugin, name=name)
        module = f"_layer_test_plugin_{name.replace('-', '_')}"
        holder = types.ModuleType(module)
        holder.plugin = plugin  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, module, holder)
        dist = distribution or f"layer-test-{name}"
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {module}:plugin\n")
        discovered_entry_points.cache_clear()
        return name

    yield install
    discovered_entry_points.cache_clear()
