"""`ReplicateProvider`: one `GenerationCall` → one Replicate prediction, via the `replicate` SDK.

A call creates a prediction (holding the request open with `Prefer: wait` for part of the
attempt's timeout), polls it with backoff until it ends, and returns its output file URLs. If the
attempt ends any other way (the gate's timeout cancels it, a poll fails), the prediction is
canceled on Replicate before the error goes on, so nothing keeps running and billing.

The SDK is imported on first use, never at plugin load.
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import Field

from layer_core.errors import ContentRejected, ProviderTimeout, ProviderUnavailable
from layer_core.provider import (
    GenerationCall,
    Provider,
    ProviderSettings,
    error_for_response,
    error_for_status,
    error_text,
    httpx_errors,
    malformed_reply,
    split_cost,
)
from layer_core.schema import ImageOutput
from layer_replicate.models import MODELS, ReplicateModel, model_for

if TYPE_CHECKING:
    import httpx
    from replicate.client import Client
    from replicate.prediction import Prediction

    from layer_core.catalog import ModelSpec

__all__ = ["ReplicateProvider", "ReplicateSettings"]

log = logging.getLogger("layer.replicate")
T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.replicate.com"
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
#: How a failed prediction says its safety checker refused: Flux and SDXL report "NSFW content
#: detected", Black Forest Labs' hosted models "flagged as sensitive ... (E005)".
SAFETY_FAILURE = re.compile(r"nsfw|safety|sensitive|\bE005\b|content moderation", re.IGNORECASE)
#: Flux dev/schnell and SDXL log the seed they drew when none was given.
SEED_LOG = re.compile(r"Using seed: (\d+)")
CANCEL_TIMEOUT = 10.0
#: How long Replicate keeps an API prediction's output files before deleting them.
OUTPUT_LIFETIME = timedelta(hours=1)


class ReplicateSettings(ProviderSettings):
    """`[plugins.replicate]`: the common keys plus how long to wait and how often to poll."""

    sync_wait: int = Field(
        60,
        ge=0,
        le=60,
        description="longest Prefer: wait hold on create, seconds (never over half the "
        "attempt's timeout); 0 polls from the start",
    )
    poll_interval: float = Field(0.5, gt=0, description="first pause between polls, doubling")
    max_poll_interval: float = Field(4.0, gt=0, description="longest pause between polls")


@dataclass
class _Connection:
    """One event loop's SDK client and the transport it sends through."""

    sdk: Client
    transport: httpx.AsyncHTTPTransport

    async def aclose(self) -> None:
        """Close the transport (the SDK's client has no close of its own)."""
        await self.transport.aclose()


class ReplicateProvider(Provider[ReplicateSettings, _Connection]):
    """Flux (schnell, dev, 1.1 pro, pro) and SDXL on Replicate."""

    name = "replicate"
    key_env_var = "REPLICATE_API_TOKEN"

    def models(self) -> list[ModelSpec]:
        return [model.spec for model in MODELS]

    def make_client(self) -> _Connection:
        import httpx
        from replicate.client import Client

        transport = httpx.AsyncHTTPTransport()
        client = Client(
            api_token=self.api_key(),
            base_url=self.settings.base_url or DEFAULT_BASE_URL,
            timeout=httpx.Timeout(30.0, connect=5.0),
            # The SDK wraps `transport` in a RetryTransport (up to 10 tries on 429/503/504). A
            # mount takes precedence over a client's transport, so every request goes once,
            # straight through the plain one: the router is the only retry loop.
            transport=transport,
            mounts={"all://": transport},
            # Map HTTP errors here, where the headers are still at hand (Retry-After): the SDK's
            # ReplicateError keeps only the status and the problem details.
            event_hooks={"response": [_raise_for_status]},
        )
        return _Connection(client, transport)

    # --- one call ------------------------------------------------------------------------

    async def generate(self, call: GenerationCall) -> list[ImageOutput]:
        model = model_for(call.model)
        inputs = model.inputs(call)
        client = self.client().sdk
        prediction = await self._sdk(self._create(client, model, inputs, call.timeout))
        try:
            prediction = await self._wait(client, prediction)
        except BaseException:  # the gate's timeout (CancelledError) or a failed poll
            await self._cancel(client, prediction.id)
            raise
        return self._images(model, call, prediction)

    async def _create(
        self, client: Client, model: ReplicateModel, inputs: dict[str, Any], timeout: float
    ) -> Prediction:
        """Create the prediction, holding the request open (`Prefer: wait`) for at most half the
        attempt's timeout, so that it answers with the prediction's id well before the end."""
        seconds = min(self.settings.sync_wait, int(timeout / 2))
        wait: int | bool = seconds if seconds >= 1 else False
        if model.version is not None:
            return await client.predictions.async_create(
                version=model.version, input=inputs, wait=wait
            )
        return await client.models.predictions.async_create(
            model=model.ref, input=inputs, wait=wait
        )

    async def _wait(self, client: Client, prediction: Prediction) -> Prediction:
        """Poll until the prediction ends, each pause twice the last (up to the maximum)."""
        import asyncio  # in the functions that use it: loading the plugin needs no asyncio

        pause = self.settings.poll_interval
        while prediction.status not in TERMINAL:
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.settings.max_poll_interval)
            prediction = await self._sdk(client.predictions.async_get(prediction.id))
        return prediction

    async def _cancel(self, client: Client, prediction_id: str) -> None:
        """Cancel a prediction on Replicate; the cancellation of the caller (which is usually
        why we are here) cannot interrupt it."""
        await self.in_background(_send_cancel(client, prediction_id))

    def _images(
        self, model: ReplicateModel, call: GenerationCall, prediction: Prediction
    ) -> list[ImageOutput]:
        if prediction.status == "failed":
            text = prediction.error or "the prediction failed without saying why"
            error = ContentRejected if SAFETY_FAILURE.search(text) else ProviderUnavailable
            raise error(text)
        if prediction.status == "canceled":
            raise ProviderTimeout("the prediction was canceled on Replicate")
        urls = _urls(prediction.output)
        if urls is None:
            raise malformed_reply(
                f"the prediction succeeded, but its output is not file URLs: "
                f"{str(prediction.output)[:200]}"
            )
        seed = call.seed if call.seed is not None else _logged_seed(prediction.logs)
        urls = urls[: call.n]
        costs = _billing_time_costs(model, prediction.metrics, len(urls))
        expires = _expires_at(prediction.completed_at)
        # No `size`: the core reads it from a data: URL's bytes, and for a file URL (not
        # downloaded here) reports the size the model is declared to deliver, as expected.
        return [
            ImageOutput(
                url=url,
                seed=seed,
                mime_type=_mime_type(url),
                expires_at=None if url.startswith("data:") else expires,
                **cost,
            )
            for url, cost in zip(urls, costs, strict=True)
        ]

    async def _sdk(self, request: Awaitable[T]) -> T:
        """Await an SDK request; whatever goes wrong comes out as a layer provider error (an
        HTTP error reply already is one: `_raise_for_status` raised it)."""
        from replicate.exceptions import ReplicateError

        try:
            with httpx_errors("Replicate"):
                return await request
        except ReplicateError as exc:
            raise error_for_status(
                exc.status or 502, exc.detail or exc.title or "Replicate error"
            ) from None
        except (ValueError, TypeError, KeyError) as exc:  # a body the SDK could not read
            raise malformed_reply(str(exc)[:300]) from None


