"""Builders for tests: a Layer over scripted providers, registered through the plugin hook."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from layer_core import Layer, Provider
from layer_core.testing import ScriptedProvider, Step, make_spec, plugin_for

__all__ = ["Step", "layer_with", "two_model_provider"]


def layer_with(
    *providers: Provider,
    gates: Mapping[str, Mapping[str, Any]],
    environ: Mapping[str, str] | None = None,
    plugins: Sequence[object] = (),
    **config: Any,
) -> Layer:
    """A Layer whose only plugins are `providers` (through `register_providers`) and `plugins`."""
    return Layer(
        {"ledger": False, "gates": dict(gates), **config},
        plugins=[plugin_for(*providers), *plugins],
        load_entry_points=False,
        environ=environ or {},
    )


def two_model_provider(
    script: Mapping[str, Sequence[Step]] | None = None, **primary: Any
) -> ScriptedProvider:
    """Provider `acme` with `primary` ($0.04, 1 per call by default) and `backup` ($0.01)."""
    return ScriptedProvider(
        "acme",
        [
            make_spec("primary", "acme", price=primary.pop("price", "0.04"), **primary),
            make_spec("backup", "acme", price="0.01", max_images_per_call=10),
        ],
        script,
    )
