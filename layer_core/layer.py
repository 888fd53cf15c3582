"""`Layer`: the one object an app holds. Request → validate → gate → plan → execute → response."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from layer_core.bridge import LoopThread, iterate_on
from layer_core.budget_guard import BudgetGuard, new_id
from layer_core.catalog import Catalog, Deployment, ModelSpec
from layer_core.config import ConfigSource, LayerConfig, load_config
from layer_core.errors import (
    ConfigError,
    GateNotFound,
    LayerClosed,
    LedgerUnavailable,
    NoEligibleModel,
)
from layer_core.execution import Executor, Outcome
from layer_core.gates import Gate
from layer_core.ledger import Hold, Ledger, ledger_url
from layer_core.plugins import PluginHost, PluginInfo
from layer_core.policy import Plan, ProviderState, Rejection, plan
from layer_core.provider import Provider
from layer_core.registry import (
    DEFAULT_GATE,
    ProviderRegistry,
    left_out_warning as left_out_warning,  # where cli, checks read it
)
from layer_core.schema import (
    ImageData,
    ImageRequest,
    ImageResponse,
)
from layer_core.state import DeploymentHealth, Limits, StateStore, state_url
from layer_core.state.stores import open_store
from layer_core.validation import parse_request

if TYPE_CHECKING:
    from layer_core.batch import BatchInput, BatchResult
    from layer_core.ledger.report import CostReport, When

log = logging.getLogger("layer")
T = TypeVar("T")


class Layer:
    """Generate images through the gates of a config, with the providers installed plugins offer.

    ``Layer(config)`` takes a path to a plugins.toml, a dict of the same shape, or None (then
    ``$LAYER_CONFIG``, ``./plugins.toml``, the user config dir, or built-in defaults).
    ``plugins`` registers extra plugin objects (or `Provider` instances) on this instance only.
    ``state`` is a store of live provider state to use instead of the config's `state` (e.g. a
    `MemoryStore` with a test's clock).
    """

    def __init__(
        self,
        config: ConfigSource = None,
        *,
        plugins: Iterable[object] = (),
        load_entry_points: bool = True,
        environ: Mapping[str, str] | None = None,
        state: StateStore | None = None,
    ) -> None:
        self.config: LayerConfig = load_config(config)
        registry = ProviderRegistry(
            self.config, plugins=plugins, load_entry_points=load_entry_points, environ=environ
        )
        self._registry = registry
        self._host: PluginHost = registry.host
        self._catalog: Catalog = registry.catalog
        self._rotation: dict[str, int] = {}
        self._turns: dict[str, bool] = {}
        self._states: dict[str, ProviderState] = {}
        self._runner: LoopThread | None = None
        self._environ = environ
        self._store: StateStore | None = state
        self._closed = False
        self._ledger = self._open_ledger(environ)
        self._guard = (
            None
            if self._ledger is None
            else BudgetGuard(
                self._ledger,
                self._catalog,
                self._host.notify,
                store_prompts=self.config.store_prompts,
            )
        )

    def _open_ledger(self, environ: Mapping[str, str] | None) -> Ledger | None:
        try:
            url = ledger_url(self.config.ledger, environ)
        except ValueError as exc:
            raise ConfigError(f"{self.config.source}: {exc}") from None
        if url is None:
            return None
        return Ledger.for_url(url, notify=self._host.notify)

    # --- catalogue, gates, plugins -------------------------------------------------------

    def left_out(self, gate_id: str = DEFAULT_GATE) -> list[Rejection]:
        """The models of the catalogue a built-in gate leaves out of its pool, each with why.

        Only the built-in `default` gate (used when the config defines none) leaves models out:
        those past their retirement date. A gate of the config never does (its pool is what it
        names), so this is empty for it. They also appear in the gate's plans as rejections.
        """
        return list(self._registry.left_out.get(gate_id, ()))

    def _plan(self, request: ImageRequest, gate: Gate, state: ProviderState) -> Plan:
        """The policy's plan, with what a built-in gate left out listed among the rejected."""
        result = plan(request, gate, self._catalog, state)
        left_out = self._registry.left_out.get(gate.id)
        return replace(result, rejected=result.rejected + left_out) if left_out else result

    def models(self) -> list[ModelSpec]:
        """The catalogue: every model of every loaded provider."""
        return list(self._catalog.values())

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def gates(self) -> dict[str, Gate]:
        """The configured gates by id (including the built-in `default` when none is configured)."""
        return dict(self._registry.gates)

    def plugins(self) -> list[PluginInfo]:
        """Every plugin seen: loaded, failed (with the reason) or disabled."""
        return list(self._host.plugins)

    @property
    def providers(self) -> dict[str, Provider]:
        return dict(self._host.providers)

    def unavailable(self) -> dict[str, str]:
        """Provider instances that cannot be called now, and why (e.g. a key that is not set)."""
        return dict(self._registry.unavailable)

    def deployments(self) -> list[Deployment]:
        """Every deployment: each model on each provider instance that serves it."""
        return self._catalog.deployments()

    def absent_instances(self) -> dict[str, str]:
        """`[providers.<name>]` instances that were not made, and why (their plugin is not
        loaded here)."""
        return dict(self._registry.absent_instances)

    # --- planning --------------------------------------------------------------------------

    def _prepare(
        self,
        gate_id: str,
        data: ImageData | Mapping[str, Any],
        model: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> tuple[ImageRequest, Gate]:
        """Validate a request, find its gate, and check what it asks against the gate's rules."""
        request = parse_request(gate_id, data, model, metadata)
        gate = self._registry.gates.get(request.gate_id)
        if gate is None:
            raise GateNotFound(request.gate_id, list(self._registry.gates))
        if request.model is not None:
            self._registry.check_known(request.model)
        gate.check_overrides(request, self._catalog)
        return request, gate

    @property
    def state_store(self) -> StateStore:
        """Where each deployment's breaker, cooldown and limits live: this process's memory, or
        the Redis of `state` / `LAYER_STATE_URL` (connected on first use)."""
        if self._store is None:
            url = state_url(self.config.state, self._environ)
            try:
                self._store = open_store(
                    url, prefix=self.config.state_prefix, timeout=self.config.state_timeout
                )
            except ValueError as exc:
                raise ConfigError(f"LAYER_STATE_URL: {exc}") from None
        return self._store

    def deployment_limits(self) -> dict[str, Limits]:
        """Every deployment of the catalogue → the limits its provider instance sets."""
        found = {}
        for d in self._catalog.deployments():
            settings = self._host.providers[d.instance].settings
            found[d.key] = Limits(
                settings.rpm, settings.images_per_minute, settings.max_concurrency
            )
        return found

    def health(self) -> tuple[dict[str, DeploymentHealth], str | None]:
        """Every deployment's breaker, cooldown and headroom, read from the configured store (a
        Redis one is asked, which also refreshes what this process plans with), and a note when
        it could not be reached (then this process's own state is shown)."""
        return self._run(self.state_store.read(self.deployment_limits()))

    def _state(self, gate: Gate, now: datetime, *, advance: bool) -> ProviderState:
        rotation = self._rotation.get(gate.id, 0)
        if advance and self._rotates(gate):
            self._rotation[gate.id] = rotation + 1
        today = now.date()
        # The state only changes with the date and the gate's rotation (the budget left is read
        # per request by `BudgetGuard.reserve`), so one is kept per gate, not built per request.
        state = self._states.get(gate.id)
        if state is None or state.today != today or state.rotation != rotation:
            state = ProviderState(
                unavailable=self._registry.unavailable, today=today, rotation=rotation
            )
            self._states[gate.id] = state
        health = self.state_store.snapshot()
        return replace(state, health=health) if health else state

    def _rotates(self, gate: Gate) -> bool:
        """Whether the gate's order turns from request to request: round-robin, or a model of
        its pool with several deployments to spread by weight."""
        turns = self._turns.get(gate.id)
        if turns is None:
            resolve = self._catalog.resolve_deployments
            turns = gate.routing_strategy == "round-robin" or any(
                len(resolve(name)) > 1 for name in gate.pool
            )
            self._turns[gate.id] = turns
        return turns

    def explain(
        self,
        gate_id: str = DEFAULT_GATE,
        data: ImageData | Mapping[str, Any] | None = None,
        model: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Plan:
        """The plan for a request (candidates in order, rejections with reasons); calls no one.

        A gate with a `block` budget reads what is left of it, so the plan shows which models
        the budget rules out.
        """
        request, gate = self._prepare(gate_id, data or {}, model, metadata)
        now = datetime.now(UTC)
        state = self._state(gate, now, advance=False)
        if self._guard is not None:
            left = self._guard.budget_left(gate, now)
            if left is not None:
                state = replace(state, budget_left=left)
        result = self._plan(request, gate, state)
        self._host.notify("on_plan", request=request, plan=result)
        return result

    # --- generating --------------------------------------------------------------------------

    async def aimage(
        self,
        gate_id: str = DEFAULT_GATE,
        data: ImageData | Mapping[str, Any] | None = None,
        model: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ImageResponse:
        """Generate images for ``data`` through gate ``gate_id``.

        Raises `InvalidRequest`, `GateNotFound`, `UnknownModel`, `OverrideNotAllowed`,
        `NoEligibleModel` or `BudgetExceeded` before any provider is called, and
        `AllAttemptsFailed` (carrying every attempt and any images delivered) when generation
        fails. Every request that reaches its gate is recorded in the ledger (unless it is off).
        """
        started = time.perf_counter()
        if self._closed:
            raise _closed_error()
        request, gate = self._prepare(gate_id, data or {}, model, metadata)
        notify = self._host.notify
        notify("on_request", request=request, gate=gate)
        now = datetime.now(UTC)
        state = self._state(gate, now, advance=True)
        first_plan = self._plan(request, gate, state)
        guard = self._guard
        the_plan = first_plan
        hold: Hold | None = None
        notes: list[str] = []
        executor: Executor | None = None
        try:
            if guard is not None and gate.budget is not None and first_plan.candidates:
                the_plan, hold, notes = await guard.reserve(request, gate, state, first_plan, now)
            notify("on_plan", request=request, plan=the_plan)
            executor = self._executor(request, gate, the_plan)
            outcome = await executor.run()
        except BaseException as exc:
            if guard is not None:
                await guard.record_failure(exc, request, first_plan, now, started, hold, executor)
            raise
        response = self._respond(request, gate, outcome, notes, started)
        if guard is not None:
            await guard.record_success(response, request, first_plan, now, hold)
        notify("on_response", request=request, response=response)
        return response

    def _executor(self, request: ImageRequest, gate: Gate, the_plan: Plan) -> Executor:
        """The executor of a plan, which has a candidate (else `NoEligibleModel`)."""
        if not the_plan.candidates:
            raise NoEligibleModel(gate.id, the_plan.rejected)
        return Executor(
            request=request,
            gate=gate,
            plan=the_plan,
            providers=self._host.providers,
            notify=self._host.notify,
            secrets=self._registry.secrets,
            state=self.state_store,
            rules=gate.health or self.config.health,
        )

    def _respond(
        self,
        request: ImageRequest,
        gate: Gate,
        outcome: Outcome,
        notes: list[str],
        started: float,
    ) -> ImageResponse:
        """The response to a request served, with the notes of its budget and gate."""
        first = outcome.images[0]
        left_out = self._registry.left_out.get(gate.id)
        if left_out and all(self._catalog[image.model].placeholder for image in outcome.images):
            notes.append(left_out_warning(left_out))  # why a placeholder served, not them
        return ImageResponse(
            id=new_id(),
            model=first.model,
            images=outcome.images,
            cost_exact=outcome.cost,
            latency=(time.perf_counter() - started) * 1000,
            gate_id=gate.id,
            provider=first.provider,
            deployment=first.deployment,
            attempts=outcome.attempts,
            warnings=[*outcome.warnings, *notes] if notes else outcome.warnings,
            metadata=request.metadata,
        )

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

        if self._closed:
            raise _closed_error()
        return stream(self, batch_items(requests), concurrency=concurrency, ordered=ordered)

    def image_batch(
        self,
        requests: Iterable[BatchInput],
        *,
        concurrency: int = 8,
        ordered: bool = False,
    ) -> Iterator[BatchResult]:
        """`aimage_batch`, iterated for you (on the same private loop as `image`)."""
        batch = self.aimage_batch(requests, concurrency=concurrency, ordered=ordered)
        return iterate_on(self._loop_thread().loop, batch)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise _closed_error()
        return self._loop_thread().run(coro)

    def _loop_thread(self) -> LoopThread:
        """The private loop the sync calls run on, started on first use."""
        if self._runner is None:
            self._runner = LoopThread()
        return self._runner

    # --- spend -------------------------------------------------------------------------------

    @property
    def ledger(self) -> Ledger | None:
        """The cost ledger (None when the config says ``ledger = false``)."""
        return self._ledger

    def costs(
        self, since: When = None, until: When = None, by: str | Sequence[str] = ()
    ) -> CostReport:
        """Spend recorded over [since, until), grouped `by` any of gate, model, provider, day,
        status and ``meta.<key>`` (a metadata key); no `by` gives one row with the total.

        `since`/`until` take datetimes, dates, ISO text, or ages such as ``"7d"``. Requests
        this process made are written before the query runs, so they are always counted.
        Raises `LedgerUnavailable` when the ledger is off or its database cannot be reached.
        """
        if self._ledger is None:
            raise LedgerUnavailable(
                f"{self.config.source}: the ledger is off (ledger = false); nothing is recorded"
            )
        return self._ledger.costs(since=since, until=until, by=by)

    # --- closing -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the providers' clients on the running loop, and write what the ledger holds."""
        for provider in self._host.providers.values():
            try:
                await provider.aclose()
            except Exception:
                log.exception("closing provider %s failed", provider.name)
        if self._store is not None:
            await self._store.aclose()
        if self._ledger is not None:
            import asyncio

            await asyncio.to_thread(self._ledger.close)

    def close(self) -> None:
        """Close providers (on the sync loop as well), stop the sync loop's thread, and write
        what the ledger holds. A closed `Layer` refuses new requests (`LayerClosed`); `costs()`
        still reads the ledger. (`aclose()` alone closes only what the running loop holds, so
        an async app can go on with the `Layer` on another loop.)"""
        self._closed = True
        if self._runner is not None:
            self._runner.run(self.aclose())
            self._runner.stop()
            self._runner = None
        if self._ledger is not None:
            self._ledger.close()

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
            f"gates={sorted(self._registry.gates)}>"
        )


def _closed_error() -> LayerClosed:
    return LayerClosed("this Layer is closed (close() was called); make a new Layer() for more")
