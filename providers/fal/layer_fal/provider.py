"""`FalProvider`: one `GenerationCall` → one request on fal's queue, through `fal-client`.

A call submits the request, polls its status with backoff until it is COMPLETED, and fetches its
result. If the attempt ends any other way (the gate's timeout cancels it, a poll fails), the
request is cancelled on fal before the error goes on, so nothing keeps running and billing.

fal-client cannot be pointed at another host through its API, nor have its retries turned off;
`layer_fal.wire` says why, and how the plugin does both through the HTTP client it hands it.

fal-client is imported on the first call, never at plugin load.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import Field

from layer_core.errors import ContentRejected, ProviderError, ProviderUnavailable
from layer_core.provider import (
    GenerationCall,
    Provider,
    ProviderSettings,
    malformed_reply,
)
from layer_core.schema import ImageOutput
from layer_fal.models import MODELS, FalModel, model_for

if TYPE_CHECKING:
    import httpx
    from fal_client import AsyncClient, AsyncRequestHandle

    from layer_core.catalog import ModelSpec

__all__ = ["FalProvider", "FalSettings"]

log = logging.getLogger("layer.fal")
T = TypeVar("T")

CANCEL_TIMEOUT = 10.0


class FalSettings(ProviderSettings):
    """`[plugins.fal]`: the common keys (`base_url` sends every request to another host) plus
    how often to poll the queue."""

    poll_interval: float = Field(0.25, gt=0, description="first pause between polls, doubling")
    max_poll_interval: float = Field(2.0, gt=0, description="longest pause between polls")


@dataclass
class _Connection:
    """One event loop's fal client and the HTTP client it sends through."""

    fal: AsyncClient
    http: httpx.AsyncClient

    async def aclose(self) -> None:
        await self.http.aclose()


class FalProvider(Provider[FalSettings, _Connection]):
    """FLUX (schnell, dev, 1.1 pro, ultra), Recraft V3, Ideogram 3.0 and SD 3.5 Large on fal."""

    name = "fal"
    key_env_var = "FAL_KEY"

    def models(self) -> list[ModelSpec]:
        return [model.spec for model in MODELS]

    def make_client(self) -> _Connection:
        from layer_fal.wire import connect

        fal, http = connect(self.api_key(), self.settings.base_url)
        return _Connection(fal, http)

    # --- one call ------------------------------------------------------------------------

    async def generate(self, call: GenerationCall) -> list[ImageOutput]:
        model = model_for(call.model)
        fal = self.client().fal
        handle = await self._sdk(fal.submit(model.endpoint, model.arguments(call)))
        try:
            await self._wait(handle)
        except BaseException:  # the gate's timeout (CancelledError) or a failed poll
            await self._cancel(handle)
            raise
        result = await self._sdk(handle.get())
        return self._images(model, call, result)

    async def _wait(self, handle: AsyncRequestHandle) -> None:
        """Poll until the request is COMPLETED, each pause twice the last (up to the maximum)."""
        import asyncio

        from fal_client import Completed

        pause = self.settings.poll_interval
        while True:
            status = await self._sdk(handle.status())
            if isinstance(status, Completed):
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.settings.max_poll_interval)

    async def _cancel(self, handle: AsyncRequestHandle) -> None:
        """Cancel the request on fal; the cancellation of the caller (which is usually why we
        are here) cannot interrupt it."""
        await self.in_background(_send_cancel(handle))

    def _images(self, model: FalModel, call: GenerationCall, result: Any) -> list[ImageOutput]:
        if not isinstance(result, dict) or not isinstance(result.get("images"), list):
            raise malformed_reply(f"no images in the result: {str(result)[:200]}")
        flags = result.get("has_nsfw_concepts") or []
        seed = result.get("seed") if isinstance(result.get("seed"), int) else call.seed
        images: list[ImageOutput] = []
        blanked = 0
        for index, item in enumerate(result["images"][: call.n]):
            if index < len(flags) and flags[index] is True:
                blanked += 1  # fal returns a black image in its place: never a success
                continue
            images.append(
                self._image(model, item, seed, priced=call.model.prices == model.spec.prices)
            )
        if blanked and not images:
            raise ContentRejected(
                f"fal's safety checker flagged {_count(blanked)} as NSFW (has_nsfw_concepts)"
            )
        if blanked:
            # The core reports the short delivery and asks another model for the rest.
            log.warning(
                "fal: %s of %s flagged as NSFW by the safety checker and dropped",
                _count(blanked),
                model.spec.id,
            )
        return images

    def _image(self, model: FalModel, item: Any, seed: int | None, priced: bool) -> ImageOutput:
        """One image of the result. `priced`: the catalogue entry is the shipped one, so a
        per-megapixel model's cost is worked out from the pixels delivered (with prices
        overridden in plugins.toml, the overriding table price is the cost)."""
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            raise malformed_reply(f"an image without a url: {str(item)[:200]}")
        from layer_fal.wire import pointed

        url = pointed(item["url"], self.settings.base_url)
        width, height = item.get("width"), item.get("height")
        fields: dict[str, Any] = {}
        if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
            fields = {"size": f"{width}x{height}", "size_source": "provider"}
            cost = model.cost(width, height) if priced else None
            if cost is not None:
                fields.update(cost_exact=cost, cost_source="provider_usage")
        mime = item.get("content_type")
        return ImageOutput(
            url=url,
            seed=seed,
            mime_type=mime if isinstance(mime, str) and mime.startswith("image/") else _mime(url),
            **fields,
        )

    async def _sdk(self, request: Awaitable[T]) -> T:
        """Await a fal-client request; whatever goes wrong comes out as a layer provider error
        (an HTTP error or a failed connection already is one: `_Transport` raised it)."""
        from fal_client.client import FalClientError

        try:
            return await request
        except ProviderError:
            raise
        except FalClientError as exc:
            raise ProviderUnavailable(f"fal: {exc}") from None
        except (ValueError, KeyError, TypeError) as exc:  # a reply fal-client could not read
            raise malformed_reply(f"{type(exc).__name__}: {str(exc)[:200]}") from None


async def _send_cancel(handle: AsyncRequestHandle) -> None:
    import asyncio

    try:
        async with asyncio.timeout(CANCEL_TIMEOUT):
            await handle.cancel()
    except Exception as exc:  # noqa: BLE001 - best effort: the attempt's own error is what counts
        log.warning("cancelling fal request %s failed: %r", handle.request_id, exc)


def _mime(url: str) -> str:
    named = url if url.startswith("data:") else urlsplit(url).path
    return mimetypes.guess_type(named)[0] or "image/png"


def _count(images: int) -> str:
    return f"{images} image{'s' if images != 1 else ''}"
