"""Observation hooks go through pluggy: its wrappers, call order, checks and tracing apply.

What a plugin's observer raises is still logged with the plugin's name and never reaches the
request, and a hook no plugin implements is not called at all.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from types import SimpleNamespace
from typing import Any

import pytest
from pluggy import HookCallError

from layer_core import Layer, PluginLoadError, ProviderUnavailable, hookimpl
from layer_core.plugins import build_host
from layer_core.schema import ImageResponse
from tests.helpers import layer_with, two_model_provider

GATES = {"g": {"model": "primary", "fallback_models": ["backup"]}}


class Plain:
    """An observer that notes what it saw in `calls`, a list all a test's plugins share."""

    def __init__(self, calls: list[str], label: str) -> None:
        self.calls, self.label = calls, label

    @hookimpl
    def on_response(self, response: ImageResponse) -> None:
        self.calls.append(f"{self.label}:{response.model}")


class First(Plain):
    @hookimpl(tryfirst=True)
    def on_response(self, response: ImageResponse) -> None:
        super().on_response(response)


class Last(Plain):
    @hookimpl(trylast=True)
    def on_response(self, response: ImageResponse) -> None:
        super().on_response(response)


class Around:
    """A new-style wrapper: runs before and after every other `on_response`."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    @hookimpl(wrapper=True)
    def on_response(self, response: ImageResponse) -> Generator[None, Any, Any]:
        self.calls.append("around:before")
        result = yield
        self.calls.append(f"around:after:{result}")
        return result


class OldStyleAround:
    """An old-style `hookwrapper=True` wrapper, which pluggy still supports."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    @hookimpl(hookwrapper=True)
    def on_response(self) -> Generator[None, Any, None]:
        self.calls.append("old:before")
        outcome = yield
        self.calls.append(f"old:after:{outcome.get_result()}")


def run(*plugins: object) -> ImageResponse:
    layer = layer_with(
        two_model_provider({"primary": [ProviderUnavailable("down")]}),
        gates=GATES,
        plugins=plugins,
    )
    response = layer.image("g", {"prompt": "p"})
    assert [p.status for p in layer.plugins()] == ["ok"] * (len(plugins) + 1)
    return response


def test_a_wrapper_on_response_runs_around_the_others() -> None:
    calls: list[str] = []
    run(Around(calls), Plain(calls, "a"), Plain(calls, "b"))
    assert calls == ["around:before", "b:backup", "a:backup", "around:after:[]"]


def test_an_old_style_hookwrapper_runs_around_the_others() -> None:
    calls: list[str] = []
    run(Plain(calls, "a"), OldStyleAround(calls), Around(calls))
    assert calls == [
        "around:before",
        "old:before",
        "a:backup",
        "old:after:[]",
        "around:after:[]",
    ]


def test_tryfirst_and_trylast_order_holds() -> None:
    # pluggy calls the plugin registered last first; tryfirst and trylast turn that round here
    calls: list[str] = []
    run(First(calls, "first"), Plain(calls, "a"), Plain(calls, "b"), Last(calls, "last"))
    assert calls == ["first:backup", "b:backup", "a:backup", "last:backup"]


class Exploder:
    @hookimpl(tryfirst=True)
    def on_response(self, response: ImageResponse) -> None:
        raise RuntimeError("observer bug")

    @hookimpl
    def on_attempt_failed(self) -> None:
        raise ValueError("another observer bug")


class ExplodesBeforeYield:
    @hookimpl(wrapper=True)
    def on_response(self) -> Generator[None, Any, Any]:
        raise RuntimeError("wrapper bug before")
        yield  # a generator function, as pluggy requires of a wrapper


class ExplodesAfterYield:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    @hookimpl(wrapper=True)
    def on_response(self) -> Generator[None, Any, Any]:
        self.calls.append("after-yield:before")
        yield
        raise RuntimeError("wrapper bug after")


def test_a_raising_observer_only_logs_with_its_plugins_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    with caplog.at_level(logging.ERROR, logger="layer.plugins"):
        response = run(
            Plain(calls, "a"),
            Exploder(),
            ExplodesBeforeYield(),
            ExplodesAfterYield(calls),
            Plain(calls, "b"),
        )
    assert response.model == "backup"
    assert len(response.images) == 1
    # the exploder runs first (tryfirst): the observers after it still ran
    assert calls == ["after-yield:before", "b:backup", "a:backup"]
    logged = [(r.getMessage(), r.exc_info[1] if r.exc_info else None) for r in caplog.records]
    assert [(message, str(exc)) for message, exc in logged] == [
        ("plugin Exploder-2: hook on_attempt_failed raised; ignored", "another observer bug"),
        ("plugin ExplodesBeforeYield-3: hook on_response raised; ignored", "wrapper bug before"),
        ("plugin Exploder-2: hook on_response raised; ignored", "observer bug"),
        ("plugin ExplodesAfterYield-4: hook on_response raised; ignored", "wrapper bug after"),
    ]


class Misspelt:
    @hookimpl
    def on_responce(self, response: ImageResponse) -> None:
        raise AssertionError("a misspelt hook is never called")


