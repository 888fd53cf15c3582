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
from typing import NamedTuple

from layer_core.catalog import (
    Absent,
    Catalog,
    Deployment,
    ModelSpec,
    Rejection as Rejection,
    retirement,
)
from layer_core.gates import Gate
from layer_core.money import money
from layer_core.schema import ImageRequest, Quality, Size, Style
from layer_core.state import DeploymentHealth

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
    health: Mapping[str, DeploymentHealth] = field(default_factory=dict)
    """deployment (``model@instance``) → what the state store knows of it, for those not
    plainly healthy: an open or cooling circuit, or limits without headroom (`layer_core.state`).
    """


class Candidate(NamedTuple):
    """A model that can serve the request, fitted to it.

    A NamedTuple rather than a frozen dataclass: `plan()` builds one per eligible model on every
    request, and a frozen dataclass pays an `object.__setattr__` per field to build.
    """

    model: ModelSpec
    quality: Quality | None
    style: Style | None
    price: Decimal
    estimated_cost: Decimal
    warnings: tuple[str, ...] = ()
    skipped: tuple[Rejection, ...] = ()
    """Models of the pool the strategy ranks before this one that this request rules out (its
    size, seed, prompt, price or the budget left), which a response it serves names in its
    warnings. Models whose provider cannot be called are not among them: they are out for every
    request (`layer explain` and `layer check` say so), not because of this one."""
    health: DeploymentHealth | None = None
    """What the state store knows of its deployment when it is not plainly healthy (why it is
    demoted: "circuit open for 8 s more after 3 timeouts"); None when it is."""

    instance: str = ""
    """The provider instance that serves it (the key of `Layer.providers`)."""
    deployment: str = ""
    """``model@instance``: the unit that fails, rate-limits and bills."""
    weight: float = 1.0
    """Its share among the deployments of the same model."""

    @property
    def id(self) -> str:
        return self.model.id


#: `Candidate(...)` runs NamedTuple's generated `__new__`, a Python function; `plan()` makes a
#: candidate per eligible model on every request, and building the tuple directly is cheaper.
_make_candidate = tuple.__new__


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


def plan(request: ImageRequest, gate: Gate, catalog: Catalog, state: ProviderState) -> Plan:
    """Decide which models may serve `request` through `gate`, and in which order.

    The gate's pool is fitted to the request's size, quality and style (once per shape); then
    each model of it is rejected (not in the catalogue, its provider unavailable, or ruled out
    by this request) or made a candidate, put in the strategy's order.
    """
    data = request.data
    defaults = gate.defaults
    size: Size = data.size or defaults.size or DEFAULT_SIZE
    quality = data.quality or defaults.quality
    style = data.style or defaults.style
    count = data.count
    seed = data.seed
    prompt_chars = len(data.prompt)
    unavailable = state.unavailable
    budget_left = state.budget_left
    pool = _fitted_pool(catalog, gate, request.model, size, quality, style)
    rejected: list[Rejection] = []
    head: list[Candidate] = []  # the model the request names, before all
    placed: list[Candidate | None] = [None] * len(pool.fits)  # real models by rank
    stand_ins: list[Candidate] = []  # placeholders, after every real model
    stand_in_places: list[int] = []
    skipped: list[tuple[int, Rejection]] = []  # (place in the order, why) of each ruled out
    for fit in pool.fits:
        if isinstance(fit, Rejection):  # not in the catalogue
            rejected.append(fit)
            continue
        why = unavailable.get(fit.instance) if unavailable else None
        if why is not None:
            rejected.append(Rejection(fit.label, f"{fit.label}: {why}"))
            continue
        estimated = fit.price if count == 1 else fit.price * count
        ruled_out = _ruled_out(fit, seed, prompt_chars, count, estimated, budget_left)
        if ruled_out is not None:
            rejected.append(ruled_out)
            skipped.append((_place(fit, pool), ruled_out))
            continue
        warnings = fit.warnings if fit.deprecated is None else _retiring(fit, state.today)
        candidate = _make_candidate(
            Candidate,
            (
                fit.spec,
                fit.quality,
                fit.style,
                fit.price,
                estimated,
                warnings,
                (),
                None,
                fit.instance,
                fit.deployment,
                fit.weight,
            ),
        )
        if fit.pinned:
            head.append(candidate)
        elif fit.placeholder:
            stand_ins.append(candidate)
            stand_in_places.append(_place(fit, pool))
        else:
            placed[fit.rank] = candidate
    candidates = _in_order(
        head, placed, stand_ins, stand_in_places, skipped, gate, state, pool.spread
    )
    if state.health:
        candidates = by_health(candidates, state.health)
    if pool.unused:
        rejected.extend(pool.unused)
    return Plan(
        gate_id=gate.id,
        prompt=data.prompt,
        size=size,
        quality=quality,
        style=style,
        count=count,
        seed=seed,
        candidates=candidates,
        rejected=tuple(rejected),
    )


