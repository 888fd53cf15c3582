"""A fake Gemini API (its image endpoints) on 127.0.0.1, for tests that drive the real google-genai
SDK through layer.

    with serving() as (layer, server):
        layer.image("imagen-4.0-generate-001", {"prompt": "a fox"})

`gemini_api` answers `POST /v1beta/models/{model}:predict` (Imagen) and
`POST /v1beta/models/{model}:generateContent` (Gemini image models) in Google's JSON shapes, checks
the `x-goog-api-key` header, refuses what Google refuses (400 `INVALID_ARGUMENT` in Google's error
shape), and returns real PNGs of the pixels Google delivers per aspect ratio. A prompt containing
`BLOCKED` is refused as Google's safety filters refuse it (Imagen: every image filtered with a
`raiFilteredReason`; Gemini: `finishReason: IMAGE_SAFETY`); `FILTER_ONE` drops one Imagen image of
several; `TEXT_ONLY` makes a Gemini model answer in text. Its model knowledge is written out here
on its own, not read from models.toml, so tests check one against the other.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

from layer_core.layer import Layer
from layer_core.provider import GenerationCall
from layer_core.schema import ImageOutput
from layer_core.testing import FakeServer, Recorded, Reply, generate_once, tiny_png

__all__ = [
    "GEMINI_ROUTE",
    "IMAGEN_ROUTE",
    "KEY",
    "GoogleHarness",
    "api_error",
    "gemini_api",
    "png",
    "serving",
]

IMAGEN_ROUTE = "/v1beta/models/{model}:predict"
GEMINI_ROUTE = "/v1beta/models/{model}:generateContent"
KEY = "AIzaSy-test-layer-google-0123456789abcdef"
PROMPT_TOKENS = 9
#: Gemini image output tokens per image (gemini-2.5-flash-image: 1290; Gemini 3 Pro at 1K: 1120)
IMAGE_TOKENS = {"gemini-2.5-flash-image": 1290, "gemini-3-pro-image-preview": 1120}
_IMAGEN_PIXELS = {
    "1:1": (1024, 1024),
    "3:4": (896, 1280),
    "4:3": (1280, 896),
    "9:16": (768, 1408),
    "16:9": (1408, 768),
}
_GEMINI_PIXELS = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}
_IMAGEN_MODELS = (
    "imagen-4.0-generate-001",
    "imagen-4.0-ultra-generate-001",
    "imagen-4.0-fast-generate-001",
)


def api_error(status: int, code: str, message: str, *details: Mapping[str, Any]) -> Reply:
    """A reply in Google's error shape (`google.rpc.Status`)."""
    error = {"code": status, "message": message, "status": code}
    if details:
        error["details"] = list(details)
    return Reply(status, json={"error": error})


@functools.cache
def png(width: int, height: int) -> str:
    """A real PNG of width x height, base64 (made once per size)."""
    return base64.b64encode(tiny_png(width, height)).decode()


def _unauthorized(request: Recorded, key: str) -> Reply | None:
    sent = request.headers.get("x-goog-api-key")
    if sent == key:
        return None
    if not sent:
        return api_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.")
    return api_error(
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"},
    )


def gemini_api(request: Recorded, *, key: str = KEY) -> Reply:
    """Answer an Imagen `:predict` or Gemini `:generateContent` request as Google does."""
    refused = _unauthorized(request, key)
    if refused is not None:
        return refused
    model = request.params.get("model", "")
    body = request.json()
    if not isinstance(body, dict):
        return api_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
    if request.path.endswith(":predict"):
        return _predict(model, body)
    return _generate_content(model, body)


def _predict(model: str, body: Mapping[str, Any]) -> Reply:
    if model not in _IMAGEN_MODELS:
        return api_error(404, "NOT_FOUND", f"models/{model} is not found for API version v1beta")
    prompt = (body.get("instances") or [{}])[0].get("prompt")
    params = body.get("parameters") or {}
    n = params.get("sampleCount", 4)
    ratio = params.get("aspectRatio", "1:1")
    if not isinstance(prompt, str) or not prompt:
        return api_error(400, "INVALID_ARGUMENT", "instances[0].prompt is required.")
    if not isinstance(n, int) or not 1 <= n <= 4:
        return api_error(400, "INVALID_ARGUMENT", f"sampleCount must be 1 to 4, got {n}.")
    if ratio not in _IMAGEN_PIXELS:
        return api_error(400, "INVALID_ARGUMENT", f"Unsupported aspect ratio: {ratio}.")
    if "imageSize" in params and (
        model.endswith("fast-generate-001") or params["imageSize"] not in ("1K", "2K")
    ):
        return api_error(400, "INVALID_ARGUMENT", f"imageSize is not supported by {model}.")
    if "seed" in params:
        return api_error(400, "INVALID_ARGUMENT", "Seed is not supported in Gemini API.")
    reason = (
        "Your current safety filter threshold filtered out the generated image. "
        "Try rephrasing your prompt."
    )
    if "BLOCKED" in prompt:
        preds = [{"raiFilteredReason": reason}] if params.get("includeRaiReason") else []
        return Reply(json={"predictions": preds} if preds else {})
    mime = (params.get("outputOptions") or {}).get("mimeType", "image/png")
    image = {"bytesBase64Encoded": png(*_IMAGEN_PIXELS[ratio]), "mimeType": mime}
    predictions: list[dict[str, Any]] = [dict(image) for _ in range(n)]
    if "FILTER_ONE" in prompt and n > 1:
        predictions[-1] = {"raiFilteredReason": reason}
    return Reply(json={"predictions": predictions})


