"""layer's standard provider tests, run against the fake Gemini API of `layer_google.testing`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from layer_google.testing import GEMINI_ROUTE, IMAGEN_ROUTE, api_error, gemini_api

from layer_core.testing import NO_REPLY, FakeServer, Recorded, Reply
from layer_core.testing.conformance import RETRY_AFTER, Failure, FakeApi, ProviderConformance


def failure_reply(failure: Failure, request: Recorded) -> Reply:
    """`failure` as the Gemini API answers it."""
    match failure:
        case "unauthorized":
            return api_error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials."
            )
        case "rate_limited":
            return api_error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota. Please retry in 7s.",
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{RETRY_AFTER}s",
                },
            )
        case "server_error":
            return api_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        case "billing":
            return api_error(
                400,
                "FAILED_PRECONDITION",
                "Gemini API free tier is not available in your country. "
                "Please enable billing on your project in Google AI Studio.",
            )
        case "content_refused" if request.path.endswith(":predict"):
            return Reply(json={"predictions": [{"raiFilteredReason": "filtered by safety"}]})
        case "content_refused":
            return Reply(json={"promptFeedback": {"blockReason": "SAFETY"}})
        case "invalid_request":
            return api_error(400, "INVALID_ARGUMENT", "sampleCount must be 1 to 4, got 11.")
        case "malformed":
            return Reply(
                body=b'{"predictions": [{"bytesBase64Encoded": "iVBO',
                content_type="application/json",
            )
        case "hang":
            return NO_REPLY


class GoogleApi(FakeApi):
    def __init__(self, key: str) -> None:
        self.key = key
        self.server = FakeServer()
        self.server.add("POST", IMAGEN_ROUTE, self._generate)
        self.server.add("POST", GEMINI_ROUTE, self._generate)
        self._next_failures: list[Failure] = []

    def settings(self) -> dict[str, Any]:
        return {"base_url": self.server.url}

    def fail_next(self, failure: Failure) -> None:
        self._next_failures.append(failure)

    def generations(self) -> list[dict[str, Any]]:
        out = []
        for r in self.server.requests:
            if r.method != "POST":
                continue
            body = r.json()
            if r.path.endswith(":predict"):
                prompt = body["instances"][0]["prompt"]
                n = body.get("parameters", {}).get("sampleCount", 4)
            else:
                prompt = body["contents"][0]["parts"][0]["text"]
                n = 1
            out.append({"prompt": prompt, "n": n, "quality": None, "style": None})
        return out

    def open_connections(self) -> int:
        return self.server.open_connections

    def _generate(self, request: Recorded) -> Reply:
        if self._next_failures:
            return failure_reply(self._next_failures.pop(0), request)
        return gemini_api(request, key=self.key)


class TestGoogleConformance(ProviderConformance):
    entry_point = "google"
    distribution = "layer-google"

    @pytest.fixture
    def fake_api(self) -> Iterator[GoogleApi]:
        api = GoogleApi(self.api_key)
        with api.server:
            yield api
