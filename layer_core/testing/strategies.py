"""hypothesis strategies for layer's requests, model specs, catalogues, gates and provider state.

Use them to property-test your own gates ("my marketing gate never costs over $0.10 an image and
always finds a model for 1024x1024"), or the policy itself:

    @given(st.data())
    def test_marketing_gate(data):
        request = data.draw(image_requests(gate_id="marketing", sizes=["1024x1024"]))
        plan = layer.explain("marketing", request.data)
        assert plan.candidates and all(c.price <= Decimal("0.10") for c in plan.candidates)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from layer_core.catalog import Catalog, ModelSpec
from layer_core.errors import ERROR_KINDS
from layer_core.gates import ROUTING_STRATEGIES, Gate, GateDefaults
from layer_core.policy import ProviderState
from layer_core.schema import MAX_SEED, QUALITIES, SIZES, STYLES, ImageData, ImageRequest

__all__ = [
    "catalogs",
    "gates",
    "image_data",
    "image_requests",
    "model_specs",
    "prices",
    "prompts",
    "provider_states",
]

TODAY = date(2026, 11, 23)

prompts = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=200).filter(
    lambda s: s.strip() != ""
)
"""Non-blank prompts."""

prices = st.integers(0, 500).map(lambda mills: Decimal(mills) / 1000)
"""Per-image USD prices from $0 to $0.50, exact to a tenth of a cent."""


def _subset(values: Sequence[Any], *, min_size: int = 0) -> st.SearchStrategy[tuple[Any, ...]]:
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
_RETIRED = st.none() | st.integers(-400, 400).map(lambda d: TODAY + timedelta(days=d))


def image_data(
    *,
    sizes: Sequence[str] = SIZES,
    seeds: bool = True,
    max_count: int = 10,
) -> st.SearchStrategy[ImageData]:
    """Valid `ImageData`: any prompt, a size from `sizes` (or none), optional seed."""
    return st.builds(
        ImageData,
        prompt=prompts,
        size=st.none() | st.sampled_from(list(sizes)),
        quality=st.none() | st.sampled_from(QUALITIES),
        style=st.none() | st.sampled_from(STYLES),
        count=st.integers(1, max_count),
        seed=st.none() | st.integers(0, MAX_SEED) if seeds else st.none(),
    )


def image_requests(
    *, gate_id: str = "default", model: st.SearchStrategy[str | None] | None = None, **data: Any
) -> st.SearchStrategy[ImageRequest]:
    """Valid `ImageRequest`s through `gate_id`; `data` keywords go to `image_data`."""
    return st.builds(
        ImageRequest,
        gate_id=st.just(gate_id),
        data=image_data(**data),
        model=model if model is not None else st.none(),
        metadata=st.dictionaries(
            st.text(min_size=1, max_size=10), st.integers() | st.text(max_size=20), max_size=3
        ),
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
    sizes = draw(_SIZE_SETS)
    qualities = draw(_QUALITY_SETS)
    table = {f"{q or '*'}/{s}": draw(prices) for q in (qualities or (None,)) for s in sizes}
    retired = draw(_RETIRED)
    return ModelSpec(
        id=draw(model_id if model_id is not None else _MODEL_IDS),
        provider=draw(provider if provider is not None else _PROVIDERS),
        sizes=sizes,
        qualities=qualities,
        styles=draw(_STYLE_SETS),
        max_images_per_call=draw(st.integers(1, 10)),
        supports_seed=draw(st.booleans()),
        quality_score=draw(st.floats(0, 100, allow_nan=False)),
        prices=table,
        price_date=date(2026, 11, 1),
        deprecated=retired,
        placeholder=draw(placeholder if placeholder is not None else _PLACEHOLDER),
    )


@st.composite
def catalogs(draw: st.DrawFn, *, min_size: int = 1, max_size: int = 8) -> Catalog:
    """A catalogue of distinct models."""
    size = draw(st.integers(min_size, max_size))
    return Catalog(draw(model_specs(model_id=st.just(f"m{i}"))) for i in range(size))


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
    names = list(catalog)
    extra = ["no-such-model"] if unknown_models else []
    pool = draw(st.lists(st.sampled_from(names + extra), min_size=1, max_size=len(names) + 1))
    strategy = draw(st.sampled_from(list(strategies)))
    return Gate(
        id=gate_id,
        model=pool[0],
        fallback_models=tuple(pool[1:]),
        routing_strategy=strategy,
        defaults=GateDefaults(
            size=draw(st.none() | st.sampled_from(SIZES)),
            quality=draw(st.none() | st.sampled_from(QUALITIES)),
            style=draw(st.none() | st.sampled_from(STYLES)),
        ),
        max_cost_per_image=draw(st.none() | prices),
        fallback_on=draw(_FALLBACK_ON),
    )


@st.composite
def provider_states(draw: st.DrawFn, catalog: Catalog) -> ProviderState:
    """Which providers are down and why, today's date, a rotation, maybe a budget left."""
    providers = sorted({s.provider for s in catalog.values()})
    down = draw(_subset(providers)) if providers else ()
    return ProviderState(
        unavailable={p: f"{p.upper()}_API_KEY is not set" for p in down},
        today=TODAY,
        rotation=draw(st.integers(0, 1000)),
        budget_left=draw(st.none() | st.integers(0, 500).map(lambda cents: Decimal(cents) / 100)),
    )
