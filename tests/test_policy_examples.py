"""The policy's decisions on hand-picked cases, with the exact reasons people read."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from layer_core import Gate
from layer_core.catalog import Catalog
from layer_core.policy import ProviderState, plan
from layer_core.schema import ImageData, ImageRequest
from layer_core.testing import make_spec

CATALOG = Catalog(
    [
        make_spec(
            "dall-e-3",
            "openai",
            sizes=("1024x1024", "1792x1024", "1024x1792"),
            qualities=("standard", "hd"),
            styles=("vivid", "natural"),
            prices={
                "standard/1024x1024": "0.04",
                "standard/*": "0.08",
                "hd/1024x1024": "0.08",
                "hd/*": "0.12",
            },
            quality_score=80,
        ),
        make_spec(
            "gpt-image-1",
            "openai",
            sizes=("1024x1024", "1536x1024", "1024x1536"),
            qualities=("standard", "hd"),
            prices={"standard/*": "0.042", "hd/*": "0.167"},
            quality_score=90,
            deprecated=date(2026, 12, 1),
        ),
        make_spec(
            "flux-schnell",
            "replicate",
            max_images_per_call=4,
            supports_seed=True,
            price="0.003",
            quality_score=60,
            aliases=("black-forest-labs/flux-schnell",),
        ),
        make_spec("old", "openai", price="0.02", deprecated=date(2026, 5, 12), supports_seed=True),
        make_spec(
            "local", "local", price="0", placeholder=True, quality_score=0, supports_seed=True
        ),
    ]
)
TODAY = date(2026, 11, 23)


def request(**data: object) -> ImageRequest:
    return ImageRequest(gate_id="g", data=ImageData(prompt="a lighthouse", **data))  # type: ignore[arg-type]


def gate(**fields: object) -> Gate:
    return Gate(id="g", **fields)  # type: ignore[arg-type]


def test_rejections_read_as_sentences() -> None:
    result = plan(
        request(size="512x512", seed=7),
        gate(fallback_models=("dall-e-3", "gpt-image-1", "flux-schnell", "old", "nope", "local")),
        CATALOG,
        ProviderState(unavailable={"replicate": "REPLICATE_API_TOKEN is not set"}, today=TODAY),
    )
    reasons = {r.model: r.reason for r in result.rejected}
    assert reasons == {
        "dall-e-3": "dall-e-3: size 512x512 not supported (1024x1024, 1792x1024, 1024x1792)",
        "gpt-image-1": "gpt-image-1: size 512x512 not supported (1024x1024, 1536x1024, 1024x1536)",
        "flux-schnell": "flux-schnell: REPLICATE_API_TOKEN is not set",
        "nope": "nope: not in the catalogue (is its plugin installed?)",
    }
    assert [c.id for c in result.candidates] == ["old", "local"]
    assert result.candidates[0].warnings == ("old: retired 2026-05-12; the provider may refuse it",)


def test_max_cost_rejects_with_both_amounts() -> None:
    result = plan(
        request(quality="hd"),
        gate(fallback_models=("gpt-image-1", "dall-e-3"), max_cost_per_image=Decimal("0.10")),
        CATALOG,
        ProviderState(today=TODAY),
    )
    assert [r.reason for r in result.rejected] == [
        "gpt-image-1: $0.167/image over max_cost_per_image $0.1"
    ]
    assert [c.id for c in result.candidates] == ["dall-e-3"]


def test_seed_is_a_hard_constraint() -> None:
    result = plan(
        request(seed=42),
        gate(fallback_models=("dall-e-3", "flux-schnell")),
        CATALOG,
        ProviderState(today=TODAY),
    )
    assert [c.id for c in result.candidates] == ["flux-schnell"]
    assert result.rejected[0].reason == "dall-e-3: cannot honour seed 42 (the model has no seed)"


def test_each_candidate_names_the_preferred_models_the_request_ruled_out() -> None:
    result = plan(
        request(size="512x512", seed=7),
        gate(fallback_models=("dall-e-3", "gpt-image-1", "flux-schnell", "old", "nope", "local")),
        CATALOG,
        ProviderState(unavailable={"replicate": "REPLICATE_API_TOKEN is not set"}, today=TODAY),
    )
    old, local = result.candidates
    # flux-schnell's missing key and the unknown `nope` hold for every request: not named
    assert [r.warning for r in old.skipped] == [
        "dall-e-3 skipped: size 512x512 not supported (1024x1024, 1792x1024, 1024x1792)",
        "gpt-image-1 skipped: size 512x512 not supported (1024x1024, 1536x1024, 1024x1536)",
    ]
    assert local.skipped == old.skipped


def test_a_model_the_strategy_ranks_after_the_one_that_serves_is_not_named() -> None:
    result = plan(
        request(seed=42),
        gate(fallback_models=("dall-e-3", "flux-schnell"), routing_strategy="cost"),
        CATALOG,
        ProviderState(today=TODAY),
    )
    assert [(c.id, c.skipped) for c in result.candidates] == [("flux-schnell", ())]
    result = plan(
        request(seed=42),
        gate(fallback_models=("dall-e-3", "flux-schnell"), routing_strategy="quality"),
        CATALOG,
        ProviderState(today=TODAY),
    )
    assert [r.warning for r in result.candidates[0].skipped] == [
        "dall-e-3 skipped: cannot honour seed 42 (the model has no seed)"
    ]


def test_a_model_the_request_asked_for_but_cannot_have_is_named() -> None:
    result = plan(
        request(seed=42).model_copy(update={"model": "dall-e-3"}),
        gate(fallback_models=("flux-schnell",), allow_overrides=True),
        CATALOG,
        ProviderState(today=TODAY),
    )
    assert [r.model for r in result.candidates[0].skipped] == ["dall-e-3"]


def test_soft_parameters_become_warnings() -> None:
    result = plan(
        request(quality="hd", style="natural"),
        gate(fallback_models=("flux-schnell",)),
        CATALOG,
        ProviderState(today=TODAY),
    )
    (candidate,) = result.candidates
    assert candidate.warnings == (
        "flux-schnell: has no quality setting; quality 'hd' ignored",
        "flux-schnell: has no style 'natural'; style ignored",
    )
    assert candidate.style is None
    assert candidate.quality is None


def test_a_model_retiring_soon_carries_a_warning() -> None:
    result = plan(request(), gate(model="gpt-image-1"), CATALOG, ProviderState(today=TODAY))
    assert result.candidates[0].warnings == ("gpt-image-1: retires 2026-12-01",)


def test_cost_strategy_puts_the_placeholder_last_even_though_it_is_free() -> None:
    result = plan(
        request(),
        gate(
            fallback_models=("local", "gpt-image-1", "dall-e-3", "flux-schnell"),
            routing_strategy="cost",
        ),
        CATALOG,
        ProviderState(today=TODAY),
    )
    assert [c.id for c in result.candidates] == ["flux-schnell", "dall-e-3", "gpt-image-1", "local"]
    assert result.estimated_cost == Decimal("0.003")


def test_quality_strategy() -> None:
    result = plan(
        request(),
        gate(
            fallback_models=("flux-schnell", "dall-e-3", "gpt-image-1"), routing_strategy="quality"
        ),
        CATALOG,
        ProviderState(today=TODAY),
    )
    assert [c.id for c in result.candidates] == ["gpt-image-1", "dall-e-3", "flux-schnell"]


def test_round_robin_turns_with_the_rotation() -> None:
    g = gate(
        fallback_models=("dall-e-3", "gpt-image-1", "flux-schnell"), routing_strategy="round-robin"
    )
    orders = [
        [
            c.id
            for c in plan(request(), g, CATALOG, ProviderState(today=TODAY, rotation=r)).candidates
        ]
        for r in range(4)
    ]
    assert orders == [
        ["dall-e-3", "gpt-image-1", "flux-schnell"],
        ["gpt-image-1", "flux-schnell", "dall-e-3"],
        ["flux-schnell", "dall-e-3", "gpt-image-1"],
        ["dall-e-3", "gpt-image-1", "flux-schnell"],
    ]


def test_an_override_goes_first_and_aliases_resolve() -> None:
    result = plan(
        ImageRequest(
            gate_id="g",
            data=ImageData(prompt="p"),
            model="black-forest-labs/flux-schnell",
        ),
        gate(model="dall-e-3", fallback_models=("gpt-image-1",), routing_strategy="cost"),
        CATALOG,
        ProviderState(today=TODAY),
    )
    assert [c.id for c in result.candidates] == ["flux-schnell", "dall-e-3", "gpt-image-1"]


def test_budget_left_rejects_what_would_pass_it() -> None:
    result = plan(
        request(count=3),
        gate(fallback_models=("dall-e-3", "flux-schnell")),
        CATALOG,
        ProviderState(today=TODAY, budget_left=Decimal("0.10")),
    )
    assert [c.id for c in result.candidates] == ["flux-schnell"]
    assert result.rejected[0].reason == (
        "dall-e-3: $0.12 for 3 image(s) over the $0.1 left in the gate's budget"
    )


def test_gate_defaults_fill_what_the_request_omits() -> None:
    result = plan(
        request(),
        gate(model="dall-e-3", defaults={"size": "1792x1024", "quality": "hd"}),
        CATALOG,
        ProviderState(today=TODAY),
    )
    assert (result.size, result.quality) == ("1792x1024", "hd")
    assert result.candidates[0].price == Decimal("0.12")
