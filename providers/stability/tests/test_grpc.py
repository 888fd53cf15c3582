"""The gRPC path (the `[grpc]` extra) against a local service built on the SDK's own servicer:
the request the SDK sends, artifacts back as outputs, filters, status codes, deadlines and
cancellation. Skipped, with the reason, when the extra is not installed."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from layer_stability import StabilityProvider
from layer_stability.testing import SDXL_ENGINE, picture

from layer_core import AllAttemptsFailed, Layer
from layer_core.testing import plugin_for, tiny_png

pytest.importorskip(
    "stability_sdk", reason="the [grpc] extra is not installed: pip install 'layer-stability[grpc]'"
)

KEY = "sk-test-9f8e7d6c5b4a39281706"  # the conftest's key
SDXL = "stable-diffusion-xl-1024-v1-0"
PROMPT = "a lighthouse on a cliff at dusk"
Rig = tuple[Layer, Any]


@pytest.fixture
def sdxl_layer(layer_factory: Callable[..., Layer]) -> Callable[..., Layer]:
    """`sdxl_layer(host, timeout=...)`: a Layer whose gate `sdxl` calls the engine at `host`."""

    def make(host: str, *, timeout: float) -> Layer:
        return layer_factory(
            {
                "ledger": False,
                "plugins": {"stability": {"grpc_host": host}},
                "gates": {"sdxl": {"model": SDXL, "retries": 0, "timeout": timeout}},
            },
            plugins=[plugin_for(StabilityProvider())],
            load_entry_points=False,
            environ={"STABILITY_API_KEY": KEY},
        )

    return make


def failure(layer: Layer, **data: Any) -> AllAttemptsFailed:
    with pytest.raises(AllAttemptsFailed) as caught:
        layer.image("sdxl", {"prompt": PROMPT, **data})
    return caught.value


@pytest.mark.parametrize(
    ("size", "pixels"),
    [("1024x1024", "1024x1024"), ("512x512", "1024x1024"), ("1792x1024", "1344x768"),
     ("1024x1792", "768x1344")],
)  # fmt: skip
def test_the_sdk_sends_engine_prompt_pixels_and_seed_and_the_artifact_comes_back(
    grpc_stability: Rig, size: str, pixels: str
) -> None:
    layer, service = grpc_stability
    response = layer.image("sdxl", {"prompt": PROMPT, "size": size, "seed": 99})

    (call,) = service.calls
    request = call.request
    assert request.engine_id == SDXL
    assert [p.text for p in request.prompt] == [PROMPT]
    assert f"{request.image.width}x{request.image.height}" == pixels
    assert list(request.image.seed) == [99]
    assert request.image.samples == 1
    (image,) = response.images
    assert image.size == pixels
    assert image.seed == 99
    assert image.bytes() == picture(pixels, SDXL_ENGINE, PROMPT, 99)
    assert image.cost_exact == Decimal("0.002")
    assert response.model == SDXL


def test_without_a_seed_the_sdk_picks_one_and_it_is_reported(grpc_stability: Rig) -> None:
    layer, service = grpc_stability
    response = layer.image("sdxl", {"prompt": PROMPT})
    (sent,) = service.calls[0].request.image.seed
    assert sent > 0
    assert response.images[0].seed == sent


def test_the_call_carries_the_gates_timeout_as_its_deadline(grpc_stability: Rig) -> None:
    layer, service = grpc_stability
    layer.image("sdxl", {"prompt": PROMPT})
    remaining = service.calls[0].time_remaining
    assert remaining is not None
    # The fixture's gate timeout is 30 s. gRPC sends the deadline rounded to the unit it encodes it
    # in, and the server reads its own clock, so the remaining time can come out a little over 30.
    assert 20 < remaining < 31


def test_the_key_is_not_sent_over_a_plain_channel(grpc_stability: Rig) -> None:
    layer, service = grpc_stability
    layer.image("sdxl", {"prompt": PROMPT})
    metadata = service.calls[0].metadata
    assert "authorization" not in metadata
    assert all(KEY not in value for value in metadata.values())


def test_count_three_makes_three_calls_with_consecutive_seeds(grpc_stability: Rig) -> None:
    layer, service = grpc_stability
    response = layer.image("sdxl", {"prompt": PROMPT, "count": 3, "seed": 10})
    assert sorted(list(c.request.image.seed) for c in service.calls) == [[10], [11], [12]]
    assert [i.seed for i in response.images] == [10, 11, 12]


def filtered_image(generation: Any) -> Any:
    artifact = generation.Artifact(
        type=generation.ARTIFACT_IMAGE,
        mime="image/png",
        binary=tiny_png(),
        seed=3,
        finish_reason=generation.FILTER,
    )
    return generation.Answer(artifacts=[artifact])


def refused_prompt(generation: Any) -> Any:
    artifact = generation.Artifact(
        type=generation.ARTIFACT_TEXT, text="prompt refused", finish_reason=generation.FILTER
    )
    return generation.Answer(artifacts=[artifact])


def obfuscated(generation: Any) -> Any:
    classifier = generation.ClassifierParameters(realized_action=generation.ACTION_OBFUSCATE)
    artifact = generation.Artifact(type=generation.ARTIFACT_CLASSIFICATIONS, classifier=classifier)
    return generation.Answer(artifacts=[artifact])


@pytest.mark.parametrize(
    ("answer", "says"),
    [(filtered_image, "refused the image"), (refused_prompt, "refused the prompt"),
     (obfuscated, "refused the image")],
)  # fmt: skip
def test_filter_artifacts_are_content_rejections(
    grpc_stability: Rig, answer: Any, says: str
) -> None:
    layer, service = grpc_stability
    service.script = service.answers(answer(service.generation))
    error = failure(layer)
    assert error.stopped_by is not None
    assert error.stopped_by.kind == "content_rejected"
    assert says in error.stopped_by.message
    assert error.images == []


@pytest.mark.parametrize(
    ("code", "details", "kind"),
    [
        ("UNAUTHENTICATED", "bad token", "authentication"),
        ("PERMISSION_DENIED", "engine not allowed", "authentication"),
        ("RESOURCE_EXHAUSTED", "too many requests", "rate_limited"),
        ("RESOURCE_EXHAUSTED", "insufficient balance for this request", "billing"),
        ("UNAVAILABLE", "overloaded", "unavailable"),
        ("INTERNAL", "kaboom", "unavailable"),
        ("INVALID_ARGUMENT", "height must be a multiple of 64", "invalid_request"),
        ("NOT_FOUND", "engine not found", "invalid_request"),
        ("DEADLINE_EXCEEDED", "took too long", "timeout"),
    ],
)
def test_status_codes_map_like_the_http_ones(
    grpc_stability: Rig, code: str, details: str, kind: str
) -> None:
    layer, service = grpc_stability
    service.script = service.abort(code, details)
    (attempt,) = failure(layer).attempts
    assert attempt.error == kind
    assert attempt.message == f"gRPC {code}: {details}"


@pytest.mark.parametrize(
    ("answer", "says"),
    [("no image", "no image artifact"), ("not a png", "not a PNG"), ("error", "reported an error")],
)
def test_odd_answers_are_an_unavailable_provider(
    grpc_stability: Rig, answer: str, says: str
) -> None:
    layer, service = grpc_stability
    generation = service.generation
    image = generation.ARTIFACT_IMAGE
    artifacts = {
        "no image": [],
        "not a png": [generation.Artifact(type=image, binary=b"GIF89a....")],
        "error": [generation.Artifact(type=image, finish_reason=generation.ERROR)],
    }[answer]
    service.script = service.answers(generation.Answer(artifacts=artifacts))
    (attempt,) = failure(layer).attempts
    assert attempt.error == "unavailable"
    assert says in (attempt.message or "")


def test_the_gates_timeout_is_the_calls_deadline_and_the_call_ends_on_both_sides(
    grpc_service: Any, sdxl_layer: Callable[..., Layer]
) -> None:
    grpc_service.script = grpc_service.hang
    (attempt,) = failure(sdxl_layer(grpc_service.host, timeout=0.5)).attempts
    assert attempt.error == "timeout"
    (call,) = grpc_service.calls
    assert call.ended.wait(10), "the server still sees the call open"


def test_a_cancelled_attempt_cancels_the_call_so_no_thread_stays_blocked(
    grpc_service: Any, sdxl_layer: Callable[..., Layer]
) -> None:
    grpc_service.script = grpc_service.hang
    layer = sdxl_layer(grpc_service.host, timeout=600)

    async def cancel_midway() -> str:
        task = asyncio.create_task(layer.aimage("sdxl", {"prompt": PROMPT}))
        while not grpc_service.calls:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the executor's only thread was reading the call: it takes new work once the call is
        # cancelled, long before the 600 s deadline
        free = asyncio.get_running_loop().run_in_executor(None, lambda: "free")
        try:
            return await asyncio.wait_for(free, 10)
        finally:
            await layer.aclose()

    loop = asyncio.new_event_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
    try:
        assert loop.run_until_complete(cancel_midway()) == "free"
    finally:
        loop.close()  # shuts the executor down without waiting
    (call,) = grpc_service.calls
    assert call.ended.wait(10), "the server still sees the call open"


def test_an_unreachable_host_is_an_unavailable_provider(sdxl_layer: Callable[..., Layer]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{probe.getsockname()[1]}"
    (attempt,) = failure(sdxl_layer(host, timeout=20)).attempts
    assert attempt.error == "unavailable"
    assert attempt.message is not None
    assert attempt.message.startswith("gRPC UNAVAILABLE")
