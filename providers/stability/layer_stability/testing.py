"""Fakes of Stability's two APIs on 127.0.0.1, for tests that drive layer's Stability plugin.

    with FakeServer() as server:
        server.add("POST", GENERATE, StabilityRest(key="sk-test"))
        ...  # point [plugins.stability] base_url at server.url

    with FakeGenerationService() as service:  # needs the [grpc] extra
        ...  # point [plugins.stability] grpc_host at service.host

Both answer as Stability does: they check what it checks (the key, the engine or endpoint, each
field) and refuse in its words; an image comes back at the pixel size Stability returns for what
was asked, drawn from the model, prompt and seed, so the same seed gives the same image. Their
knowledge of Stability is written out here, not read from layer_stability.models, so the tests
check one against the other. Failures are scripted: `server.add(...)` a `Reply` (see
`stability_error`), or set `FakeGenerationService.script`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layer_core.sizes import parse_size
from layer_core.testing import Recorded, Reply, tiny_png

__all__ = [
    "CHOSEN_SEED",
    "GENERATE",
    "SDXL_ENGINE",
    "Call",
    "FakeGenerationService",
    "Script",
    "StabilityRest",
    "image_answer",
    "picture",
    "stability_error",
]

#: The REST generate route (`endpoint`: ultra, core or sd3).
GENERATE = "/v2beta/stable-image/generate/{endpoint}"
#: The seed the fakes pick when asked for none (Stability picks a random one).
CHOSEN_SEED = 424242
MAX_SEED = 4_294_967_294
MAX_PROMPT_CHARS = 10_000
#: aspect_ratio → the pixels the REST API returns. Stability also takes 21:9, 9:21, 4:5 and 5:4,
#: which layer never sends: this fake refuses them as unknown.
REST_PIXELS = {
    "1:1": "1024x1024",
    "16:9": "1344x768",
    "9:16": "768x1344",
    "3:2": "1216x832",
    "2:3": "832x1216",
}
#: endpoint → the form fields it takes.
REST_FIELDS = {
    "ultra": {"prompt", "negative_prompt", "aspect_ratio", "seed", "output_format"},
    "core": {"prompt", "negative_prompt", "aspect_ratio", "seed", "output_format", "style_preset"},
    "sd3": {
        "prompt",
        "negative_prompt",
        "aspect_ratio",
        "seed",
        "output_format",
        "model",
        "mode",
        "cfg_scale",
    },
}
SD3_MODELS = ("sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium")
SDXL_ENGINE = "stable-diffusion-xl-1024-v1-0"
#: The pixel sizes the SDXL engine takes (and returns).
SDXL_PIXELS = frozenset(
    {
        "1024x1024",
        "1152x896",
        "896x1152",
        "1216x832",
        "832x1216",
        "1344x768",
        "768x1344",
        "1536x640",
        "640x1536",
    }
)
MAX_SAMPLES = 10


@functools.lru_cache(maxsize=256)
def picture(pixels: str, *drawn_from: object) -> bytes:
    """The PNG a fake returns: `pixels` in one colour drawn from `drawn_from` (built once)."""
    colour = hashlib.sha256(repr(drawn_from).encode()).digest()
    return tiny_png(*parse_size(pixels), (colour[0], colour[1], colour[2]))


def stability_error(status: int, name: str, *errors: str, **headers: str) -> Reply:
    """A reply in Stability's REST error shape: `{id, name, errors: [...]}`."""
    body = {"id": "e0c2a5f1", "name": name, "errors": list(errors)}
    return Reply(status, json=body, headers=headers)


