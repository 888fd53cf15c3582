"""Loading plugins: one entry point at a time, each failure isolated and reported by name.

Every `Layer` owns a `PluginHost`: its own pluggy manager, the plugins it loaded (with status),
and the providers they registered. Entry points in group `layer` are discovered once per
process; `LAYER_PLUGINS` (comma list) or plugins.toml's `[plugins] load` choose which load;
`LAYER_STRICT_PLUGINS=1` turns a failure into an exception.

Hooks are called through pluggy (`pm.hook.<name>`), so its call order (`tryfirst`, `trylast`),
wrappers (`wrapper=True`, `hookwrapper=True`), `check_pending` and tracing all apply. What the
host registers for a plugin is a `Guarded` stand-in: the plugin's own hook implementations with
their own options, each observation hook wrapped so that what it raises is logged with the
plugin's name and goes no further (pluggy would stop the call at the first exception).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

import pluggy

from layer_core import hookspecs
from layer_core.errors import PluginLoadError, PluginRegistrationError, did_you_mean
from layer_core.provider import Provider

log = logging.getLogger("layer.plugins")

ENTRY_POINT_GROUP = "layer"
OBSERVATION_HOOKS = (
    "on_request",
    "on_plan",
    "on_attempt_failed",
    "on_response",
    "on_budget_alert",
    "on_ledger_error",
)
PluginStatus = Literal["ok", "failed", "disabled"]
#: What is logged (with the traceback) when an observation hook raises.
RAISED = "plugin %s: hook %s raised; ignored"


@dataclass
class PluginInfo:
    """What `layer plugins` shows for one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    status: PluginStatus = "ok"
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)
    note: str | None = None


@functools.cache
def discovered_entry_points() -> tuple[metadata.EntryPoint, ...]:
    """Entry points in group `layer`, read once per process (scanning installs is slow)."""
    return tuple(metadata.entry_points(group=ENTRY_POINT_GROUP))


def strict_from_env() -> bool:
    return os.environ.get("LAYER_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes")


def allow_list_from_env() -> list[str] | None:
    raw = os.environ.get("LAYER_PLUGINS")
    if raw is None:
        return None
    return [name.strip() for name in raw.split(",") if name.strip()]


