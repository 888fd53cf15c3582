"""Properties of the routing policy, stated with hypothesis over random catalogues and gates."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st

from layer_core import NoEligibleModel
from layer_core.catalog import Catalog, Deployment
from layer_core.gates import Gate
from layer_core.policy import DEFAULT_SIZE, Plan, ProviderState, plan
from layer_core.schema import ImageRequest
from layer_core.testing import make_spec
from layer_core.testing.strategies import catalogs, gates, image_requests, provider_states

#: Enough examples to mean it; raise with LAYER_HYPOTHESIS_EXAMPLES for a longer hunt.
EXAMPLES = settings(
    max_examples=int(os.environ.get("LAYER_HYPOTHESIS_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def worlds(draw: st.DrawFn, **gate_kw: Any) -> tuple[ImageRequest, Gate, Catalog, ProviderState]:
    catalog = draw(catalogs())
    gate = draw(gates(catalog, **gate_kw))
    state = draw(provider_states(catalog))
    request = draw(image_requests(gate_id=gate.id))
    return request, gate, catalog, state


def key_of(catalog: Catalog, label: str) -> str:
    """The deployment a rejection names: by its key, or by its model's id when that model has
    one deployment; a name not in the catalogue stays as it is."""
    found = catalog.resolve_deployments(label)
    return found[0].key if len(found) == 1 else label


def fitted(request: ImageRequest, gate: Gate) -> tuple[str, Any, Any]:
    data = request.data
    size = data.size or gate.defaults.size or DEFAULT_SIZE
    return size, data.quality or gate.defaults.quality, data.style or gate.defaults.style


@EXAMPLES
@given(worlds())
def test_every_candidate_can_serve_the_request(world: Any) -> None:
    request, gate, catalog, state = world
    result = plan(request, gate, catalog, state)
    size, quality, _ = fitted(request, gate)
    for candidate in result.candidates:
        spec = candidate.model
        assert size in spec.sizes
        assert request.data.seed is None or spec.supports_seed
        assert candidate.instance not in state.unavailable
        assert candidate.quality == spec.served_quality(quality)
        assert candidate.style is None or candidate.style in spec.styles


@EXAMPLES
@given(worlds())
def test_estimated_cost_is_the_table_price_times_count(world: Any) -> None:
    request, gate, catalog, state = world
    result = plan(request, gate, catalog, state)
    size, _, _ = fitted(request, gate)
    for candidate in result.candidates:
        assert candidate.price == candidate.model.price(candidate.quality, size)
        assert candidate.estimated_cost == candidate.price * request.data.count


@EXAMPLES
@given(worlds())
def test_no_candidate_exceeds_max_cost_or_the_budget_left(world: Any) -> None:
    request, gate, catalog, state = world
    result = plan(request, gate, catalog, state)
    for candidate in result.candidates:
        if gate.max_cost_per_image is not None:
            assert candidate.price <= gate.max_cost_per_image
        if state.budget_left is not None:
            assert candidate.estimated_cost <= state.budget_left


@EXAMPLES
@given(worlds(strategies=["cost"]))
def test_cost_strategy_orders_real_models_by_non_decreasing_price(world: Any) -> None:
    request, gate, catalog, state = world
    result = plan(request, gate, catalog, state)
    real = [c.price for c in result.candidates if not c.model.placeholder]
    assert real == sorted(real)


@EXAMPLES
@given(worlds(strategies=["quality"]))
def test_quality_strategy_orders_by_non_increasing_quality_score(world: Any) -> None:
    request, gate, catalog, state = world
    result = plan(request, gate, catalog, state)
    scores = [c.model.quality_score for c in result.candidates if not c.model.placeholder]
    assert scores == sorted(scores, reverse=True)


@EXAMPLES
@given(worlds())
def test_placeholders_are_always_tried_after_real_models(world: Any) -> None:
    request, gate, catalog, state = world
    flags = [c.model.placeholder for c in plan(request, gate, catalog, state).candidates]
    assert flags == sorted(flags)


@EXAMPLES
@given(worlds())
def test_same_inputs_give_the_same_plan(world: Any) -> None:
    request, gate, catalog, state = world
    assert plan(request, gate, catalog, state) == plan(request, gate, catalog, state)


@EXAMPLES
@given(worlds())
def test_every_pool_model_is_a_candidate_or_rejected_with_a_reason(world: Any) -> None:
    request, gate, catalog, state = world
    result = plan(request, gate, catalog, state)
    chosen = [c.deployment for c in result.candidates]
    # a rejection names one deployment, or a model for all of them (not used by `single`)
    rejected = [
        d.key if isinstance(d, Deployment) else d.name
        for r in result.rejected
        for d in catalog.resolve_pool([r.model])
    ]
    assert len(set(chosen)) == len(chosen), "a deployment is tried twice"
    assert not set(chosen) & set(rejected)
    pool = {m.key if isinstance(m, Deployment) else m.name for m in catalog.resolve_pool(gate.pool)}
    assert set(chosen) | set(rejected) == pool
    for rejection in result.rejected:
        assert rejection.reason.startswith(f"{rejection.model}: ")
        assert len(rejection.reason) > len(rejection.model) + 5


@EXAMPLES
@given(worlds())
def test_a_pool_where_nothing_fits_gives_an_error_listing_every_reason(world: Any) -> None:
    request, gate, catalog, state = world
    result = plan(request, gate, catalog, state)
    if result.candidates:
        return
    error = NoEligibleModel(gate.id, result.rejected)
    for rejection in result.rejected:
        assert rejection.reason in str(error)


@EXAMPLES
@given(worlds(strategies=["round-robin"]), st.integers(0, 50))
def test_round_robin_rotates_the_same_candidates(world: Any, turn: int) -> None:
    request, gate, catalog, state = world
    base = plan(request, gate, catalog, state)
    other = plan(
        request,
        gate,
        catalog,
        ProviderState(
            unavailable=state.unavailable,
            today=state.today,
            rotation=turn,
            budget_left=state.budget_left,
        ),
    )
    real = [c.deployment for c in base.candidates if not c.model.placeholder]
    rotated = [c.deployment for c in other.candidates if not c.model.placeholder]
    assert sorted(real) == sorted(rotated)
    if real:
        start = real.index(rotated[0])
        assert rotated == real[start:] + real[:start]


@EXAMPLES
@given(worlds(strategies=["single"]))
def test_single_strategy_only_ever_uses_the_primary(world: Any) -> None:
    request, gate, catalog, state = world
    result: Plan = plan(request, gate, catalog, state)
    primary = catalog.resolve_deployments(gate.pool[0])
    assert len(result.candidates) <= len(primary)  # the primary's deployments, no other model
    assert {c.deployment for c in result.candidates} <= {d.key for d in primary}


@EXAMPLES
@given(worlds())
def test_each_deployment_is_tried_at_most_once_and_its_instance_serves_its_model(
    world: Any,
) -> None:
    request, gate, catalog, state = world
    result = plan(request, gate, catalog, state)
    keys = [c.deployment for c in result.candidates]
    assert len(keys) == len(set(keys))
    for candidate in result.candidates:
        (deployment,) = catalog.resolve_deployments(candidate.deployment)
        assert (deployment.instance, deployment.spec) == (candidate.instance, candidate.model)


@EXAMPLES
@given(
    st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0]), min_size=2, max_size=4), st.integers(0, 10**6)
)
def test_deployments_of_one_model_lead_in_proportion_to_their_weights(
    weights: list[float], start: int
) -> None:
    spec = make_spec("m", "acme")
    catalog = Catalog()
    for index, weight in enumerate(weights):
        catalog.add(spec, instance=f"acme-{index}", weight=weight)
    gate = Gate(id="g", model="m")
    request = ImageRequest.model_validate({"gateId": "g", "data": {"prompt": "a fox"}})
    runs = 200
    leads = Counter(
        plan(request, gate, catalog, ProviderState(rotation=start + turn)).candidates[0].instance
        for turn in range(runs)
    )
    for index, weight in enumerate(weights):
        share = runs * weight / sum(weights)
        assert abs(leads[f"acme-{index}"] - share) <= 4, (leads, weights)


@EXAMPLES
@given(worlds(strategies=["fallback"]))
def test_each_candidate_names_the_models_before_it_that_the_request_ruled_out(world: Any) -> None:
    request, gate, catalog, state = world
    result = plan(request, gate, catalog, state)
    order = [m.key for m in catalog.resolve_pool(gate.pool) if isinstance(m, Deployment)]
    ruled_out = [
        r
        for r in result.rejected
        if key_of(catalog, r.model) in order
        and key_of(catalog, r.model).partition("@")[2] not in state.unavailable
    ]
    for candidate in result.candidates:
        if candidate.model.placeholder:
            continue
        assert candidate.skipped == tuple(
            r
            for r in ruled_out
            if order.index(key_of(catalog, r.model)) < order.index(candidate.deployment)
            and not catalog[r.model].placeholder
        )
        for rejection in candidate.skipped:
            assert rejection.warning.startswith(f"{rejection.model} skipped: ")


# --- live provider state: demoted, never dropped -------------------------------------------


@st.composite
def troubled_worlds(
    draw: st.DrawFn, *, every: bool = False
) -> tuple[ImageRequest, Gate, Catalog, ProviderState]:
    from layer_core.testing.strategies import deployment_health

    request, gate, catalog, state = draw(worlds())
    health = draw(deployment_health(catalog, every=every))
    return request, gate, catalog, replace(state, health=health)


def _demoted(candidate: Any) -> bool:
    return candidate.health is not None and candidate.health.demoted


@EXAMPLES
@given(troubled_worlds())
def test_an_open_deployment_is_never_ranked_above_a_healthy_one(world: Any) -> None:
    request, gate, catalog, state = world
    real = [c for c in plan(request, gate, catalog, state).candidates if not c.model.placeholder]
    flags = [_demoted(c) for c in real]
    assert flags == sorted(flags), "every healthy deployment before every demoted one"
    waits = [c.health.retry_in for c in real if _demoted(c)]
    assert waits == sorted(waits), "the one that recovers soonest first"


@EXAMPLES
@given(troubled_worlds())
def test_no_candidate_without_headroom_is_ranked_among_the_healthy(world: Any) -> None:
    request, gate, catalog, state = world
    for candidate in plan(request, gate, catalog, state).candidates:
        health = state.health.get(candidate.deployment)
        assert candidate.health == health, "each candidate carries what the store knows of it"
        if health is not None and health.headroom == 0 and not candidate.model.placeholder:
            assert _demoted(candidate)


@EXAMPLES
@given(troubled_worlds(every=True))
def test_with_every_deployment_in_trouble_the_plan_keeps_every_candidate(world: Any) -> None:
    request, gate, catalog, state = world
    healthy = plan(request, gate, catalog, replace(state, health={}))
    troubled = plan(request, gate, catalog, state)
    assert sorted(c.deployment for c in troubled.candidates) == sorted(
        c.deployment for c in healthy.candidates
    )
    assert troubled.rejected == healthy.rejected
    if healthy.candidates:
        assert troubled.candidates, "never empty for want of a healthy deployment"