def _generate_content(model: str, body: Mapping[str, Any]) -> Reply:
    if model not in IMAGE_TOKENS:
        return api_error(404, "NOT_FOUND", f"models/{model} is not found for API version v1beta")
    try:
        prompt = body["contents"][0]["parts"][0]["text"]
    except (KeyError, IndexError, TypeError):
        return api_error(400, "INVALID_ARGUMENT", "contents is not specified")
    config = body.get("generationConfig") or {}
    image_config = config.get("imageConfig") or {}
    ratio = image_config.get("aspectRatio", "1:1")
    if ratio not in _GEMINI_PIXELS:
        return api_error(400, "INVALID_ARGUMENT", f"Unsupported aspect ratio: {ratio}.")
    size = image_config.get("imageSize")
    if size is not None and (model == "gemini-2.5-flash-image" or size not in ("1K", "2K", "4K")):
        return api_error(400, "INVALID_ARGUMENT", f"imageSize is not supported by {model}.")
    usage: dict[str, Any] = {"promptTokenCount": PROMPT_TOKENS, "totalTokenCount": PROMPT_TOKENS}
    if "BLOCKED" in prompt:
        candidate = {"finishReason": "IMAGE_SAFETY", "index": 0}
        return Reply(json={"candidates": [candidate], "usageMetadata": usage})
    if "TEXT_ONLY" in prompt or "IMAGE" not in (config.get("responseModalities") or []):
        part: dict[str, Any] = {"text": "I can't draw that, but here is a description."}
        tokens = 12
        details = [{"modality": "TEXT", "tokenCount": tokens}]
    else:
        part = {"inlineData": {"mimeType": "image/png", "data": png(*_GEMINI_PIXELS[ratio])}}
        tokens = IMAGE_TOKENS[model]
        details = [{"modality": "IMAGE", "tokenCount": tokens}]
    usage.update(
        candidatesTokenCount=tokens,
        totalTokenCount=PROMPT_TOKENS + tokens,
        candidatesTokensDetails=details,
    )
    candidate = {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}
    return Reply(json={"candidates": [candidate], "usageMetadata": usage, "modelVersion": model})


class GoogleHarness(NamedTuple):
    """A `Layer` whose `google` provider points at `server`, a fake Gemini API."""

    layer: Layer
    server: FakeServer

    def reply(self, *replies: Reply) -> None:
        """Answer the next image requests (both endpoints) with `replies` instead."""
        self.server.add("POST", IMAGEN_ROUTE, *replies)
        self.server.add("POST", GEMINI_ROUTE, *replies)

    def bodies(self) -> list[Any]:
        """The JSON body of every request the server received, in order."""
        return [r.json() for r in self.server.requests if r.method == "POST"]

    def generate(self, model: str, **fields: Any) -> list[ImageOutput]:
        """One `generate` call straight to the provider (no router), on a loop of its own."""
        call = GenerationCall(
            model=self.layer.catalog[model],
            **{"prompt": "a fox", "size": "1024x1024", "n": 1, **fields},
        )
        return generate_once(self.layer.providers["google"], call)


@contextmanager
def serving(
    gates: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    key: str | None = KEY,
    **settings: Any,
) -> Iterator[GoogleHarness]:
    """A fake Gemini API and a Layer with only the google plugin pointed at it.

    `gates` default to one `single` gate per shipped model, named after it; `settings` are more
    `[plugins.google]` keys.
    """
    import layer_google

    if gates is None:
        gates = {
            model: {"model": model, "routing_strategy": "single", "timeout": 30}
            for model in layer_google.models.shipped()
        }
    with FakeServer() as server:
        server.add("POST", IMAGEN_ROUTE, gemini_api)
        server.add("POST", GEMINI_ROUTE, gemini_api)
        layer = Layer(
            {
                "ledger": False,
                "plugins": {"google": {"base_url": server.url, **settings}},
                "gates": dict(gates),
            },
            plugins=[layer_google],
            load_entry_points=False,
            environ={"GEMINI_API_KEY": key} if key else {},
        )
        try:
            yield GoogleHarness(layer, server)
        finally:
            layer.close()
