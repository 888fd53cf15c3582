"""Plugin loading: one entry point at a time, failures isolated and reported; observer hooks."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from layer_core import Layer, PluginLoadError, hookimpl
from layer_core.plugins import discovered_entry_points
from layer_core.testing import ScriptedProvider, make_spec
from tests.helpers import layer_with, two_model_provider

GOOD = """
from layer_core import hookimpl
from layer_core.testing import ScriptedProvider, make_spec

@hookimpl
def register_providers(register):
    register(ScriptedProvider("goodco", [make_spec("good-1", "goodco")]))
"""
IMPORT_FAILS = "import a_module_that_does_not_exist\n"
MISSPELT = """
from layer_core import hookimpl

@hookimpl
def register_provider(register):
    pass
"""
NOT_A_PROVIDER = """
from layer_core import hookimpl

@hookimpl
def register_providers(register):
    register("just a string")
"""


def install(site: Path, dist: str, ep: str, source: str) -> None:
    """A minimal installed distribution: a module plus dist-info with a `layer` entry point."""
    module = dist.replace("-", "_")
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[layer]\n{ep} = {module}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = tmp_path / "site"
    site.mkdir()
    install(site, "layer-good", "good", GOOD)
    install(site, "layer-broken-import", "broken_import", IMPORT_FAILS)
    install(site, "layer-misspelt", "misspelt", MISSPELT)
    install(site, "layer-not-provider", "not_provider", NOT_A_PROVIDER)
    monkeypatch.syspath_prepend(str(site))
    discovered_entry_points.cache_clear()
    yield site
    discovered_entry_points.cache_clear()
    for name in ("layer_good", "layer_broken_import", "layer_misspelt", "layer_not_provider"):
        sys.modules.pop(name, None)


def statuses(layer: Layer) -> dict[str, tuple[str, str | None]]:
    return {p.name: (p.status, p.error) for p in layer.plugins()}


def test_a_broken_plugin_is_reported_by_name_and_the_others_still_load(site: Path) -> None:
    layer = Layer({"ledger": False})
    seen = statuses(layer)
    assert seen["good"] == ("ok", None)
    assert seen["broken_import"][0] == "failed"
    assert "ModuleNotFoundError" in (seen["broken_import"][1] or "")
    assert seen["misspelt"][0] == "failed"
    assert "unknown hook 'register_provider' (did you mean 'register_providers'?)" in (
        seen["misspelt"][1] or ""
    )
    assert seen["not_provider"][0] == "failed"
    assert "not a layer_core.Provider" in (seen["not_provider"][1] or "")
    assert "goodco" in layer.providers
    assert layer.image(data={"prompt": "p"}, model=None).images


def test_strict_mode_raises_on_the_first_broken_plugin(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAYER_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError) as caught:
        Layer({"ledger": False})
    assert caught.value.plugin in {"broken_import", "misspelt", "not_provider"}


def test_layer_plugins_env_restricts_which_load(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAYER_PLUGINS", "good")
    seen = statuses(Layer({"ledger": False}))
    assert seen["good"] == ("ok", None)
    assert seen["broken_import"][0] == "disabled"
    assert seen["misspelt"][0] == "disabled"


def test_config_load_list_restricts_which_load(site: Path) -> None:
    seen = statuses(Layer({"ledger": False, "plugins": {"load": ["good"]}}))
    assert seen["good"][0] == "ok"
    assert seen["misspelt"][0] == "disabled"


def test_cli_lists_failed_plugins_and_still_generates(site: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(site), "LAYER_CONFIG": ""}
    env.pop("LAYER_CONFIG")
    listing = subprocess.run(
        [sys.executable, "-m", "layer_core", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["broken_import"]["status"] == "failed"
    assert "No module named 'a_module_that_does_not_exist'" in rows["broken_import"]["error"]
    assert rows["misspelt"]["status"] == "failed"
    assert "register_provider" in rows["misspelt"]["error"]
    assert rows["good"]["status"] == "ok"
    assert rows["good"]["distribution"] == "layer-good"
    assert rows["good"]["version"] == "0.1"

    table = subprocess.run(
        [sys.executable, "-m", "layer_core", "plugins"],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        cwd=tmp_path,
        check=True,
    )
    assert "failed" in table.stdout
    assert "broken_import" in table.stdout

    generated = subprocess.run(
        [sys.executable, "-m", "layer_core", "image", "a lighthouse", "--out", "out"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert generated.returncode == 0, generated.stderr
    assert list((tmp_path / "out").glob("*.png"))


def test_two_plugins_registering_the_same_provider_name() -> None:
    first = ScriptedProvider("dup", [make_spec("d-1", "dup")])
    second = ScriptedProvider("dup", [make_spec("d-2", "dup")])
    from layer_core.testing import plugin_for

    layer = Layer(
        {"ledger": False},
        plugins=[plugin_for(first, name="one"), plugin_for(second, name="two")],
        load_entry_points=False,
    )
    seen = statuses(layer)
    assert seen["one"] == ("ok", None)
    assert seen["two"][0] == "failed"
    assert "already registered by plugin 'one'" in (seen["two"][1] or "")
    assert [m.id for m in layer.models()] == ["d-1"]


class NotedProvider(ScriptedProvider):
    def notes(self) -> list[str]:
        return ["pip install 'acme[extra]' for more models"]


def test_a_providers_notes_show_beside_its_plugin() -> None:
    from layer_core.testing import plugin_for

    noted = NotedProvider("acme", [make_spec("a-1", "acme")])
    layer = Layer(
        {"ledger": False}, plugins=[plugin_for(noted, name="acme")], load_entry_points=False
    )
    (info,) = [p for p in layer.plugins() if p.name == "acme"]
    assert info.status == "ok"
    assert info.note == "object; pip install 'acme[extra]' for more models"
    quiet = ScriptedProvider("quiet", [make_spec("q-1", "quiet")])
    assert (
        Layer({"ledger": False}, plugins=[quiet], load_entry_points=False).plugins()[0].note
        == "object"
    )


class Recorder:
    """An observer plugin that records every observation hook call."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def on_request(self, request, gate):  # type: ignore[no-untyped-def]
        self.calls.append(f"request:{gate.id}")

    @hookimpl
    def on_plan(self, plan):  # type: ignore[no-untyped-def]
        self.calls.append(f"plan:{[c.id for c in plan.candidates]}")

    @hookimpl
    def on_attempt_failed(self, attempt, error):  # type: ignore[no-untyped-def]
        self.calls.append(f"failed:{attempt.model}:{error.kind}")

    @hookimpl
    def on_response(self, response):  # type: ignore[no-untyped-def]
        self.calls.append(f"response:{response.model}")


class Exploder:
    @hookimpl
    def on_response(self, response):  # type: ignore[no-untyped-def]
        raise RuntimeError("observer bug")


def test_observation_hooks_fire_in_order(caplog: pytest.LogCaptureFixture) -> None:
    from layer_core import ProviderUnavailable

    recorder = Recorder()
    acme = two_model_provider({"primary": [ProviderUnavailable("down")]})
    layer = layer_with(
        acme,
        gates={"g": {"model": "primary", "fallback_models": ["backup"]}},
        plugins=[Exploder(), recorder],
    )
    with caplog.at_level(logging.ERROR, logger="layer.plugins"):
        response = layer.image("g", {"prompt": "p"})
    assert response.model == "backup"
    assert recorder.calls == [
        "request:g",
        "plan:['primary', 'backup']",
        "failed:primary:unavailable",
        "response:backup",
    ]
    assert any(
        "Exploder" in r.getMessage() and "on_response" in r.getMessage() for r in caplog.records
    )
