"""Deployments: one model on several provider instances (accounts, keys, endpoints).

`[providers.<instance>] plugin = "..."` makes another instance of a plugin's provider with its own
settings; a pool entry `model` means every deployment of it, `model@instance` pins one. The
end-to-end tests run the real openai SDK against two fake Images APIs, one per instance.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from layer_openai.testing import KEY, ROUTE, api_error, image_file, images_api

from layer_core import ConfigError, Layer, ProviderUnavailable
from layer_core.checks import check_layer
from layer_core.testing import FakeServer, ScriptedProvider, make_spec
from layer_core.testing.fakeserver import Recorded, Reply
from tests.helpers import layer_with

EU_KEY = "sk-test-layer-openai-eu-0123456789abcdef"


def eu_images_api(request: Recorded) -> Reply:
    """The second account's endpoint: the same API, its own key."""
    return images_api(request, key=EU_KEY)


@contextmanager
def two_accounts(
    gates: dict[str, Any], **eu: Any
) -> Iterator[tuple[Layer, FakeServer, FakeServer]]:
    """A Layer with `openai` on one fake Images API and `openai-eu` on another."""
    import layer_openai

    with ExitStack() as stack:
        main = stack.enter_context(FakeServer())
        other = stack.enter_context(FakeServer())
        for server, api in ((main, images_api), (other, eu_images_api)):
            server.add("POST", ROUTE, api)
            server.add("GET", "/images/{pixels}/{name}", image_file)
        layer = Layer(
            {
                "ledger": False,
                "plugins": {"openai": {"base_url": f"{main.url}/v1"}},
                "providers": {
                    "openai-eu": {
                        "plugin": "openai",
                        "base_url": f"{other.url}/v1",
                        "api_key_env": "OPENAI_API_KEY_EU",
                        **eu,
                    }
                },
                "gates": gates,
            },
            plugins=[layer_openai],
            load_entry_points=False,
            environ={"OPENAI_API_KEY": KEY, "OPENAI_API_KEY_EU": EU_KEY},
        )
        stack.callback(layer.close)
        yield layer, main, other


def test_the_same_model_on_two_accounts_spreads_by_weight_and_each_reply_names_its_deployment() -> (
    None
):
    gates = {"g": {"model": "dall-e-3", "timeout": 30}}
    with two_accounts(gates, weight=2) as (layer, main, other):
        served = Counter(layer.image("g", {"prompt": "a fox"}).deployment for _ in range(30))
        # every request went to exactly one endpoint, with that account's key
        assert len(main.requests_to(ROUTE)) == served["dall-e-3@openai"]
        assert len(other.requests_to(ROUTE)) == served["dall-e-3@openai-eu"]
    # weight 2 against 1: the second account takes two requests in three, give or take one
    assert sum(served.values()) == 30
    assert 19 <= served["dall-e-3@openai-eu"] <= 21


def test_a_deployment_that_fails_moves_on_to_the_other_deployment_of_the_same_model() -> None:
    gates = {"g": {"model": "dall-e-3@openai", "fallback_models": ["dall-e-3"], "timeout": 30}}
    with two_accounts(gates) as (layer, main, other):
        main.add("POST", ROUTE, api_error(500, "The server had an error"))
        response = layer.image("g", {"prompt": "a fox"})
        assert len(main.requests_to(ROUTE)) == 1
        assert len(other.requests_to(ROUTE)) == 1
    assert [(a.deployment, a.provider, a.outcome) for a in response.attempts] == [
        ("dall-e-3@openai", "openai", "error"),
        ("dall-e-3@openai-eu", "openai", "ok"),
    ]
    assert response.deployment == response.images[0].deployment == "dall-e-3@openai-eu"
    assert response.provider == "openai"  # the provider is the company; the deployment the account


def test_an_instance_has_its_own_prices_and_a_pinned_deployment_is_the_only_one_tried() -> None:
    eu_prices = {"dall-e-3": {"standard/1024x1024": 0.03}}
    gates = {"eu": {"model": "dall-e-3@openai-eu", "routing_strategy": "single", "timeout": 30}}
    with two_accounts(gates, prices=eu_prices) as (layer, main, other):
        response = layer.image("eu", {"prompt": "a fox", "count": 2})
        assert not main.requests_to(ROUTE)
        assert len(other.requests_to(ROUTE)) == 2  # dall-e-3 makes one image per call
    assert response.cost_exact == Decimal("0.06")
    assert {a.deployment for a in response.attempts} == {"dall-e-3@openai-eu"}


