"""One call through fal-client against the fake queue: what is submitted, how the queue is
followed and cancelled, and what comes back (sizes, counts, seeds, costs, safety flags)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from decimal import Decimal

import pytest
from layer_fal import MODELS, FalProvider
from layer_fal.testing import FakeFal, Run

from layer_core import GenerationCall, ImageOutput, Layer
from layer_core.errors import ContentRejected
from layer_core.testing.images import image_info

Rig = tuple[FalProvider, FakeFal]
MakeLayer = Callable[..., Layer]
Generate = Callable[..., list[ImageOutput]]


def test_1536x1024_is_submitted_and_delivered_exactly(rig: Rig, generate: Generate) -> None:
    _, fake = rig
    (image,) = generate("fal-flux-schnell", size="1536x1024")
    assert fake.submitted[0].input["image_size"] == {"width": 1536, "height": 1024}
    assert image_info(image.bytes()) == ("image/jpeg", 1536, 1024)
    assert (image.size, image.size_source) == ("1536x1024", "provider")


def test_every_queue_request_goes_to_the_base_url_with_the_key(
    rig: Rig, generate: Generate, key: str
) -> None:
    _, fake = rig
    generate("fal-flux-dev", size="1024x1024")
    paths = [(r.method, r.path) for r in fake.server.requests]
    request_id = fake.submitted[0].id
    assert paths[0] == ("POST", "/fal-ai/flux/dev")
    assert ("GET", f"/fal-ai/flux/requests/{request_id}/status") in paths
    assert paths[-1] == ("GET", f"/fal-ai/flux/requests/{request_id}")
    assert {r.headers["authorization"] for r in fake.server.requests} == {f"Key {key}"}


def test_enable_safety_checker_is_sent_on_where_the_model_takes_it(
    rig: Rig, generate: Generate
) -> None:
    _, fake = rig
    generate("fal-sd3.5-large")
    generate("fal-recraft-v3")
    sd, recraft = (r.input for r in fake.submitted)
    assert sd["enable_safety_checker"] is True
    assert "enable_safety_checker" not in recraft  # Recraft's schema has no such input
    assert "num_images" not in recraft
    assert "seed" not in recraft


def test_a_model_that_cannot_make_1536x1024_is_asked_for_its_nearest_exact_3_2(
    rig: Rig, generate: Generate
) -> None:
    _, fake = rig
    (pro,) = generate("fal-flux-1.1-pro", size="1536x1024")  # 1440 a side at most
    (ultra,) = generate("fal-flux-1.1-pro-ultra", size="1536x1024")
    (ideogram,) = generate("fal-ideogram-v3", size="1536x1024", quality="standard")
    pro_in, ultra_in, ideogram_in = (r.input for r in fake.submitted)
    assert pro_in["image_size"] == {"width": 1440, "height": 960}
    assert ultra_in["aspect_ratio"] == "3:2"
    assert (ideogram_in["image_size"], ideogram_in["rendering_speed"]) == (
        {"width": 1248, "height": 832},
        "BALANCED",
    )
    assert image_info(pro.bytes())[1:] == (1440, 960)
    assert image_info(ultra.bytes())[1:] == (2496, 1664)
    assert image_info(ideogram.bytes())[1:] == (1248, 832)


def test_num_images_is_sent_and_every_image_comes_back(rig: Rig, generate: Generate) -> None:
    _, fake = rig
    images = generate("fal-ideogram-v3", n=8, quality="hd")
    assert fake.submitted[0].input["num_images"] == 8
    assert fake.submitted[0].input["rendering_speed"] == "QUALITY"
    assert len({image.url for image in images}) == 8


def test_a_count_over_the_limit_is_split_into_calls(make_layer: MakeLayer, rig: Rig) -> None:
    _, fake = rig
    layer = make_layer({"g": {"model": "fal-flux-schnell"}})
    response = layer.image("g", {"prompt": "a fox", "count": 6, "size": "512x512"})
    assert len(response.images) == 6
    assert sorted(r.input["num_images"] for r in fake.submitted) == [2, 4]
    # the two calls run at once: their attempts are recorded in the order they finish
    assert sorted((a.requested, a.outcome) for a in response.attempts) == [(2, "ok"), (4, "ok")]


def test_the_seed_is_sent_and_the_seed_fal_used_is_reported(rig: Rig, generate: Generate) -> None:
    _, fake = rig
    (seeded,) = generate("fal-flux-dev", seed=4242)
    (drawn,) = generate("fal-flux-dev")
    assert fake.submitted[0].input["seed"] == 4242
    assert seeded.seed == 4242
    assert "seed" not in fake.submitted[1].input
    assert drawn.seed == fake.submitted[1].seed  # the one fal drew, from its result


def test_a_per_megapixel_price_is_worked_out_from_the_delivered_pixels(generate: Generate) -> None:
    (small,) = generate("fal-flux-dev", size="1024x1024")
    (wide,) = generate("fal-flux-dev", size="1536x1024")  # 1.5 megapixels, billed as 2
    (ultra,) = generate("fal-flux-1.1-pro-ultra", size="1536x1024")
    assert (small.cost_exact, small.cost_source) == (Decimal("0.025"), "provider_usage")
    assert wide.cost_exact == Decimal("0.050")
    assert ultra.cost_source == "price_table"  # per image: the catalogue's price is its cost


def test_the_table_price_of_a_size_is_what_its_delivered_pixels_cost() -> None:
    for model in MODELS:
        if model.entry.price_per_megapixel is None:
            continue
        for size in model.spec.sizes:
            width, height = map(int, model.spec.delivered_size(size).split("x"))
            assert model.spec.price(None, size) == model.cost(width, height), (model.spec.id, size)


def test_a_request_the_model_flags_entirely_is_content_rejected(
    rig: Rig, generate: Generate
) -> None:
    _, fake = rig
    fake.next(Run(nsfw=(0, 1)))
    with pytest.raises(ContentRejected, match="has_nsfw_concepts"):
        generate("fal-flux-schnell", n=2)


def test_flagged_images_are_dropped_with_a_warning_and_never_returned_as_success(
    rig: Rig, generate: Generate, caplog: pytest.LogCaptureFixture
) -> None:
    _, fake = rig
    fake.next(Run(nsfw=(1,)))
    with caplog.at_level(logging.WARNING, logger="layer.fal"):
        images = generate("fal-flux-schnell", n=3)
    assert len(images) == 2
    assert fake.submitted[0].files[1] not in {image.url.rsplit("/", 1)[1] for image in images}
    for image in images:
        assert image_info(image.bytes())[1:] == (1024, 1024)
    assert "1 image of fal-flux-schnell flagged as NSFW" in caplog.text


def test_a_short_delivery_through_the_layer_moves_the_rest_on(
    make_layer: MakeLayer, rig: Rig
) -> None:
    _, fake = rig
    fake.next(Run(nsfw=(0,)), Run())
    layer = make_layer({"g": {"model": "fal-flux-schnell", "fallback_models": ["fal-flux-dev"]}})
    response = layer.image("g", {"prompt": "a fox", "count": 2, "size": "512x512"})
    assert len(response.images) == 2
    assert [image.model for image in response.images] == ["fal-flux-schnell", "fal-flux-dev"]
    assert response.attempts[0].error is not None


def test_the_queue_is_polled_until_it_completes(rig: Rig, generate: Generate) -> None:
    _, fake = rig
    fake.next(Run(polls=3))
    (image,) = generate("fal-flux-schnell")
    request = fake.submitted[0]
    assert request.polled == 4
    assert request.completed
    assert image.url.endswith(request.files[0])


def test_a_request_still_running_at_the_timeout_is_cancelled_on_fal(rig: Rig) -> None:
    provider, fake = rig
    fake.next(Run(polls=None))
    spec = MODELS[0].spec
    call = GenerationCall(model=spec, prompt="a fox", size="1024x1024", n=1)

    async def attempt() -> None:
        try:
            async with asyncio.timeout(0.3):
                await provider.generate(call)
        finally:
            await provider.aclose()

    with pytest.raises(TimeoutError):
        asyncio.run(attempt())
    (request,) = fake.submitted
    assert fake.cancelled == [request]
    (cancel,) = [r for r in fake.server.requests if r.method == "PUT"]
    assert cancel.path == f"/fal-ai/flux/requests/{request.id}/cancel"


def test_a_price_overridden_in_plugins_toml_is_the_cost(make_layer: MakeLayer) -> None:
    layer = make_layer(
        {"g": {"model": "fal-flux-dev"}}, prices={"fal-flux-dev": {"*/1536x1024": 0.07}}
    )
    (image,) = layer.image("g", {"prompt": "a fox", "size": "1536x1024"}).images
    assert (image.cost_exact, image.cost_source) == (Decimal("0.07"), "price_table")
