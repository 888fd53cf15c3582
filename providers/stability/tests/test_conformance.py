"""layer's conformance suite, run once per Stability API: the REST models against the REST fake,
and the SDXL engine against the gRPC fake (when the `[grpc]` extra is installed). Each `FakeApi`
adapter below fails on demand in that API's own words."""

from __future__ import annotations

import base64
import itertools
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from layer_stability import grpc_extra_installed
from layer_stability.models import GRPC_MODELS, REST_MODELS
from layer_stability.testing import (
    GENERATE,
    FakeGenerationService,
    Script,
    StabilityRest,
    picture,
    stability_error,
)

from layer_core.testing import NO_REPLY, FakeServer, Recorded, Reply
from layer_core.testing.conformance import (
    FAILURES,
    RETRY_AFTER,
    Failure,
    FakeApi,
    ProviderConformance,
)

GENERATE_PREFIX = GENERATE.removesuffix("{endpoint}")


class Failing:
    """The failures asked for with `fail_next`, in order; each kind cycles through its forms."""

    def __init__(self, forms: Mapping[Failure, tuple[Any, ...]]) -> None:
        self._forms = {failure: itertools.cycle(replies) for failure, replies in forms.items()}
        self._next: list[Failure] = []
        self._lock = threading.Lock()

    def add(self, failure: Failure) -> None:
        with self._lock:
            self._next.append(failure)

    def pop(self) -> Any | None:
        """The next failure's form (Reply or script), or None to answer normally."""
        with self._lock:
            return next(self._forms[self._next.pop(0)]) if self._next else None


class RestApi(FakeApi):
    """The REST fake (`StabilityRest`) on a `FakeServer`, with every failure Stability sends."""

    def __init__(self, key: str) -> None:
        filtered = base64.b64encode(picture("1024x1024", "blurred")).decode()
        self.server = FakeServer()
        self.server.add("POST", GENERATE, self._generate)
        self.answer = StabilityRest(key)
        self.failing = Failing(
            {
                "rate_limited": (
                    stability_error(
                        429,
                        "rate_limit_exceeded",
                        "You have exceeded the rate limit of 150 requests within a 10 second "
                        "period",
                        **{"Retry-After": str(RETRY_AFTER)},
                    ),
                ),
                "server_error": (
                    stability_error(500, "internal_error", "An unexpected server error occurred"),
                    Reply(503, body=b"<html>upstream unavailable</html>", content_type="text/html"),
                ),
                "unauthorized": (
                    stability_error(401, "unauthorized", "authorization: invalid API key"),
                ),
                "billing": (
                    stability_error(
                        402, "payment_required", "You lack sufficient credits to make this request"
                    ),
                ),
                "content_refused": (
                    stability_error(
                        403,
                        "content_moderation",
                        "Your request was flagged by our content moderation system",
                    ),
                    Reply(json={"image": filtered, "seed": 7, "finish_reason": "CONTENT_FILTERED"}),
                ),
                "invalid_request": (
                    stability_error(400, "bad_request", "aspect_ratio: must be one of 1:1, 16:9"),
                ),
                "malformed": (
                    Reply(body=b'{"image": "iVBORw0KGgoAAAAN', content_type="application/json"),
                    Reply(json={"seed": 7, "finish_reason": "SUCCESS"}),
                ),
                "hang": (NO_REPLY,),
            }
        )

    def _generate(self, request: Recorded) -> Reply:
        failure: Reply | None = self.failing.pop()
        return failure if failure is not None else self.answer(request)

    def settings(self) -> dict[str, Any]:
        return {"base_url": self.server.url}

    def fail_next(self, failure: Failure) -> None:
        self.failing.add(failure)

    def generations(self) -> list[dict[str, Any]]:
        sent = [r.form() for r in self.server.requests if r.path.startswith(GENERATE_PREFIX)]
        return [
            {"prompt": form.get("prompt"), "seed": int(form["seed"]) if "seed" in form else None}
            for form in sent
        ]

    def open_connections(self) -> int:
        return self.server.open_connections


class GrpcApi(FakeApi):
    """The gRPC fake (`FakeGenerationService`), failing by status code or filtered artifacts.

    It cannot produce `rate_limited` as the suite asks it (with a retry delay): Stability's gRPC
    API says RESOURCE_EXHAUSTED and nothing more (its SDK backs off on a schedule of its own).
    test_grpc checks that status becomes `rate_limited`.
    """

    failures = frozenset(FAILURES) - {"rate_limited"}

    def __init__(self, service: FakeGenerationService) -> None:
        self.service = service
        generation = service.generation
        image, text, filtered = (
            generation.ARTIFACT_IMAGE,
            generation.ARTIFACT_TEXT,
            generation.FILTER,
        )
        forms: dict[Failure, tuple[Script, ...]] = {
            "server_error": (
                service.abort("UNAVAILABLE", "the engine is overloaded"),
                service.abort("INTERNAL", "internal error"),
            ),
            "unauthorized": (service.abort("UNAUTHENTICATED", "invalid API key"),),
            "billing": (
                service.abort("RESOURCE_EXHAUSTED", "insufficient balance for this request"),
            ),
            "content_refused": (
                service.answers(
                    generation.Answer(
                        artifacts=[
                            generation.Artifact(
                                type=image,
                                mime="image/png",
                                binary=picture("1024x1024", "blurred"),
                                finish_reason=filtered,
                            )
                        ]
                    )
                ),
                service.answers(
                    generation.Answer(
                        artifacts=[
                            generation.Artifact(
                                type=text, text="prompt refused", finish_reason=filtered
                            )
                        ]
                    )
                ),
            ),
            "invalid_request": (
                service.abort("INVALID_ARGUMENT", "height must be a multiple of 64"),
            ),
            "malformed": (
                service.answers(generation.Answer(answer_id="a1", artifacts=[])),
                service.answers(
                    generation.Answer(artifacts=[generation.Artifact(type=image, binary=b"GIF89a")])
                ),
            ),
            "hang": (service.hang,),
        }
        self.failing = Failing(forms)
        service.script = self._generate

    def _generate(self, request: Any, context: Any) -> Iterator[Any]:
        failure: Script | None = self.failing.pop()
        yield from (failure or self.service.answer)(request, context)

    def settings(self) -> dict[str, Any]:
        return {"grpc_host": self.service.host}

    def fail_next(self, failure: Failure) -> None:
        self.failing.add(failure)

    def generations(self) -> list[dict[str, Any]]:
        return [
            {
                "prompt": call.request.prompt[0].text,
                "n": call.request.image.samples,
                "seed": call.request.image.seed[0] if call.request.image.seed else None,
            }
            for call in self.service.calls
        ]

    def open_connections(self) -> int:
        return self.service.open_connections


class TestStabilityRestConformance(ProviderConformance):
    entry_point = "stability"
    distribution = "layer-stability"
    models = tuple(model.id for model in REST_MODELS)

    @pytest.fixture
    def fake_api(self) -> Iterator[RestApi]:
        api = RestApi(self.api_key)
        with api.server:
            yield api


@pytest.mark.skipif(
    not grpc_extra_installed(),
    reason="the [grpc] extra is not installed: pip install 'layer-stability[grpc]'",
)
class TestStabilityGrpcConformance(ProviderConformance):
    entry_point = "stability"
    distribution = "layer-stability"
    models = tuple(model.id for model in GRPC_MODELS)

    @pytest.fixture
    def fake_api(self, grpc_service: FakeGenerationService) -> GrpcApi:
        return GrpcApi(grpc_service)
