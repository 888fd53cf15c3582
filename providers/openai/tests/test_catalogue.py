"""The models as data, the `[plugins.openai]` settings, and what the CLI shows about them."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from layer_openai import OpenAIProvider
from layer_openai.testing import PNG_B64, ROUTE, images_api, serving

from layer_core import ConfigError, Layer
from layer_core.cli import cli
from layer_core.testing import FakeServer, Recorded, Reply

MODELS = (
    "dall-e-2",
    "dall-e-3",
    "gpt-image-1",
    "gpt-image-1-mini",
    "gpt-image-1.5",
    "gpt-image-2",
)
GPT_SIZES = ("1024x1024", "1536x1024", "1024x1536")


def table(square: tuple[str, str], other: tuple[str, str]) -> dict[str, Decimal]:
    """A gpt-image price table in layer's words: (standard, hd) for square and other sizes."""
    return {
        f"{quality}/{size}": Decimal(prices[i])
        for size, prices in zip(GPT_SIZES, (square, other, other), strict=True)
        for i, quality in enumerate(("standard", "hd"))
    }


READ = date(2026, 11, 23)  # when the older prices were read
REREAD = date(2026, 12, 2)  # when the catalogue was brought up to date


@pytest.mark.parametrize(
    ("model", "sizes", "qualities", "styles", "per_call", "prices", "read", "retires"),
    [
        (
            "dall-e-2",
            ("256x256", "512x512", "1024x1024"),
            (),
            (),
            10,
            {"*/256x256": "0.016", "*/512x512": "0.018", "*/1024x1024": "0.020"},
            READ,
            date(2026, 5, 12),
        ),
        (
            "dall-e-3",
            ("1024x1024", "1792x1024", "1024x1792"),
            ("standard", "hd"),
            ("vivid", "natural"),
            1,
            {
                "standard/1024x1024": "0.04",
                "standard/1792x1024": "0.08",
                "standard/1024x1792": "0.08",
                "hd/1024x1024": "0.08",
                "hd/1792x1024": "0.12",
                "hd/1024x1792": "0.12",
            },
            READ,
            date(2026, 5, 12),
        ),
        (
            "gpt-image-1",
            GPT_SIZES,
            ("standard", "hd"),
            (),
            10,
            table(("0.042", "0.167"), ("0.063", "0.25")),
            READ,
            date(2026, 10, 23),
        ),
        (
            "gpt-image-1-mini",
            GPT_SIZES,
            ("standard", "hd"),
            (),
            10,
            table(("0.011", "0.036"), ("0.015", "0.052")),
            READ,
            date(2026, 12, 1),
        ),
        (
            "gpt-image-1.5",
            GPT_SIZES,
            ("standard", "hd"),
            (),
            10,
            table(("0.034", "0.133"), ("0.050", "0.200")),
            READ,
            date(2026, 12, 1),
        ),
        (
            "gpt-image-2",
            GPT_SIZES,
            ("standard", "hd"),
            (),
            10,
            table(("0.053", "0.211"), ("0.041", "0.165")),
            REREAD,
            None,
        ),
    ],
)
def test_each_model_declares_its_sizes_parameters_prices_and_retirement(
    model: str,
    sizes: tuple[str, ...],
    qualities: tuple[str, ...],
    styles: tuple[str, ...],
    per_call: int,
    prices: dict[str, Any],
    read: date,
    retires: date | None,
) -> None:
    spec = {s.id: s for s in OpenAIProvider().models()}[model]
    assert spec.provider == "openai"
    assert spec.sizes == sizes
    assert spec.qualities == qualities
    assert spec.styles == styles
    assert spec.max_images_per_call == per_call
    assert not spec.supports_seed
    assert spec.prices == {k: Decimal(v) for k, v in prices.items()}
    assert spec.price_date == read
    assert spec.deprecated == retires


def test_the_provider_serves_the_shipped_models_and_names_its_key() -> None:
    provider = OpenAIProvider()
    assert [s.id for s in provider.models()] == list(MODELS)
    assert provider.available() == (False, "OPENAI_API_KEY is not set")


def test_without_a_key_every_model_is_unavailable_and_nothing_is_called() -> None:
    with serving(key=None) as harness:
        assert harness.layer.unavailable() == {"openai": "OPENAI_API_KEY is not set"}
        plan = harness.layer.explain("dall-e-3", {"prompt": "a fox"})
        assert plan.candidates == ()
        assert [r.reason for r in plan.rejected] == ["dall-e-3: OPENAI_API_KEY is not set"]
        assert harness.server.requests == []