async def _raise_for_status(response: httpx.Response) -> None:
    """httpx response hook: an HTTP error becomes the layer error for its status."""
    if response.status_code < 400:
        return
    await response.aread()
    raise error_for_response(response, error_text(response, _problem))


def _problem(body: Any) -> str | None:
    """Replicate's own words in an error body: its problem `detail`, else `title` or `error`."""
    found = (body.get(key) for key in ("detail", "title", "error"))
    return next((text for text in found if isinstance(text, str) and text.strip()), None)


async def _send_cancel(client: Client, prediction_id: str) -> None:
    import asyncio

    try:
        async with asyncio.timeout(CANCEL_TIMEOUT):
            await client.predictions.async_cancel(prediction_id)
    except Exception as exc:  # noqa: BLE001 - best effort: the attempt's own error is what counts
        log.warning("canceling Replicate prediction %s failed: %r", prediction_id, exc)


def _urls(output: Any) -> list[str] | None:
    """A prediction's output as file URLs (one URL, or a list of them); None if it is not."""
    items = [output] if isinstance(output, str) else output
    if not isinstance(items, list) or not items:
        return None
    if not all(
        isinstance(u, str) and u.startswith(("http://", "https://", "data:")) for u in items
    ):
        return None
    return items


def _mime_type(url: str) -> str:
    """From a data: URL's header or the file name's extension (out-0.webp); PNG if neither."""
    named = url if url.startswith("data:") else urlsplit(url).path
    return mimetypes.guess_type(named)[0] or "image/png"


def _expires_at(completed_at: str | None) -> datetime:
    """When a prediction's output files are deleted: `OUTPUT_LIFETIME` after it completed (or
    from now, if Replicate did not say when)."""
    ended = None
    if completed_at:
        with contextlib.suppress(ValueError):
            ended = datetime.fromisoformat(completed_at)
    if ended is None or ended.tzinfo is None:
        ended = datetime.now(UTC)
    return ended + OUTPUT_LIFETIME


def _logged_seed(logs: str | None) -> int | None:
    found = SEED_LOG.search(logs or "")
    return int(found.group(1)) if found else None


def _billing_time_costs(
    model: ReplicateModel, metrics: dict[str, Any] | None, images: int
) -> list[dict[str, Any]]:
    """For a model billed by GPU time: each image's share of predict_time × the GPU price
    (none, so the table price applies, for other models or when no time was reported)."""
    seconds = (metrics or {}).get("predict_time")
    if model.gpu_price_per_second is None or not isinstance(seconds, int | float) or not images:
        return [{} for _ in range(images)]
    total = Decimal(str(seconds)) * model.gpu_price_per_second
    return [
        {"cost_exact": share, "cost_source": "billing_time"} for share in split_cost(total, images)
    ]
