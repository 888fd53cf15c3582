"""The `layer` command, run in-process against the installed plugins (the local provider)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from layer_core.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "plugins.toml")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_image_writes_pngs_of_the_requested_size_and_a_results_line(tmp_path: Path) -> None:
    code, out = run(
        "image",
        "A cozy coffee shop interior",
        "--size",
        "1792x1024",
        "--count",
        "2",
        "--seed",
        "7",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 0, out
    files = sorted((tmp_path / "out").glob("*.png"))
    assert len(files) == 2
    for file in files:
        with Image.open(file) as image:
            assert image.format == "PNG"
            assert image.size == (1792, 1024)
    (line,) = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["status"] == "ok"
    assert sorted(record["files"]) == [f.name for f in files]
    assert [i["seed"] for i in record["images"]] == [7, 8]
    assert record["cost"] == "0"
    assert "local" in out
    assert "total $0" in out
    assert "placeholders from the local provider" in out


def test_image_says_which_variable_to_set_when_providers_lack_keys(tmp_path: Path) -> None:
    from layer_core import Layer
    from layer_core.cli import _placeholder_note
    from layer_core.testing import ScriptedProvider, make_spec, plugin_for

    keyed = ScriptedProvider("acme", [make_spec("a", "acme")], key_env_var="ACME_API_KEY")
    layer = Layer({"ledger": False}, plugins=[plugin_for(keyed)], load_entry_points=False)
    assert "Set ACME_API_KEY (acme)" in _placeholder_note(layer)


def test_the_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    for name in ("a", "b"):
        code, out = run("image", "same", "--seed", "3", "--out", str(tmp_path / name))
        assert code == 0, out
    (a,), (b,) = (tmp_path / "a").glob("*.png"), (tmp_path / "b").glob("*.png")
    assert a.read_bytes() == b.read_bytes()


def test_bad_input_exits_2_naming_the_field(tmp_path: Path) -> None:
    code, out = run("image", "   ", "--out", str(tmp_path))
    assert code == 2
    assert "data.prompt" in out
    assert "empty" in out
    assert not list(tmp_path.glob("*.png"))


def test_explain_lists_candidates_with_costs_and_every_rejection() -> None:
    code, out = run(
        "--config", DEMO, "explain", "a prompt", "--gate", "default", "--size", "512x512"
    )
    assert code == 0, out
    from layer_core import Layer

    layer = Layer(DEMO)
    plan = layer.explain("default", {"prompt": "a prompt", "size": "512x512"})
    rows = [line.split("\t") for line in out.splitlines() if "\t" in line]
    assert rows[0] == ["#", "model", "provider", "per image", "estimate", "notes"]
    assert [row[:2] for row in rows[1:]] == [
        [str(number), c.id] for number, c in enumerate(plan.candidates, 1)
    ]
    for rejection in plan.rejected:
        assert rejection.reason in out
    assert len(plan.candidates) + len(plan.rejected) == len(layer.gates()["default"].pool)
    assert plan.candidates[-1].id == "local"


def test_explain_json() -> None:
    code, out = run("explain", "a prompt", "--json", "--count", "3")
    assert code == 0, out
    plan = json.loads(out)
    assert plan["count"] == 3
    assert plan["candidates"][0]["model"] == "local"
    assert plan["candidates"][0]["estimated_cost"] == "0"


def test_models_lists_the_models_and_models_id_their_sizes_and_prices() -> None:
    code, out = run("models")
    assert code == 0, out
    assert "local\tlocal\t$0\tavailable" in out.splitlines()
    code, out = run("models", "local")
    assert code == 0, out
    assert "sizes\t256x256, 512x512, 1024x1024, 1792x1024, 1024x1792" in out
    assert "prices\t*/* $0" in out.splitlines()
    code, out = run("models", "--json")
    specs = {spec["id"]: spec for spec in json.loads(out)}  # other installed plugins may list more
    assert specs["local"]["available"] is True


def test_plugins_lists_the_local_plugin() -> None:
    code, out = run("plugins", "--json")
    assert code == 0, out
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["local"]["status"] == "ok"
    assert rows["local"]["distribution"] == "layer-core"
    assert rows["local"]["providers"] == ["local"]


def test_gates_lists_the_demo_gates() -> None:
    code, out = run("--config", DEMO, "gates")
    assert code == 0, out
    assert "default" in out
    assert "cost" in out
    assert "flux-schnell" in out


def test_check_accepts_the_demo_config() -> None:
    code, out = run("check", DEMO)
    assert code == 0, out
    assert "0 error(s)" in out


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[gates.g]\nmodel = "nope"\n', "[gates.g] model: unknown model 'nope'"),
        (
            '[gates.g]\nmodel = "local"\nmax_cost_per_image = -1\n',
            "[gates.g] max_cost_per_image: Input should be greater than or equal to 0",
        ),
        (
            '[gates.g]\nmodel = "local"\nmodle = "x"\n',
            "unknown key 'modle' (did you mean 'model'?)",
        ),
    ],
)
def test_check_reports_what_is_wrong(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "plugins.toml"
    path.write_text(toml)
    code, out = run("check", str(path))
    assert code != 0
    assert expected in out.replace("\n", " ") or expected in out
