"""layer_core.shipped lists every model (id and alias) of every provider plugin layer ships."""

from __future__ import annotations

from pathlib import Path

import pytest

from layer_core import Layer
from layer_core.shipped import SHIPPED_MODELS, shipped_plugin

ROOT = Path(__file__).resolve().parents[1]


def test_every_shipped_provider_is_listed() -> None:
    providers = {p.name for p in (ROOT / "providers").iterdir() if (p / "pyproject.toml").is_file()}
    assert {*providers, "local"} == set(SHIPPED_MODELS)  # local is built into layer-core


@pytest.mark.parametrize("plugin", sorted(SHIPPED_MODELS))
def test_the_list_matches_what_the_plugin_declares(plugin: str) -> None:
    layer = Layer({"ledger": False})
    assert plugin in layer.providers, f"the {plugin} plugin is installed in this environment"
    declared = [n for s in layer.models() if s.provider == plugin for n in (s.id, *s.aliases)]
    assert sorted(SHIPPED_MODELS[plugin]) == sorted(declared), (
        f"layer_core/shipped.py: set SHIPPED_MODELS[{plugin!r}] to {tuple(declared)}"
    )


def test_a_name_belongs_to_one_plugin() -> None:
    names = [name for names in SHIPPED_MODELS.values() for name in names]
    assert len(names) == len(set(names))
    assert shipped_plugin("black-forest-labs/flux-schnell") == "replicate"
    assert shipped_plugin("fal-ai/flux/schnell") == "fal"
    assert shipped_plugin("acme-1") is None