def test_the_key_can_come_from_another_variable(
    layer_factory: Callable[..., Layer], fake_server: FakeServer
) -> None:
    fake_server.add("POST", ROUTE, functools.partial(images_api, key="sk-other"))
    settings = {"api_key_env": "MY_OPENAI_KEY", "base_url": f"{fake_server.url}/v1"}
    layer = layer_factory(
        {"plugins": {"openai": settings}, "ledger": False, "gates": {"g": {"model": "dall-e-2"}}},
        plugins=[OpenAIProvider()],
        load_entry_points=False,
        environ={"MY_OPENAI_KEY": "sk-other", "OPENAI_API_KEY": "sk-not-this-one"},
    )
    assert layer.unavailable() == {}
    assert len(layer.image("g", {"prompt": "a fox", "size": "256x256"}).images) == 1
    assert fake_server.requests[0].headers["authorization"] == "Bearer sk-other"
    bare = layer_factory(
        {"ledger": False}, plugins=[OpenAIProvider()], load_entry_points=False, environ={}
    )
    assert bare.unavailable() == {"openai": "OPENAI_API_KEY is not set"}


def test_models_restricts_and_orders_the_catalogue() -> None:
    with serving(models=["gpt-image-1.5", "dall-e-3"]) as harness:
        assert [s.id for s in harness.layer.models()] == ["gpt-image-1.5", "dall-e-3"]


def test_extra_models_declare_a_compatible_servers_model_as_data() -> None:
    acme = {
        "family": "dall-e-2",
        "sizes": ["512x512", "1024x1024"],
        "max_images_per_call": 4,
        "prices": {"*/*": 0.002},
        "price_date": "2026-11-01",
        "quality_score": 40,
    }
    gates = {"acme": {"model": "acme-diffusion"}}

    def compatible(request: Recorded) -> Reply:
        n = request.json()["n"]
        return Reply(json={"created": 1, "data": [{"b64_json": PNG_B64}] * n})

    with serving(
        gates, models=["acme-diffusion"], extra_models={"acme-diffusion": acme}
    ) as harness:
        harness.reply(compatible)
        response = harness.layer.image("acme", {"prompt": "a fox", "count": 6, "size": "512x512"})
        bodies = harness.bodies()
        assert [s.id for s in harness.layer.models()] == ["acme-diffusion"]
    # the core splits 6 into calls of at most 4, sent concurrently
    assert sorted(bodies, key=lambda body: body["n"]) == [
        {"model": "acme-diffusion", "prompt": "a fox", "n": n, "size": "512x512"} for n in (2, 4)
    ]
    assert response.cost_exact == Decimal("0.012")