class StabilityRest:
    """Stability's REST generate endpoints, as a `FakeServer` responder (for `GENERATE`, or one
    endpoint's path).

    A 200 is `{image, seed, finish_reason: "SUCCESS"}` with a PNG (the only output_format this
    fake serves); a refusal is 401 for another key, 404 for an unknown endpoint, 400 for a field
    Stability would refuse, each in Stability's error shape.
    """

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, request: Recorded) -> Reply:
        if request.headers.get("authorization") != f"Bearer {self.key}":
            return stability_error(401, "unauthorized", "authorization: invalid API key")
        endpoint = request.path.removeprefix(GENERATE.removesuffix("{endpoint}"))
        if endpoint not in REST_FIELDS:
            return stability_error(404, "not_found", f"no such endpoint: {endpoint}")
        try:
            form = {k: v for k, v in request.form().items() if isinstance(v, str)}
        except ValueError:
            return stability_error(400, "bad_request", "the body must be multipart/form-data")
        problem = _rest_problem(endpoint, form)
        if problem:
            return stability_error(400, "bad_request", problem)
        seed = int(form.get("seed", 0)) or CHOSEN_SEED
        pixels = REST_PIXELS[form.get("aspect_ratio", "1:1")]
        model = form.get("model", SD3_MODELS[0]) if endpoint == "sd3" else endpoint
        png = picture(pixels, model, form["prompt"], seed)
        image = base64.b64encode(png).decode()
        return Reply(json={"image": image, "seed": seed, "finish_reason": "SUCCESS"})


def _rest_problem(endpoint: str, form: dict[str, str]) -> str | None:
    """What Stability would refuse in a REST request's fields (in its words), or None."""
    unknown = sorted(set(form) - REST_FIELDS[endpoint])
    if unknown:
        return f"{endpoint} takes no {', '.join(unknown)}"
    prompt = form.get("prompt", "")
    if not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
        return f"prompt: must be 1 to {MAX_PROMPT_CHARS} characters"
    if form.get("aspect_ratio", "1:1") not in REST_PIXELS:
        return f"aspect_ratio: must be one of {', '.join(REST_PIXELS)}"
    if form.get("output_format", "png") != "png":
        return "output_format: this fake serves png only"
    seed = form.get("seed", "0")
    if not seed.isdigit() or int(seed) > MAX_SEED:
        return f"seed: must be an integer from 0 to {MAX_SEED}"
    if form.get("model", SD3_MODELS[0]) not in SD3_MODELS:
        return f"model: must be one of {', '.join(SD3_MODELS)}"
    return None


# --- gRPC ------------------------------------------------------------------------------------

#: Threads serving calls (and the most calls that can be open at once).
WORKERS = 4


def _started_pool(workers: int, name: str) -> futures.ThreadPoolExecutor:
    """A thread pool whose threads are all running already: none starts later, mid-test, where
    it would look like a thread the client under test left behind."""
    pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    everyone = threading.Barrier(workers)
    for _ in range(workers):
        pool.submit(everyone.wait, 10)
    return pool


@dataclass
class Call:
    """One Generate call the fake gRPC service received."""

    request: Any
    metadata: dict[str, str]
    #: seconds left before the client's deadline when the call arrived (None: no deadline)
    time_remaining: float | None
    ended: threading.Event = field(default_factory=threading.Event)


#: A scripted answer to a call: a function of (request, context) yielding Answers or aborting.
Script = Callable[[Any, Any], Iterator[Any]]


def image_answer(generation: Any, pixels: str, seed: int, png: bytes | None = None) -> Any:
    """An Answer carrying one PNG artifact (`png`, or a `picture` of `pixels`), as sent."""
    artifact = generation.Artifact(
        type=generation.ARTIFACT_IMAGE,
        mime="image/png",
        binary=png if png is not None else picture(pixels),
        seed=seed,
        finish_reason=generation.STOP,
    )
    return generation.Answer(answer_id="a1", request_id="r1", artifacts=[artifact])


