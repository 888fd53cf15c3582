"""Fixtures: a `Layer` over the real Stability plugin, wired to a local fake of each API.

`stability` yields `(layer, server)`: the REST API faked by `layer_core.testing.FakeServer` on
127.0.0.1, answering every generate endpoint with a PNG of the pixel size Stability returns for
the aspect ratio asked (and the seed asked). `grpc_stability` yields `(layer, service)`: the gRPC
API served on 127.0.0.1 by `FakeGenerationService`, built on the SDK's own servicer; it skips
when the `[grpc]` extra is not installed. `make_layer` builds a Layer with other gates.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import pytest
from layer_stability import StabilityProvider
from layer_stability.models import REST_MODELS, REST_OUTPUTS

from layer_core import Layer
from layer_core.sizes import parse_size
from layer_core.testing import FakeServer, Recorded, Reply, plugin_for, tiny_png

KEY = "sk-test-9f8e7d6c5b4a39281706"
ENDPOINT = "/v2beta/stable-image/generate/{endpoint}"
#: One gate per use: `only` serves exactly the model a request names (no fallback).
ONLY = {
    "model": REST_MODELS[0].id,
    "routing_strategy": "single",
    "allow_overrides": True,
    "retries": 0,
    "timeout": 30,
}

LayerFactory = Callable[..., Layer]


def png_body(pixels: str, seed: int, finish: str = "SUCCESS") -> dict[str, Any]:
    """The JSON body Stability sends for one image."""
    png = tiny_png(*parse_size(pixels))
    return {"image": base64.b64encode(png).decode(), "seed": seed, "finish_reason": finish}


def echo_image(request: Recorded) -> Reply:
    """A 200 with a PNG of the pixels Stability returns for the asked ratio, and the asked seed."""
    form = request.form()
    ratio = str(form.get("aspect_ratio", "1:1"))
    seed = int(form.get("seed") or 424242)
    return Reply(json=png_body(REST_OUTPUTS[ratio], seed), content_type="application/json")


@pytest.fixture
def reply_image() -> Callable[[Recorded], Reply]:
    return echo_image


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        fake.add("POST", ENDPOINT, echo_image)
        yield fake


@pytest.fixture
def make_layer(server: FakeServer) -> Iterator[LayerFactory]:
    """`make_layer(gates=..., settings=..., environ=...)`: a Layer over the REST fake."""
    made: list[Layer] = []

    def make(
        gates: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Layer:
        layer = Layer(
            {
                "ledger": False,
                "plugins": {"stability": {"base_url": server.url, **(settings or {})}},
                "gates": dict(gates or {"only": ONLY}),
            },
            plugins=[plugin_for(StabilityProvider())],
            load_entry_points=False,
            environ={"STABILITY_API_KEY": KEY} if environ is None else environ,
        )
        made.append(layer)
        return layer

    yield make
    for layer in made:
        layer.close()


@pytest.fixture
def stability(make_layer: LayerFactory, server: FakeServer) -> tuple[Layer, FakeServer]:
    return make_layer(), server


# --- gRPC ------------------------------------------------------------------------------------


@dataclass
class Call:
    """One Generate call the fake gRPC service received."""

    request: Any
    metadata: dict[str, str]
    #: seconds left before the client's deadline when the call arrived (None: no deadline)
    time_remaining: float | None
    ended: threading.Event = field(default_factory=threading.Event)


Script = Callable[[Any, Any], Any]


def grpc_modules() -> tuple[Any, Any, Any]:
    """grpc, generation_pb2 and generation_pb2_grpc, or a skip naming the missing extra."""
    reason = "the [grpc] extra is not installed: pip install 'layer-stability[grpc]'"
    grpc = pytest.importorskip("grpc", reason=reason)
    pytest.importorskip("stability_sdk", reason=reason)
    from stability_sdk.interfaces.gooseai.generation import generation_pb2, generation_pb2_grpc

    return grpc, generation_pb2, generation_pb2_grpc


def image_answer(generation: Any, pixels: str, seed: int, finish: str = "STOP") -> Any:
    """An Answer carrying one PNG artifact, as the gRPC API sends it."""
    artifact = generation.Artifact(
        type=generation.ARTIFACT_IMAGE,
        mime="image/png",
        binary=tiny_png(*parse_size(pixels)),
        seed=seed,
        finish_reason=generation.FinishReason.Value(finish),
    )
    return generation.Answer(answer_id="a1", request_id="r1", artifacts=[artifact])


class FakeGenerationService:
    """The gRPC generation service on 127.0.0.1 (a free port), scripted per call.

    By default every call answers with a PNG of the asked width x height and the asked seed.
    `script` replaces that: a function of (request, context) yielding Answers or aborting.
    """

    def __init__(self) -> None:
        grpc, generation, generation_grpc = grpc_modules()
        self.grpc, self.generation = grpc, generation
        self.calls: list[Call] = []
        self.script: Script | None = None
        service = self

        class Servicer(generation_grpc.GenerationServiceServicer):
            def Generate(self, request: Any, context: Any) -> Iterator[Any]:
                metadata = dict(context.invocation_metadata())
                call = Call(request, metadata, context.time_remaining())
                context.add_callback(call.ended.set)
                service.calls.append(call)
                if service.script is not None:
                    yield from service.script(request, context)
                    return
                image = request.image
                yield image_answer(generation, f"{image.width}x{image.height}", image.seed[0])

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        generation_grpc.add_GenerationServiceServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.host = f"127.0.0.1:{self.port}"

    def hang(self, request: Any, context: Any) -> Iterator[Any]:
        """A script step: answer nothing until the client gives up (deadline or cancel)."""
        while context.is_active():
            time.sleep(0.01)
        yield from ()

    def abort(self, code: str, details: str) -> Script:
        def script(request: Any, context: Any) -> Iterator[Any]:
            context.abort(getattr(self.grpc.StatusCode, code), details)
            yield from ()

        return script

    def answer(self, *answers: Any) -> Script:
        def script(request: Any, context: Any) -> Iterator[Any]:
            yield from answers

        return script


@pytest.fixture
def grpc_service() -> Iterator[FakeGenerationService]:
    service = FakeGenerationService()
    service.server.start()
    yield service
    service.server.stop(grace=None).wait(5)


@pytest.fixture
def grpc_stability(
    grpc_service: FakeGenerationService,
) -> Iterator[tuple[Layer, FakeGenerationService]]:
    layer = Layer(
        {
            "ledger": False,
            "plugins": {"stability": {"api_key": KEY, "grpc_host": grpc_service.host}},
            "gates": {
                "sdxl": {
                    "model": "stable-diffusion-xl-1024-v1-0",
                    "routing_strategy": "single",
                    "retries": 0,
                    "timeout": 30,
                }
            },
        },
        plugins=[plugin_for(StabilityProvider())],
        load_entry_points=False,
        environ={},
    )
    yield layer, grpc_service
    layer.close()
