"""How fal-client's requests go out: the HTTP client this plugin hands it, and its transport.

fal-client 1.0 builds every queue URL from a module constant, `https://{FAL_QUEUE_RUN_HOST}/`
(the host read from the environment once, at import; the scheme always https), and its
`AsyncClient` takes no base URL, transport or HTTP client: it cannot be pointed at another host
through its API. What it does let through is the `httpx.AsyncClient` its requests go out on:
`AsyncClient` awaits its `_client` member for it, and the request handles it returns keep it.
So `connect` gives it ours, and our transport (`FalTransport`) is the seam:

- a request for one of fal's hosts goes to `base_url` instead, when one is set (the path kept);
- an HTTP error becomes layer's error for its status, in fal's words, before fal-client sees it:
  which also keeps fal-client's own retries (ten tries on 429, 408/409 and dropped connections)
  from running, so that the router is the only retry loop.

Imported on the first call (it imports httpx and fal-client), never at plugin load.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit

import httpx
from fal_client import AsyncClient
from fal_client.client import USER_AGENT

from layer_core.errors import BillingError, ContentRejected, ProviderError
from layer_core.provider import error_for_response, error_text, httpx_errors

__all__ = ["FAL_DOMAINS", "FalTransport", "connect", "pointed"]

#: The hosts fal-client and fal's replies name: queue, run, REST, the backup queue host, media.
FAL_DOMAINS = ("fal.run", "fal.ai", "falrun.com", "fal.media")
#: The `type` of a model's error entry when its content policy refused the input or the output.
REFUSAL = "content_policy_violation"
#: How fal words a 403 for an account locked until its balance is topped up.
LOCKED = re.compile(r"exhausted balance|user is locked", re.IGNORECASE)


def connect(key: str, base_url: str | None) -> tuple[AsyncClient, httpx.AsyncClient]:
    """A fal-client `AsyncClient` sending through a new HTTP client of ours, and that client."""
    http = httpx.AsyncClient(
        transport=FalTransport(base_url),
        headers={"Authorization": f"Key {key}", "User-Agent": USER_AGENT},
        timeout=httpx.Timeout(30.0, connect=5.0),
    )
    return _FalClient(http), http


class _FalClient(AsyncClient):
    """fal-client's `AsyncClient`, answering `_client` (the HTTP client of every queue request)
    with ours instead of building its own: the one member it replaces.

    The key is in that client's headers; fal-client reads `key` only to build a client of its
    own, so it stays None here (and out of this object's repr).
    """

    def __init__(self, http: httpx.AsyncClient) -> None:
        super().__init__(key=None)
        self._http = http

    @property
    def _client(self) -> Awaitable[httpx.AsyncClient]:
        return self._ours()

    async def _ours(self) -> httpx.AsyncClient:
        return self._http


class FalTransport(httpx.AsyncBaseTransport):
    """Sends fal's requests to `base_url` when set, and raises layer's error for an HTTP error."""

    def __init__(self, base_url: str | None) -> None:
        self.base_url = base_url
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = pointed(str(request.url), self.base_url)
        if url != str(request.url):
            request.url = httpx.URL(url)
            request.headers["host"] = request.url.netloc.decode("ascii")
        with httpx_errors("fal"):
            response = await self._inner.handle_async_request(request)
            if response.status_code >= 400:
                await response.aread()
        if response.status_code >= 400:
            await response.aclose()
            raise _error(response)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _error(response: httpx.Response) -> ProviderError:
    """Layer's error for an error reply: a refusal by the model's content policy (a 422 whose
    detail says `content_policy_violation`) is `ContentRejected`, an account fal locked for its
    exhausted balance (a 403) `BillingError`; any other by its status."""
    text = error_text(response, words)
    if response.status_code == 403 and LOCKED.search(text):
        return BillingError(text, status=response.status_code)
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list) and any(
        isinstance(entry, dict) and entry.get("type") == REFUSAL for entry in detail
    ):
        return ContentRejected(text, status=response.status_code)
    return error_for_response(response, text)


def pointed(url: str, base_url: str | None) -> str:
    """`url` on `base_url`'s host (after base_url's own path) if it is on one of fal's hosts and
    a base_url is set; else `url` as it is."""
    if not base_url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not any(host == domain or host.endswith(f".{domain}") for domain in FAL_DOMAINS):
        return url
    base = urlsplit(base_url)
    path = base.path.rstrip("/") + parts.path
    return parts._replace(scheme=base.scheme, netloc=base.netloc, path=path).geturl()


def words(body: Any) -> str | None:
    """fal's own words in an error body: its `detail` text, or each entry of a `detail` list (a
    model's validation errors) as "field: message", naming the field it rejected."""
    detail = body["detail"]
    if isinstance(detail, str):
        return detail
    found = []
    for entry in detail:
        where = [str(part) for part in entry.get("loc", ()) if part != "body"]
        message = entry.get("msg") or entry.get("type") or "invalid"
        found.append(f"{'.'.join(where)}: {message}" if where else str(message))
    return "; ".join(found) or None
