"""plugins.toml: resolution order, and errors that name the key, the table and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from layer_core import ConfigError, Layer
from layer_core.config import load_config
from layer_core.testing import ScriptedProvider, make_spec, plugin_for


def test_an_unknown_gate_key_names_the_key_the_gate_and_a_suggestion() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"gates": {"marketing": {"model": "m", "fallback_model": ["x"]}}})
    assert "[gates.marketing]" in str(caught.value)
    assert "unknown key 'fallback_model' (did you mean 'fallback_models'?)" in str(caught.value)


def test_a_bad_gate_value_names_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"gates": {"g": {"model": "m", "routing_strategy": "cheapest"}}})
    assert "[gates.g] routing_strategy:" in str(caught.value)
    assert "'cost'" in str(caught.value)


def test_fallback_on_rejects_unknown_error_kinds() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"gates": {"g": {"model": "m", "fallback_on": ["rate_limit"]}}})
    assert "'rate_limit' is not an error kind" in str(caught.value)


def test_a_gate_needs_a_pool() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"gates": {"empty": {"routing_strategy": "cost"}}})
    assert "[gates.empty]" in str(caught.value)
    assert "fallback_models" in str(caught.value)


def test_an_unknown_top_level_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"gate": {}})
    assert "unknown key 'gate' (did you mean 'gates'?)" in str(caught.value)


def test_an_unknown_plugin_setting_names_the_plugin_table() -> None:
    acme = ScriptedProvider("acme", [make_spec("a", "acme")])
    with pytest.raises(ConfigError) as caught:
        Layer(
            {"plugins": {"acme": {"base_uri": "http://127.0.0.1:1"}}},
            plugins=[plugin_for(acme)],
            load_entry_points=False,
        )
    assert "[plugins.acme] unknown key 'base_uri' (did you mean 'base_url'?)" in str(caught.value)


def test_invalid_toml_says_where(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[gates.g\nmodel = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(path)


def test_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config(None).source == "built-in"
    user = tmp_path / "config" / "layer" / "plugins.toml"
    user.parent.mkdir(parents=True)
    user.write_text('[gates.u]\nmodel = "m"\n')
    assert load_config(None).source == str(user)
    Path("plugins.toml").write_text('[gates.here]\nmodel = "m"\n')
    assert list(load_config(None).gates) == ["here"]
    env = tmp_path / "env.toml"
    env.write_text('[gates.env]\nmodel = "m"\n')
    monkeypatch.setenv("LAYER_CONFIG", str(env))
    assert list(load_config(None).gates) == ["env"]
    assert list(load_config({"gates": {"d": {"model": "m"}}}).gates) == ["d"]


def test_the_key_comes_from_the_environment_and_never_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    acme = ScriptedProvider("acme", [make_spec("a", "acme")], key_env_var="ACME_API_KEY")
    layer = Layer({"ledger": False}, plugins=[plugin_for(acme)], load_entry_points=False)
    assert layer.unavailable() == {"acme": "ACME_API_KEY is not set"}
    monkeypatch.setenv("ACME_API_KEY", "k-very-secret-1234")
    acme2 = ScriptedProvider("acme", [make_spec("a", "acme")], key_env_var="ACME_API_KEY")
    layer = Layer({"ledger": False}, plugins=[plugin_for(acme2)], load_entry_points=False)
    assert layer.unavailable() == {}
    assert acme2.api_key() == "k-very-secret-1234"
    for text in (repr(acme2), repr(acme2.settings), str(acme2.settings.model_dump()), repr(layer)):
        assert "k-very-secret-1234" not in text


def test_api_key_env_renames_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    acme = ScriptedProvider("acme", [make_spec("a", "acme")], key_env_var="ACME_API_KEY")
    layer = Layer(
        {"plugins": {"acme": {"api_key_env": "TEAM_ACME_KEY"}}},
        plugins=[plugin_for(acme)],
        load_entry_points=False,
    )
    assert layer.unavailable() == {"acme": "TEAM_ACME_KEY is not set"}


def test_plugins_toml_overrides_a_price() -> None:
    acme = ScriptedProvider("acme", [make_spec("a", "acme", price="0.04")])
    layer = Layer(
        {"plugins": {"acme": {"prices": {"a": {"*/1024x1024": 0.05}}}}},
        plugins=[plugin_for(acme)],
        load_entry_points=False,
    )
    spec = layer.catalog["a"]
    assert str(spec.price(None, "1024x1024")) == "0.05"
    assert str(spec.price(None, "512x512")) == "0.04"


def test_the_built_in_default_gate_covers_every_model_placeholders_last() -> None:
    acme = ScriptedProvider(
        "acme",
        [
            make_spec("stand-in", "acme", placeholder=True, quality_score=0, price=0),
            make_spec("good", "acme", quality_score=70),
            make_spec("better", "acme", quality_score=90),
        ],
    )
    layer = Layer(None, plugins=[plugin_for(acme)], load_entry_points=False)
    plan = layer.explain(data={"prompt": "p"})
    assert [c.id for c in plan.candidates] == ["better", "good", "stand-in"]


def test_the_demo_config_at_the_repo_root_is_valid() -> None:
    root = Path(__file__).resolve().parents[1]
    config = load_config(root / "plugins.toml")
    gate = config.gates["default"]
    assert gate.pool[-1] == "local"


def test_provider_specific_settings_reach_each_call_as_options() -> None:
    """The old contract (`Settings = X`, reading `call.options`) still works, and says so."""
    from layer_core import ProviderSettings

    class AcmeSettings(ProviderSettings):
        region: str = "eu"

    with pytest.warns(DeprecationWarning, match=r"Provider\[AcmeSettings\]"):

        class Acme(ScriptedProvider):
            Settings = AcmeSettings

    acme = Acme("acme", [make_spec("a", "acme")])
    layer = Layer(
        {"plugins": {"acme": {"region": "us"}}, "gates": {"g": {"model": "a"}}},
        plugins=[plugin_for(acme)],
        load_entry_points=False,
    )
    layer.image("g", {"prompt": "p"})
    with pytest.warns(DeprecationWarning, match="options"):
        assert acme.calls[0].options == {"region": "us"}
    assert isinstance(acme.settings, AcmeSettings)
