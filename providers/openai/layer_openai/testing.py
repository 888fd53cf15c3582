"""A fake OpenAI Images API on 127.0.0.1, for tests that drive the real openai SDK through layer.

    with serving(gates={"g": {"model": "dall-e-3"}}) as (layer, server):
        layer.image("g", {"prompt": "a fox"})
        assert server.requests[0].json()["model"] == "dall-e-3"

`images_api` answers `POST /v1/images/generations` as OpenAI does and, like OpenAI, refuses a
request that a model rejects (400 with OpenAI's error shape) or a wrong key (401). Its images are
real PNGs of the pixels OpenAI delivers; a DALL·E answer without `response_format` gives URLs,
which `image_file` serves from the same server (`IMAGE_ROUTE`), so `ImageOutput.bytes()` works.
Its model knowledge is written out here on its own, not read from this package's models.toml, so
tests check one against the other.
"""

from __future__ import annotations

import base64
import functools
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

from layer_core.layer import Layer
from layer_core.provider import GenerationCall
from layer_core.schema import ImageOutput
from layer_core.sizes import parse_size
from layer_core.testing import FakeServer, Recorded, Reply, generate_once, tiny_png

__all__ = [
    "IMAGE_ROUTE",
    "KEY",
    "ROUTE",
    "OpenAIHarness",
    "PerModel",
    "api_error",
    "image_file",
    "images_api",
    "output_tokens",
    "png",
    "serving",
    "unauthorized",
]

ROUTE = "/v1/images/generations"
#: where the fake serves the image URLs it hands out (OpenAI's are on a storage host of its own)
IMAGE_ROUTE = "/images/{pixels}/{name}"
KEY = "sk-test-layer-openai-0123456789abcdef"
PNG_B64 = base64.b64encode(tiny_png()).decode()
PROMPT_TOKENS = 12

_SIZES = {
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
    "gpt-image": ("1024x1024", "1536x1024", "1024x1536", "auto"),
}
_QUALITIES = {
    "dall-e-2": (),
    "dall-e-3": ("standard", "hd"),
    "gpt-image": ("low", "medium", "high"),
}
#: image output tokens per quality and size, as OpenAI bills gpt-image
_OUTPUT_TOKENS = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}
#: gpt-image-2 and later (2.5, 2.6 and their snapshots) take any WIDTHxHEIGHT whose sides are
#: multiples of 16, at an aspect ratio from 1:3 to 3:1, up to 3840 a side, within a pixel count
_FLEXIBLE_SIZES = "gpt-image-2"
_MIN_PIXELS, _MAX_PIXELS, _MAX_SIDE = 655_360, 3840 * 2160, 3840


def api_error(
    status: int,
    message: str,
    code: str | None = None,
    *,
    kind: str = "invalid_request_error",
    **headers: str,
) -> Reply:
    """A reply in OpenAI's error shape (`kind` is its `type`)."""
    error = {"message": message, "type": kind, "param": None, "code": code}
    return Reply(status, json={"error": error}, headers=dict(headers))


@functools.cache
def png(pixels: str) -> bytes:
    """A real PNG of `pixels` ("WxH"), made once per size."""
    return tiny_png(*parse_size(pixels))


@functools.cache
def _png_b64(pixels: str) -> str:
    return base64.b64encode(png(pixels)).decode()


def unauthorized(request: Recorded) -> Reply:
    """OpenAI's 401 for the key `request` carries (or lacks): it names the key masked."""
    sent = request.headers.get("authorization") or ""
    given = sent.removeprefix("Bearer ")
    if given == sent or not given:
        return api_error(401, "You didn't provide an API key.")
    masked = f"{given[:3]}{'*' * max(0, len(given) - 7)}{given[-4:]}"
    return api_error(401, f"Incorrect API key provided: {masked}.", "invalid_api_key")


def output_tokens(quality: str, size: str) -> int:
    """Image output tokens OpenAI bills for one gpt-image image (other sizes: by pixel count)."""
    by_size = _OUTPUT_TOKENS[quality]
    if size in by_size:
        return by_size[size]
    width, height = parse_size(size)
    return round(by_size["1024x1024"] * width * height / (1024 * 1024))


def _takes_size(model: str, family: str, size: object) -> bool:
    """Whether OpenAI accepts `size` for `model`."""
    if size in _SIZES[family]:
        return True
    if not (isinstance(size, str) and model.startswith(_FLEXIBLE_SIZES)):
        return False
    try:
        width, height = parse_size(size)
    except ValueError:
        return False
    return (
        width % 16 == 0
        and height % 16 == 0
        and max(width, height) <= _MAX_SIDE
        and max(width, height) <= 3 * min(width, height)
        and _MIN_PIXELS <= width * height <= _MAX_PIXELS
    )


def _family(model: str) -> str | None:
    if model in ("dall-e-2", "dall-e-3"):
        return model
    return "gpt-image" if model.startswith("gpt-image") else None


