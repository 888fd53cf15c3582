"""Stability's gRPC generation API through `stability-sdk` (the `[grpc]` extra): the SDXL engines.

The SDK builds the request and opens the channel (TLS with the key as a token for a host ending
in ":443", a plain channel otherwise, which carries no key). Its stub is synchronous, so the
answer stream is read on a worker thread, under a gRPC deadline equal to the gate's timeout; if
the attempt is cancelled the call is cancelled too, so no thread is left waiting. The SDK and
grpc have no type information: their values stay `Any` inside this module and leave it as
`int`, `bytes` and `str`. Imported on the first gRPC call, never at plugin load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import grpc
from stability_sdk import api
from stability_sdk.interfaces.gooseai.generation import generation_pb2, generation_pb2_grpc

from layer_core import (
    BillingError,
    ContentRejected,
    GenerationCall,
    ImageOutput,
    ProviderError,
    ProviderUnavailable,
    error_for_status,
    malformed_reply,
)
from layer_core.sizes import parse_size
from layer_stability.models import StabilityModel
from layer_stability.replies import moderation, out_of_credits, png_output

generation: Any = generation_pb2

#: gRPC status → the HTTP status of the same failure, so both transports map errors alike.
HTTP_STATUS: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "DEADLINE_EXCEEDED": 504,
    "UNAVAILABLE": 503,
    "ABORTED": 503,
    "CANCELLED": 503,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
}
#: What the safety classifier did when it refused an image (blurred it or dropped it).
REFUSALS: frozenset[int] = frozenset(
    int(generation.Action.Value(name))
    for name in ("ACTION_OBFUSCATE", "ACTION_OBFUSCATE_DUPLICATE", "ACTION_DISCARD")
)


class Engine:
    """One channel to a gRPC host. Channels are thread-safe: every event loop shares it."""

    def __init__(self, host: str, api_key: str) -> None:
        self.host = host
        self._channel: Any = api.open_channel(host, api_key)
        self._stub: Any = generation_pb2_grpc.GenerationServiceStub(self._channel)

    def request(self, model: StabilityModel, call: GenerationCall, pixels: str) -> Any:
        """The SDK's `generation.Request` for one image (seed 0 lets the SDK pick one)."""
        width, height = parse_size(pixels)
        builder: Any = api.Context(stub=self._stub, generate_engine_id=model.endpoint)
        return builder.generate(
            [call.prompt],
            [1.0],
            width=width,
            height=height,
            seed=call.seed or 0,
            samples=1,
            return_request=True,
        )

    async def generate(
        self, model: StabilityModel, call: GenerationCall, pixels: str
    ) -> list[ImageOutput]:
        answers: Any = self._stub.Generate(self.request(model, call, pixels), timeout=call.timeout)
        try:
            received: list[Any] = await asyncio.to_thread(list, answers)
        except asyncio.CancelledError:
            answers.cancel()  # ends the worker thread's read at once
            raise
        except grpc.RpcError as exc:
            raise error_for(exc) from None
        return outputs(received)

    def close(self) -> None:
        self._channel.close()


def outputs(answers: Iterable[Any]) -> list[ImageOutput]:
    """The image artifacts of an answer stream; a filtered artifact is a refusal."""
    images = []
    for answer in answers:
        for artifact in answer.artifacts:
            kind, finish = int(artifact.type), int(artifact.finish_reason)
            refused = finish == generation.FILTER or (
                kind == generation.ARTIFACT_CLASSIFICATIONS
                and int(artifact.classifier.realized_action) in REFUSALS
            )
            if refused:
                raise ContentRejected(
                    "Stability's safety filter refused the "
                    + ("prompt" if kind == generation.ARTIFACT_TEXT else "image")
                    + " (finish_reason FILTER)"
                )
            if finish == generation.ERROR:
                raise ProviderUnavailable("the engine reported an error")
            if kind == generation.ARTIFACT_IMAGE:
                images.append(png_output(bytes(artifact.binary), seed=int(artifact.seed)))
    if not images:
        raise malformed_reply("no image artifact in the answer")
    return images


def error_for(exc: Any) -> ProviderError:
    """The core error for a failed call, by its gRPC status (mapped like the REST statuses)."""
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    name = str(getattr(code, "name", "UNKNOWN"))
    details = str(exc.details() or "") if callable(getattr(exc, "details", None)) else ""
    text = f"gRPC {name}: {details}".rstrip(": ")
    if name == "RESOURCE_EXHAUSTED" and out_of_credits(details):
        return BillingError(text)
    if name == "PERMISSION_DENIED" and moderation(details):
        return ContentRejected(text)
    return error_for_status(HTTP_STATUS.get(name, 500), text)
