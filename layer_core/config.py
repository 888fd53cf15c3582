"""plugins.toml: finding it, reading it, and errors that name the key, the table and the fix.

Resolution for `Layer(config=...)`: a path, a dict of the same shape, or None → `$LAYER_CONFIG` →
`./plugins.toml` → `plugins.toml` in the user config dir (`layer_core.dirs`: on Linux
`$XDG_CONFIG_HOME/layer`, else `~/.config/layer`) → built-in (no file: a `default` gate over
every available model).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from layer_core.dirs import CONFIG_FILE, user_config_dir
from layer_core.errors import ConfigError
from layer_core.gates import Gate
from layer_core.ledger import ledger_url
from layer_core.provider import Provider, ProviderSettings
from layer_core.state import (
    DEFAULT_PREFIX,
    DEFAULT_REDIS_TIMEOUT,
    DEFAULT_RULES,
    HealthRules,
    check_state_url,
)
from layer_core.validation import describe, unknown_key

TOP_LEVEL_KEYS = (
    "ledger",
    "store_prompts",
    "state",
    "state_prefix",
    "state_timeout",
    "health",
    "plugins",
    "providers",
    "gates",
)
PLUGINS_KEYS = ("load",)
ConfigSource = str | os.PathLike[str] | Mapping[str, Any] | None
#: What a `[providers.<name>]` instance may be called (a deployment is ``model@<name>``).
INSTANCE_NAME = re.compile(r"[A-Za-z0-9][\w.-]*")


@dataclass(frozen=True)
class LayerConfig:
    """A validated config. `source` says where it came from (a path, "dict" or "built-in")."""

    source: str
    ledger: str | bool = "sqlite"
    store_prompts: bool = False
    state: str = "memory"
    """where live provider state lives: "memory" or a Redis URL (`LAYER_STATE_URL` wins)."""
    state_prefix: str = DEFAULT_PREFIX
    state_timeout: float = DEFAULT_REDIS_TIMEOUT
    """seconds a Redis command may take before the process serves on its own state."""
    health: HealthRules = DEFAULT_RULES
    """`[health]`: circuit breaker rules of every gate that sets none of its own."""
    load: list[str] | None = None
    plugin_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    instances: dict[str, Instance] = field(default_factory=dict)
    """`[providers.<instance>]`: more instances of plugins' providers, by instance name."""
    gates: dict[str, Gate] = field(default_factory=dict)


@dataclass(frozen=True)
class Instance:
    """`[providers.<name>]`: another instance of a plugin's provider (an account, key, region or
    endpoint), with its own settings: each of its models is another deployment of that model."""

    name: str
    plugin: str
    settings: dict[str, Any]


def user_config_path() -> Path:
    """The user's plugins.toml, in the user config dir (see `layer_core.dirs`)."""
    return user_config_dir() / CONFIG_FILE


def find_config(config: ConfigSource) -> tuple[Mapping[str, Any], str]:
    """The raw config mapping and where it came from."""
    if isinstance(config, Mapping):
        return config, "dict"
    if config is not None:
        return _read(Path(config)), str(config)
    env = os.environ.get("LAYER_CONFIG")
    if env:
        return _read(Path(env)), env
    for candidate in (Path("plugins.toml"), user_config_path()):
        if candidate.is_file():
            return _read(candidate), str(candidate)
    return {}, "built-in"