def test_a_request_may_name_a_deployment_as_its_model_override() -> None:
    gates = {"g": {"model": "dall-e-3", "allow_overrides": True, "timeout": 30}}
    with two_accounts(gates) as (layer, main, _):
        response = layer.image("g", {"prompt": "a fox"}, model="dall-e-3@openai-eu")
        assert not main.requests_to(ROUTE)
    assert response.deployment == "dall-e-3@openai-eu"


def test_the_cost_strategy_tries_the_cheaper_deployment_first() -> None:
    eu_prices = {"dall-e-3": {"standard/1024x1024": 0.03}}
    gates = {"g": {"fallback_models": ["dall-e-3"], "routing_strategy": "cost", "timeout": 30}}
    with two_accounts(gates, prices=eu_prices) as (layer, _, _):
        plan = layer.explain("g", {"prompt": "a fox"})
    assert [(c.deployment, c.price) for c in plan.candidates] == [
        ("dall-e-3@openai-eu", Decimal("0.03")),
        ("dall-e-3@openai", Decimal("0.04")),
    ]


def test_explain_and_check_name_the_deployment_that_cannot_be_called() -> None:
    import layer_openai

    layer = Layer(
        {
            "ledger": False,
            "providers": {"openai-eu": {"plugin": "openai", "api_key_env": "OPENAI_API_KEY_EU"}},
            "gates": {"g": {"model": "dall-e-3"}},
        },
        plugins=[layer_openai],
        load_entry_points=False,
        environ={"OPENAI_API_KEY": KEY},
    )
    try:
        plan = layer.explain("g", {"prompt": "a fox"})
        findings = check_layer(layer)
        deployments = [d.key for d in layer.deployments() if d.spec.id == "dall-e-3"]
    finally:
        layer.close()
    assert [c.deployment for c in plan.candidates] == ["dall-e-3@openai"]
    assert [r.reason for r in plan.rejected] == ["dall-e-3@openai-eu: OPENAI_API_KEY_EU is not set"]
    assert deployments == ["dall-e-3@openai", "dall-e-3@openai-eu"]
    assert not [f for f in findings if "[gates.g]" in f[1] and f[0] == "error"]


def acme(script: dict[str, Any] | None = None) -> ScriptedProvider:
    return ScriptedProvider("acme", [make_spec("m", "acme", price="0.04")], script)


def test_a_scripted_instance_keeps_its_own_calls_and_follows_its_own_script() -> None:
    provider = acme({"m@acme": [ProviderUnavailable("down")]})
    layer = layer_with(
        provider,
        gates={"g": {"model": "m@acme", "fallback_models": ["m"], "retries": 0}},
        providers={"acme-2": {"plugin": "test-plugin"}},
    )
    with layer:
        response = layer.image("g", {"prompt": "a fox"})
        second = layer.providers["acme-2"]
    assert isinstance(second, ScriptedProvider)
    assert [c.model.id for c in provider.calls] == ["m"]
    assert [c.model.id for c in second.calls] == ["m"]
    assert [a.deployment for a in response.attempts] == ["m@acme", "m@acme-2"]


