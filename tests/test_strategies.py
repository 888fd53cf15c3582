"""The hypothesis strategies users property-test their gates with draw what they promise."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from layer_core import Layer
from layer_core.gates import Gate
from layer_core.schema import ImageRequest
from layer_core.testing import ScriptedProvider, make_spec, plugin_for
from layer_core.testing.strategies import catalogs, gate_requests, gates, provider_states

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PINNED = {
    "model": "sharp",
    "fallback_models": ["soft"],
    "defaults": {"size": "1024x1024", "quality": "hd"},
    "allow_overrides": {"size": False, "quality": True, "style": True},
}


@pytest.fixture(scope="module")
def layer() -> Layer:
    provider = ScriptedProvider(
        "acme", [make_spec("sharp", "acme"), make_spec("soft", "acme", qualities=("standard",))]
    )
    return Layer(
        {"ledger": False, "gates": {"pinned": PINNED}},
        plugins=[plugin_for(provider)],
        load_entry_points=False,
    )


@FAST
@given(data=st.data())
def test_gate_requests_are_all_accepted_by_the_gate(layer: Layer, data: st.DataObject) -> None:
    gate = layer.gates()["pinned"]
    request = data.draw(gate_requests(gate))
    assert request.data.size in (None, "1024x1024")  # pinned, not overridable
    layer.explain(request.gate_id, request.data, request.model)  # never OverrideNotAllowed


@FAST
@given(data=st.data())
def test_gate_requests_narrow_to_the_sizes_asked_for(layer: Layer, data: st.DataObject) -> None:
    gate = Gate(id="open", fallback_models=("sharp",), allow_overrides=True)
    request = data.draw(gate_requests(gate, sizes=["512x512"], models=["soft"], seeds=False))
    assert request.data.size in (None, "512x512")
    assert request.model in (None, "soft")
    assert request.data.seed is None


def test_gate_requests_refuse_model_overrides_the_gate_does_not_allow(layer: Layer) -> None:
    with pytest.raises(ValueError, match="does not allow model overrides"):
        gate_requests(layer.gates()["pinned"], models=["soft"])


@FAST
@given(data=st.data())
def test_provider_states_can_rule_out_outages_and_budgets(data: st.DataObject) -> None:
    catalog = data.draw(catalogs())
    state = data.draw(provider_states(catalog, outages=False, budget=False))
    assert state.unavailable == {}
    assert state.budget_left is None
    sometimes = data.draw(provider_states(catalog))
    assert set(sometimes.unavailable) <= {d.instance for d in catalog.deployments()}


@FAST
@given(data=st.data())
def test_drawn_gates_accept_their_own_requests(data: st.DataObject) -> None:
    catalog = data.draw(catalogs())
    gate = data.draw(gates(catalog, unknown_models=False))
    request: ImageRequest = data.draw(gate_requests(gate))
    for field in ("size", "quality", "style"):
        pinned: Any = getattr(gate.defaults, field)
        asked = getattr(request.data, field)
        if pinned is not None and not gate.allows_override(field):  # type: ignore[arg-type]
            assert asked in (None, pinned)
