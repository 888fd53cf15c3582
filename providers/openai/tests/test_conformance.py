"""layer's standard provider tests, run against the fake Images API of `layer_openai.testing`.

`OpenAIApi` adapts that fake to the suite: between failures it is `images_api` itself (the key
check, each model's parameter rules, PNGs of the pixels OpenAI delivers, DALL·E URLs served by
the same server); `fail_next` answers one request as OpenAI words each failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from layer_openai.testing import (
    IMAGE_ROUTE,
    ROUTE,
    api_error,
    image_file,
    images_api,
    unauthorized,
)

from layer_core.testing import NO_REPLY, FakeServer, Recorded, Reply
from layer_core.testing.conformance import RETRY_AFTER, Failure, FakeApi, ProviderConformance

#: OpenAI's quality words → layer's, under the default quality_map (gpt-image: medium/high).
LAYER_QUALITY = {"standard": "standard", "hd": "hd", "medium": "standard", "high": "hd"}


def failure_reply(failure: Failure, request: Recorded) -> Reply:
    """`failure` as OpenAI answers it to `request`."""
    model = str(request.json().get("model"))
    gpt_image = model.startswith("gpt-image")
    match failure:
        case "unauthorized":  # the key it sent, revoked: OpenAI names it masked
            return unauthorized(request)
        case "rate_limited":
            return api_error(
                429,
                f"Rate limit reached for images per minute on {model}. Limit: 5/1min.",
                "rate_limit_exceeded",
                kind="requests",
                **{"Retry-After": str(RETRY_AFTER)},
            )
        case "server_error":
            return api_error(
                500, "The server had an error processing your request.", kind="server_error"
            )
        case "billing":  # out of credit: a 429, told apart from a rate limit by its code
            return api_error(
                429,
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                kind="insufficient_quota",
            )
        case "content_refused" if gpt_image:
            return api_error(
                400, "Your request was rejected by the safety system.", "moderation_blocked"
            )
        case "content_refused":
            return api_error(
                400,
                "Your prompt may contain text not allowed by our safety system.",
                "content_policy_violation",
            )
        case "invalid_request":
            return api_error(400, f"Invalid value for 'n' on {model}: 11.", "invalid_value")
        case "malformed":  # a 200 cut off mid-image
            return Reply(
                body=b'{"created": 1, "data": [{"b64_json": "iVBORw0K',
                content_type="application/json",
            )
        case "hang":
            return NO_REPLY


class OpenAIApi(FakeApi):
    """The fake Images API for the suite's key, on a FakeServer of its own."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.server = FakeServer()
        self.server.add("GET", IMAGE_ROUTE, image_file)
        self.server.add("POST", ROUTE, self._generate)
        self._next_failures: list[Failure] = []

    def settings(self) -> dict[str, Any]:
        return {"base_url": f"{self.server.url}/v1"}

    def fail_next(self, failure: Failure) -> None:
        self._next_failures.append(failure)

    def generations(self) -> list[dict[str, Any]]:
        """In layer's words; OpenAI takes no seed, so none is reported."""
        bodies = [r.json() for r in self.server.requests_to(ROUTE, "POST")]
        return [
            {
                "prompt": body.get("prompt"),
                "n": body.get("n", 1),
                "quality": LAYER_QUALITY.get(body.get("quality"), body.get("quality")),
                "style": body.get("style"),
            }
            for body in bodies
        ]

    def open_connections(self) -> int:
        return self.server.open_connections

    def _generate(self, request: Recorded) -> Reply:
        if self._next_failures:
            return failure_reply(self._next_failures.pop(0), request)
        return images_api(request, key=self.key)


class TestOpenAIConformance(ProviderConformance):
    entry_point = "openai"
    distribution = "layer-openai"

    @pytest.fixture
    def fake_api(self) -> Iterator[OpenAIApi]:
        api = OpenAIApi(self.api_key)
        with api.server:
            yield api
