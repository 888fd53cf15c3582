"""layer's standard provider tests, run against the fake Replicate on 127.0.0.1.

`ReplicateApi` adapts `FakeReplicate` to the suite: each failure is produced the way Replicate
produces it (an HTTP error on create, in its problem-details words, or a prediction that fails or
never ends), and the generations it reports are the create requests, in layer's words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest
from layer_replicate.testing import (
    FAST_POLLS,
    UNAUTHENTICATED,
    FakeReplicate,
    Run,
    problem,
)

from layer_core import Layer
from layer_core.testing import NO_REPLY, FakeServer, Reply
from layer_core.testing.conformance import RETRY_AFTER, Failure, FakeApi, ProviderConformance

#: Failures Replicate answers a create with.
REPLIES: dict[Failure, Reply] = {
    "rate_limited": problem(
        429,
        f"Request was throttled. Your rate limit resets in ~{RETRY_AFTER}s.",
        title="Request was throttled.",
        headers={"Retry-After": str(RETRY_AFTER)},
    ),
    "server_error": problem(500, "Internal server error", title="Internal Server Error"),
    "unauthorized": UNAUTHENTICATED,
    "billing": problem(
        402,
        "You have insufficient credit to run this model. Go to the billing page to purchase "
        "credit. Once you purchase credit, please wait a few minutes before trying again.",
        title="Insufficient credit",
    ),
    "invalid_request": problem(
        422,
        "- input.num_outputs: Must be less than or equal to 4",
        title="Input validation failed",
        invalid_fields=[{"field": "input.num_outputs", "description": "Must be ≤ 4"}],
    ),
    "malformed": Reply(201, body=b'{"id": "p9", "status": "star', content_type="application/json"),
}
#: Failures that come as the prediction's own end: refused by the safety checker, or never done.
RUNS: dict[Failure, Run] = {
    "content_refused": Run(
        status="failed",
        error="NSFW content detected. Try running it again, or try a different prompt.",
    ),
    "hang": Run(polls=None),
}


class ReplicateApi(FakeApi):
    """`FakeReplicate` as the conformance suite drives it.

    `hang` says how a hang comes: a prediction that stays `processing` (what Replicate does when
    a model stalls), or a create request that is never answered.
    """

    def __init__(self, server: FakeServer, token: str) -> None:
        self.replicate = FakeReplicate(server, token=token)
        self.hang: Literal["processing", "create"] = "processing"

    def settings(self) -> dict[str, Any]:
        return {"base_url": self.replicate.server.url, **FAST_POLLS}

    def fail_next(self, failure: Failure) -> None:
        if failure == "hang" and self.hang == "create":
            self.replicate.answer_next(NO_REPLY)
        elif failure in RUNS:
            self.replicate.next(RUNS[failure], Run())  # this prediction, then back to normal
        else:
            self.replicate.answer_next(REPLIES[failure])

    def generations(self) -> list[dict[str, Any]]:
        sent = [request.json()["input"] for request in self.replicate.creates()]
        return [
            {
                "prompt": given.get("prompt"),
                "n": given.get("num_outputs", 1),
                "seed": given.get("seed"),
            }
            for given in sent
        ]

    def open_connections(self) -> int:
        return self.replicate.server.open_connections


class TestReplicateConformance(ProviderConformance):
    entry_point = "replicate"
    distribution = "layer-replicate"

    @pytest.fixture
    def fake_api(self) -> Iterator[ReplicateApi]:
        with FakeServer() as server:
            yield ReplicateApi(server, token=self.api_key)

    # The standard hang tests run with a prediction that never ends; these add Replicate's
    # other hang, and what only Replicate has: a prediction to cancel on the server.

    def test_a_create_that_never_answers_times_out(
        self, layer_factory: Callable[..., Layer], fake_api: ReplicateApi
    ) -> None:
        fake_api.hang = "create"
        self.test_a_hanging_call_times_out(layer_factory, fake_api)

    def test_cancelling_a_call_while_the_create_hangs_leaves_nothing_running(
        self, layer_factory: Callable[..., Layer], fake_api: ReplicateApi
    ) -> None:
        fake_api.hang = "create"
        self.test_cancelling_a_call_leaves_nothing_running(layer_factory, fake_api)

    def test_a_prediction_that_never_ends_is_canceled_on_replicate_at_the_timeout(
        self, layer_factory: Callable[..., Layer], fake_api: ReplicateApi
    ) -> None:
        self.test_a_hanging_call_times_out(layer_factory, fake_api)
        (prediction,) = fake_api.replicate.created
        assert fake_api.replicate.canceled == [prediction]
        assert prediction.status == "canceled"
