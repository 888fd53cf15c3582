"""`Layer`: the one object an app holds. Request → validate → gate → plan → execute → response."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from layer_core.catalog import Catalog, ModelSpec
from layer_core.config import ConfigSource, LayerConfig, load_config, provider_settings
from layer_core.errors import (
    GateNotFound,
    NoEligibleModel,
    OverrideNotAllowed,
    PluginRegistrationError,
    UnknownModel,
)
from layer_core.execution import Executor
from layer_core.gates import OVERRIDE_FIELDS, Gate
from layer_core.plugins import PluginHost, PluginInfo, allow_list_from_env, build_host
from layer_core.policy import Plan, ProviderState, plan
from layer_core.provider import Provider, ProviderSettings
from layer_core.schema import ImageData, ImageRequest, ImageResponse, parse_request

if TYPE_CHECKING:
    from layer_core.batch import BatchInput, BatchResult

log = logging.getLogger("layer")
T = TypeVar("T")

DEFAULT_GATE = "default"
_COMMON_SETTINGS = set(ProviderSettings.model_fields)


class Layer:
    """Generate images through the gates of a config, with the providers installed plugins offer.

    ``Layer(config)`` takes a path to a plugins.toml, a dict of the same shape, or None (then
    ``$LAYER_CONFIG``, ``./plugins.toml``, the user config dir, or built-in defaults).
    ``plugins`` registers extra plugin objects (or `Provider` instances) on this instance only.
    """

    def __init__(
        self,
        config: ConfigSource = None,
        *,
        plugins: Iterable[object] = (),
        load_entry_points: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config: LayerConfig = load_config(config)
        allow = allow_list_from_env()
        if allow is None:
            allow = self.config.load
        self._host: PluginHost = build_host(
            allow=allow, extra=plugins, entry_points=load_entry_points
        )
        self._secrets: list[str] = []
        self._unavailable: dict[str, str] = {}
        self._options: dict[str, dict[str, Any]] = {}
        specs: list[ModelSpec] = []
        for name, provider in list(self._host.providers.items()):
            table = self.config.plugin_settings.get(name, {})
            settings = provider_settings(
                provider, table, source=self.config.source, environ=environ
            )
            if settings.api_key is not None:
                self._secrets.append(settings.api_key.get_secret_value())
            try:
                provider.configure(settings)
                specs.extend(self._provider_models(name, provider, settings.prices))
                self._options[name] = settings.model_dump(exclude=_COMMON_SETTINGS)
            except Exception as exc:  # noqa: BLE001 - one provider's bug never stops the rest
                self._host.drop_provider(name, f"{type(exc).__name__}: {exc}")
        self._catalog = _build_catalog(specs, self._host)
        for name, provider in self._host.providers.items():
            ok, why = provider.available()
            if not ok:
                self._unavailable[name] = why or "not available"
        self._gates: dict[str, Gate] = dict(self.config.gates)
        if DEFAULT_GATE not in self._gates:
            self._gates[DEFAULT_GATE] = self._builtin_default_gate()
        self._rotation: dict[str, int] = {}
        self._runner: _LoopThread | None = None

    # --- catalogue, gates, plugins -------------------------------------------------------

    def _provider_models(
        self, name: str, provider: Provider, prices: Mapping[str, Mapping[str, Any]]
    ) -> list[ModelSpec]:
        specs = []
        for spec in provider.models():
            if not isinstance(spec, ModelSpec) or spec.provider != name:
                raise PluginRegistrationError(
                    self._host.provider_plugin.get(name, name),
                    f"provider {name!r} declared {spec!r}: not a ModelSpec of provider {name!r}",
                )
            override = prices.get(spec.id)
            specs.append(spec.with_prices(override) if override else spec)
        return specs

    def _builtin_default_gate(self) -> Gate:
        today = datetime.now(UTC).date()
        pool = [
            s.id for s in self._catalog.values() if s.deprecated is None or s.deprecated > today
        ]
        return Gate(
            id=DEFAULT_GATE,
            description="built in: every installed model, best quality first, placeholders last",
            fallback_models=tuple(pool) or ("local",),
            routing_strategy="quality",
        )

    def models(self) -> list[ModelSpec]:
        """The catalogue: every model of every loaded provider."""
        return list(self._catalog.values())

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def gates(self) -> dict[str, Gate]:
        """The configured gates by id (including the built-in `default` when none is configured)."""
        return dict(self._gates)

    def plugins(self) -> list[PluginInfo]:
        """Every plugin seen: loaded, failed (with the reason) or disabled."""
        return list(self._host.plugins)

    @property
    def providers(self) -> dict[str, Provider]:
        return dict(self._host.providers)

    def unavailable(self) -> dict[str, str]:
        """Providers that cannot be called now, and why (e.g. a key that is not set)."""
        return dict(self._unavailable)

    # --- planning --------------------------------------------------------------------------

    def _prepare(
        self,
        gate_id: str,
        data: ImageData | Mapping[str, Any],
        model: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> tuple[ImageRequest, Gate]:
        request = parse_request(gate_id, data, model, metadata)
        gate = self._gates.get(request.gate_id)
        if gate is None:
            raise GateNotFound(request.gate_id, list(self._gates))
        self._check_overrides(request, gate)
        return request, gate

    def _check_overrides(self, request: ImageRequest, gate: Gate) -> None:
        if request.model is not None:
            spec = self._catalog.resolve(request.model)
            if spec is None:
                raise UnknownModel(request.model, self._catalog.names())
            primary = self._catalog.resolve(gate.model) if gate.model else None
            if spec is not primary and not gate.allows_override("model"):
                raise OverrideNotAllowed(
                    gate.id, "model", f"it routes {', '.join(gate.pool)}; asked for {spec.id}"
                )
        for field in OVERRIDE_FIELDS[1:]:
            pinned = getattr(gate.defaults, field)
            asked = getattr(request.data, field)
            if pinned and asked and asked != pinned and not gate.allows_override(field):
                raise OverrideNotAllowed(
                    gate.id, f"data.{field}", f"it pins {pinned}; asked for {asked}"
                )

    def _plan(self, request: ImageRequest, gate: Gate, *, advance: bool) -> Plan:
        rotation = self._rotation.get(gate.id, 0)
        if advance and gate.routing_strategy == "round-robin":
            self._rotation[gate.id] = rotation + 1
        state = ProviderState(
            unavailable=self._unavailable,
            today=datetime.now(UTC).date(),
            rotation=rotation,
        )
        result = plan(request, gate, self._catalog, state)
        self._host.notify("on_plan", request=request, plan=result)
        return result

    def explain(
        self,
        gate_id: str = DEFAULT_GATE,
        data: ImageData | Mapping[str, Any] | None = None,
        model: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Plan:
        """The plan for a request (candidates in order, rejections with reasons); calls no one."""
        request, gate = self._prepare(gate_id, data or {}, model, metadata)
        return self._plan(request, gate, advance=False)

    # --- generating --------------------------------------------------------------------------

    async def aimage(
        self,
        gate_id: str = DEFAULT_GATE,
        data: ImageData | Mapping[str, Any] | None = None,
        model: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ImageResponse:
        """Generate images for ``data`` through gate ``gate_id``.

        Raises `InvalidRequest`, `GateNotFound`, `UnknownModel`, `OverrideNotAllowed` or
        `NoEligibleModel` before any provider is called, and `AllAttemptsFailed` (carrying every
        attempt and any images delivered) when generation fails.
        """
        started = time.perf_counter()
        request, gate = self._prepare(gate_id, data or {}, model, metadata)
        notify = self._host.notify
        notify("on_request", request=request, gate=gate)
        the_plan = self._plan(request, gate, advance=True)
        if not the_plan.candidates:
            raise NoEligibleModel(gate.id, the_plan.rejected)
        outcome = await Executor(
            request=request,
            gate=gate,
            plan=the_plan,
            providers=self._host.providers,
            notify=notify,
            secrets=self._secrets,
            options=self._options,
        ).run()
        first = outcome.images[0]
        response = ImageResponse(
            id=f"img_{uuid.uuid4().hex}",
            model=first.model,
            images=outcome.images,
            cost_exact=outcome.cost,
            latency=(time.perf_counter() - started) * 1000,
            gate_id=gate.id,
            provider=first.provider,
            attempts=outcome.attempts,
            warnings=outcome.warnings,
            metadata=request.metadata,
        )
        notify("on_response", request=request, response=response)
        return response

    def image(
        self,
        gate_id: str = DEFAULT_GATE,
        data: ImageData | Mapping[str, Any] | None = None,
        model: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ImageResponse:
        """`aimage`, run for you; works inside a running event loop too (e.g. a notebook)."""
        return self._run(self.aimage(gate_id, data, model, metadata))

    def aimage_batch(
        self,
        requests: Iterable[BatchInput],
        *,
        concurrency: int = 8,
        ordered: bool = False,
    ) -> AsyncIterator[BatchResult]:
        """Generate for many requests, at most `concurrency` at a time across every provider.

        Yields a `BatchResult` per request (its id, request, and response or error) as each
        finishes, or in input order when `ordered`. A request is an `ImageRequest` or a mapping
        in the wire shape (`{"gateId", "data", "model", "metadata"}` plus an optional `id`).
        One failure never stops the others; an invalid request is an `InvalidRequest` result and
        reaches no provider. Leaving the loop early cancels the requests in flight.
        """
        from layer_core.batch import batch_items, stream

        return stream(self, batch_items(requests), concurrency=concurrency, ordered=ordered)

    def image_batch(
        self,
        requests: Iterable[BatchInput],
        *,
        concurrency: int = 8,
        ordered: bool = False,
    ) -> Iterator[BatchResult]:
        """`aimage_batch`, iterated for you (on the same private loop as `image`)."""
        from layer_core.batch import iterate_on

        if self._runner is None:
            self._runner = _LoopThread()
        batch = self.aimage_batch(requests, concurrency=concurrency, ordered=ordered)
        return iterate_on(self._runner.loop, batch)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._runner is None:
            self._runner = _LoopThread()
        return self._runner.run(coro)

    # --- closing -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the providers' clients on the running loop."""
        for provider in self._host.providers.values():
            try:
                await provider.aclose()
            except Exception:
                log.exception("closing provider %s failed", provider.name)

    def close(self) -> None:
        """Close providers (on the sync loop as well) and stop the sync loop's thread."""
        if self._runner is not None:
            self._runner.run(self.aclose())
            self._runner.stop()
            self._runner = None

    def __enter__(self) -> Layer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Layer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
        self.close()

    def __repr__(self) -> str:
        return (
            f"<Layer config={self.config.source!r} providers={sorted(self._host.providers)} "
            f"gates={sorted(self._gates)}>"
        )


def _build_catalog(specs: list[ModelSpec], host: PluginHost) -> Catalog:
    catalog = Catalog()
    for spec in specs:
        try:
            catalog.add(spec)
        except ValueError as exc:
            plugin = host.provider_plugin.get(spec.provider, spec.provider)
            log.warning("plugin %s: %s; model skipped", plugin, exc)
            for info in host.plugins:
                if info.name == plugin:
                    info.error = f"{info.error + '; ' if info.error else ''}{exc}"
    return catalog


class _LoopThread:
    """A private event loop on a daemon thread, so sync calls work even inside a running loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="layer-sync", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()
