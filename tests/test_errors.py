"""Errors that say the fix: unknown models and plugins, bad metadata and seeds, a closed Layer."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from layer_core import (
    ConfigError,
    InvalidRequest,
    Layer,
    LayerClosed,
    NoEligibleModel,
    UnknownModel,
)
from layer_core.errors import did_you_mean
from layer_core.testing import ScriptedProvider, make_spec, plugin_for
from tests.helpers import layer_with


@pytest.fixture
def acme() -> ScriptedProvider:
    return ScriptedProvider("acme", [make_spec("acme-1", "acme"), make_spec("acme-fast", "acme")])


def test_did_you_mean_names_the_closest_or_nothing() -> None:
    assert (
        did_you_mean("flux-shnell", ["flux-schnell", "flux-dev"]) == "did you mean 'flux-schnell'?"
    )
    two = did_you_mean("dall-e-9", ["dall-e-2", "dall-e-3", "local"], n=2)
    assert two in (
        "did you mean 'dall-e-2' or 'dall-e-3'?",
        "did you mean 'dall-e-3' or 'dall-e-2'?",
    )
    assert did_you_mean("zzz", ["local"]) == ""
    assert did_you_mean("nope", ["openai", "local"]) == ""  # sharing letters is not a typo


# --- a gate naming a model ---------------------------------------------------------------


def test_a_typo_in_a_gate_is_an_error_at_load_with_the_right_name(acme: ScriptedProvider) -> None:
    gates = {"g": {"model": "acme-1", "fallback_models": ["acme-fsat", "local"]}}
    with pytest.raises(ConfigError) as caught:
        layer_with(acme, gates=gates)
    assert str(caught.value) == (
        "dict: [gates.g] fallback_models: unknown model 'acme-fsat'; did you mean 'acme-fast'?"
    )
    assert acme.calls == []


def test_a_typo_of_a_shipped_model_is_caught_even_when_its_plugin_is_not_loaded() -> None:
    local = ScriptedProvider("local", [make_spec("local", "local")])
    with pytest.raises(
        ConfigError, match="unknown model 'flux-shnell'; did you mean 'flux-schnell'"
    ):
        layer_with(local, gates={"g": {"model": "flux-shnell", "fallback_models": ["local"]}})
    assert local.calls == []


def test_every_unknown_model_is_reported_at_once(acme: ScriptedProvider) -> None:
    gates = {"a": {"model": "acme-2"}, "b": {"model": "acme-1", "fallback_models": ["nothing"]}}
    with pytest.raises(ConfigError) as caught:
        layer_with(acme, gates=gates)
    lines = str(caught.value).splitlines()
    assert lines == [
        "dict: [gates.a] model: unknown model 'acme-2'; did you mean 'acme-1'?",
        "dict: [gates.b] fallback_models: unknown model 'nothing'; no installed plugin declares "
        "it (`layer models` lists the models)",
    ]


def test_a_model_of_a_shipped_plugin_that_is_not_loaded_is_no_error_and_says_why(
    acme: ScriptedProvider,
) -> None:
    gates = {
        "g": {"model": "acme-1", "fallback_models": ["dall-e-3", "black-forest-labs/flux-dev"]}
    }
    layer = layer_with(acme, gates=gates)  # entry points not loaded: openai, replicate are not
    rejected = {r.model: r.reason for r in layer.explain("g", {"prompt": "p"}).rejected}
    assert rejected == {
        "dall-e-3": "dall-e-3: plugin 'openai' is installed but not loaded",
        "black-forest-labs/flux-dev": (
            "black-forest-labs/flux-dev: plugin 'replicate' is installed but not loaded"
        ),
    }


def test_a_disabled_plugin_is_called_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYER_PLUGINS", "local")
    layer = Layer(
        {"ledger": False, "gates": {"g": {"model": "dall-e-3", "fallback_models": ["local"]}}}
    )
    (rejection,) = layer.explain("g", {"prompt": "p"}).rejected
    assert rejection.reason == "dall-e-3: plugin 'openai' is disabled (not in LAYER_PLUGINS)"
    with pytest.raises(UnknownModel) as caught:
        layer.explain("default", {"prompt": "p"}, model="flux-schnell")
    assert str(caught.value) == (
        "model: 'flux-schnell' is not in the catalogue: "
        "plugin 'replicate' is disabled (not in LAYER_PLUGINS)"
    )


def test_the_config_load_list_is_named_as_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "plugins.toml"
    path.write_text(
        '[plugins]\nload = ["local"]\n[gates.g]\nfallback_models = ["gpt-image-1", "local"]\n'
    )
    layer = Layer(path)
    reasons = [r.reason for r in layer.explain("g", {"prompt": "p"}).rejected]
    assert reasons == [
        f"gpt-image-1: plugin 'openai' is disabled (not in [plugins] load of {path})"
    ]


def test_a_name_close_to_none_passes_while_a_plugin_that_could_declare_it_did_not_load(
    acme: ScriptedProvider,
) -> None:
    from layer_core import hookimpl

    class Broken:  # a plugin that fails to register: what it would declare is unknown
        __name__ = "zeta"

        @hookimpl
        def register_providers(self, register: Any) -> None:
            raise RuntimeError("boom")

    layer = Layer(
        {"ledger": False, "gates": {"g": {"model": "acme-1", "fallback_models": ["zeta-xl"]}}},
        plugins=[plugin_for(acme), Broken()],
        load_entry_points=False,
    )
    (rejection,) = layer.explain("g", {"prompt": "p"}).rejected
    assert rejection.reason == "zeta-xl: no loaded plugin declares it (zeta did not load)"


def test_a_typo_stops_the_load_and_the_right_name_routes_past_its_missing_plugin() -> None:
    """A typo never leaves the gate to fall silently to `local`; the right name, its plugin not
    loaded, is rejected with the reason and the rest of the pool serves."""
    local = ScriptedProvider("local", [make_spec("local", "local")])
    with pytest.raises(ConfigError):
        layer_with(local, gates={"default": {"model": "flux-shnell", "fallback_models": ["local"]}})
    layer = layer_with(
        local, gates={"default": {"model": "flux-schnell", "fallback_models": ["local"]}}
    )
    plan = layer.explain("default", {"prompt": "p"})
    assert [c.id for c in plan.candidates] == ["local"]
    assert plan.rejected[0].reason.startswith("flux-schnell: plugin 'replicate'")


def test_no_eligible_model_still_lists_a_shipped_model_of_a_plugin_not_loaded(
    acme: ScriptedProvider,
) -> None:
    layer = layer_with(acme, gates={"g": {"model": "sd3.5-large", "routing_strategy": "single"}})
    with pytest.raises(NoEligibleModel, match=r"sd3\.5-large: plugin 'stability'"):
        layer.image("g", {"prompt": "p"})
    assert acme.calls == []


# --- plugins named in LAYER_PLUGINS or [plugins] load -----------------------------------------


def test_an_unknown_plugin_in_layer_plugins_is_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LAYER_PLUGINS", "local,opnai")
    with caplog.at_level(logging.WARNING, logger="layer.plugins"):
        layer = Layer({"ledger": False})
    infos = {i.name: i for i in layer.plugins()}
    assert infos["opnai"].status == "failed"
    assert infos["opnai"].error == (
        "named in LAYER_PLUGINS, but no installed plugin has that name; did you mean 'openai'?"
    )
    assert infos["openai"].status == "disabled"
    assert "plugin opnai skipped" in caplog.text


def test_an_unknown_plugin_in_the_config_load_list_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "plugins.toml"
    path.write_text('[plugins]\nload = ["local", "acme", "google"]\n')
    infos = {i.name: i for i in Layer(path).plugins()}
    assert infos["acme"].error is not None
    assert infos["acme"].error.startswith(f"named in [plugins] load of {path}, but no installed")
    assert "installed: " in infos["acme"].error  # nothing close: the installed names instead


def test_strict_plugins_makes_an_unknown_plugin_name_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    from layer_core import PluginLoadError

    monkeypatch.setenv("LAYER_PLUGINS", "locl")
    monkeypatch.setenv("LAYER_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="did you mean 'local'"):
        Layer({"ledger": False})


# --- the request ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "key", "kind"),
    [({"a": {"b": 1}}, "a", "dict"), ({"ok": 1, "tags": ["x", "y"]}, "tags", "list")],
)
def test_nested_metadata_gives_one_line(
    acme: ScriptedProvider, metadata: dict[str, Any], key: str, kind: str
) -> None:
    layer = layer_with(acme, gates={"default": {"model": "acme-1"}})
    with pytest.raises(InvalidRequest) as caught:
        layer.image(data={"prompt": "p"}, metadata=metadata)
    assert caught.value.problems == [
        ("metadata", f"{key!r} is a {kind}: metadata values must be str, int, float, bool or null")
    ]
    assert acme.calls == []


def test_a_metadata_problem_does_not_repeat_the_whole_metadata(acme: ScriptedProvider) -> None:
    layer = layer_with(acme, gates={"default": {"model": "acme-1"}})
    with pytest.raises(InvalidRequest) as caught:
        layer.image(data={"prompt": "p"}, metadata={"notes": "x" * 5000})
    assert "xxxx" not in str(caught.value)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize("field", ["seed", "count"])
@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_seed_or_count_is_refused(
    acme: ScriptedProvider, field: str, value: bool
) -> None:
    layer = layer_with(acme, gates={"default": {"model": "acme-1"}})
    with pytest.raises(InvalidRequest) as caught:
        layer.image(data={"prompt": "p", field: value})
    ((where, message),) = caught.value.problems
    assert where == f"data.{field}"
    assert message.startswith(f"{value}: a boolean is not a {field}; ")
    assert acme.calls == []


def test_latency_is_rounded_to_a_tenth_of_a_millisecond(acme: ScriptedProvider) -> None:
    layer = layer_with(acme, gates={"default": {"model": "acme-1"}})
    response = layer.image(data={"prompt": "p"})
    for latency in (response.latency, *(a.latency for a in response.attempts)):
        assert latency == round(latency, 1)
    assert f'"latency":{response.latency}' in response.model_dump_json(by_alias=True)


# --- a closed Layer ------------------------------------------------------------------------


def test_image_after_close_is_a_clear_error(acme: ScriptedProvider, tmp_path: Path) -> None:
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    layer = Layer(
        {"ledger": ledger, "gates": {"default": {"model": "acme-1"}}},
        plugins=[plugin_for(acme)],
        load_entry_points=False,
    )
    layer.image(data={"prompt": "before"})
    layer.close()
    with pytest.raises(LayerClosed, match=r"closed \(close\(\) was called\); make a new Layer"):
        layer.image(data={"prompt": "after"})
    with pytest.raises(LayerClosed):
        asyncio.run(layer.aimage(data={"prompt": "after"}))
    with pytest.raises(LayerClosed):
        layer.image_batch([{"data": {"prompt": "after"}}])
    assert [call.prompt for call in acme.calls] == ["before"]
    assert layer.costs().requests == 1  # what was spent can still be read
    layer.close()  # closing twice is fine


def test_aclose_alone_lets_an_async_app_go_on_on_another_loop(acme: ScriptedProvider) -> None:
    layer = layer_with(acme, gates={"default": {"model": "acme-1"}})

    async def once() -> str:
        response = await layer.aimage(data={"prompt": "p"})
        await layer.aclose()
        return response.model

    assert asyncio.run(once()) == asyncio.run(once()) == "acme-1"


# --- spend --------------------------------------------------------------------------------


def test_a_costs_report_prints_as_a_table() -> None:
    config = {
        "ledger": "memory",
        "plugins": {"local": {"prices": {"local": {"*/*": 0.02}}}},
        "gates": {"default": {"model": "local"}, "thumbs": {"model": "local"}},
    }
    with Layer(config) as layer:
        layer.image(data={"prompt": "a", "count": 2}, metadata={"feature": "landing"})
        layer.image("thumbs", {"prompt": "b"})
        text = str(layer.costs(by=["gate", "meta.feature"]))
        total = str(layer.costs())
    assert text.splitlines() == [
        "spend to date, by gate, meta.feature",
        "gate     meta.feature  requests  images   cost",
        "default  landing              1       2  $0.04",
        "thumbs   -                    1       1  $0.02",
        "total                         2       3  $0.06",
    ]
    assert total.splitlines() == [
        "spend to date",
        "requests  images   cost",
        "       2       3  $0.06",
    ]