def test_an_extra_model_can_replace_a_shipped_one() -> None:
    cheaper = {
        "family": "dall-e-3",
        "sizes": ["1024x1024"],
        "qualities": ["standard"],
        "prices": {"standard/1024x1024": 0.01},
        "price_date": "2026-11-20",
    }
    with serving(extra_models={"dall-e-3": cheaper}) as harness:
        spec = harness.layer.catalog["dall-e-3"]
    assert spec.sizes == ("1024x1024",)
    assert spec.prices == {"standard/1024x1024": Decimal("0.01")}
    assert spec.deprecated is None


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"models": ["dall-e-4"]}, "unknown model 'dall-e-4'"),
        ({"quality_map": {"standard": "ultra"}}, "quality_map.standard"),
        ({"quality_map": {"best": "high"}}, "quality_map.best"),
        ({"response_format": "png"}, "response_format"),
        (
            {
                "extra_models": {
                    "x": {
                        "family": "gpt-image",
                        "sizes": ["1024x1024"],
                        "styles": ["vivid"],
                        "prices": {"*/*": 1},
                        "price_date": "2026-11-01",
                    }
                }
            },
            "gpt-image takes no style",
        ),
        (
            {
                "extra_models": {
                    "x": {
                        "family": "dall-e-3",
                        "sizes": ["1024x1024"],
                        "max_images_per_call": 2,
                        "prices": {"*/*": 1},
                        "price_date": "2026-11-01",
                    }
                }
            },
            "at most 1 image(s) per call",
        ),
        (
            {
                "extra_models": {
                    "x": {
                        "family": "gpt-image",
                        "sizes": ["1024x1024"],
                        "qualities": ["low"],
                        "prices": {"high/*": 1},
                        "price_date": "2026-11-01",
                    }
                }
            },
            "no price for low/1024x1024",
        ),
        (
            {
                "extra_models": {
                    "x": {
                        "family": "gpt-image",
                        "sizes": ["1024x1024"],
                        "qualities": ["low"],
                        "prices": {"*/*": 1},
                        "price_date": "2026-11-01",
                    }
                }
            },
            "x: quality_map sends medium/high, which it lacks",
        ),
        ({"modles": ["dall-e-3"]}, "unknown key 'modles' (did you mean 'models'?)"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(
    settings: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError, match=r"\[plugins\.openai\]") as caught:
        Layer(
            {"plugins": {"openai": settings}, "ledger": False},
            plugins=[OpenAIProvider()],
            load_entry_points=False,
            environ={},
        )
    assert problem in str(caught.value)


def test_the_documented_settings_example_is_valid(
    tmp_path: Path, layer_factory: Callable[..., Layer]
) -> None:
    guide = Path(__file__).resolve().parents[3] / "docs" / "providers" / "openai.md"
    extra, example = re.findall(r"```toml\n(.*?)```", guide.read_text(), flags=re.S)
    config = tmp_path / "plugins.toml"
    config.write_text(f"ledger = false\n{example}")
    layer = layer_factory(config, plugins=[OpenAIProvider()], load_entry_points=False, environ={})
    assert [s.id for s in layer.models()] == ["gpt-image-2", "sdxl-turbo"]
    assert layer.catalog["gpt-image-2"].price("standard", "1024x1024") == Decimal("0.03")
    assert layer.catalog["sdxl-turbo"].max_images_per_call == 4
    config.write_text(f"ledger = false\n{extra}")
    layer = layer_factory(config, plugins=[OpenAIProvider()], load_entry_points=False, environ={})
    declared = layer.catalog["gpt-image-2.6-flare"]
    assert declared.price("hd", "1536x1024") == Decimal("0.20")
    assert declared.deprecated is None


def test_building_a_layer_with_the_plugin_does_not_import_the_sdk() -> None:
    script = (
        "import sys, layer_openai; from layer_core import Layer; "
        "Layer({'ledger': False}, plugins=[layer_openai], load_entry_points=False); "
        "print('openai' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("OPENAI_API_KEY", "LAYER_CONFIG", "LAYER_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.output
    return result.output


def test_layer_models_lists_the_openai_models_with_sizes_and_prices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _cli(tmp_path, monkeypatch, "models", "--provider", "openai")
    assert [line.split("\t")[0] for line in out.splitlines()[1:]] == list(MODELS)
    out = "".join(_cli(tmp_path, monkeypatch, "models", model) for model in MODELS)
    for text in (
        "1792x1024",
        "1536x1024",
        "256x256",
        "standard/1024x1024 $0.04",
        "hd/1536x1024 $0.25",
    ):
        assert text in out
    assert "OPENAI_API_KEY is not set" in out
    rows = json.loads(_cli(tmp_path, monkeypatch, "models", "--provider", "openai", "--json"))
    assert [row["id"] for row in rows] == list(MODELS)
    assert {row["available"] for row in rows} == {False}
    assert rows[1]["prices"]["hd/1792x1024"] == "0.12"


def test_layer_explain_says_the_models_are_unavailable_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "plugins.toml"
    config.write_text(
        '[gates.art]\nmodel = "gpt-image-1.5"\nfallback_models = ["dall-e-3", "local"]\n'
    )
    out = _cli(tmp_path, monkeypatch, "--config", str(config), "explain", "a fox", "--gate", "art")
    assert "gpt-image-1.5: OPENAI_API_KEY is not set" in out
    assert "dall-e-3: OPENAI_API_KEY is not set" in out


def test_layer_check_warns_about_a_gate_naming_a_retired_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "plugins.toml"
    config.write_text('[gates.legacy]\nmodel = "dall-e-3"\nfallback_models = ["local"]\n')
    out = _cli(tmp_path, monkeypatch, "check", str(config))
    assert "[gates.legacy] dall-e-3 retired 2026-05-12" in out
    assert "0 error(s)" in out


@pytest.mark.parametrize(
    ("today", "shown", "not_shown"),
    [
        (date(2026, 11, 30), "retires 2026-12-01", "retired 2026-12-01"),
        (date(2026, 12, 2), "retired 2026-12-01", "retires 2026-12-01"),
    ],
)
def test_layer_models_words_retirement_dates_in_the_tense_of_the_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, today: date, shown: str, not_shown: str
) -> None:
    import layer_core.catalog

    monkeypatch.setattr(layer_core.catalog, "today", lambda: today)
    out = _cli(tmp_path, monkeypatch, "models", "--provider", "openai")
    assert shown in out
    assert not_shown not in out
    assert "retired 2026-05-12" in out  # dall-e-2 and -3 either way
    assert "retires 2026-05-12" not in out
