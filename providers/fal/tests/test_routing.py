"""fal in a gate beside the other providers: what its exact sizes win."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from layer_fal import FalProvider
from layer_fal.testing import FakeFal
from layer_replicate import ReplicateProvider
from layer_replicate.testing import FakeReplicate

from layer_core import Layer
from layer_core.testing import FakeServer
from layer_core.testing.images import image_info

Rig = tuple[FalProvider, FakeFal]
MakeLayer = Callable[..., Layer]


@pytest.fixture
def replicate() -> Iterator[tuple[ReplicateProvider, FakeReplicate]]:
    with FakeServer() as server:
        yield ReplicateProvider(), FakeReplicate(server, token="r8_routing")


def test_1536x1024_goes_to_the_fal_model_that_makes_it_and_the_plan_says_why_not_replicate(
    rig: Rig,
    replicate: tuple[ReplicateProvider, FakeReplicate],
    layer_factory: MakeLayer,
    key: str,
) -> None:
    fal_provider, fal = rig
    replicate_provider, replicate_fake = replicate
    gate = {"model": "flux-schnell", "fallback_models": ["fal-flux-schnell"]}
    layer = layer_factory(
        {
            "ledger": False,
            "plugins": {
                "fal": {"base_url": fal.server.url, "poll_interval": 0.01},
                "replicate": {"base_url": replicate_fake.server.url, "poll_interval": 0.01},
            },
            "gates": {"wide": gate},
        },
        plugins=[fal_provider, replicate_provider],
        load_entry_points=False,
        environ={"FAL_KEY": key, "REPLICATE_API_TOKEN": "r8_routing"},
    )
    request = {"prompt": "a lighthouse at dusk", "size": "1536x1024"}

    plan = layer.explain("wide", request)
    assert [c.id for c in plan.candidates] == ["fal-flux-schnell"]
    (left_out,) = plan.rejected
    assert left_out.model == "flux-schnell"
    assert "size 1536x1024 not supported" in left_out.reason

    response = layer.image("wide", request)
    (image,) = response.images
    assert (image.model, image.provider, image.size) == ("fal-flux-schnell", "fal", "1536x1024")
    assert image_info(image.bytes())[1:] == (1536, 1024)
    assert any(w.startswith("flux-schnell skipped: size 1536x1024") for w in response.warnings)
    assert not replicate_fake.created  # Replicate was never called
    assert fal.submitted[0].input["image_size"] == {"width": 1536, "height": 1024}