def images_api(request: Recorded, *, key: str = KEY) -> Reply:
    """Answer an image generation request the way OpenAI does, or refuse it as OpenAI would.

    A key other than `key` is refused (for another key: `functools.partial(images_api, key=...)`).
    """
    if request.headers.get("authorization") != f"Bearer {key}":
        return unauthorized(request)
    body = request.json()
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
        return api_error(400, "'prompt' is a required property", "missing_required_parameter")
    model = body.get("model", "dall-e-2")
    family = _family(model)
    if family is None:
        return api_error(404, f"The model '{model}' does not exist", "model_not_found")
    n = body.get("n", 1)
    size = body.get("size", "1024x1024")
    quality = body.get("quality")
    if not _takes_size(model, family, size):
        return api_error(400, f"Invalid size '{size}' for {model}.", "invalid_size")
    if not isinstance(n, int) or not 1 <= n <= (1 if family == "dall-e-3" else 10):
        return api_error(400, f"Invalid 'n' for {model}: {n}.", "invalid_value")
    if quality is not None and quality not in _QUALITIES[family]:
        return api_error(400, f"Invalid 'quality' for {model}: {quality}.", "invalid_value")
    if "style" in body and family != "dall-e-3":
        return api_error(400, f"Unknown parameter: 'style' for {model}.", "unknown_parameter")
    if "response_format" in body and family == "gpt-image":
        return api_error(400, "Unknown parameter: 'response_format'.", "unknown_parameter")
    if family != "gpt-image":
        revised = {"revised_prompt": f"revised: {body['prompt']}"} if family == "dall-e-3" else {}
        return Reply(
            json={
                "created": int(time.time()),
                "data": [{**_image(request, size, body), **revised} for _ in range(n)],
            }
        )
    served_quality = quality or "medium"
    served_size = "1024x1024" if size == "auto" else size
    image_tokens = n * output_tokens(served_quality, served_size)
    return Reply(
        json={
            "created": int(time.time()),
            "data": [{"b64_json": _png_b64(served_size)} for _ in range(n)],
            "size": served_size,
            "quality": served_quality,
            "output_format": "png",
            "usage": {
                "input_tokens": PROMPT_TOKENS,
                "input_tokens_details": {"text_tokens": PROMPT_TOKENS, "image_tokens": 0},
                "output_tokens": image_tokens,
                "output_tokens_details": {"image_tokens": image_tokens, "text_tokens": 0},
                "total_tokens": PROMPT_TOKENS + image_tokens,
            },
        }
    )


def _image(request: Recorded, pixels: str, body: Mapping[str, Any]) -> dict[str, str]:
    """One DALL·E image: base64 if asked, else a URL on the server that received `request`."""
    if body.get("response_format") == "b64_json":
        return {"b64_json": _png_b64(pixels)}
    name = f"img-{secrets.token_hex(8)}.png"
    path = IMAGE_ROUTE.format(pixels=pixels, name=name)
    return {"url": f"http://{request.headers.get('host')}{path}"}


class PerModel:
    """A responder for `ROUTE` that fails per model: `faults[model]` (e.g. `NO_REPLY` for a hang,
    `api_error(500, ...)`, or a 429 with `Retry-After`) while set, else `images_api`. A test
    changes `faults` as it goes and reads `hits` (requests received, per model)."""

    def __init__(self, key: str = KEY) -> None:
        self.key = key
        self.faults: dict[str, Reply] = {}
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, request: Recorded) -> Reply:
        body = request.json()
        model = body.get("model", "dall-e-2") if isinstance(body, dict) else ""
        with self._lock:
            self.hits[model] += 1
            fault = self.faults.get(model)
        return fault if fault is not None else images_api(request, key=self.key)


def image_file(request: Recorded) -> Reply:
    """`GET` of an image URL `images_api` handed out: the PNG, of the pixels the URL names."""
    pixels = request.params.get("pixels", "")
    try:
        width, height = parse_size(pixels)
    except ValueError:
        width = height = 0
    if not 0 < width * height <= 4096 * 4096:
        return Reply(404, body=b"The specified blob does not exist.", content_type="text/plain")
    return Reply(body=png(pixels), content_type="image/png")


class OpenAIHarness(NamedTuple):
    """A `Layer` whose `openai` provider points at `server`, a fake Images API."""

    layer: Layer
    server: FakeServer

    def reply(self, *replies: Reply) -> None:
        """Answer the next image requests with `replies` (the last repeats) instead."""
        self.server.add("POST", ROUTE, *replies)

    def bodies(self) -> list[Any]:
        """The JSON body of every image request the server received, in order."""
        return [r.json() for r in self.server.requests_to(ROUTE)]

    def generate(self, model: str, **fields: Any) -> list[ImageOutput]:
        """One `generate` call straight to the provider (no router), on a loop of its own.

        `fields` are `GenerationCall` fields (prompt "a fox", size 1024x1024, n 1 by default).
        """
        call = GenerationCall(
            model=self.layer.catalog[model],
            **{"prompt": "a fox", "size": "1024x1024", "n": 1, **fields},
        )
        return generate_once(self.layer.providers["openai"], call)


@contextmanager
def serving(
    gates: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    key: str | None = KEY,
    **settings: Any,
) -> Iterator[OpenAIHarness]:
    """A fake Images API, and a Layer with only the openai plugin pointed at it.

    `gates` default to one `single` gate per shipped model, named after it; `settings` are more
    `[plugins.openai]` keys.
    """
    import layer_openai

    if gates is None:
        gates = {
            model: {"model": model, "routing_strategy": "single", "timeout": 30}
            for model in layer_openai.models.shipped()
        }
    with FakeServer() as server:
        server.add("POST", ROUTE, images_api)
        server.add("GET", IMAGE_ROUTE, image_file)
        layer = Layer(
            {
                "ledger": False,
                "plugins": {"openai": {"base_url": f"{server.url}/v1", **settings}},
                "gates": dict(gates),
            },
            plugins=[layer_openai],
            load_entry_points=False,
            environ={"OPENAI_API_KEY": key} if key else {},
        )
        try:
            yield OpenAIHarness(layer, server)
        finally:
            layer.close()