def _ruled_out(
    fit: _Fit,
    seed: int | None,
    prompt_chars: int,
    count: int,
    estimated: Decimal,
    budget_left: Decimal | None,
) -> Rejection | None:
    """What in this request rules out a model of the pool: its size, seed, prompt length,
    price, or the budget left; None when nothing does."""
    mid = fit.label
    if fit.no_size is not None:
        return fit.no_size
    if seed is not None and not fit.supports_seed:
        return Rejection(mid, f"{mid}: cannot honour seed {seed} (the model has no seed)")
    if fit.max_prompt_chars is not None and prompt_chars > fit.max_prompt_chars:
        return Rejection(
            mid, f"{mid}: prompt is {prompt_chars} characters, over its {fit.max_prompt_chars}"
        )
    if fit.over_price is not None:  # unpriced, or over max_cost_per_image
        return fit.over_price
    if budget_left is not None and estimated > budget_left:
        return Rejection(
            mid,
            f"{mid}: {money(estimated)} for {count} image(s) over the "
            f"{money(budget_left)} left in the gate's budget",
        )
    return None


def _place(fit: _Fit, pool: _FittedPool) -> int:
    """A model's place in the order of preference: the one the request names first (-1), then
    the real models by rank, then the placeholders by rank."""
    if fit.pinned:
        return -1
    return fit.rank + len(pool.fits) if fit.placeholder else fit.rank


def _retiring(fit: _Fit, today: date) -> tuple[str, ...]:
    """The warnings of a model with a retirement date, and one more when it is passed or near."""
    warnings = fit.warnings
    retires = fit.deprecated
    if retires is not None and (retires - today).days <= DEPRECATION_WARNING_DAYS:
        refused = "; the provider may refuse it" if fit.spec.retired(today) else ""
        warnings += (f"{fit.id}: {retirement(retires, today)}{refused}",)
    return warnings


def _in_order(
    head: list[Candidate],
    placed: list[Candidate | None],
    stand_ins: list[Candidate],
    stand_in_places: list[int],
    skipped: list[tuple[int, Rejection]],
    gate: Gate,
    state: ProviderState,
    spread: bool,
) -> tuple[Candidate, ...]:
    """The candidates in the order to try, each naming the models ruled out that the strategy
    would have tried before it; a round-robin gate's real models turned to this request's."""
    if skipped:
        placed = [c and _after(c, place, skipped) for place, c in enumerate(placed)]
        stand_ins = [_after(c, p, skipped) for c, p in zip(stand_ins, stand_in_places, strict=True)]
    real = [c for c in placed if c is not None]
    if len(real) > 1:
        if gate.routing_strategy == "round-robin":
            real = _rotated(real, state.rotation)
        elif spread:
            real = _spread_ties(real, state.rotation, by_price=gate.routing_strategy == "cost")
    return (*head, *real, *stand_ins)


#: The golden ratio's fraction: its multiples mod 1 are spread evenly over [0, 1) for any run
#: of consecutive requests, so a weighted pick from them gives each its share early and often.
_SPREAD = 0.6180339887498949


def _rotated(real: list[Candidate], rotation: int) -> list[Candidate]:
    """Round-robin: this request's turn first, the rest after it in order. With equal weights
    the turn is `rotation` mod the count; with unequal ones each leads its share of requests."""
    turn = _turn([c.weight for c in real], rotation)
    return real[turn:] + real[:turn]


def _spread_ties(real: list[Candidate], rotation: int, *, by_price: bool) -> list[Candidate]:
    """The deployments of one model that the strategy ranks alike (adjacent, and under `cost`
    at the same price) spread over requests by weight: one leads, the others follow in order."""
    out: list[Candidate] = []
    start = 0
    while start < len(real):
        first = real[start]
        end = start + 1
        while (
            end < len(real)
            and real[end].model.id == first.model.id
            and (not by_price or real[end].price == first.price)
        ):
            end += 1
        group = real[start:end]
        if len(group) > 1:
            turn = _turn([c.weight for c in group], rotation)
            group = group[turn:] + group[:turn]
        out.extend(group)
        start = end
    return out


