"""layer's standard provider tests, run against the fake fal queue on 127.0.0.1.

`FalApi` adapts `FakeFal` to the suite: each failure is produced the way fal produces it (an HTTP
error on submit in fal's words, a model's 422 or a safety flag in the result, a request that never
completes), and the generations it reports are the submits, in layer's words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from layer_fal.testing import FAST_POLLS, UNAUTHORIZED, FakeFal, Run, error, validation_error

from layer_core import Layer
from layer_core.testing import FakeServer, Reply
from layer_core.testing.conformance import RETRY_AFTER, Failure, FakeApi, ProviderConformance

#: Failures fal answers a submit with.
SUBMITS: dict[Failure, Reply] = {
    "rate_limited": error(
        429, "Too many concurrent requests", "rate_limited", **{"Retry-After": str(RETRY_AFTER)}
    ),
    "server_error": error(500, "Internal server error", "internal_error"),
    "unauthorized": UNAUTHORIZED,
    # fal locks an account whose balance ran out, with a 403
    "billing": error(
        403,
        "User is locked. Reason: Exhausted balance. "
        "Top up your balance at fal.ai/dashboard/billing.",
    ),
    "malformed": Reply(
        200, body=b'{"request_id": "req-9", "status_ur', content_type="application/json"
    ),
}
#: Failures that come as the request's own end.
RUNS: dict[Failure, Run] = {
    "content_refused": Run(nsfw=(0, 1, 2, 3, 4, 5, 6, 7)),
    "invalid_request": Run(
        failure=validation_error(
            [
                (
                    ("image_size", "width"),
                    "Input should be less than or equal to 1440",
                    "less_than_equal",
                )
            ]
        )
    ),
    "hang": Run(polls=None),
}
#: Ideogram's rendering speeds, in layer's quality words.
QUALITY = {"BALANCED": "standard", "QUALITY": "hd"}


class FalApi(FakeApi):
    """`FakeFal` as the conformance suite drives it."""

    def __init__(self, server: FakeServer, key: str) -> None:
        self.fal = FakeFal(server, key=key)

    def settings(self) -> dict[str, Any]:
        return {"base_url": self.fal.server.url, **FAST_POLLS}

    def fail_next(self, failure: Failure) -> None:
        if failure in RUNS:
            self.fal.next(RUNS[failure], Run())  # this request, then back to normal
        else:
            self.fal.answer_next(SUBMITS[failure])

    def generations(self) -> list[dict[str, Any]]:
        found = []
        for request in self.fal.submits():
            sent = request.json()
            generation = {"prompt": sent.get("prompt"), "n": sent.get("num_images", 1)}
            if "seed" in sent:
                generation["seed"] = sent["seed"]
            if sent.get("rendering_speed") in QUALITY:
                generation["quality"] = QUALITY[sent["rendering_speed"]]
            found.append(generation)
        return found

    def open_connections(self) -> int:
        return self.fal.server.open_connections


class TestFalConformance(ProviderConformance):
    entry_point = "fal"
    distribution = "layer-fal"

    @pytest.fixture
    def fake_api(self) -> Iterator[FalApi]:
        with FakeServer() as server:
            yield FalApi(server, key=self.api_key)

    def test_a_request_that_never_completes_is_cancelled_on_fal_at_the_timeout(
        self, layer_factory: Callable[..., Layer], fake_api: FalApi
    ) -> None:
        self.test_a_hanging_call_times_out(layer_factory, fake_api)
        (request,) = fake_api.fal.submitted
        assert fake_api.fal.cancelled == [request]