def _read(path: Path) -> dict[str, Any]:
    import tomllib  # only when there is a file to read: the built-in config needs no parser

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_config(config: ConfigSource) -> LayerConfig:
    """Read and validate a config; raise `ConfigError` naming the table and key at fault."""
    raw, source = find_config(config)
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"{source}: {unknown_key(key, TOP_LEVEL_KEYS)} at the top level")
    ledger = raw.get("ledger", "sqlite")
    try:
        ledger_url(ledger, environ={})
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    store_prompts = raw.get("store_prompts", False)
    if not isinstance(store_prompts, bool):
        raise ConfigError(f"{source}: store_prompts must be true or false")

    state = raw.get("state", "memory")
    try:
        check_state_url(state)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    state_prefix = raw.get("state_prefix", DEFAULT_PREFIX)
    if not isinstance(state_prefix, str) or not state_prefix:
        raise ConfigError(f'{source}: state_prefix must be a non-empty string, e.g. "layer:"')
    state_timeout = raw.get("state_timeout", DEFAULT_REDIS_TIMEOUT)
    if isinstance(state_timeout, bool) or not isinstance(state_timeout, int | float):
        raise ConfigError(f"{source}: state_timeout must be a number of seconds, e.g. 0.1")
    if not 0 < state_timeout <= 10:
        raise ConfigError(f"{source}: state_timeout must be over 0 and at most 10 seconds")
    health_raw = raw.get("health", {})
    if not isinstance(health_raw, Mapping):
        raise ConfigError(f"{source}: [health] must be a table, e.g. [health] failures = 3")
    try:
        health = HealthRules.model_validate(dict(health_raw))
    except ValidationError as exc:
        raise ConfigError(f"{source}: [health] {describe(exc, HealthRules)}") from None

    plugins = raw.get("plugins", {})
    if not isinstance(plugins, Mapping):
        raise ConfigError(f"{source}: [plugins] must be a table")
    load = plugins.get("load")
    if load is not None and (
        not isinstance(load, list) or not all(isinstance(n, str) for n in load)
    ):
        raise ConfigError(f"{source}: [plugins] load must be a list of plugin names")
    settings: dict[str, dict[str, Any]] = {}
    for name, table in plugins.items():
        if name in PLUGINS_KEYS:
            continue
        if not isinstance(table, Mapping):
            raise ConfigError(
                f"{source}: [plugins] {name!r} must be a table of that plugin's settings "
                f"([plugins.{name}]) or one of: {', '.join(PLUGINS_KEYS)}"
            )
        settings[name] = dict(table)

    instances = _instances(raw.get("providers", {}), source)

    gates_raw = raw.get("gates", {})
    if not isinstance(gates_raw, Mapping):
        raise ConfigError(f"{source}: [gates] must be a table of [gates.<id>] tables")
    gates: dict[str, Gate] = {}
    for gate_id, table in gates_raw.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: [gates.{gate_id}] must be a table")
        if "id" in table:
            raise ConfigError(f"{source}: [gates.{gate_id}] {unknown_key('id', _gate_keys())}")
        if health_raw or "health" in table:
            own = table.get("health", {})
            if isinstance(own, Mapping):  # the gate's keys over [health]'s
                table = {**table, "health": {**health_raw, **own}}
        try:
            gates[gate_id] = Gate.model_validate({"id": gate_id, **table})
        except ValidationError as exc:
            raise ConfigError(f"{source}: [gates.{gate_id}] {describe(exc, Gate)}") from None
    return LayerConfig(
        source=source,
        ledger=ledger,
        store_prompts=store_prompts,
        state=state,
        state_prefix=state_prefix,
        state_timeout=float(state_timeout),
        health=health,
        load=list(load) if load is not None else None,
        plugin_settings=settings,
        instances=instances,
        gates=gates,
    )


def _instances(raw: object, source: str) -> dict[str, Instance]:
    """The `[providers.<name>]` tables, each naming its `plugin`."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: [providers] must be a table of [providers.<name>] tables")
    instances: dict[str, Instance] = {}
    for name, table in raw.items():
        where = f"{source}: [providers.{name}]"
        if not isinstance(table, Mapping):
            raise ConfigError(f'{where} must be a table: plugin = "<plugin>" and its settings')
        if not INSTANCE_NAME.fullmatch(name):
            raise ConfigError(
                f"{where}: {name!r} is not a usable instance name; use letters, digits, "
                "'-', '_' and '.', starting with a letter or digit"
            )
        plugin = table.get("plugin")
        if not isinstance(plugin, str) or not plugin:
            raise ConfigError(
                f"{where}: plugin is missing; name the plugin whose provider this is another "
                'instance of, e.g. plugin = "openai"'
            )
        settings = {k: v for k, v in table.items() if k != "plugin"}
        instances[name] = Instance(name=name, plugin=plugin, settings=settings)
    return instances


def _gate_keys() -> list[str]:
    return [k for k in Gate.model_fields if k != "id"]


def provider_settings(
    provider: Provider,
    table: Mapping[str, Any],
    *,
    source: str,
    environ: Mapping[str, str] | None = None,
    table_name: str | None = None,
) -> ProviderSettings:
    """Validate `[plugins.<name>]` (or `table_name`, e.g. ``providers.openai-eu``) against the
    provider's Settings and fill the key from env."""
    table_name = table_name or f"plugins.{provider.name}"
    env = os.environ if environ is None else environ
    model = provider.Settings
    try:
        settings = model.model_validate(dict(table))
    except ValidationError as exc:
        raise ConfigError(f"{source}: [{table_name}] {describe(exc, model)}") from None
    if settings.api_key is None:
        var = settings.api_key_env or provider.key_env_var
        value = env.get(var) if var else None
        if not value and settings.api_key_env is None:  # e.g. Google's GOOGLE_API_KEY
            value = next((env[v] for v in provider.key_env_fallbacks if env.get(v)), None)
        if value:
            settings = settings.model_copy(update={"api_key": SecretStr(value)})
    return settings