def _turn(weights: list[float], rotation: int) -> int:
    """The index that leads for request number `rotation`: in turn when the weights are equal;
    else over any run of requests each index leads about its weight's share of them
    (deterministic: the same rotation, the same pick)."""
    if len(set(weights)) == 1:
        return rotation % len(weights)
    point = (rotation * _SPREAD) % 1.0 * sum(weights)
    for index, weight in enumerate(weights):
        point -= weight
        if point < 0:
            return index
    return len(weights) - 1


def by_health(
    candidates: tuple[Candidate, ...], health: Mapping[str, DeploymentHealth]
) -> tuple[Candidate, ...]:
    """The candidates with what the store knows of each, and those demoted (circuit open or
    probing, cooling after a 429, no headroom under their limits) moved after every other real
    model, the one that recovers soonest first: never dropped, so a request whose every
    deployment is cooling still tries one. Placeholders stay last."""
    healthy: list[Candidate] = []
    demoted: list[Candidate] = []
    stand_ins: list[Candidate] = []
    for candidate in candidates:
        seen = health.get(candidate.deployment)
        if seen is not None:
            candidate = candidate._replace(health=seen)
        if candidate.model.placeholder:
            stand_ins.append(candidate)
        elif seen is not None and seen.demoted:
            demoted.append(candidate)
        else:
            healthy.append(candidate)
    demoted.sort(key=_recovers_in)
    return (*healthy, *demoted, *stand_ins)


def _recovers_in(candidate: Candidate) -> float:
    return candidate.health.retry_in if candidate.health is not None else 0.0


def _after(candidate: Candidate, place: int, skipped: list[tuple[int, Rejection]]) -> Candidate:
    """`candidate` (at `place` in the order of preference) with the ones `skipped` before it."""
    before = tuple(rejection for at, rejection in skipped if at < place)
    return candidate._replace(skipped=before) if before else candidate


# --- what can be decided once per pool and request shape -----------------------------------
#
# Which model a pool name resolves to, whether it has the size, the quality and style it would
# serve, its price and whether that is over the gate's cap, and its place in the strategy's
# order depend only on the catalogue, the gate and the request's (size, quality, style). They
# are worked out on the first request of each shape and kept in the catalogue's `derived` dict
# (which `Catalog.add` empties), so a request only checks what varies: outages, seed, prompt
# length, count and budget, and the date.


# Plain slotted classes: defining a frozen dataclass costs about a millisecond at import (it
# compiles its methods), and these are built once per request shape and read only here.


class _Fit:
    """One model of the pool, fitted to a request shape.

    It also copies the fields of the spec that `plan()` reads for every request: an attribute of
    a pydantic model takes about five times as long to read as a slot.
    """

    __slots__ = (
        "deployment",
        "deprecated",
        "id",
        "instance",
        "label",
        "max_prompt_chars",
        "no_size",
        "over_price",
        "pinned",
        "placeholder",
        "price",
        "quality",
        "rank",
        "spec",
        "style",
        "supports_seed",
        "warnings",
        "weight",
    )

    def __init__(
        self,
        deployment: Deployment,
        label: str,
        no_size: Rejection | None,
        quality: Quality | None,
        style: Style | None,
        price: Decimal,
        over_price: Rejection | None,
        warnings: tuple[str, ...],
        rank: int,
    ) -> None:
        spec = deployment.spec
        self.spec = spec
        self.id = spec.id
        self.instance = deployment.instance
        self.deployment = deployment.key
        self.weight = deployment.weight
        self.label = label
        """how reasons name it: the model's id, or ``model@instance`` when it has several
        deployments."""
        self.pinned = False
        """the request's model override names it: routed first."""
        self.supports_seed = spec.supports_seed
        self.max_prompt_chars = spec.max_prompt_chars
        self.deprecated = spec.deprecated
        self.placeholder = spec.placeholder
        self.no_size = no_size
        """the size is not supported."""
        self.quality = quality
        self.style = style
        self.price = price
        self.over_price = over_price
        """no price, or over the gate's `max_cost_per_image`."""
        self.warnings = warnings
        """the quality or style the model cannot serve as asked."""
        self.rank = rank
        """place in the routing strategy's order (cost, quality; else the pool's)."""


