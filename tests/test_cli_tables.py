"""The CLI's tables at 80 columns, on a terminal and piped.

On a terminal, ids, sizes, prices and paths are never cut ("…") or broken across lines, and
`layer models` fits 80 columns (`layer models ID` has the details). Piped, every table is plain:
the column names, then one tab-separated line per record; no box drawing, colour or wrapping.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.cells import cell_len

from layer_core import Layer
from layer_core.catalog import ModelSpec
from layer_core.cli import cli
from layer_core.testing import ScriptedProvider, make_spec
from tests.helpers import layer_with

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BOX_DRAWING = re.compile("[\u2500-\u257f]")
KEYS = {"OPENAI_API_KEY": "sk-test", "REPLICATE_API_TOKEN": "r8_test", "STABILITY_API_KEY": "sk-t"}
LONG_ID = "a-request-id-long-enough-to-be-cut-in-a-table-at-80-columns"


def terminal(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`layer ARGS` as on an 80-column terminal; its stdout without colour codes."""
    result = CliRunner().invoke(
        cli,
        list(args),
        env={"COLUMNS": "80", "TTY_COMPATIBLE": "1", "FORCE_COLOR": "1", **(env or {})},
    )
    lines = [ANSI.sub("", line).rstrip() for line in result.stdout.splitlines()]
    return result.exit_code, "\n".join(lines)