class PluginHost:
    """The plugins of one `Layer`: loaded, checked, and their providers registered."""

    def __init__(self, *, strict: bool = False) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.strict = strict
        self.plugins: list[PluginInfo] = []
        self.providers: dict[str, Provider] = {}
        self.provider_plugin: dict[str, str] = {}
        #: The observation hooks some plugin implements; `notify` skips the others at no cost.
        self.implemented: dict[str, pluggy.HookCaller] = {}

    # --- loading ---------------------------------------------------------------------------

    def load_entry_points(
        self, allow: Sequence[str] | None, allow_source: str = "LAYER_PLUGINS"
    ) -> None:
        """Load every discovered entry point that `allow` admits (None: all).

        `allow_source` names where `allow` came from, for the messages: a plugin left out is
        `disabled` ("not in LAYER_PLUGINS"), and a name in `allow` that no installed plugin has
        is reported as a failed plugin of that name, with the closest installed name.
        """
        for ep in discovered_entry_points():
            # dist.name and dist.version each read and parse the METADATA file: read it once
            meta = ep.dist.metadata if ep.dist is not None else None
            info = PluginInfo(
                name=ep.name,
                distribution=meta["Name"] if meta is not None else None,
                version=meta["Version"] if meta is not None else None,
            )
            if allow is not None and ep.name not in allow:
                info.status = "disabled"
                info.note = f"not in {allow_source}"
                self.plugins.append(info)
                continue
            if any(p.name == ep.name and p.status == "ok" for p in self.plugins):
                self._fail(info, f"entry point name {ep.name!r} is used by two distributions")
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's
                self._fail(info, f"import failed: {type(exc).__name__}: {exc}")
                continue
            self._add(plugin, info)
        installed = [ep.name for ep in discovered_entry_points()]
        for name in dict.fromkeys(allow or ()):
            if name not in installed:
                self._fail(PluginInfo(name=name), _not_installed(name, allow_source, installed))

    def why_not_loaded(self, plugin: str) -> str:
        """Why plugin `plugin` offers nothing here: disabled, failed, or not installed."""
        for info in self.plugins:
            if info.name != plugin:
                continue
            if info.status == "disabled":
                return f"plugin {plugin!r} is disabled ({info.note})"
            if info.status == "failed":
                return f"plugin {plugin!r} failed to load (`layer plugins` says why)"
            return f"plugin {plugin!r} is loaded, but does not offer it as configured"
        if any(ep.name == plugin for ep in discovered_entry_points()):
            return f"plugin {plugin!r} is installed but not loaded"
        return f"plugin {plugin!r} (layer-{plugin}) is not installed"

    def add_objects(self, objects: Iterable[object]) -> None:
        """Register plugin objects (modules, hookimpl holders, or Provider instances) directly."""
        for index, obj in enumerate(objects):
            if isinstance(obj, Provider):
                info = PluginInfo(name=f"{getattr(obj, 'name', 'provider')}-object", note="object")
                self.plugins.append(info)
                self._register_provider(obj, info)
                continue
            name = getattr(obj, "__name__", None) or f"{type(obj).__name__}-{index}"
            self._add(obj, PluginInfo(name=name, note="object"))

    def _add(self, plugin: object, info: PluginInfo) -> None:
        for other in self.pm.get_plugins():
            if other.plugin is plugin:
                self._fail(info, f"already registered as plugin {other.name!r}")
                return
        try:
            guarded = Guarded(plugin, info.name, self.pm)
            self.pm.register(guarded, name=info.name)
        except Exception as exc:  # noqa: BLE001 - pluggy validation or a duplicate name
            self._fail(info, f"{type(exc).__name__}: {exc}")
            return
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError:
            unknown = _did_you_mean(self.pm, guarded)
            self._forget(guarded, info)
            self._fail(info, f"unknown hook {unknown}")
            return
        self._hooks_changed()
        info.hooks = sorted(c.name for c in (self.pm.get_hookcallers(guarded) or []))
        self.plugins.append(info)
        others = [p for p in self.pm.get_plugins() if p is not guarded]
        register_providers = self.pm.subset_hook_caller("register_providers", others)
        try:
            register_providers(register=lambda p: self._register_provider(p, info))
        except Exception as exc:  # noqa: BLE001 - the plugin's own code
            self._forget(guarded, info)
            self._fail(info, f"register_providers raised {type(exc).__name__}: {exc}")

    def _register_provider(self, provider: object, info: PluginInfo) -> None:
        if not isinstance(provider, Provider):
            raise PluginRegistrationError(
                info.name, f"registered {provider!r}, which is not a layer_core.Provider"
            )
        name = getattr(provider, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginRegistrationError(info.name, f"{type(provider).__name__} has no name")
        if name in self.providers:
            raise PluginRegistrationError(
                info.name,
                f"provider {name!r} is already registered by plugin {self.provider_plugin[name]!r}",
            )
        self.providers[name] = provider
        self.provider_plugin[name] = info.name
        info.providers.append(name)
        info.note = "; ".join(filter(None, [info.note, *provider.notes()])) or None

    def add_instance(self, instance: str, provider: Provider, of: str) -> None:
        """Register `provider` (made by `Provider.another`) as instance `instance` of the
        provider `of`, under the same plugin."""
        plugin = self.provider_plugin[of]
        self.providers[instance] = provider
        self.provider_plugin[instance] = plugin
        for info in self.plugins:
            if info.name == plugin:
                info.providers.append(instance)

    def _forget(self, plugin: object, info: PluginInfo) -> None:
        for name in info.providers:
            self.providers.pop(name, None)
            self.provider_plugin.pop(name, None)
        info.providers.clear()
        if self.pm.is_registered(plugin):
            self.pm.unregister(plugin)
            self._hooks_changed()
        if info in self.plugins:
            self.plugins.remove(info)

    def drop_provider(self, name: str, reason: str) -> None:
        """Remove a provider that failed after registration; its plugin is marked failed."""
        self.providers.pop(name, None)
        plugin = self.provider_plugin.pop(name, name)
        for info in self.plugins:
            if info.name == plugin:
                info.status = "failed"
                info.error = f"provider {name!r}: {reason}"
                if name in info.providers:
                    info.providers.remove(name)
        log.warning("plugin %s: provider %s skipped: %s", plugin, name, reason)
        if self.strict:
            raise PluginLoadError(plugin, f"provider {name!r}: {reason}")

    def _fail(self, info: PluginInfo, reason: str) -> None:
        info.status = "failed"
        info.error = reason
        self.plugins.append(info)
        log.warning("plugin %s skipped: %s", info.name, reason)
        if self.strict:
            raise PluginLoadError(info.name, reason)

    def _hooks_changed(self) -> None:
        """Note again which observation hooks some plugin implements (after a (un)register)."""
        self.implemented = {
            name: caller
            for name in OBSERVATION_HOOKS
            if (caller := getattr(self.pm.hook, name)).get_hookimpls()
        }

    # --- calling observation hooks -------------------------------------------------------

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call an observation hook through pluggy, unless no plugin implements it.

        What an implementation raises is logged with its plugin's name (see `guard`), never
        raised here: an observer cannot break a request.
        """
        caller = self.implemented.get(hook_name)
        if caller is not None:
            caller(**kwargs)


def _not_installed(name: str, source: str, installed: Sequence[str]) -> str:
    from layer_core.shipped import SHIPPED_MODELS

    if name in SHIPPED_MODELS:
        return f"named in {source}, but not installed (its distribution is layer-{name})"
    hint = did_you_mean(name, installed) or f"installed: {', '.join(installed) or 'none'}"
    return f"named in {source}, but no installed plugin has that name; {hint}"


def _hook_names() -> list[str]:
    return [n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "layer_spec")]


class Guarded:
    """What the host registers for one plugin: its hook implementations, with their options.

    Each observation hook is wrapped by `guard`; registration hooks are passed on unchanged in
    behaviour (what they raise is the plugin's load failure). `functools.wraps` keeps each
    implementation's argument names visible to pluggy, so it passes the same arguments.
    """

    def __init__(self, plugin: object, name: str, pm: pluggy.PluginManager) -> None:
        self.plugin = plugin
        self.name = name
        self._hooks: list[str] = []
        for attr in dir(plugin):
            opts = pm.parse_hookimpl_opts(plugin, attr)
            if opts is None:
                continue
            hook = opts.get("specname") or attr
            function = getattr(plugin, attr)
            wrapped = guard(function, name, hook) if hook in OBSERVATION_HOOKS else _pass(function)
            setattr(self, attr, hookspecs.hookimpl(wrapped, **opts))
            self._hooks.append(attr)

    def __dir__(self) -> list[str]:
        """The hook implementations only: what pluggy looks through when it registers this."""
        return self._hooks

    def __repr__(self) -> str:
        return f"<layer plugin {self.name!r}>"


def guard(function: Callable[..., Any], plugin: str, hook: str) -> Callable[..., Any]:
    """`function`, one plugin's implementation of `hook`, with what it raises logged, not raised.

    A wrapper (a generator function) that raises before its `yield` steps aside: the others
    still run and their result passes through. One that raises after it, or yields twice, is
    logged the same way. An exception from the implementations inside a wrapper is not its
    own: the wrapper sees it, and it goes on.
    """
    if inspect.isgeneratorfunction(function):
        return _guard_wrapper(function, plugin, hook)

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception:
            log.exception(RAISED, plugin, hook)
            return None

    return guarded


def _guard_wrapper(function: Callable[..., Any], plugin: str, hook: str) -> Callable[..., Any]:
    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Generator[None, Any, Any]:
        inner = function(*args, **kwargs)
        try:
            next(inner)
        except Exception:  # raised (or returned) before its yield
            log.exception(RAISED, plugin, hook)
            return (yield)
        outcome: Any = None
        thrown: BaseException | None = None
        try:
            outcome = yield
        except BaseException as exc:  # noqa: BLE001 - handed on to the wrapper, as pluggy does
            thrown = exc
        try:
            if thrown is None:
                inner.send(outcome)
            else:
                inner.throw(thrown)
        except StopIteration as stop:
            return stop.value
        except Exception as exc:
            if exc is not thrown:
                log.exception(RAISED, plugin, hook)
            if thrown is not None:  # not the wrapper's own: it goes on
                raise thrown from None
            return outcome
        inner.close()
        log.error("plugin %s: hook %s yielded twice; ignored", plugin, hook)
        return outcome

    return guarded


def _pass(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` as its own new function object, which can carry the hookimpl options."""
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def passed_on(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            return (yield from function(*args, **kwargs))

        return passed_on

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return call


def _did_you_mean(pm: pluggy.PluginManager, plugin: object) -> str:
    """The hooks `plugin` implements that have no spec, each with the closest spec's name."""
    hints = []
    for caller in pm.get_hookcallers(plugin) or []:
        if not caller.has_spec() and not all(i.optionalhook for i in caller.get_hookimpls()):
            close = did_you_mean(caller.name, _hook_names())
            hints.append(f"{caller.name!r}" + (f" ({close})" if close else ""))
    return ", ".join(hints)


def build_host(
    *,
    allow: Sequence[str] | None,
    allow_source: str = "LAYER_PLUGINS",
    extra: Iterable[object] = (),
    strict: bool | None = None,
    entry_points: bool = True,
) -> PluginHost:
    """Load plugins for one `Layer`: entry points (unless disabled), then `extra` objects."""
    host = PluginHost(strict=strict_from_env() if strict is None else strict)
    if entry_points:
        host.load_entry_points(allow, allow_source)
    host.add_objects(extra)
    return host