class _FittedPool:
    __slots__ = ("fits", "spread", "unused")

    def __init__(self, fits: tuple[_Fit | Rejection, ...], unused: tuple[Rejection, ...]) -> None:
        self.fits = fits
        """each distinct deployment of the pool in pool order; a name not in the catalogue is
        rejected."""
        self.unused = unused
        ids = [f.id for f in fits if isinstance(f, _Fit)]
        self.spread = len(set(ids)) < len(ids)
        """some model has several deployments here: ties between them spread by weight."""
        """the rest of a `single` gate's pool."""


_ZERO = Decimal(0)
#: Request shapes kept per catalogue; past this (only from unusual callers of `plan` with many
#: distinct model overrides) it starts afresh rather than growing without bound.
_MAX_SHAPES = 4096


def _fitted_pool(
    catalog: Catalog,
    gate: Gate,
    pinned: str | None,
    size: Size,
    quality: Quality | None,
    style: Style | None,
) -> _FittedPool:
    key = (
        "plan",
        gate.model,
        gate.fallback_models,
        gate.routing_strategy,
        gate.max_cost_per_image,
        pinned,
        size,
        quality,
        style,
    )
    derived = catalog.derived
    found = derived.get(key)
    if found is None:
        found = _fit_pool(catalog, gate, pinned, size, quality, style)
        if len(derived) >= _MAX_SHAPES:
            derived.clear()
        derived[key] = found
    return found


def _fit_pool(
    catalog: Catalog,
    gate: Gate,
    pinned: str | None,
    size: Size,
    quality: Quality | None,
    style: Style | None,
) -> _FittedPool:
    strategy = gate.routing_strategy
    pool = gate.pool
    unused: tuple[Rejection, ...] = ()
    if pinned is not None:
        pool = (pinned,) if strategy == "single" else (pinned, *pool)
    elif strategy == "single":
        unused = tuple(
            Rejection(name, f"{name}: not used (routing_strategy is single)") for name in pool[1:]
        )
        pool = pool[:1]
    fits: list[_Fit | Rejection] = []
    pinned_keys = {d.key for d in catalog.resolve_deployments(pinned)} if pinned else set()
    for member in catalog.resolve_pool(pool):
        if isinstance(member, Absent):
            fits.append(Rejection(member.name, f"{member.name}: {member.why}"))
            continue
        fit = _fit(
            member, catalog.label(member), size, quality, style, gate.max_cost_per_image, len(fits)
        )
        fit.pinned = member.key in pinned_keys
        fits.append(fit)
    if strategy in ("cost", "quality"):
        # Rank every model once; `sorted` is stable, so ties keep the order written, and the
        # eligible models of a request, taken in rank order, are sorted as the strategy says.
        models = [f for f in fits if isinstance(f, _Fit)]
        if strategy == "cost":
            models.sort(key=lambda f: f.price)
        else:
            models.sort(key=lambda f: -f.spec.quality_score)
        for rank, fit in enumerate(models):
            fit.rank = rank
    return _FittedPool(tuple(fits), unused)


def _fit(
    deployment: Deployment,
    mid: str,
    size: Size,
    quality: Quality | None,
    style: Style | None,
    max_cost: Decimal | None,
    rank: int,
) -> _Fit:
    """What `deployment` serves for (size, quality, style), and what rules it out whatever the
    rest of the request (`plan` checks these after the outage, seed and prompt, as it always
    did); `mid` is how its reasons name it."""
    spec = deployment.spec
    no_size = None
    if size not in spec.sizes:
        no_size = Rejection(mid, f"{mid}: size {size} not supported ({', '.join(spec.sizes)})")
    served_quality = spec.served_quality(quality)
    price = spec.price(served_quality, size)
    over_price = None
    if price is None:  # ModelSpec validation makes this unreachable; never route unpriced
        over_price = Rejection(mid, f"{mid}: no price for {served_quality}/{size}")
    elif max_cost is not None and price > max_cost:
        over_price = Rejection(
            mid, f"{mid}: {money(price)}/image over max_cost_per_image {money(max_cost)}"
        )
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
    return _Fit(
        deployment,
        mid,
        no_size,
        served_quality,
        served_style,
        price if price is not None else _ZERO,
        over_price,
        tuple(warnings),
        rank,
    )
