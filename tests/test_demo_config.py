"""The shipped plugins.toml names only models that are not retired as of the day the tests run.

The demo config is also the documented example of every setting, so its commented-out examples
(`# [gates.hero]` ...) are switched on and checked too. A model's retirement date comes from its
provider's catalogue; the day is the real one, so this fails on the day a named model retires.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import layer_core.catalog
from layer_core import Layer
from layer_core.checks import check_layer
from layer_core.cli import cli

DEMO = Path(__file__).resolve().parents[1] / "plugins.toml"
#: a commented-out line of TOML: a table header or a `key = value`
EXAMPLE = re.compile(r"^# ?(\[[\w.\"-]+\]|[\w\"-]+ = .*)$")


def with_examples(text: str) -> str:
    """The config with its commented-out examples switched on."""
    return "\n".join(
        match.group(1) if (match := EXAMPLE.match(line)) else line for line in text.splitlines()
    )


def named_models(config: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, model) for every model a config names: gate pools, `models` lists, price keys."""
    for gate_id, gate in config.get("gates", {}).items():
        for name in [gate["model"]] if "model" in gate else []:
            yield f"[gates.{gate_id}] model", name
        for name in gate.get("fallback_models", []):
            yield f"[gates.{gate_id}] fallback_models", name
    for plugin, settings in config.get("plugins", {}).items():
        if not isinstance(settings, dict):
            continue
        for name in settings.get("models", []):
            yield f"[plugins.{plugin}] models", name
        for name in settings.get("prices", {}):
            yield f"[plugins.{plugin}] prices", name


@pytest.fixture(scope="module")
def installed() -> Iterator[Layer]:
    """A Layer over every installed plugin: the catalogue the names are read against."""
    layer = Layer({"ledger": False}, environ={})
    yield layer
    layer.close()


def test_the_examples_are_switched_on() -> None:
    """The oracle the next test relies on: every commented-out gate really is parsed."""
    shipped = tomllib.loads(DEMO.read_text())
    examples = tomllib.loads(with_examples(DEMO.read_text()))
    assert set(shipped["gates"]) == {"default"}
    assert set(examples["gates"]) > {"default", "hero", "thumbnails"}
    assert examples["plugins"]["openai"]["models"]
    assert examples["plugins"]["openai"]["prices"]


@pytest.mark.parametrize("examples", [False, True], ids=["as shipped", "with its examples"])
def test_the_demo_config_names_no_retired_model(installed: Layer, examples: bool) -> None:
    text = DEMO.read_text()
    config = tomllib.loads(with_examples(text) if examples else text)
    today = layer_core.catalog.today()
    problems = []
    for where, name in named_models(config):
        spec = installed.catalog.resolve(name)
        if spec is None:
            problems.append(f"{where}: {name} is not in the installed catalogue")
        elif spec.deprecated is not None and spec.retired(today):
            when = layer_core.catalog.retirement(spec.deprecated, today)
            problems.append(f"{where}: {name} {when}")
    assert not problems, "\n".join(problems)


def test_layer_check_on_the_demo_config_is_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAYER_PLUGINS", raising=False)
    result = CliRunner().invoke(cli, ["check", str(DEMO)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert not [line for line in result.output.splitlines() if line.startswith("warning")]
    assert "0 error(s), 0 warning(s)" in result.output


def test_the_examples_pass_layer_check_without_a_retirement(tmp_path: Path) -> None:
    config = tmp_path / "plugins.toml"
    config.write_text(
        with_examples(DEMO.read_text()).replace('ledger = "sqlite"', "ledger = false")
    )
    layer = Layer(config, environ={})
    try:
        findings = check_layer(layer)
    finally:
        layer.close()
    assert [f for f in findings if f[0] == "error"] == []
    assert [m for _, m in findings if "retire" in m] == []
