"""`layer costs`: the ledger's spend as a table, JSON or CSV, totals exact to the last digit."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from layer_core import ImageResponse
from layer_core.cli import cli
from layer_core.testing import ScriptedProvider, make_spec
from tests.helpers import layer_with


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


def scripted_run(ledger: str) -> list[ImageResponse]:
    """Requests through three gates at awkward prices, tagged with a `feature`."""
    studio = ScriptedProvider(
        "studio",
        [
            make_spec("fine", "studio", price="0.167"),
            make_spec("quick", "studio", price="0.0025", max_images_per_call=4),
        ],
    )
    gates = {"hero": {"model": "fine"}, "thumbs": {"model": "quick"}}
    responses = []
    with layer_with(studio, gates=gates, ledger=ledger) as layer:
        for i in range(6):
            for gate, feature in (("hero", "landing"), ("thumbs", "grid"), ("thumbs", "landing")):
                data = {"prompt": f"p{i}", "count": 1 + i % 4}
                responses.append(layer.image(gate, data, metadata={"feature": feature}))
        responses.append(layer.image("hero", {"prompt": "untagged"}))
    return responses


@pytest.fixture
def config(tmp_path: Path, ledger_url: str) -> str:
    path = tmp_path / "plugins.toml"
    path.write_text(f'ledger = "{ledger_url}"\n')
    return str(path)


def money(amount: Decimal) -> str:
    return f"${amount.normalize():f}"


def test_costs_by_gate_and_feature_prints_totals_equal_to_the_responses_costs(
    config: str, ledger_url: str
) -> None:
    responses = scripted_run(ledger_url)
    total = sum((r.cost_exact for r in responses), Decimal(0))
    expected = {}
    for r in responses:
        key = (r.gate_id, r.metadata.get("feature"))
        expected[key] = expected.get(key, Decimal(0)) + r.cost_exact

    code, out = run("--config", config, "costs", "--by", "gate", "--by", "meta.feature")
    assert code == 0, out
    header, *cells = [line.split("\t") for line in out.splitlines()]
    assert header == ["gate", "meta.feature", "requests", "images", "cost"]
    images = sum(len(r.images) for r in responses)
    assert cells[-1] == ["total", "", str(len(responses)), str(images), money(total)]
    assert {(gate, feature): cost for gate, feature, _, _, cost in cells[:-1]} == {
        (gate, feature or "-"): money(cost) for (gate, feature), cost in expected.items()
    }

    code, out = run(
        "--config", config, "costs", "--by", "gate", "--by", "meta.feature", "--format", "json"
    )
    assert code == 0, out
    report = json.loads(out)
    assert Decimal(report["total"]) == total
    assert sum(Decimal(row["cost"]) for row in report["rows"]) == total
    assert {(row["gate"], row["meta.feature"]): Decimal(row["cost"]) for row in report["rows"]} == (
        expected
    )

    code, out = run("--config", config, "costs", "--by", "gate", "--format", "csv")
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["gate"] for row in rows] == ["hero", "thumbs"]
    assert sum(Decimal(row["cost"]) for row in rows) == total
    assert sum(int(row["requests"]) for row in rows) == len(responses)


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_costs_since_a_future_moment_is_empty_and_bad_input_is_a_usage_error(config: str) -> None:
    code, out = run("--config", config, "costs", "--since", "2999-01-01", "--format", "json")
    assert code == 0, out
    assert json.loads(out)["total"] == "0"
    code, out = run("--config", config, "costs", "--by", "colour")
    assert code == 2
    assert "cannot group on 'colour'" in out
    code, out = run("--config", config, "costs", "--since", "yesterday-ish")
    assert code == 2
    assert "not a time" in out


def test_costs_with_the_ledger_off_says_so(tmp_path: Path) -> None:
    path = tmp_path / "plugins.toml"
    path.write_text("ledger = false\n")
    code, out = run("--config", str(path), "costs")
    assert code == 1
    assert "the ledger is off" in out