class FakeGenerationService:
    """Stability's gRPC generation service on 127.0.0.1 (a free port), built on the SDK's own
    servicer (`pip install 'layer-stability[grpc]'`). Use it as a context manager.

    Each call is logged in `calls` and answered by `script` if set, else as the SDXL engine
    answers (`answer`): one PNG artifact per sample at the width x height asked, with its seed.
    It never checks a key: a plain channel (any host not on :443) carries none.
    """

    def __init__(self) -> None:
        import grpc
        from stability_sdk.interfaces.gooseai.generation import generation_pb2, generation_pb2_grpc

        self.grpc: Any = grpc
        self.generation: Any = generation_pb2
        self.calls: list[Call] = []
        self.script: Script | None = None
        service = self

        class Servicer(generation_pb2_grpc.GenerationServiceServicer):  # type: ignore[misc]
            def Generate(self, request: Any, context: Any) -> Iterator[Any]:
                call = Call(request, dict(context.invocation_metadata()), context.time_remaining())
                context.add_callback(call.ended.set)
                service.calls.append(call)
                yield from (service.script or service.answer)(request, context)

        self._pool = _started_pool(WORKERS, "fake-grpc-generation")
        self.server: Any = grpc.server(self._pool)
        generation_pb2_grpc.add_GenerationServiceServicer_to_server(Servicer(), self.server)
        self.port: int = self.server.add_insecure_port("127.0.0.1:0")
        self.host = f"127.0.0.1:{self.port}"

    def __enter__(self) -> FakeGenerationService:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None).wait(5)
        self._pool.shutdown(wait=False)

    @property
    def open_connections(self) -> int:
        """TCP connections open to the service now (Linux: read from /proc/net/tcp and tcp6)."""
        tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
        if not any(table.exists() for table in tables):
            raise RuntimeError("counting connections needs Linux's /proc/net/tcp")
        rows = [
            line.split()
            for table in tables
            if table.exists()
            for line in table.read_text().splitlines()[1:]
        ]
        # the service's end of each: local address 127.0.0.1:port in hex (in tcp6, the same
        # address IPv4-mapped ends the same way), state 01 (ESTABLISHED)
        here = f"0100007F:{self.port:04X}"
        return sum(1 for row in rows if row[1].endswith(here) and row[3] == "01")

    def answer(self, request: Any, context: Any) -> Iterator[Any]:
        """Answer as the SDXL engine does, or abort as it would with what it refuses."""
        problem = self._problem(request)
        if problem is not None:
            code, details = problem
            context.abort(getattr(self.grpc.StatusCode, code), details)
        image = request.image
        pixels = f"{image.width}x{image.height}"
        prompt = request.prompt[0].text
        seeds = list(image.seed) or [0]
        for index in range(image.samples or 1):
            seed = (seeds[index] if index < len(seeds) else seeds[0] + index) or CHOSEN_SEED
            png = picture(pixels, request.engine_id, prompt, seed)
            yield image_answer(self.generation, pixels, seed, png)

    def _problem(self, request: Any) -> tuple[str, str] | None:
        if request.engine_id != SDXL_ENGINE:
            return "NOT_FOUND", f"engine {request.engine_id!r} not found"
        if not [p for p in request.prompt if p.text.strip()]:
            return "INVALID_ARGUMENT", "a text prompt is required"
        image = request.image
        if f"{image.width}x{image.height}" not in SDXL_PIXELS:
            return "INVALID_ARGUMENT", f"invalid dimensions {image.width}x{image.height}"
        if not 1 <= (image.samples or 1) <= MAX_SAMPLES:
            return "INVALID_ARGUMENT", f"samples must be 1 to {MAX_SAMPLES}"
        if any(not 0 <= seed <= MAX_SEED for seed in image.seed):
            return "INVALID_ARGUMENT", f"seed must be 0 to {MAX_SEED}"
        return None

    # --- scripts ---------------------------------------------------------------------------------

    def hang(self, request: Any, context: Any) -> Iterator[Any]:
        """Answer nothing until the client gives up (deadline or cancel)."""
        while context.is_active():
            time.sleep(0.01)
        yield from ()

    def abort(self, code: str, details: str) -> Script:
        """End the call with a gRPC status (a `grpc.StatusCode` name) and details."""

        def script(request: Any, context: Any) -> Iterator[Any]:
            context.abort(getattr(self.grpc.StatusCode, code), details)
            yield from ()

        return script

    def answers(self, *answers: Any) -> Script:
        """Send these Answers, whatever was asked."""

        def script(request: Any, context: Any) -> Iterator[Any]:
            yield from answers

        return script
