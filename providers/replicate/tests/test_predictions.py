"""The provider over the wire: the real `replicate` SDK against a fake Replicate on 127.0.0.1.

Every test asserts on what the server received (paths, inputs, headers, cancels) and on what the
app got back (URLs, delivered sizes, seeds, costs).
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.metadata import entry_points
from typing import Any

import pytest
from layer_replicate import MODELS, ReplicateProvider
from layer_replicate.testing import MODEL_PREDICTIONS, FakeReplicate, Run
from PIL import Image

from layer_core import GenerationCall, ImageOutput, InvalidRequest, Layer, NoEligibleModel
from layer_core.testing import Reply, ScriptedProvider, make_spec
from layer_core.testing.images import image_info

Rig = tuple[ReplicateProvider, FakeReplicate]
MakeLayer = Callable[..., Layer]
Generate = Callable[..., list[ImageOutput]]

SDXL_VERSION = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
PRO_FIT = {
    "256x256": (256, 256),
    "512x512": (512, 512),
    "1024x1024": (1024, 1024),
    "1792x1024": (1344, 768),
    "1024x1792": (768, 1344),
    "1536x1024": (1440, 960),
    "1024x1536": (960, 1440),
}
FLUX_FIT = {
    "256x256": ("1:1", "0.25"),
    "512x512": ("1:1", "0.25"),
    "1024x1024": ("1:1", "1"),
    "1792x1024": ("16:9", "1"),
    "1024x1792": ("9:16", "1"),
}


def expected_inputs(model_id: str, size: str) -> dict[str, Any]:
    """What Replicate must receive for one image of `size` (prompt aside)."""
    if model_id in ("flux-schnell", "flux-dev"):
        ratio, megapixels = FLUX_FIT[size]
        return {"aspect_ratio": ratio, "megapixels": megapixels, "num_outputs": 1}
    if model_id in ("flux-1.1-pro", "flux-pro"):
        width, height = PRO_FIT[size]
        return {"aspect_ratio": "custom", "width": width, "height": height}
    width, height = (int(side) for side in size.split("x"))
    return {"width": width, "height": height, "num_outputs": 1}


def single(model: str, **gate: Any) -> dict[str, dict[str, Any]]:
    return {"g": {"model": model, "routing_strategy": "single", **gate}}


CASES = [(model.spec.id, size) for model in MODELS for size in model.spec.sizes]


@pytest.mark.parametrize(("model_id", "size"), CASES, ids=[f"{m}-{s}" for m, s in CASES])
def test_each_model_and_size_sends_the_input_that_asks_for_it(
    make_layer: MakeLayer, rig: Rig, model_id: str, size: str
) -> None:
    _, fake = rig
    response = make_layer(single(model_id)).image("g", {"prompt": "a red fox", "size": size})

    (prediction,) = fake.created
    assert prediction.input == {"prompt": "a red fox", **expected_inputs(model_id, size)}
    ref = next(m.ref for m in MODELS if m.spec.id == model_id)
    if model_id == "sdxl":
        assert prediction.created_via == "/v1/predictions"
        assert prediction.version == SDXL_VERSION
    else:
        assert prediction.created_via == f"/v1/models/{ref}/predictions"
    (image,) = response.images
    assert image.size == response.images[0].size == layer_spec_delivered(model_id, size)
    assert image.url == f"{fake.server.url}/files/{prediction.files[0]}"


def layer_spec_delivered(model_id: str, size: str) -> str:
    return next(m.spec for m in MODELS if m.spec.id == model_id).delivered_size(size)


def test_outputs_stay_file_urls_that_bytes_downloads(make_layer: MakeLayer, rig: Rig) -> None:
    _, fake = rig
    response = make_layer(single("flux-schnell")).image(
        "g", {"prompt": "p", "size": "1792x1024", "count": 2}
    )
    assert [image.url for image in response.images] == [
        f"{fake.server.url}/files/{name}" for name in fake.created[0].files
    ]
    for image in response.images:
        assert image.base64 is None
        assert image.size == "1344x768"
        assert image.mime_type == "image/webp"  # Flux's default output_format
        with Image.open(io.BytesIO(image.bytes())) as picture:
            assert (picture.format, picture.size) == ("WEBP", (1344, 768))
    assert len([r for r in fake.server.requests if r.path.startswith("/files/")]) == 2


def test_a_file_url_reports_the_size_expected_until_its_bytes_say_otherwise(
    make_layer: MakeLayer, rig: Rig
) -> None:
    _, fake = rig
    fake.next(Run(pixels=(1280, 720)))  # 16:9, but not the 1344x768 flux-schnell is known for
    before = datetime.now(UTC)
    response = make_layer(single("flux-schnell")).image("g", {"prompt": "p", "size": "1792x1024"})
    (image,) = response.images
    assert (image.size, image.size_source) == ("1344x768", "expected")
    assert image.expires_at is not None
    assert (
        before + timedelta(minutes=59) < image.expires_at <= datetime.now(UTC) + timedelta(hours=1)
    )
    assert image_info(image.bytes()) == ("image/webp", 1280, 720)
    assert (image.size, image.size_source) == ("1280x720", "image")  # read once downloaded


def test_an_image_delivered_inline_reports_its_own_size(make_layer: MakeLayer, rig: Rig) -> None:
    _, fake = rig
    fake.next(Run(pixels=(1280, 720), inline=True))
    response = make_layer(single("flux-schnell")).image("g", {"prompt": "p", "size": "1792x1024"})
    (image,) = response.images
    assert (image.url or "").startswith("data:image/webp;base64,")
    assert (image.size, image.size_source) == ("1280x720", "image")
    assert image.expires_at is None  # the bytes are in the response: nothing to expire
    assert [r.path for r in fake.server.requests if r.path.startswith("/files/")] == []


def test_sdxl_outputs_are_pngs_of_the_size_asked_for(make_layer: MakeLayer) -> None:
    response = make_layer(single("sdxl")).image("g", {"prompt": "p", "size": "1536x1024"})
    (image,) = response.images
    assert (image.size, image.mime_type) == ("1536x1024", "image/png")
    with Image.open(io.BytesIO(image.bytes())) as picture:
        assert (picture.format, picture.size) == ("PNG", (1536, 1024))


def test_the_mime_type_follows_the_file_the_model_returned(generate: Generate, rig: Rig) -> None:
    _, fake = rig
    jpeg = "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff").decode()
    finished = {
        "id": "p1",
        "model": "black-forest-labs/flux-schnell",
        "version": "v",
        "status": "succeeded",
        "output": [f"{fake.server.url}/files/out-0.webp", jpeg],
        "urls": {},
    }
    fake.server.add("POST", MODEL_PREDICTIONS, Reply(201, json=finished))
    images = generate("flux-schnell", n=2)
    assert [image.mime_type for image in images] == ["image/webp", "image/jpeg"]
    assert images[1].bytes() == b"\xff\xd8\xff"


def test_count_6_on_flux_schnell_makes_two_predictions_of_4_and_2(
    make_layer: MakeLayer, rig: Rig
) -> None:
    _, fake = rig
    response = make_layer(single("flux-schnell")).image("g", {"prompt": "p", "count": 6})

    assert sorted(p.input["num_outputs"] for p in fake.created) == [2, 4]
    assert len(response.images) == 6
    assert len({image.url for image in response.images}) == 6
    assert sorted(a.requested for a in response.attempts) == [2, 4]
    assert response.cost_exact == Decimal("0.018")


def test_a_given_seed_is_sent_with_go_fast_off_and_reported(
    make_layer: MakeLayer, rig: Rig
) -> None:
    _, fake = rig
    response = make_layer(single("flux-dev")).image("g", {"prompt": "p", "seed": 42, "count": 6})

    sent = sorted(
        (p.input["seed"], p.input["num_outputs"], p.input["go_fast"]) for p in fake.created
    )
    assert sent == [(42, 4, False), (46, 2, False)]
    assert [image.seed for image in response.images] == [42] * 4 + [46] * 2


def test_flux_pro_gets_the_seed_alone_and_answers_with_one_url(
    make_layer: MakeLayer, rig: Rig
) -> None:
    _, fake = rig
    response = make_layer(single("flux-1.1-pro")).image("g", {"prompt": "p", "seed": 7})

    assert fake.created[0].input["seed"] == 7
    assert "go_fast" not in fake.created[0].input
    assert "num_outputs" not in fake.created[0].input
    assert isinstance(fake.created[0].output, str)
    assert response.images[0].seed == 7
    assert response.images[0].url == fake.created[0].output


def test_without_a_seed_the_one_the_model_drew_is_reported(generate: Generate, rig: Rig) -> None:
    _, fake = rig
    (image,) = generate("flux-schnell")
    assert "seed" not in fake.created[0].input
    assert "go_fast" not in fake.created[0].input
    assert image.seed == fake.created[0].seed == 1001


def test_a_prediction_still_processing_at_the_gate_timeout_is_canceled_and_the_gate_falls_back(
    make_layer: MakeLayer, rig: Rig
) -> None:
    _, fake = rig
    fake.next(Run(polls=None))
    spare = ScriptedProvider("spare", [make_spec("backup", "spare", max_images_per_call=4)])
    gates = {"g": {"model": "flux-schnell", "fallback_models": ["backup"], "timeout": 2.0}}

    response = make_layer(gates, spare).image("g", {"prompt": "p", "count": 2})

    (prediction,) = fake.created
    assert fake.canceled == [prediction]
    assert prediction.status == "canceled"
    assert fake.server.requests_to(f"/v1/predictions/{prediction.id}/cancel", "POST")
    assert len(fake.polls) >= 1
    assert [(a.model, a.error) for a in response.attempts] == [
        ("flux-schnell", "timeout"),
        ("backup", None),
    ]
    assert response.model == "backup"
    assert len(response.images) == 2


def test_a_call_cancelled_while_polling_cancels_the_prediction_before_it_returns(
    rig: Rig,
) -> None:
    provider, fake = rig
    fake.next(Run(polls=None))
    spec = next(m.spec for m in MODELS if m.spec.id == "sdxl")
    call = GenerationCall(model=spec, prompt="p", size="1024x1024", n=1, timeout=1.0)

    async def cancel_once_polling() -> None:
        task = asyncio.create_task(provider.generate(call))
        async with asyncio.timeout(30):
            while not fake.polls:
                await asyncio.sleep(0.01)
        task.cancel()
        try:
            with pytest.raises(asyncio.CancelledError):
                await task
            (prediction,) = fake.created
            assert prediction.canceled  # already, when the cancelled call returns
        finally:
            await provider.aclose()

    asyncio.run(cancel_once_polling())
    assert fake.server.requests[-1].path == "/v1/predictions/p1/cancel"


def test_prefer_wait_holds_the_create_for_half_the_timeout_and_a_finished_one_is_not_polled(
    generate: Generate, rig: Rig
) -> None:
    _, fake = rig
    generate("flux-schnell", timeout=30.0)
    assert fake.created[0].prefer == "wait=15"
    assert fake.polls == []

    generate("flux-schnell", timeout=300.0)
    assert fake.created[1].prefer == "wait=60"


def test_without_room_for_prefer_wait_or_past_it_the_prediction_is_polled_until_it_ends(
    generate: Generate, rig: Rig
) -> None:
    _, fake = rig
    fake.next(Run(polls=3))
    (image,) = generate("flux-schnell", timeout=1.5)
    assert fake.created[0].prefer is None
    assert len(fake.polls) == 4
    assert {r.path for r in fake.polls} == {"/v1/predictions/p1"}
    assert image.url


def test_sdxl_costs_its_gpu_time(make_layer: MakeLayer, rig: Rig) -> None:
    _, fake = rig
    fake.next(Run(predict_time=2.0))
    response = make_layer(single("sdxl")).image("g", {"prompt": "p", "count": 2})

    assert fake.created[0].input["num_outputs"] == 2
    assert [image.cost_exact for image in response.images] == [Decimal("0.000975")] * 2
    assert {image.cost_source for image in response.images} == {"billing_time"}
    assert response.cost_exact == Decimal("0.00195")


def test_flux_costs_its_table_price(make_layer: MakeLayer) -> None:
    response = make_layer(single("flux-pro")).image("g", {"prompt": "p"})
    assert response.images[0].cost_source == "price_table"
    assert response.cost_exact == Decimal("0.055")


def test_a_gate_may_name_a_model_by_its_full_replicate_name(
    make_layer: MakeLayer, rig: Rig
) -> None:
    _, fake = rig
    response = make_layer(single("black-forest-labs/flux-schnell")).image("g", {"prompt": "p"})
    assert response.model == "flux-schnell"
    assert fake.created[0].created_via == "/v1/models/black-forest-labs/flux-schnell/predictions"


def test_the_key_goes_as_a_bearer_token_and_nowhere_else(
    generate: Generate, rig: Rig, token: str
) -> None:
    provider, fake = rig
    generate("flux-schnell")
    create = fake.server.requests[0]
    assert create.headers["authorization"] == f"Bearer {token}"
    assert token not in repr(provider)
    assert token not in create.body.decode()


def test_bad_input_never_reaches_replicate(make_layer: MakeLayer, rig: Rig) -> None:
    _, fake = rig
    layer = make_layer(single("sdxl"))
    with pytest.raises(NoEligibleModel, match="256x256"):
        layer.image("g", {"prompt": "p", "size": "256x256"})
    with pytest.raises(InvalidRequest):
        layer.image("g", {"prompt": "p", "count": 11})
    with pytest.raises(NoEligibleModel, match="1536x1024"):
        make_layer(single("flux-schnell")).image("g", {"prompt": "p", "size": "1536x1024"})
    assert fake.server.requests == []


def test_without_a_token_replicate_is_unavailable_and_nothing_is_called(rig: Rig) -> None:
    _, fake = rig
    layer = Layer(
        {
            "ledger": False,
            "plugins": {"replicate": {"base_url": fake.server.url}},
            "gates": single("flux-schnell"),
        },
        plugins=[ReplicateProvider()],
        load_entry_points=False,
        environ={},
    )
    assert layer.unavailable() == {"replicate": "REPLICATE_API_TOKEN is not set"}
    with pytest.raises(NoEligibleModel, match="REPLICATE_API_TOKEN is not set"):
        layer.image("g", {"prompt": "p"})
    assert fake.server.requests == []


def test_the_plugin_is_installed_under_the_layer_entry_point_group() -> None:
    (entry,) = [e for e in entry_points(group="layer") if e.name == "replicate"]
    assert entry.value == "layer_replicate"