class OptionalExtra:
    """An implementation of a hook layer does not define, marked optional: pluggy allows it."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    @hookimpl(optionalhook=True)
    def on_something_later(self) -> None:
        raise AssertionError("never called")

    @hookimpl
    def on_response(self, response: ImageResponse) -> None:
        self.calls.append(f"optional:{response.model}")


def test_check_pending_reports_a_misspelt_hook_by_plugin() -> None:
    calls: list[str] = []
    layer = layer_with(
        two_model_provider(), gates=GATES, plugins=[Misspelt(), OptionalExtra(calls)]
    )
    seen = {p.name: (p.status, p.error, p.hooks) for p in layer.plugins()}
    assert seen["Misspelt-1"] == (
        "failed",
        "unknown hook 'on_responce' (did you mean 'on_response'?)",
        [],
    )
    assert seen["OptionalExtra-2"] == ("ok", None, ["on_response", "on_something_later"])
    layer.image("g", {"prompt": "p"})
    assert calls == ["optional:primary"]


def test_strict_plugins_raise_on_a_misspelt_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYER_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError) as caught:
        layer_with(two_model_provider(), gates=GATES, plugins=[Misspelt()])
    assert caught.value.plugin == "Misspelt-1"
    assert "unknown hook 'on_responce'" in str(caught.value)


class NotAGenerator:
    @hookimpl(wrapper=True)
    def on_response(self) -> None:
        pass


def test_a_wrapper_that_is_no_generator_is_refused_by_pluggy() -> None:
    layer = layer_with(two_model_provider(), gates=GATES, plugins=[NotAGenerator()])
    (info,) = [p for p in layer.plugins() if p.name == "NotAGenerator-1"]
    assert info.status == "failed"
    assert "generator function" in (info.error or "")


def traced(layer: Layer) -> list[str]:
    """The hooks pluggy calls on `layer`, as its hook-call monitoring sees them."""
    names: list[str] = []
    layer._host.pm.add_hookcall_monitoring(
        lambda name, _impls, _kwargs: names.append(name), lambda *_: None
    )
    return names


def test_hooks_are_called_through_pluggy_and_only_when_implemented() -> None:
    bare = layer_with(two_model_provider(), gates=GATES)
    assert bare._host.implemented == {}
    not_called = traced(bare)
    bare.image("g", {"prompt": "p"})
    assert not_called == []

    calls: list[str] = []
    observed = layer_with(two_model_provider(), gates=GATES, plugins=[Plain(calls, "a")])
    assert list(observed._host.implemented) == ["on_response"]
    called = traced(observed)
    observed.image("g", {"prompt": "p"})
    assert called == ["on_response"]
    assert calls == ["a:primary"]


class YieldsTwice:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    @hookimpl(wrapper=True)
    def on_response(self) -> Generator[None, Any, Any]:
        yield
        self.calls.append("twice:after")
        yield


class SeesWhatRaisesInside:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    @hookimpl(wrapper=True)
    def on_response(self) -> Generator[None, Any, Any]:
        try:
            return (yield)
        except BaseException as exc:
            self.calls.append(f"saw:{type(exc).__name__}")
            raise


class Interrupted:
    @hookimpl
    def on_response(self) -> None:
        raise KeyboardInterrupt


def test_a_wrapper_that_yields_twice_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    host = build_host(allow=None, extra=[Plain(calls, "a"), YieldsTwice(calls)], entry_points=False)
    with caplog.at_level(logging.ERROR, logger="layer.plugins"):
        host.notify("on_response", request=None, response=SimpleNamespace(model="m"))
    assert calls == ["a:m", "twice:after"]
    assert [r.getMessage() for r in caplog.records] == [
        "plugin YieldsTwice-1: hook on_response yielded twice; ignored"
    ]


def test_what_is_not_an_observers_own_error_goes_on_through_a_wrapper() -> None:
    # an interrupt, or a hook called without an argument (the core's bug), is no observer's
    # bug: a wrapper sees it (as pluggy promises), and it goes on to the caller
    calls: list[str] = []
    host = build_host(
        allow=None, extra=[Interrupted(), SeesWhatRaisesInside(calls)], entry_points=False
    )
    with pytest.raises(KeyboardInterrupt):
        host.notify("on_response", request=None, response=None)
    host = build_host(
        allow=None, extra=[Plain(calls, "a"), SeesWhatRaisesInside(calls)], entry_points=False
    )
    with (
        pytest.warns(UserWarning, match="'response' .* cannot be found in this hook call"),
        pytest.raises(HookCallError, match="must provide argument 'response'"),
    ):
        host.notify("on_response", request=None)
    assert calls == ["saw:KeyboardInterrupt", "saw:HookCallError"]


def test_one_plugin_object_registers_once() -> None:
    calls: list[str] = []
    once = Plain(calls, "once")
    layer = layer_with(two_model_provider(), gates=GATES, plugins=[once, once])
    seen = {p.name: (p.status, p.error) for p in layer.plugins()}
    assert seen["Plain-2"] == ("failed", "already registered as plugin 'Plain-1'")
    layer.image("g", {"prompt": "p"})
    assert calls == ["once:primary"]