@pytest.mark.parametrize(
    ("instances", "gates", "message"),
    [
        (
            {"acme-2": {"base_url": "http://127.0.0.1:9"}},
            {},
            r"\[providers\.acme-2\]: plugin is missing; .*plugin = \"openai\"",
        ),
        (
            {"acme-2": {"plugin": "test-plugn"}},
            {},
            r"\[providers\.acme-2\]: plugin 'test-plugn' is not installed; "
            r"did you mean 'test-plugin'",
        ),
        (
            {"acme": {"plugin": "test-plugin"}},
            {},
            r"\[providers\.acme\]: 'acme' is already the name of a provider \(configure it in "
            r"\[plugins\.acme\]\)",
        ),
        (
            {"acme 2": {"plugin": "test-plugin"}},
            {},
            r"'acme 2' is not a usable instance name",
        ),
        (
            {"acme-2": {"plugin": "test-plugin", "weight": 0}},
            {},
            r"\[providers\.acme-2\] weight: .*greater than 0",
        ),
        (
            {},
            {"g": {"model": "m@acme-3"}},
            r"\[gates\.g\] model: 'm@acme-3': no provider instance 'acme-3'; did you mean 'acme'",
        ),
        (
            {"acme-2": {"plugin": "test-plugin"}},
            {"g": {"model": "n@acme-2"}},
            r"'n@acme-2': unknown model 'n'",
        ),
    ],
)
def test_a_bad_deployment_config_is_an_error_naming_the_table_and_the_fix(
    instances: dict[str, Any], gates: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        layer_with(acme(), gates=gates, providers=instances)


def test_costs_group_by_deployment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    provider = acme()
    layer = layer_with(
        provider,
        gates={"g": {"model": "m"}, "two": {"model": "m@acme-2"}},
        providers={"acme-2": {"plugin": "test-plugin", "prices": {"m": {"*/*": 0.02}}}},
        ledger=url,
    )
    with layer:
        layer.image("g", {"prompt": "a fox"})  # weights equal: the first request leads on acme
        layer.image("two", {"prompt": "a fox", "count": 2})
        report = layer.costs(by="deployment")
    assert {row.group["deployment"]: (row.images, row.cost) for row in report.rows} == {
        "m@acme": (1, Decimal("0.04")),
        "m@acme-2": (2, Decimal("0.04")),
    }


def test_a_ledger_from_before_deployments_is_upgraded_in_place(ledger_url: str) -> None:
    from sqlalchemy import create_engine, text

    from layer_core.ledger.store import SCHEMA_VERSION

    with layer_with(acme(), gates={"g": {"model": "m"}}, ledger=ledger_url) as layer:
        layer.image("g", {"prompt": "a fox"})  # a record, then the schema as version 1 left it
    engine = create_engine(ledger_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE layer_requests SET deployment = NULL"))
            conn.execute(text("ALTER TABLE layer_requests DROP COLUMN deployment"))
            conn.execute(text("DROP TABLE layer_keys"))  # and what later versions added
            conn.execute(text("DROP TABLE layer_key_minutes"))
            conn.execute(text("ALTER TABLE layer_requests DROP COLUMN key_name"))
            conn.execute(text("UPDATE layer_schema SET version = 1"))
        with layer_with(acme(), gates={"g": {"model": "m"}}, ledger=ledger_url) as layer:
            layer.image("g", {"prompt": "a fox"})
            report = layer.costs(by="deployment")
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version FROM layer_schema")).scalar()
        assert version == SCHEMA_VERSION
    finally:
        engine.dispose()
    assert {row.group["deployment"]: row.requests for row in report.rows} == {
        None: 1,  # recorded before deployments: its provider column still says who served it
        "m@acme": 1,
    }


def test_the_cli_lists_explains_and_groups_costs_by_deployment(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from layer_core.cli import cli

    config = tmp_path / "plugins.toml"
    config.write_text(
        f"""
ledger = "sqlite:///{tmp_path / "ledger.sqlite"}"
[plugins]
load = ["openai", "local"]
[providers.openai-eu]
plugin = "openai"
api_key_env = "OPENAI_API_KEY_EU"
[gates.g]
model = "dall-e-3"
fallback_models = ["local"]
"""
    )
    env = {
        "LAYER_CONFIG": str(config),
        "OPENAI_API_KEY": KEY,
        "OPENAI_API_KEY_EU": "",
        "COLUMNS": "100",
    }

    def layer(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.stdout

    models = layer("models", "--provider", "openai-eu")
    assert "dall-e-3@openai-eu\topenai\t" in models
    assert "OPENAI_API_KEY_EU is not set" in models
    assert "gpt-image-2@openai\t" not in models  # --provider openai-eu: that instance alone
    explained = layer("explain", "--gate", "g", "a fox")
    assert "dall-e-3@openai\t" in explained
    assert "dall-e-3@openai-eu: OPENAI_API_KEY_EU is not set" in explained
    assert json.loads(layer("models", "dall-e-3", "--json"))["deployments"][1] == {
        "deployment": "dall-e-3@openai-eu",
        "instance": "openai-eu",
        "weight": 1.0,
        "available": False,
        "prices": json.loads(layer("models", "dall-e-3", "--json"))["deployments"][0]["prices"],
    }
    assert "deployment" in layer("costs", "--by", "deployment")
