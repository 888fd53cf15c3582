"""hypothesis strategies for layer's requests, model specs, catalogues, gates and provider state.

Property-test your own gates ("my marketing gate never costs over $0.10 an image and always finds
a model for 1024x1024") against the catalogue and gates of a `Layer` built from your
plugins.toml, with the pure routing policy (no provider is called):

    layer = Layer("plugins.toml")
    marketing = layer.gates()["marketing"]

    @given(gate_requests(marketing, sizes=["1024x1024"]))
    def test_marketing(request):
        result = plan(request, marketing, layer.catalog, ProviderState())
        assert result.candidates, result.rejected
        assert all(c.price <= Decimal("0.10") for c in result.candidates)

`gate_requests` draws only requests the gate accepts; `provider_states` draws outages and budgets
(`outages=False`, `budget=False` turn them off). `model_specs`, `catalogs` and `gates` draw whole
worlds, for testing the policy itself (tests/test_policy_properties.py). Every strategy is cheap
to draw: each example is a handful of integers, never a search. docs/testing-gates.md has more.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from layer_core.catalog import Catalog, ModelSpec
from layer_core.errors import ERROR_KINDS
from layer_core.gates import OVERRIDE_FIELDS, ROUTING_STRATEGIES, Gate, GateDefaults
from layer_core.policy import ProviderState
from layer_core.schema import MAX_SEED, QUALITIES, SIZES, STYLES, ImageData, ImageRequest
from layer_core.state import DeploymentHealth, HealthState

__all__ = [
    "catalogs",
    "gate_requests",
    "gates",
    "image_data",
    "image_requests",
    "model_specs",
    "prices",
    "prompts",
    "provider_states",
]

TODAY = date(2026, 11, 23)

prompts = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40).filter(
    lambda s: s.strip() != ""
)
"""Non-blank prompts (short: routing never reads the words, and every character is a draw)."""

prices = st.integers(0, 500).map(lambda mills: Decimal(mills) / 1000)
"""Per-image USD prices from $0 to $0.50, exact to a tenth of a cent."""


@functools.cache
def _subset(values: tuple[Any, ...], *, min_size: int = 0) -> st.SearchStrategy[tuple[Any, ...]]:
    """Sub-tuples of `values`, in their order (drawn as a bit mask: cheap to generate)."""
    if min_size not in (0, 1):
        raise ValueError("min_size must be 0 or 1")
    return st.integers(min_size, 2 ** len(values) - 1).map(
        lambda mask: tuple(v for i, v in enumerate(values) if mask >> i & 1)
    )


_SIZE_SETS = _subset(SIZES, min_size=1)
_QUALITY_SETS = _subset(QUALITIES)
_STYLE_SETS = _subset(STYLES)
_MODEL_IDS = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
_PROVIDERS = st.sampled_from(["alpha", "beta", "gamma"])
_PLACEHOLDER = st.sampled_from([False, False, False, True])
_FALLBACK_ON = _subset(ERROR_KINDS)
_OVERRIDES = st.booleans() | st.fixed_dictionaries(
    {}, optional={field: st.booleans() for field in OVERRIDE_FIELDS}
)
_RETIRED = st.none() | st.integers(-400, 400).map(lambda d: TODAY + timedelta(days=d))


def _maybe(choices: Sequence[Any]) -> st.SearchStrategy[Any]:
    """None (the gate's default applies) or one of `choices`."""
    return st.none() | st.sampled_from(list(choices)) if choices else st.none()


def image_data(
    *,
    sizes: Sequence[str] = SIZES,
    qualities: Sequence[str] = QUALITIES,
    styles: Sequence[str] = STYLES,
    seeds: bool = True,
    max_count: int = 10,
) -> st.SearchStrategy[ImageData]:
    """Valid `ImageData`: any prompt; size, quality and style each one of the choices or none."""
    return _image_data(tuple(sizes), tuple(qualities), tuple(styles), seeds, max_count)


@functools.cache
def _image_data(
    sizes: tuple[str, ...],
    qualities: tuple[str, ...],
    styles: tuple[str, ...],
    seeds: bool,
    max_count: int,
) -> st.SearchStrategy[ImageData]:
    return st.builds(
        ImageData,
        prompt=prompts,
        size=_maybe(sizes),
        quality=_maybe(qualities),
        style=_maybe(styles),
        count=st.integers(1, max_count),
        seed=st.none() | st.integers(0, MAX_SEED) if seeds else st.none(),
    )


_METADATA = st.dictionaries(
    st.sampled_from(("campaign", "team", "user")),
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.sampled_from(("", "a", "ü")),
    max_size=2,
)


def image_requests(
    *, gate_id: str = "default", model: st.SearchStrategy[str | None] | None = None, **data: Any
) -> st.SearchStrategy[ImageRequest]:
    """Valid `ImageRequest`s through `gate_id`; `data` keywords go to `image_data`.

    Cheap to call inside a composite strategy: the same arguments give the same strategy.
    """
    return _image_requests(gate_id, model, image_data(**data))


@functools.cache
def _image_requests(
    gate_id: str, model: st.SearchStrategy[str | None] | None, data: st.SearchStrategy[ImageData]
) -> st.SearchStrategy[ImageRequest]:
    return st.builds(
        ImageRequest,
        gate_id=st.just(gate_id),
        data=data,
        model=model if model is not None else st.none(),
        metadata=_METADATA,
    )


def gate_requests(
    gate: Gate,
    *,
    sizes: Sequence[str] = SIZES,
    qualities: Sequence[str] = QUALITIES,
    styles: Sequence[str] = STYLES,
    models: Sequence[str] = (),
    seeds: bool = True,
    max_count: int = 10,
) -> st.SearchStrategy[ImageRequest]:
    """Requests that `gate` accepts: what it pins without `allow_overrides` stays unset (or
    equal to the pin), so `Layer.image` would never raise `OverrideNotAllowed` for one.

    `sizes`, `qualities` and `styles` narrow what is drawn (e.g. `sizes=["1024x1024"]`);
    `models` adds model overrides, which the gate must allow.
    """
    if models and not gate.allows_override("model"):
        raise ValueError(f"gate {gate.id!r} does not allow model overrides; drop `models`")
    choices = {"size": sizes, "quality": qualities, "style": styles}
    for field in OVERRIDE_FIELDS[1:]:
        pinned = getattr(gate.defaults, field)
        if pinned is not None and not gate.allows_override(field):
            choices[field] = [c for c in choices[field] if c == pinned]
    return image_requests(
        gate_id=gate.id,
        model=_maybe(models),
        sizes=choices["size"],
        qualities=choices["quality"],
        styles=choices["style"],
        seeds=seeds,
        max_count=max_count,
    )


@st.composite
def model_specs(
    draw: st.DrawFn,
    *,
    model_id: st.SearchStrategy[str] | None = None,
    provider: st.SearchStrategy[str] | None = None,
    placeholder: st.SearchStrategy[bool] | None = None,
) -> ModelSpec:
    """A valid ModelSpec: some sizes, qualities and styles, a price for each, maybe a retirement."""
    return _draw_spec(
        draw,
        draw(model_id if model_id is not None else _MODEL_IDS),
        draw(provider if provider is not None else _PROVIDERS),
        draw(placeholder if placeholder is not None else _PLACEHOLDER),
    )


def _draw_spec(draw: st.DrawFn, model_id: str, provider: str, placeholder: bool) -> ModelSpec:
    # Strategies are module constants: building one inside a draw costs more than drawing.
    sizes = draw(_SIZE_SETS)
    qualities = draw(_QUALITY_SETS)
    table: dict[str, Decimal] = {}
    for quality in qualities or ("*",):
        if draw(_BOOLEANS):  # a price per size
            table.update({f"{quality}/{size}": draw(prices) for size in sizes})
        else:  # one price for every size, as a wildcard key
            table[f"{quality}/*"] = draw(prices)
    return ModelSpec(
        id=model_id,
        provider=provider,
        sizes=sizes,
        qualities=qualities,
        styles=draw(_STYLE_SETS),
        max_images_per_call=draw(_PER_CALL),
        supports_seed=draw(_BOOLEANS),
        quality_score=draw(_SCORES),
        prices=table,
        price_date=date(2026, 11, 1),
        deprecated=draw(_RETIRED),
        placeholder=placeholder,
    )


@st.composite
def catalogs(
    draw: st.DrawFn, *, min_size: int = 1, max_size: int = 8, deployments: bool = True
) -> Catalog:
    """A catalogue of distinct models (ids m0, m1, ...); unless `deployments=False`, some served
    by a second instance of their provider (``<provider>-2``) with its own weight and, at
    times, its own price."""
    size = draw(_counts(min_size, max_size))
    catalog = Catalog()
    for i in range(size):
        spec = _draw_spec(draw, f"m{i}", draw(_PROVIDERS), draw(_PLACEHOLDER))
        catalog.add(spec, weight=draw(_WEIGHTS))
        if deployments and draw(_BOOLEANS):
            other = spec.with_prices({"*/*": draw(prices)}) if draw(_BOOLEANS) else spec
            catalog.add(other, instance=f"{spec.provider}-2", weight=draw(_WEIGHTS))
    return catalog


@st.composite
def gates(
    draw: st.DrawFn,
    catalog: Catalog,
    *,
    gate_id: str = "g",
    unknown_models: bool = True,
    strategies: Sequence[str] = ROUTING_STRATEGIES,
) -> Gate:
    """A gate over models of `catalog` (plus, if `unknown_models`, ids it does not know)."""
    names = tuple(catalog) + (("no-such-model",) if unknown_models else ())
    pool = draw(_pools(names))
    return Gate(
        id=gate_id,
        model=pool[0],
        fallback_models=tuple(pool[1:]),
        routing_strategy=draw(_one_of(tuple(strategies))),
        defaults=GateDefaults(
            size=draw(_MAYBE_SIZE), quality=draw(_MAYBE_QUALITY), style=draw(_MAYBE_STYLE)
        ),
        allow_overrides=draw(_OVERRIDES),
        max_cost_per_image=draw(_MAYBE_PRICE),
        fallback_on=draw(_FALLBACK_ON),
    )


@st.composite
def provider_states(
    draw: st.DrawFn,
    catalog: Catalog,
    *,
    outages: bool = True,
    budget: bool = True,
    today: date = TODAY,
    health: bool = False,
) -> ProviderState:
    """Which provider instances of `catalog` are down (unless `outages=False`), a rotation, and
    maybe the budget left (unless `budget=False`), on `today`; with `health`, what the state
    store knows of some of its deployments (`deployment_health`)."""
    providers = tuple(sorted({d.instance for d in catalog.deployments()}))
    down = draw(_subset(providers)) if providers and outages else ()
    return ProviderState(
        unavailable={p: f"{p.upper()}_API_KEY is not set" for p in down},
        today=today,
        rotation=draw(_ROTATIONS),
        budget_left=draw(_BUDGETS_LEFT) if budget else None,
        health=draw(deployment_health(catalog)) if health else {},
    )


_HEALTH_STATES: st.SearchStrategy[HealthState] = st.sampled_from(
    ("ok", "open", "half_open", "probing", "cooling", "limited")
)


@st.composite
def deployment_health(
    draw: st.DrawFn, catalog: Catalog, *, every: bool = False
) -> dict[str, DeploymentHealth]:
    """A state store's snapshot of some of `catalog`'s deployments (all of them with `every`):
    open, probing, cooling or without headroom (demoted), half-open, or with some headroom."""
    names = tuple(sorted(d.key for d in catalog.deployments()))
    chosen = names if every else draw(_subset(names))
    found = {}
    for name in chosen:
        state = draw(_HEALTH_STATES)
        headroom = 0 if state == "limited" else draw(st.none() | st.integers(1, 20))
        retry_in = 0.0 if state in ("ok", "half_open") else draw(st.floats(0.1, 600))
        found[name] = DeploymentHealth(name, state, retry_in, f"{state} for a test", headroom)
    return found


# Strategies that depend on an argument, made once per distinct argument.


@functools.cache
def _counts(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


@functools.cache
def _one_of(values: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


@functools.cache
def _pools(names: tuple[str, ...]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(names), min_size=1, max_size=len(names))


_BOOLEANS = st.booleans()
_PER_CALL = st.integers(1, 10)
_SCORES = st.integers(0, 100).map(float)
_ROTATIONS = st.integers(0, 1000)
_WEIGHTS = st.sampled_from([1.0, 1.0, 0.5, 2.0, 3.0])
_BUDGETS_LEFT = st.none() | st.integers(0, 500).map(lambda cents: Decimal(cents) / 100)
_MAYBE_SIZE = _maybe(SIZES)
_MAYBE_QUALITY = _maybe(QUALITIES)
_MAYBE_STYLE = _maybe(STYLES)
_MAYBE_PRICE = st.none() | prices
