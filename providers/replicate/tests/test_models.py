"""The model data: ids and aliases, which sizes each model lists, what pixels come back, prices."""

from __future__ import annotations

from decimal import Decimal

import pytest
from layer_replicate import MODELS, ReplicateProvider
from layer_replicate.models import FLUX_SIZING, model_for

from layer_core import Layer
from layer_core.catalog import Catalog
from layer_core.schema import SIZES
from layer_core.sizes import same_ratio

SPECS = {model.spec.id: model.spec for model in MODELS}

#: What Flux dev/schnell return per aspect ratio at megapixels "1", from the model's published
#: source (replicate/cog-flux, predict.py ASPECT_RATIOS); "0.25" halves each side.
FLUX_PUBLISHED = {"1:1": (1024, 1024), "16:9": (1344, 768), "9:16": (768, 1344), "3:2": (1216, 832)}


def test_the_five_models_are_there_under_short_ids_and_their_full_names() -> None:
    catalog = Catalog(model.spec for model in MODELS)
    assert sorted(catalog) == ["flux-1.1-pro", "flux-dev", "flux-pro", "flux-schnell", "sdxl"]
    for model in MODELS:
        assert catalog.resolve(model.ref) is catalog.resolve(model.spec.id)
        assert model.spec.provider == "replicate"


def test_only_sdxl_is_pinned_to_a_version_and_billed_by_gpu_time() -> None:
    pinned = {m.spec.id: m.version for m in MODELS if m.version is not None}
    assert list(pinned) == ["sdxl"]
    assert len(pinned["sdxl"] or "") == 64
    assert [m.spec.id for m in MODELS if m.gpu_price_per_second] == ["sdxl"]
    assert "billed by GPU time" in SPECS["sdxl"].price_note


@pytest.mark.parametrize(
    ("model_id", "sizes"),
    [
        ("flux-schnell", ["256x256", "512x512", "1024x1024", "1792x1024", "1024x1792"]),
        ("flux-dev", ["256x256", "512x512", "1024x1024", "1792x1024", "1024x1792"]),
        ("flux-1.1-pro", list(SIZES)),
        ("flux-pro", list(SIZES)),
        ("sdxl", [s for s in SIZES if s != "256x256"]),
    ],
)
def test_each_model_lists_exactly_the_sizes_whose_shape_it_returns(
    model_id: str, sizes: list[str]
) -> None:
    spec = SPECS[model_id]
    assert list(spec.sizes) == sizes
    for size in spec.sizes:
        assert same_ratio(size, spec.delivered_size(size)), (size, spec.delivered_size(size))


def test_flux_delivered_sizes_are_the_ones_its_source_publishes() -> None:
    spec = SPECS["flux-schnell"]
    assert spec.delivered == {
        "256x256": "512x512",
        "1792x1024": "1344x768",
        "1024x1792": "768x1344",
    }
    for size in spec.sizes:
        fitted = FLUX_SIZING.fit(size)
        assert fitted is not None
        width, height = FLUX_PUBLISHED[fitted.inputs["aspect_ratio"]]
        if fitted.inputs["megapixels"] == "0.25":
            width, height = width // 2, height // 2
        assert fitted.delivered == f"{width}x{height}"


def test_flux_leaves_out_3_2_because_what_comes_back_is_not_3_2() -> None:
    width, height = FLUX_PUBLISHED["3:2"]
    assert not same_ratio("1536x1024", f"{width}x{height}")
    assert FLUX_SIZING.fit("1536x1024") is None


def test_flux_pro_sizes_that_exceed_1440_are_scaled_down_keeping_their_shape() -> None:
    spec = SPECS["flux-1.1-pro"]
    assert spec.delivered == {
        "1792x1024": "1344x768",
        "1024x1792": "768x1344",
        "1536x1024": "1440x960",
        "1024x1536": "960x1440",
    }


def test_every_model_has_a_price_a_date_and_a_note_saying_where_it_was_read() -> None:
    for spec in SPECS.values():
        for size in spec.sizes:
            price = spec.price(None, size)
            assert price is not None
            assert Decimal("0") < price < Decimal("0.1")
        assert spec.price_date.isoformat() == "2026-11-23"
        assert spec.price_note
    assert SPECS["flux-schnell"].price(None, "1024x1024") == Decimal("0.003")
    assert SPECS["flux-pro"].price(None, "1024x1024") == Decimal("0.055")


def test_images_per_call_and_seeds() -> None:
    per_call = {spec.id: spec.max_images_per_call for spec in SPECS.values()}
    assert per_call == {
        "flux-schnell": 4,
        "flux-dev": 4,
        "flux-1.1-pro": 1,
        "flux-pro": 1,
        "sdxl": 4,
    }
    assert all(spec.supports_seed for spec in SPECS.values())


def test_a_price_override_keeps_the_model_reachable() -> None:
    layer = Layer(
        {"ledger": False, "plugins": {"replicate": {"prices": {"sdxl": {"*/*": 0.01}}}}},
        plugins=[ReplicateProvider()],
        load_entry_points=False,
        environ={},
    )
    spec = layer.catalog["stability-ai/sdxl"]
    assert spec.price(None, "1024x1024") == Decimal("0.01")
    assert model_for(spec).version is not None
