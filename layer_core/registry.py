"""The provider registry: the plugins of one `Layer`, the providers they offer set up from the
config, the catalogue of their models, and the gates that route them.

Built once per `Layer`: a provider whose set-up fails is dropped (its plugin says why), and a
gate naming a model nobody declares is a `ConfigError` before any request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import layer_core.catalog
from layer_core.catalog import Catalog, ModelSpec
from layer_core.config import Instance, LayerConfig, provider_settings
from layer_core.errors import ConfigError, PluginRegistrationError, UnknownModel, did_you_mean
from layer_core.gates import Gate
from layer_core.plugins import PluginHost, allow_list_from_env, build_host
from layer_core.policy import Rejection
from layer_core.provider import Provider, ProviderSettings
from layer_core.shipped import SHIPPED_MODELS, shipped_names, shipped_plugin

log = logging.getLogger("layer")

DEFAULT_GATE = "default"


class ProviderRegistry:
    """The plugin host, its configured providers, their catalogue and the gates of a config."""

    def __init__(
        self,
        config: LayerConfig,
        *,
        plugins: Iterable[object] = (),
        load_entry_points: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        allow, allow_source = allow_list_from_env(), "LAYER_PLUGINS"
        if allow is None:
            allow, allow_source = config.load, f"[plugins] load of {config.source}"
        self.host: PluginHost = build_host(
            allow=allow, allow_source=allow_source, extra=plugins, entry_points=load_entry_points
        )
        self.secrets: list[str] = []
        """every API key set, redacted from errors."""
        self.absent_instances: dict[str, str] = {}
        """`[providers.<name>]` instances not made, and why (their plugin did not load)."""
        self.catalog = _build_catalog(self._configure(config, environ), self.host)
        self.unavailable: dict[str, str] = {}
        """provider name → why it cannot be called now."""
        for name, provider in self.host.providers.items():
            ok, why = provider.available()
            if not ok:
                self.unavailable[name] = why or "not available"
        self._check_gate_models(config)
        self.gates: dict[str, Gate] = dict(config.gates)
        self.left_out: dict[str, tuple[Rejection, ...]] = {}
        """gate id → the models a built-in gate leaves out of its pool."""
        if DEFAULT_GATE not in self.gates:
            self.gates[DEFAULT_GATE], self.left_out[DEFAULT_GATE] = self._builtin_default_gate()

    def _configure(self, config: LayerConfig, environ: Mapping[str, str] | None) -> list[Deployed]:
        """Give each provider its settings, and make the instances `[providers.<name>]` asks
        for; the models of each instance that took them."""
        deployed: list[Deployed] = []
        for name, provider in list(self.host.providers.items()):
            table = config.plugin_settings.get(name, {})
            settings = provider_settings(provider, table, source=config.source, environ=environ)
            deployed += self._take_settings(name, provider, settings)
        for instance in config.instances.values():
            base = self._provider_for(instance, config.source)
            if base is None:
                continue
            provider = base.another(instance.name)
            settings = provider_settings(
                provider,
                instance.settings,
                source=config.source,
                environ=environ,
                table_name=f"providers.{instance.name}",
            )
            self.host.add_instance(instance.name, provider, of=base.instance)
            deployed += self._take_settings(instance.name, provider, settings)
        return deployed

    def _take_settings(
        self, instance: str, provider: Provider, settings: ProviderSettings
    ) -> list[Deployed]:
        """Configure one provider instance; the deployments of its models (none when it failed:
        its plugin says why)."""
        if settings.api_key is not None:
            self.secrets.append(settings.api_key.get_secret_value())
        try:
            provider.configure(settings)
            specs = self._provider_models(provider, settings.prices)
        except Exception as exc:  # noqa: BLE001 - one provider's bug never stops the rest
            self.host.drop_provider(instance, f"{type(exc).__name__}: {exc}")
            return []
        return [Deployed(spec, instance, settings.weight) for spec in specs]

    def _provider_for(self, instance: Instance, source: str) -> Provider | None:
        """The provider `[providers.<name>]` makes another instance of: its plugin's (or the
        provider of that name); None, with the reason kept, when the plugin did not load."""
        where = f"{source}: [providers.{instance.name}]"
        if instance.name in self.host.providers:
            raise ConfigError(
                f"{where}: {instance.name!r} is already the name of a provider (configure it in "
                f"[plugins.{instance.name}]); give this instance another name"
            )
        named = [
            p
            for n, p in self.host.providers.items()
            if p.instance == n and instance.plugin in (n, self.host.provider_plugin.get(n))
        ]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            names = ", ".join(p.instance for p in named)
            raise ConfigError(
                f"{where}: plugin {instance.plugin!r} has several providers ({names}); "
                "set plugin to the one this is an instance of"
            )
        plugins = [info.name for info in self.host.plugins]
        if instance.plugin in plugins or instance.plugin in SHIPPED_MODELS:
            self.absent_instances[instance.name] = self.host.why_not_loaded(instance.plugin)
            return None
        hint = did_you_mean(instance.plugin, plugins)
        raise ConfigError(
            f"{where}: plugin {instance.plugin!r} is not installed; "
            + (hint or f"installed plugins: {', '.join(plugins) or 'none'}")
        )

    def _provider_models(
        self, provider: Provider, prices: Mapping[str, Mapping[str, Any]]
    ) -> list[ModelSpec]:
        specs = []
        name = provider.name
        for spec in provider.models():
            if not isinstance(spec, ModelSpec) or spec.provider != name:
                raise PluginRegistrationError(
                    self.host.provider_plugin.get(provider.instance, name),
                    f"provider {name!r} declared {spec!r}: not a ModelSpec of provider {name!r}",
                )
            override = prices.get(spec.id)
            specs.append(spec.with_prices(override) if override else spec)
        return specs

    def _check_gate_models(self, config: LayerConfig) -> None:
        """Every model a configured gate names is in the catalogue, or is a model of a shipped
        plugin that is not loaded here (the plan says which plugin, and why it is not loaded).
        Any other name is a `ConfigError` with the closest known name: a typo never leaves a
        gate to fall silently to the models that remain. A name close to none is let through
        only while some plugin that did not load could declare it."""
        catalog = self.catalog
        known = [*catalog.names(), *shipped_names()]
        unseen = [
            i.name for i in self.host.plugins if i.status != "ok" and i.name not in SHIPPED_MODELS
        ]
        problems = []
        for gate in config.gates.values():
            named = [("model", gate.model)] if gate.model else []
            named += [("fallback_models", name) for name in gate.fallback_models]
            for field, name in named:
                if name in catalog or name in catalog.absent:
                    continue
                if "@" in name:
                    why, problem = self._why_no_deployment(name)
                    if why is not None:
                        catalog.absent[name] = why
                    if problem is not None:
                        problems.append(f"{config.source}: [gates.{gate.id}] {field}: {problem}")
                    continue
                why = self.why_absent(name)
                hint = did_you_mean(name, known)
                if why is None and not hint and unseen:
                    why = f"no loaded plugin declares it ({', '.join(unseen)} did not load)"
                if why is not None:
                    catalog.absent[name] = why
                    continue
                problems.append(
                    f"{config.source}: [gates.{gate.id}] {field}: unknown model {name!r}; "
                    + (hint or "no installed plugin declares it (`layer models` lists the models)")
                )
        if problems:
            raise ConfigError("\n".join(problems))

    def _why_no_deployment(self, name: str) -> tuple[str | None, str | None]:
        """For a ``model@instance`` not in the catalogue: why it is absent (a plan's reason),
        or the config problem it is (a typo)."""
        model, _, instance = name.partition("@")
        if instance in self.absent_instances:
            return f"instance {instance!r} not made: {self.absent_instances[instance]}", None
        instances = sorted(self.host.providers)
        if instance not in self.host.providers:
            hint = did_you_mean(instance, instances)
            return None, (
                f"{name!r}: no provider instance {instance!r}; "
                + (hint or f"instances: {', '.join(instances)} ([providers.<name>] adds one)")
            )
        if model not in self.catalog:
            why = self.why_absent(model)
            if why is not None:
                return why, None
            hint = did_you_mean(model, self.catalog.names())
            return None, f"{name!r}: unknown model {model!r}; " + (
                hint or "`layer models` lists them"
            )
        serving = ", ".join(d.instance for d in self.catalog.resolve_deployments(model))
        return None, f"{name!r}: {instance!r} does not serve {model} (served by: {serving})"

    def why_absent(self, name: str) -> str | None:
        """Why a model of a shipped plugin is not in the catalogue; None for any other name."""
        plugin = shipped_plugin(name)
        return None if plugin is None else self.host.why_not_loaded(plugin)

    def check_known(self, model: str) -> None:
        """`UnknownModel` unless `model` is in the catalogue (saying why, for a model of a
        shipped plugin that is not loaded)."""
        if self.catalog.resolve(model) is None:
            raise UnknownModel(model, self.catalog.names(), why=self.why_absent(model) or "")

    def _builtin_default_gate(self) -> tuple[Gate, tuple[Rejection, ...]]:
        """The `default` gate when the config has none, and the models it leaves out (retired
        ones: an app that wants them names them in a gate of its own)."""
        today = layer_core.catalog.today()
        pool: list[str] = []
        left_out: list[Rejection] = []
        for s in self.catalog.values():
            if s.deprecated is not None and s.retired(today):
                retired = layer_core.catalog.retirement(s.deprecated, today)
                left_out.append(Rejection(s.id, f"{s.id}: {retired}"))
            else:
                pool.append(s.id)
        description = "built in: every installed model, best quality first, placeholders last"
        if left_out:
            description += f"; {left_out_warning(left_out)}"
        gate = Gate(
            id=DEFAULT_GATE,
            description=description,
            fallback_models=tuple(pool) or ("local",),
            routing_strategy="quality",
        )
        return gate, tuple(left_out)


def left_out_warning(left_out: Sequence[Rejection]) -> str:
    """One line naming the models the built-in default gate left out, and why."""
    return "left out of the built-in default gate: " + "; ".join(r.reason for r in left_out)


class Deployed(NamedTuple):
    """A model an instance serves, before it is in the catalogue."""

    spec: ModelSpec
    instance: str
    weight: float


def _build_catalog(deployed: list[Deployed], host: PluginHost) -> Catalog:
    catalog = Catalog()
    for spec, instance, weight in deployed:
        try:
            catalog.add(spec, instance=instance, weight=weight)
        except ValueError as exc:
            plugin = host.provider_plugin.get(spec.provider, spec.provider)
            log.warning("plugin %s: %s; model skipped", plugin, exc)
            for info in host.plugins:
                if info.name == plugin:
                    info.error = f"{info.error + '; ' if info.error else ''}{exc}"
    return catalog