def piped(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`layer ARGS` with stdout not a terminal (as `| grep`), 80 columns wide."""
    result = CliRunner().invoke(
        cli,
        list(args),
        env={"COLUMNS": "80", "TTY_COMPATIBLE": None, "FORCE_COLOR": None, **(env or {})},
    )
    return result.exit_code, result.stdout


def whole(value: str, out: str) -> bool:
    """`value` appears in `out` uncut and on one line, between spaces or line ends."""
    return re.search(rf"(?<!\S){re.escape(value)}(?!\S)", out) is not None


def records(out: str) -> list[list[str]]:
    """Plain output, checked to be plain, split into tab-separated fields."""
    assert not BOX_DRAWING.search(out), out
    assert not ANSI.search(out), out
    assert "…" not in out
    return [line.split("\t") for line in out.splitlines()]


def money(amount: Decimal) -> str:
    return f"${amount.normalize():f}" if amount else "$0"


def price_range(spec: ModelSpec) -> str:
    low, high = min(spec.prices.values()), max(spec.prices.values())
    return money(low) if low == high else f"{money(low)}-{money(high)}"


def catalogue() -> list[ModelSpec]:
    return Layer().models()


def assert_models_table(out: str) -> None:
    """No line over 80 columns; each model on a line with its id, provider and prices whole."""
    lines = out.splitlines()
    assert "…" not in out
    assert max(cell_len(line.rstrip()) for line in lines) <= 80, out
    starts = {tuple(line.split()[:3]) for line in lines if line.strip()}
    for spec in catalogue():
        assert (spec.id, spec.provider, price_range(spec)) in starts, (spec.id, out)


def test_layer_models_fits_80_columns_with_every_id_and_price_whole() -> None:
    code, out = terminal("models")
    assert code == 0, out
    assert_models_table(out)


def test_layer_models_piped_is_one_plain_line_per_model() -> None:
    code, out = piped("models")
    assert code == 0, out
    header, *rows = records(out)
    assert header == ["model", "provider", "per image", "status"]
    specs = catalogue()
    assert [row[:3] for row in rows] == [[s.id, s.provider, price_range(s)] for s in specs]
    (line,) = [line for line in out.splitlines() if "dall-e-3" in line]  # | grep dall-e-3
    assert line.startswith("dall-e-3\topenai\t")
    assert "OPENAI_API_KEY is not set" in line


def test_layer_models_on_a_real_80_column_terminal_and_a_real_pipe() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("COLUMNS", "LINES", "TTY_COMPATIBLE", "FORCE_COLOR", "NO_COLOR")
    }
    command = [sys.executable, "-m", "layer_core", "models"]
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=child, stderr=child, env={**env, "TERM": "xterm"}
    )
    os.close(child)
    output = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child's end closed
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    assert process.wait(timeout=60) == 0, output
    assert_models_table(ANSI.sub("", output.decode().replace("\r\n", "\n")))

    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=True)
    _, *rows = records(done.stdout)
    assert [row[0] for row in rows] == [s.id for s in catalogue()]
    assert [line for line in done.stdout.splitlines() if "dall-e-3" in line] == [
        "\t".join(row) for row in rows if row[0] == "dall-e-3"
    ]


@pytest.mark.parametrize("run", [terminal, piped], ids=["terminal", "piped"])
def test_layer_models_id_shows_the_model_in_full(run: Callable[..., tuple[int, str]]) -> None:
    layer = Layer()
    for name in ("dall-e-3", "black-forest-labs/flux-schnell", "local"):
        spec = layer.catalog[name]
        code, out = run("models", name)
        assert code == 0, out
        assert "…" not in out
        assert re.search(rf"^id\s+{re.escape(spec.id)}$", out, re.M), out
        for size in spec.sizes:
            assert whole(size, out.replace(",", " ").replace("(", " ")), (size, out)
        for size, delivered in spec.delivered.items():
            assert f"{size} (delivers {delivered})" in out
        for key, price in spec.prices.items():
            assert f"{key} {money(price)}" in out
        assert whole(spec.price_date.isoformat(), out)
        assert re.search(rf"^max_images_per_call\s+{spec.max_images_per_call}$", out, re.M)
        assert re.search(rf"^supports_seed\s+{'yes' if spec.supports_seed else 'no'}$", out, re.M)
    code, out = run("models", "dall-e-3", "--json")
    assert code == 0, out
    spec = layer.catalog["dall-e-3"]
    assert json.loads(out) == {
        **spec.model_dump(mode="json"),
        "available": False,
        "deployments": [
            {
                "deployment": "dall-e-3@openai",
                "instance": "openai",
                "weight": 1.0,
                "available": False,
                "prices": {key: str(price) for key, price in spec.prices.items()},
            }
        ],
    }


def test_layer_models_id_piped_is_one_field_per_line() -> None:
    code, out = piped("models", "dall-e-3")
    assert code == 0, out
    fields = dict(records(out))  # every line is exactly "field<TAB>value"
    spec = Layer().catalog["dall-e-3"]
    assert fields["provider"] == "openai"
    assert fields["sizes"] == ", ".join(spec.sizes)
    assert fields["prices"] == ", ".join(f"{k} {money(v)}" for k, v in spec.prices.items())
    assert fields["price_date"] == spec.price_date.isoformat()
    assert fields["status"].startswith("OPENAI_API_KEY is not set")


def test_an_unknown_model_id_exits_2_with_a_suggestion() -> None:
    result = CliRunner().invoke(cli, ["models", "dall-e3"], env={"COLUMNS": "80"})
    assert result.exit_code == 2
    assert "unknown model 'dall-e3'; did you mean 'dall-e-3'" in result.output
    assert result.stdout == ""


def test_layer_image_prints_every_file_path_whole(tmp_path: Path) -> None:
    out = tmp_path / "a" / "folder" / "deep" / "enough" / "that" / "paths" / "exceed" / "eighty"
    code, text = terminal(
        "image", "a fox", "--count", "2", "--size", "1792x1024", "--out", str(out)
    )
    assert code == 0, text
    files = sorted(out.glob("*.png"))
    assert len(files) == 2
    assert "…" not in text
    for file in files:
        line = next(line for line in text.splitlines() if whole(str(file), line))
        assert line.split()[1:3] == ["local", "1792x1024"]
    assert f"gallery: {out / 'index.html'}" in text.splitlines()

    out = out.with_name("piped")
    code, text = piped("image", "a fox", "--count", "2", "--size", "1792x1024", "--out", str(out))
    assert code == 0, text
    header, *rows = records(text.split("total ")[0])
    assert header == ["file", "model", "size", "seed", "cost"]
    assert sorted(row[:3] for row in rows) == [
        [str(f), "local", "1792x1024"] for f in sorted(out.glob("*.png"))
    ]
    assert whole(str(out / "index.html"), text)


def gates_config(tmp_path: Path) -> str:
    path = tmp_path / "plugins.toml"
    path.write_text(
        "[gates.a-gate-whose-name-is-rather-long]\n"
        'routing_strategy = "cost"\n'
        'model = "stable-diffusion-xl-1024-v1-0"\n'
        'fallback_models = ["black-forest-labs/flux-1.1-pro", "local"]\n'
        'defaults = { size = "1024x1024", style = "natural" }\n'
        "max_cost_per_image = 0.05\n"
        'budget = { amount = 12.5, period = "monthly" }\n'
    )
    return str(path)


def test_layer_gates_keeps_ids_whole(tmp_path: Path) -> None:
    config = gates_config(tmp_path)
    code, out = terminal("-c", config, "gates")
    assert code == 0, out
    assert "…" not in out
    for value in (
        "a-gate-whose-name-is-rather-long",
        "stable-diffusion-xl-1024-v1-0",
        "black-forest-labs/flux-1.1-pro",
        "size=1024x1024",
        "style=natural",
    ):
        assert whole(value, out), (value, out)
    assert f"gates (config: {config})" in out.splitlines()
    code, out = piped("-c", config, "gates")
    rows = {row[0]: row for row in records(out)}
    assert rows["gate"] == ["gate", "strategy", "pool", "defaults", "limits"]
    gate = rows["a-gate-whose-name-is-rather-long"]
    assert gate[2] == "stable-diffusion-xl-1024-v1-0, black-forest-labs/flux-1.1-pro, local"
    assert gate[3] == "size=1024x1024, style=natural"


def test_layer_explain_keeps_ids_and_prices_whole(tmp_path: Path) -> None:
    config = gates_config(tmp_path)
    args = ("-c", config, "explain", "a fox", "-g", "a-gate-whose-name-is-rather-long")
    plan = Layer(config, environ=KEYS).explain("a-gate-whose-name-is-rather-long", {"prompt": "x"})
    assert len(plan.candidates) == 3
    code, out = terminal(*args, env=KEYS)
    assert code == 0, out
    assert "…" not in out
    for c in plan.candidates:
        line = next(line for line in out.splitlines() if whole(c.id, line))
        assert line.split()[2] == c.model.provider
        assert whole(money(c.price), line)
    code, out = piped(*args, env=KEYS)
    rows = [row for row in records(out) if len(row) == 6]
    assert [row[1:3] for row in rows[1:]] == [[c.id, c.model.provider] for c in plan.candidates]


def test_layer_plugins_keeps_names_whole() -> None:
    infos = Layer().plugins()
    code, out = terminal("plugins")
    assert code == 0, out
    assert "…" not in out
    assert max(cell_len(line.rstrip()) for line in out.splitlines()) <= 80, out
    for info in infos:
        line = next(line for line in out.splitlines() if line.split()[:1] == [info.name])
        assert line.split()[1:4] == [info.distribution, info.version, info.status]
    code, out = piped("plugins")
    header, *rows = records(out)
    assert header[:4] == ["plugin", "distribution", "version", "status"]
    assert [row[:4] for row in rows] == [
        [i.name, i.distribution, i.version, i.status] for i in infos
    ]


def test_layer_costs_keeps_groups_and_amounts_whole(tmp_path: Path) -> None:
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    model = "a-model-whose-id-is-long-enough-to-be-cut"
    provider = "a-provider-with-a-long-name"
    studio = ScriptedProvider(provider, [make_spec(model, provider, price="0.0125")])
    gate = "a-gate-whose-name-is-rather-long"
    with layer_with(studio, gates={gate: {"model": model}}, ledger=ledger) as layer:
        for feature in ("landing-page-hero-images", "newsletter-thumbnails"):
            layer.image(gate, {"prompt": "p", "count": 3}, metadata={"feature": feature})
    config = tmp_path / "plugins.toml"
    config.write_text(f'ledger = "{ledger}"\n')
    args = ("-c", str(config), "costs", "--by", "gate", "--by", "model", "--by", "meta.feature")
    code, out = terminal(*args)
    assert code == 0, out
    assert "…" not in out
    for feature in ("landing-page-hero-images", "newsletter-thumbnails"):
        line = next(line for line in out.splitlines() if whole(feature, line))
        assert line.split() == [gate, model, feature, "1", "3", "$0.0375"]
    assert out.splitlines()[-1].split() == ["total", "2", "6", "$0.075"]
    code, out = piped(*args)
    assert records(out) == [
        ["gate", "model", "meta.feature", "requests", "images", "cost"],
        [gate, model, "landing-page-hero-images", "1", "3", "$0.0375"],
        [gate, model, "newsletter-thumbnails", "1", "3", "$0.0375"],
        ["total", "", "", "2", "6", "$0.075"],
    ]


def test_layer_batch_summary_and_failures_keep_ids_whole(tmp_path: Path) -> None:
    file = tmp_path / "requests.jsonl"
    file.write_text(
        f'{{"id": "{LONG_ID}", "data": {{"prompt": "a fox", "size": "3x3"}}}}\n'
        '{"id": "fine", "data": {"prompt": "an owl"}}\n'
    )
    code, out = terminal("batch", str(file), "--size", "256x256", "-o", str(tmp_path / "t"))
    assert code == 1, out
    assert "…" not in out
    assert whole(LONG_ID, out)
    assert whole("InvalidRequest:", out)
    assert re.search(r"^succeeded now\s+1$", out, re.M)
    assert whole(str(tmp_path / "t" / "results.jsonl"), out)

    code, out = piped("batch", str(file), "--size", "256x256", "-o", str(tmp_path / "p"))
    assert code == 1, out
    lines = records(out)
    assert ["succeeded now", "1"] in lines
    assert ["failed", "1"] in lines
    (failure,) = [line for line in lines if line[0] == LONG_ID]
    assert failure[1] == "a fox"
    assert failure[2].startswith("InvalidRequest: ")
    assert "data.size" in failure[2]
