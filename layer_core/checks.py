"""`layer check`: findings about a loaded config, each ("error" | "warning" | "note", message).

An error makes the config unusable; a warning is something to fix; a note says what this machine
lacks for a valid config (a shipped plugin that is not installed here, as a key not set is).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

import layer_core.catalog
from layer_core.catalog import Absent
from layer_core.layer import Layer, left_out_warning
from layer_core.money import money
from layer_core.schema import SIZES

Finding = tuple[Literal["error", "warning", "note"], str]


def check_layer(layer: Layer, today: date | None = None) -> list[Finding]:
    """Every gate reachable, its declared size servable, its cost bound satisfiable.

    Retirement dates are read as of `today` (default: the real one).
    """
    findings: list[Finding] = []
    catalog = layer.catalog
    unavailable = layer.unavailable()
    today = today or layer_core.catalog.today()
    for info in layer.plugins():
        if info.status == "failed":
            findings.append(("warning", f"plugin {info.name!r} failed to load: {info.error}"))
    for name in layer.config.plugin_settings:
        if name not in layer.providers:
            findings.append(
                ("warning", f"[plugins.{name}]: no loaded provider named {name!r}; settings unused")
            )
    for gate in layer.gates().values():
        where = f"[gates.{gate.id}]"
        left_out = layer.left_out(gate.id)
        if left_out:
            fix = f"write a {where} to choose its models"
            findings.append(("warning", f"{left_out_warning(left_out)} ({fix})"))
        specs = []
        for spec in catalog.resolve_pool(gate.pool):
            if isinstance(spec, Absent):  # of a shipped plugin not loaded (load refuses others)
                findings.append(("note", f"{where} {spec.name}: {spec.why}"))
                continue
            specs.append(spec)
            if spec.deprecated is not None:
                when = layer_core.catalog.retirement(spec.deprecated, today)
                findings.append(("warning", f"{where} {spec.id} {when}"))
        live = [s for s in specs if s.provider not in unavailable and not s.retired(today)]
        if not specs:
            findings.append(("error", f"{where} unreachable: no model of its pool is installed"))
        elif not live:
            reasons = "; ".join(f"{s.id}: {unavailable.get(s.provider, 'retired')}" for s in specs)
            findings.append(("warning", f"{where} no model is callable now ({reasons})"))
        size = gate.defaults.size
        if size is not None and specs and not any(size in s.sizes for s in specs):
            findings.append(("error", f"{where} default size {size} is served by no model of it"))
        if gate.max_cost_per_image is not None and specs:
            cheapest = min(
                s.price(q, sz) or Decimal(0)
                for s in specs
                for q in (s.qualities or (None,))
                for sz in s.sizes
            )
            if cheapest > gate.max_cost_per_image:
                findings.append(
                    (
                        "error",
                        f"{where} max_cost_per_image {money(gate.max_cost_per_image)} is below "
                        f"every model's cheapest price ({money(cheapest)})",
                    )
                )
        unservable = [z for z in SIZES if specs and not any(z in s.sizes for s in specs)]
        if unservable and gate.defaults.size is None:
            findings.append(
                ("warning", f"{where} sizes no model of it serves: {', '.join(unservable)}")
            )
    return findings
