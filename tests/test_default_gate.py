"""The built-in `default` gate (no config defines one): every installed model that is not
retired, and it says which models it left out and why, wherever the gate shows up."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from layer_core import Layer, NoEligibleModel, Rejection
from layer_core.builtin.local import LocalProvider
from layer_core.cli import cli
from layer_core.testing import ScriptedProvider, make_spec, plugin_for

if TYPE_CHECKING:  # imported by pytest as a plugin, after this module
    from layer_core.testing.pytest_plugin import InstallPlugin

pytest_plugins = ["layer_core.testing.pytest_plugin"]

RETIRED = date(2026, 5, 12)
WARNING = (
    "left out of the built-in default gate: "
    "vintage-1: retired 2026-05-12; vintage-2: retired 2026-05-12"
)


def vintage(*, key_env_var: str | None = None) -> ScriptedProvider:
    """Two retired models and a current one (retiring next year)."""
    next_year = datetime.now(UTC).date() + timedelta(days=365)
    return ScriptedProvider(
        "vintage",
        [
            make_spec("vintage-1", "vintage", deprecated=RETIRED, quality_score=90),
            make_spec("vintage-2", "vintage", deprecated=RETIRED, quality_score=80),
            make_spec("current", "vintage", deprecated=next_year, quality_score=50),
        ],
        key_env_var=key_env_var,
    )


def built_in(*providers: ScriptedProvider, local: bool = True, **config: object) -> Layer:
    extra: list[object] = [plugin_for(*providers)]
    if local:
        extra.append(LocalProvider())
    return Layer({"ledger": False, **config}, plugins=extra, load_entry_points=False, environ={})


def test_retired_models_are_left_out_and_listed_with_their_date() -> None:
    layer = built_in(vintage())
    gate = layer.gates()["default"]
    assert gate.pool == ("current", "local")
    assert layer.left_out() == [
        Rejection("vintage-1", "vintage-1: retired 2026-05-12"),
        Rejection("vintage-2", "vintage-2: retired 2026-05-12"),
    ]
    assert gate.description.endswith(WARNING)


def test_the_plan_lists_them_among_the_rejected() -> None:
    plan = built_in(vintage()).explain(data={"prompt": "a fox"})
    assert [c.id for c in plan.candidates] == ["current", "local"]
    assert [r.reason for r in plan.rejected] == [
        "vintage-1: retired 2026-05-12",
        "vintage-2: retired 2026-05-12",
    ]


def test_a_placeholder_response_says_what_was_left_out() -> None:
    """The issue's case: the real models retired or without a key, the placeholder served."""
    provider = vintage(key_env_var="VINTAGE_API_KEY")
    response = built_in(provider).image(data={"prompt": "a fox", "size": "256x256"})
    assert response.model == "local"
    assert WARNING in response.warnings
    assert provider.calls == []


def test_a_real_model_serving_needs_no_such_warning() -> None:
    provider = vintage()
    response = built_in(provider).image(data={"prompt": "a fox", "size": "256x256"})
    assert response.model == "current"
    assert not [w for w in response.warnings if "left out" in w]
    assert [c.model.id for c in provider.calls] == ["current"]


def test_with_nothing_left_the_error_names_every_model_left_out() -> None:
    only_retired = ScriptedProvider(
        "vintage", [make_spec("vintage-1", "vintage", deprecated=RETIRED)]
    )
    layer = built_in(only_retired, local=False)
    with pytest.raises(NoEligibleModel) as caught:
        layer.image(data={"prompt": "a fox"})
    assert "vintage-1: retired 2026-05-12" in str(caught.value)
    assert only_retired.calls == []


def test_a_configured_default_gate_leaves_nothing_out() -> None:
    layer = built_in(vintage(), gates={"default": {"model": "vintage-1"}})
    assert layer.left_out() == []
    assert layer.gates()["default"].pool == ("vintage-1",)


@pytest.fixture
def vintage_installed(install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch) -> None:
    """`vintage` installed as a plugin; only it and the built-in `local` load; no config file."""
    install_plugin(vintage(), name="vintage")
    monkeypatch.setenv("LAYER_PLUGINS", "vintage,local")


@pytest.mark.usefixtures("vintage_installed")
def test_layer_gates_and_check_say_what_the_built_in_gate_left_out() -> None:
    runner = CliRunner()
    gates = runner.invoke(cli, ["gates"], env={"COLUMNS": "200"})
    assert gates.exit_code == 0, gates.output
    assert f"warning: {WARNING}" in gates.output
    check = runner.invoke(cli, ["check"], env={"COLUMNS": "200"})
    assert check.exit_code == 0, check.output
    assert f"warning: {WARNING} (write a [gates.default] to choose its models)" in check.output
