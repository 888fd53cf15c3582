"""The routing policy: a pure function from (request, gate, catalogue, provider state) to a plan.

`plan()` does no I/O and reads no clock: everything that varies (which providers have keys,
today's date, the round-robin position, the budget left) comes in through `ProviderState`.
Every model of the pool ends up either a `Candidate` (in the order to try) or a `Rejection` with
a reason a person can read.

Hard constraints reject: unknown model, provider unavailable, size, seed (a requested seed is a
promise of reproducibility), prompt length, max cost per image, budget. Soft ones (quality, style
the model lacks; a retirement date passed or near) are served with a warning: a model past its
provider's retirement date may still be served by an OpenAI-compatible endpoint, so the gate's
author decides, warned by `layer check` and on every response.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from layer_core.catalog import Catalog, ModelSpec
from layer_core.gates import Gate
from layer_core.schema import ImageRequest, Quality, Size, Style

DEFAULT_SIZE: Size = "1024x1024"
#: A model retiring within this many days gets a warning on every response it serves.
DEPRECATION_WARNING_DAYS = 90


@dataclass(frozen=True, slots=True)
class ProviderState:
    """What the policy needs to know about the world, passed in so `plan()` stays pure."""

    unavailable: Mapping[str, str] = field(default_factory=dict)
    """provider name → why it cannot be called (e.g. "OPENAI_API_KEY is not set")."""
    today: date = date(2026, 1, 1)
    rotation: int = 0
    """round-robin position for this gate (the caller advances it)."""
    budget_left: Decimal | None = None
    """USD left in the gate's budget period, when it has a `block` budget."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A model that can serve the request, fitted to it."""

    model: ModelSpec
    quality: Quality | None
    style: Style | None
    price: Decimal
    estimated_cost: Decimal
    warnings: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.model.id


@dataclass(frozen=True, slots=True)
class Rejection:
    """A model of the pool that will not be tried, and why (the reason starts with its id)."""

    model: str
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    """The models to try, in order, and the ones left out."""

    gate_id: str
    prompt: str
    size: Size
    quality: Quality | None
    style: Style | None
    count: int
    seed: int | None
    candidates: tuple[Candidate, ...]
    rejected: tuple[Rejection, ...]

    @property
    def estimated_cost(self) -> Decimal | None:
        """What the first candidate would cost for the whole request."""
        return self.candidates[0].estimated_cost if self.candidates else None


def money(amount: Decimal) -> str:
    """$0.04, $0.167, $0 — as short as exact allows."""
    text = format(amount.normalize(), "f")
    return f"${text}"


def plan(request: ImageRequest, gate: Gate, catalog: Catalog, state: ProviderState) -> Plan:
    """Decide which models may serve `request` through `gate`, and in which order."""
    data = request.data
    defaults = gate.defaults
    size: Size = data.size or defaults.size or DEFAULT_SIZE
    quality = data.quality or defaults.quality
    style = data.style or defaults.style
    count = data.count
    seed = data.seed
    prompt_chars = len(data.prompt)

    pool = gate.pool
    pinned: str | None = None
    if request.model is not None:
        pinned = request.model
        pool = (pinned,) if gate.routing_strategy == "single" else (pinned, *pool)
    elif gate.routing_strategy == "single":
        pool = pool[:1]

    seen: set[str] = set()
    eligible: list[Candidate] = []
    rejected: list[Rejection] = []
    max_cost = gate.max_cost_per_image
    budget_left = state.budget_left
    unavailable = state.unavailable
    today = state.today

    for name in pool:
        spec = catalog.resolve(name)
        if spec is None:
            if name not in seen:
                seen.add(name)
                rejected.append(
                    Rejection(name, f"{name}: not in the catalogue (is its plugin installed?)")
                )
            continue
        if spec.id in seen:
            continue
        seen.add(spec.id)
        mid = spec.id
        why = unavailable.get(spec.provider)
        if why is not None:
            rejected.append(Rejection(mid, f"{mid}: {why}"))
            continue
        if size not in spec.sizes:
            rejected.append(
                Rejection(mid, f"{mid}: size {size} not supported ({', '.join(spec.sizes)})")
            )
            continue
        if seed is not None and not spec.supports_seed:
            rejected.append(
                Rejection(mid, f"{mid}: cannot honour seed {seed} (the model has no seed)")
            )
            continue
        if spec.max_prompt_chars is not None and prompt_chars > spec.max_prompt_chars:
            rejected.append(
                Rejection(
                    mid,
                    f"{mid}: prompt is {prompt_chars} characters, over its {spec.max_prompt_chars}",
                )
            )
            continue
        served_quality = spec.served_quality(quality)
        price = spec.price(served_quality, size)
        if price is None:  # ModelSpec validation makes this unreachable; never route unpriced
            rejected.append(Rejection(mid, f"{mid}: no price for {served_quality}/{size}"))
            continue
        if max_cost is not None and price > max_cost:
            rejected.append(
                Rejection(
                    mid, f"{mid}: {money(price)}/image over max_cost_per_image {money(max_cost)}"
                )
            )
            continue
        estimated = price * count
        if budget_left is not None and estimated > budget_left:
            rejected.append(
                Rejection(
                    mid,
                    f"{mid}: {money(estimated)} for {count} image(s) over the "
                    f"{money(budget_left)} left in the gate's budget",
                )
            )
            continue
        warnings: list[str] = []
        if quality is not None and served_quality != quality:
            warnings.append(
                f"{mid}: quality {quality!r} not supported; served at {served_quality!r}"
                if served_quality
                else f"{mid}: has no quality setting; quality {quality!r} ignored"
            )
        served_style = style if style in spec.styles else None
        if style is not None and served_style is None:
            warnings.append(f"{mid}: has no style {style!r}; style ignored")
        retires = spec.deprecated
        if retires is not None and (retires - today).days <= DEPRECATION_WARNING_DAYS:
            warnings.append(
                f"{mid}: retired on {retires.isoformat()}; the provider may refuse it"
                if retires <= today
                else f"{mid}: will be retired on {retires.isoformat()}"
            )
        eligible.append(
            Candidate(spec, served_quality, served_style, price, estimated, tuple(warnings))
        )

    if gate.routing_strategy == "single" and request.model is None:
        for name in gate.pool[1:]:
            rejected.append(Rejection(name, f"{name}: not used (routing_strategy is single)"))

    ordered = _order(eligible, gate, state, pinned, catalog)
    return Plan(
        gate_id=gate.id,
        prompt=data.prompt,
        size=size,
        quality=quality,
        style=style,
        count=count,
        seed=seed,
        candidates=tuple(ordered),
        rejected=tuple(rejected),
    )


def _order(
    eligible: list[Candidate],
    gate: Gate,
    state: ProviderState,
    pinned: str | None,
    catalog: Catalog,
) -> list[Candidate]:
    """Order by strategy; a pinned (override) model goes first, placeholders go last."""
    head: list[Candidate] = []
    if pinned is not None:
        pinned_spec = catalog.resolve(pinned)
        head = [c for c in eligible if pinned_spec is not None and c.model is pinned_spec]
        eligible = [c for c in eligible if c not in head]
    real = [c for c in eligible if not c.model.placeholder]
    stand_ins = [c for c in eligible if c.model.placeholder]
    strategy = gate.routing_strategy
    if strategy == "cost":
        real.sort(key=lambda c: c.price)  # stable: ties keep the order written
    elif strategy == "quality":
        real.sort(key=lambda c: -c.model.quality_score)
    elif strategy == "round-robin" and real:
        turn = state.rotation % len(real)
        real = real[turn:] + real[:turn]
    return head + real + stand_ins
