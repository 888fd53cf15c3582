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
    for name, why in layer.absent_instances().items():
        findings.append(("note", f"[providers.{name}] not made: {why}"))
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
        deployments = []
        for member in catalog.resolve_pool(gate.pool):
            if isinstance(member, Absent):  # of a shipped plugin not loaded (load refuses others)
                findings.append(("note", f"{where} {member.name}: {member.why}"))
                continue
            deployments.append(member)
        specs = list({d.spec.id: d.spec for d in deployments}.values())
        for spec in specs:
            if spec.deprecated is not None:
                when = layer_core.catalog.retirement(spec.deprecated, today)
                findings.append(("warning", f"{where} {spec.id} {when}"))
        live = [
            d for d in deployments if d.instance not in unavailable and not d.spec.retired(today)
        ]
        if not deployments:
            findings.append(("error", f"{where} unreachable: no model of its pool is installed"))
        elif not live:
            reasons = "; ".join(
                f"{catalog.label(d)}: {unavailable.get(d.instance, 'retired')}" for d in deployments
            )
            findings.append(("warning", f"{where} no model is callable now ({reasons})"))
        size = gate.defaults.size
        if size is not None and specs and not any(size in s.sizes for s in specs):
            findings.append(("error", f"{where} default size {size} is served by no model of it"))
        if gate.max_cost_per_image is not None and specs:
            cheapest = min(
                d.spec.price(q, sz) or Decimal(0)
                for d in deployments
                for q in (d.spec.qualities or (None,))
                for sz in d.spec.sizes
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
