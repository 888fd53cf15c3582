"""A fake of the Acme Images API on 127.0.0.1: it answers as Acme does, and fails on demand.

It checks what Acme checks (the key, the region, every field against the model) and returns PNGs
of the pixel size Acme returns for the aspect ratio asked, the same image for the same seed. The
conformance suite drives it through the `FakeApi` methods.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

from layer_core.testing import NO_REPLY, FakeServer, Recorded, Reply, tiny_png
from layer_core.testing.conformance import RETRY_AFTER, Failure, FakeApi

#: What Acme returns, per model and aspect ratio, and how many images one call may ask for.
PIXELS = {
    "acme-1": {
        "1:1": (1024, 1024),
        "3:2": (1536, 1024),
        "2:3": (1024, 1536),
        "16:9": (1344, 768),
        "9:16": (768, 1344),
    },
    "acme-mini": {"1:1": (512, 512)},
}
MAX_COUNT = {"acme-1": 4, "acme-mini": 1}
FIELDS = {
    "acme-1": {"model", "prompt", "aspect_ratio", "count", "detail", "seed"},
    "acme-mini": {"model", "prompt", "aspect_ratio", "count", "palette"},
}
DETAIL = {"standard": "standard", "fine": "hd"}
PALETTE = {"bold": "vivid", "muted": "natural"}


def acme_error(status: int, kind: str, message: str, **headers: str) -> Reply:
    return Reply(status, json={"error": {"type": kind, "message": message}}, headers=headers)


FAILURES: dict[Failure, Reply] = {
    "rate_limited": acme_error(429, "rate_limit", "slow down", **{"Retry-After": f"{RETRY_AFTER}"}),
    "server_error": acme_error(503, "server", "Acme is overloaded"),
    "unauthorized": acme_error(401, "auth", "invalid API key"),
    "billing": acme_error(402, "billing", "your Acme account is out of credit"),
    "content_refused": acme_error(400, "content_policy", "the prompt was refused"),
    "invalid_request": acme_error(400, "invalid", "count must be between 1 and 4"),
    "malformed": Reply(
        200, body=b'{"id": "gen_1", "images": [{"b64_pn', content_type="application/json"
    ),
    "hang": NO_REPLY,
}


class AcmeApi(FakeApi):
    """Acme's POST /v1/generate, on a FakeServer. Use it as a context manager."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.server = FakeServer()
        self.server.add("POST", "/v1/generate", self._generate)
        self._next_failures: list[Failure] = []

    def __enter__(self) -> AcmeApi:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    # --- the FakeApi adapter the conformance suite drives ------------------------------------

    def settings(self) -> dict[str, Any]:
        return {"base_url": self.server.url}

    def fail_next(self, failure: Failure) -> None:
        self._next_failures.append(failure)

    def generations(self) -> list[dict[str, Any]]:
        sent = [r.json() for r in self.server.requests_to("/v1/generate", "POST")]
        return [
            {
                "prompt": body.get("prompt"),
                "n": body.get("count", 1),
                "quality": DETAIL.get(body.get("detail")),
                "style": PALETTE.get(body.get("palette")),
                "seed": body.get("seed"),
            }
            for body in sent
        ]

    def open_connections(self) -> int:
        return self.server.open_connections

    # --- Acme ------------------------------------------------------------------------------------

    def _generate(self, request: Recorded) -> Reply:
        if self._next_failures:
            return FAILURES[self._next_failures.pop(0)]
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return FAILURES["unauthorized"]
        if request.headers.get("acme-region") not in ("eu", "us"):
            return acme_error(400, "invalid", "Acme-Region must be eu or us")
        body = request.json()
        problem = _check(body)
        if problem:
            return acme_error(400, "invalid", problem)
        model = body["model"]
        width, height = PIXELS[model][body["aspect_ratio"]]
        first = body.get("seed", secrets.randbelow(2**32))
        images = []
        for index in range(body.get("count", 1)):
            seed = (first + index) % 2**32
            colour = hashlib.sha256(
                f"{body['prompt']}|{seed}|{body.get('detail')}|{body.get('palette')}".encode()
            ).digest()[:3]
            png = tiny_png(width, height, (colour[0], colour[1], colour[2]))
            image = {"b64_png": base64.b64encode(png).decode(), "width": width, "height": height}
            if "seed" in FIELDS[model]:
                image["seed"] = seed
            images.append(image)
        return Reply(json={"id": f"gen_{secrets.token_hex(6)}", "images": images})


def _check(body: Any) -> str | None:
    """Acme's validation: the first problem with the request body, or None."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    model = body.get("model")
    if model not in PIXELS:
        return f"unknown model {model!r}"
    unknown = set(body) - FIELDS[model]
    if unknown:
        return f"{model} takes no {', '.join(sorted(unknown))}"
    if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        return "prompt must be a non-empty string"
    if body.get("aspect_ratio") not in PIXELS[model]:
        return f"{model} supports aspect_ratio {', '.join(PIXELS[model])}"
    count = body.get("count", 1)
    if not isinstance(count, int) or not 1 <= count <= MAX_COUNT[model]:
        return f"count must be between 1 and {MAX_COUNT[model]}"
    if "detail" in body and body["detail"] not in DETAIL:
        return "detail must be standard or fine"
    if "palette" in body and body["palette"] not in PALETTE:
        return "palette must be bold or muted"
    seed = body.get("seed", 0)
    if not isinstance(seed, int) or not 0 <= seed < 2**32:
        return "seed must be an integer from 0 to 2**32-1"
    return None
