"""Retirement dates: one rule for whether a model is retired, worded in the tense of the day.

Every place that reads a retirement date (`layer check`, the built-in default gate, the routing
policy's warnings, `layer models`) asks `ModelSpec.retired` and words it with
`layer_core.catalog.retirement`, as of `layer_core.catalog.today()`, which a test can replace.
"""

from __future__ import annotations

from datetime import date

import pytest

import layer_core.catalog
from layer_core import Layer
from layer_core.catalog import retirement
from layer_core.checks import check_layer
from layer_core.testing import ScriptedProvider, make_spec, plugin_for

RETIRES = date(2027, 1, 14)


def layer_with_a_retiring_model(gates: dict[str, object] | None = None) -> Layer:
    acme = ScriptedProvider(
        "acme",
        [make_spec("old", "acme", deprecated=RETIRES), make_spec("new", "acme")],
    )
    config: dict[str, object] = {"ledger": False}
    if gates is not None:
        config["gates"] = gates
    return Layer(config, plugins=[plugin_for(acme)], load_entry_points=False)


@pytest.mark.parametrize(
    ("on", "words"),
    [
        (date(2026, 12, 2), "retires 2027-01-14"),
        (date(2027, 1, 13), "retires 2027-01-14"),
        (date(2027, 1, 14), "retired 2027-01-14"),
        (date(2027, 6, 1), "retired 2027-01-14"),
    ],
)
def test_a_date_is_worded_in_the_past_once_it_has_come(on: date, words: str) -> None:
    assert retirement(RETIRES, on) == words
    assert make_spec("m", "p", deprecated=RETIRES).retired(on) == words.startswith("retired")
    assert not make_spec("m", "p").retired(on)


def test_layer_check_words_a_retirement_as_of_the_day_it_is_given() -> None:
    layer = layer_with_a_retiring_model({"g": {"model": "old"}})
    try:  # (the built-in default gate, over every model, is checked too: only g is looked at)
        before = [f for f in check_layer(layer, today=date(2026, 12, 2)) if "gates.g]" in f[1]]
        after = [f for f in check_layer(layer, today=RETIRES) if "gates.g]" in f[1]]
    finally:
        layer.close()
    assert before == [("warning", "[gates.g] old retires 2027-01-14")]
    assert ("warning", "[gates.g] old retired 2027-01-14") in after
    assert ("warning", "[gates.g] no model is callable now (old: retired)") in after


def test_the_built_in_default_gate_leaves_out_what_is_retired_today(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(layer_core.catalog, "today", lambda: date(2027, 1, 13))
    layer = layer_with_a_retiring_model()
    assert set(layer.gates()["default"].pool) == {"old", "new"}
    layer.close()
    monkeypatch.setattr(layer_core.catalog, "today", lambda: RETIRES)
    layer = layer_with_a_retiring_model()
    assert layer.gates()["default"].pool == ("new",)
    layer.close()


def test_layer_check_reads_a_pool_as_the_plan_does_each_model_once() -> None:
    """A pool that names a model by id and by alias holds one model: one warning, one try."""
    acme = ScriptedProvider("acme", [make_spec("old", "acme", deprecated=RETIRES, aliases=("o",))])
    gates = {"g": {"model": "old", "fallback_models": ["o"]}}
    config = {"ledger": False, "gates": gates}
    with Layer(config, plugins=[plugin_for(acme)], load_entry_points=False) as layer:
        findings = [f for f in check_layer(layer, today=date(2026, 12, 2)) if "gates.g]" in f[1]]
        the_plan = layer.explain("g", {"prompt": "p"})
    assert findings == [("warning", "[gates.g] old retires 2027-01-14")]
    assert [c.id for c in the_plan.candidates] == ["old"]
