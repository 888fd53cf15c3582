"""Bad input is refused with the field and the fix, and never reaches a provider."""

from __future__ import annotations

from typing import Any

import pytest

from layer_core import (
    GateNotFound,
    InvalidRequest,
    LayerError,
    OverrideNotAllowed,
    UnknownModel,
)
from layer_core.testing import ScriptedProvider, make_spec
from tests.helpers import layer_with


@pytest.fixture
def acme() -> ScriptedProvider:
    return ScriptedProvider("acme", [make_spec("primary", "acme"), make_spec("other", "acme")])


GATES = {
    "open": {"model": "primary", "allow_overrides": True},
    "locked": {"model": "primary", "defaults": {"size": "1024x1024"}, "allow_overrides": False},
    "default": {"model": "primary"},
}

CASES: list[tuple[str, dict[str, Any], type[LayerError], str]] = [
    ("empty prompt", {"data": {"prompt": ""}}, InvalidRequest, "data.prompt"),
    ("unknown size", {"data": {"prompt": "p", "size": "1000x1000"}}, InvalidRequest, "data.size"),
    ("count 0", {"data": {"prompt": "p", "count": 0}}, InvalidRequest, "data.count"),
    ("count 11", {"data": {"prompt": "p", "count": 11}}, InvalidRequest, "data.count"),
    (
        "quality ultra",
        {"data": {"prompt": "p", "quality": "ultra"}},
        InvalidRequest,
        "data.quality",
    ),
    ("seed -1", {"data": {"prompt": "p", "seed": -1}}, InvalidRequest, "data.seed"),
    ("unknown gate", {"gate_id": "nope", "data": {"prompt": "p"}}, GateNotFound, "gate_id"),
    (
        "override of an unknown model",
        {"gate_id": "open", "data": {"prompt": "p"}, "model": "dall-e-9"},
        UnknownModel,
        "model",
    ),
    (
        "model override on a gate that forbids it",
        {"gate_id": "locked", "data": {"prompt": "p"}, "model": "other"},
        OverrideNotAllowed,
        "model",
    ),
    (
        "model override on a gate that says nothing (model overrides are off by default)",
        {"gate_id": "default", "data": {"prompt": "p"}, "model": "other"},
        OverrideNotAllowed,
        "model",
    ),
    (
        "size override on a gate that pins it",
        {"gate_id": "locked", "data": {"prompt": "p", "size": "512x512"}},
        OverrideNotAllowed,
        "data.size",
    ),
    (
        "metadata too large",
        {"data": {"prompt": "p"}, "metadata": {"notes": "x" * 5000}},
        InvalidRequest,
        "metadata",
    ),
]


@pytest.mark.parametrize(("case", "kwargs", "error", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_names_the_field_and_calls_no_provider(
    acme: ScriptedProvider, case: str, kwargs: dict[str, Any], error: type[LayerError], field: str
) -> None:
    layer = layer_with(acme, gates=GATES)
    kwargs = {"gate_id": "default", **kwargs}
    with pytest.raises(error) as caught:
        layer.image(**kwargs)
    message = str(caught.value)
    assert message.startswith(field) or f"\n  {field}:" in message, message
    assert acme.calls == []


def test_explain_refuses_bad_input_the_same_way(acme: ScriptedProvider) -> None:
    layer = layer_with(acme, gates=GATES)
    with pytest.raises(InvalidRequest):
        layer.explain("default", {"prompt": "p", "size": "1000x1000"})
    assert acme.calls == []


def test_an_allowed_override_is_served_by_the_named_model(acme: ScriptedProvider) -> None:
    layer = layer_with(acme, gates=GATES)
    response = layer.image("open", {"prompt": "p"}, model="other")
    assert response.model == "other"


def test_a_gate_that_cannot_serve_the_request_lists_every_reason(acme: ScriptedProvider) -> None:
    from layer_core import NoEligibleModel

    narrow = ScriptedProvider("narrow", [make_spec("square", "narrow", sizes=("1024x1024",))])
    gates = {"g": {"model": "square", "fallback_models": ["flux-schnell"]}}
    layer = layer_with(narrow, gates=gates)  # a shipped plugin's model, its plugin not loaded
    with pytest.raises(NoEligibleModel) as caught:
        layer.image("g", {"prompt": "p", "size": "512x512"})
    assert "square: size 512x512 not supported (1024x1024)" in str(caught.value)
    assert "flux-schnell: plugin 'replicate' is installed but not loaded" in str(caught.value)
    assert narrow.calls == []


def test_the_override_rules_are_the_gates_own_and_need_no_layer() -> None:
    from layer_core import Gate
    from layer_core.catalog import Catalog
    from layer_core.validation import parse_request

    catalog = Catalog()
    for spec in (make_spec("primary", "acme"), make_spec("other", "acme")):
        catalog.add(spec)
    gate = Gate.model_validate(GATES["locked"] | {"id": "locked"})
    gate.check_overrides(parse_request("locked", {"prompt": "p"}, "primary", None), catalog)
    gate.check_overrides(parse_request("locked", {"prompt": "p", "size": "1024x1024"}), catalog)
    with pytest.raises(OverrideNotAllowed, match="asked for other"):
        gate.check_overrides(parse_request("locked", {"prompt": "p"}, "other"), catalog)
    with pytest.raises(OverrideNotAllowed, match="it pins 1024x1024; asked for 512x512"):
        gate.check_overrides(parse_request("locked", {"prompt": "p", "size": "512x512"}), catalog)
    opened = Gate(id="open", model="primary", allow_overrides=True)
    opened.check_overrides(
        parse_request("open", {"prompt": "p", "size": "512x512"}, "other"), catalog
    )
