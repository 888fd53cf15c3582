"""`OpenAIProvider`: a `GenerationCall` → `images.generate` on the openai SDK, and back.

The SDK is imported when the first call makes a client, never at plugin load. One `AsyncOpenAI`
per event loop (the core keeps it), made in `make_client` only, with the SDK's own retries off:
the router is the only retry loop, so a retry may go to another model.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import Field, model_validator

from layer_core.catalog import ModelSpec
from layer_core.errors import (
    BillingError,
    ContentRejected,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from layer_core.provider import (
    GenerationCall,
    Provider,
    ProviderSettings,
    error_for_status,
    malformed_reply,
    parse_retry_after,
    split_cost,
)
from layer_core.schema import ImageOutput, Quality
from layer_openai.models import PROVIDER, GptImageQuality, OpenAIModel, Served, serve, shipped

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = ["DEFAULT_BASE_URL", "OpenAIProvider", "OpenAISettings", "error_from_sdk"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: `error.code` values of a 400 that is a safety refusal (DALL·E, gpt-image).
CONTENT_CODES = frozenset({"content_policy_violation", "moderation_blocked"})
#: `error.code` (or `type`) of an account that cannot pay: a 429 `insufficient_quota` (out of
#: credit; waiting does not help, so not a rate limit) or a 400 `billing_hard_limit_reached`.
BILLING_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
#: How long the image URLs DALL·E answers with stay valid, from the answer's `created` time.
URL_LIFETIME = timedelta(hours=1)
_PIXELS = re.compile(r"\d{1,5}x\d{1,5}")


class OpenAISettings(ProviderSettings):
    """`[plugins.openai]`: the common keys plus the OpenAI ones below."""

    quality_map: dict[Quality, GptImageQuality] = Field(
        default_factory=dict,
        description="gpt-image quality sent for layer's standard/hd (default medium/high)",
    )
    response_format: Literal["url", "b64_json"] | None = Field(
        None, description="asked of DALL·E models only (gpt-image always returns b64_json)"
    )
    models: tuple[str, ...] | None = Field(
        None, description="serve only these models, in this order (default: all)"
    )
    extra_models: dict[str, OpenAIModel] = Field(
        default_factory=dict,
        description="more models (or replacements) as data, e.g. for an OpenAI-compatible server",
    )
    http_client: Literal["aiohttp", "httpx"] = Field(
        "aiohttp",
        description=(
            "the SDK's HTTP transport: aiohttp (default: its cost per request stays flat as more "
            "requests are in flight) or httpx (the SDK's own default)"
        ),
    )

    @model_validator(mode="after")
    def _models_known(self) -> OpenAISettings:
        known = {**shipped(), **self.extra_models}
        for name in self.models or ():
            if name not in known:
                raise ValueError(
                    f"models: unknown model {name!r} (shipped: {', '.join(shipped())}; "
                    "declare others under extra_models)"
                )
        # A quality_map that leaves a model unservable is an error here; what is built is kept
        # as `served` (where the cached property keeps its value: read on every call, it must
        # be a plain attribute, not one of pydantic's private ones).
        self.__dict__["served"] = catalogue(self)
        return self

    @functools.cached_property
    def served(self) -> dict[str, Served]:
        """Every served model by id, built once from these settings."""
        return catalogue(self)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copy = super().model_copy(update=update, deep=deep)
        if update:  # the copy skips validation: it builds its own catalogue when asked
            copy.__dict__.pop("served", None)
        return copy


def catalogue(settings: OpenAISettings) -> dict[str, Served]:
    """Every served model by id, mapped with the settings' quality map."""
    known = {**shipped(), **settings.extra_models}
    chosen = settings.models if settings.models is not None else tuple(known)
    return {
        model_id: serve(
            model_id,
            known[model_id],
            quality_map=settings.quality_map,
            response_format=settings.response_format,
        )
        for model_id in chosen
    }


class OpenAIProvider(Provider[OpenAISettings, "AsyncOpenAI"]):
    """OpenAI's Images API (or any OpenAI-compatible one, via `base_url`)."""

    name = PROVIDER
    key_env_var = "OPENAI_API_KEY"

    def models(self) -> list[ModelSpec]:
        return [served.spec for served in self.settings.served.values()]

    def make_client(self) -> AsyncOpenAI:
        """The one place an SDK client is made (once per event loop)."""
        from openai import AsyncOpenAI, DefaultAioHttpClient

        return AsyncOpenAI(
            api_key=self.api_key(),
            base_url=self.settings.base_url or DEFAULT_BASE_URL,
            max_retries=0,
            # None: the SDK's own httpx client
            http_client=(
                DefaultAioHttpClient() if self.settings.http_client == "aiohttp" else None
            ),
        )

    async def generate(self, call: GenerationCall) -> list[ImageOutput]:
        served = self.settings.served[call.model.id]
        kwargs: dict[str, Any] = {
            **served.request,
            "prompt": call.prompt,
            "size": call.size,
            "n": call.n,
            "timeout": call.timeout,
        }
        if served.quality and call.quality is not None:
            kwargs["quality"] = served.quality[call.quality]
        if call.style is not None:  # the core passes a style only to models that declare styles
            kwargs["style"] = call.style
        if call.response_format is not None and served.takes_response_format:
            kwargs["response_format"] = call.response_format  # the gate's ask wins
        try:
            response = await self.client().images.generate(**kwargs)
        except Exception as exc:
            error = error_from_sdk(exc)
            if error is None:
                raise
            raise error from None
        return self._outputs(response, call, served)

    def _outputs(self, response: object, call: GenerationCall, served: Served) -> list[ImageOutput]:
        """The SDK's answer as layer images; anything malformed is ProviderUnavailable."""
        data = getattr(response, "data", None)
        if not isinstance(data, list) or not data:
            raise malformed_reply("no image list in the response", status=200)
        data = data[: call.n]
        size = getattr(response, "size", None)
        if not (isinstance(size, str) and _PIXELS.fullmatch(size)):
            size = None
        mime = MIME_TYPES.get(getattr(response, "output_format", None) or "png", "image/png")
        created = getattr(response, "created", None)
        if isinstance(created, int) and not isinstance(created, bool) and created > 0:
            made = datetime.fromtimestamp(created, UTC)
        else:
            made = datetime.now(UTC)
        expires = made + URL_LIFETIME
        costs: list[Any] = [None] * len(data)
        usage = getattr(response, "usage", None)
        if served.token_prices is not None and usage is not None:
            total = served.token_prices.cost(usage)
            if total is not None:
                costs = split_cost(total, len(data))
        outputs = []
        for item, cost in zip(data, costs, strict=True):
            url = getattr(item, "url", None)
            b64 = getattr(item, "b64_json", None)
            revised = getattr(item, "revised_prompt", None)
            if not (isinstance(url, str) and url) and not (isinstance(b64, str) and b64):
                raise malformed_reply("an image has neither url nor b64_json", status=200)
            fields: dict[str, Any] = {
                "url": url if isinstance(url, str) and url else None,
                "base64": b64 if isinstance(b64, str) and b64 else None,
                "revised_prompt": revised if isinstance(revised, str) else None,
                "size": size,
                "mime_type": mime,
                "expires_at": expires if isinstance(url, str) and url.startswith("http") else None,
            }
            if cost is not None:
                fields["cost_exact"] = cost
                fields["cost_source"] = "provider_usage"
            outputs.append(ImageOutput(**fields))
        return outputs


def error_from_sdk(exc: BaseException, *, model: str | None = None) -> ProviderError | None:
    """The core error for an exception out of the openai SDK, attributed to OpenAI (and `model`,
    when given; the core fills it in otherwise); None if it is not the SDK's."""
    error = _mapped(exc)
    if error is not None:
        error.provider, error.model = PROVIDER, model
    return error


def _mapped(exc: BaseException) -> ProviderError | None:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        dropped = _aiohttp_connection_error(exc)
        if dropped is not None:
            return ProviderUnavailable(f"could not reach OpenAI: {dropped}")
        return ProviderTimeout("the request to OpenAI timed out")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderUnavailable(f"could not reach OpenAI: {exc.message}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        body = exc.body
        message = body.get("message") if isinstance(body, Mapping) else None
        if not isinstance(message, str) or not message:
            message = exc.message
        if status == 400 and exc.code in CONTENT_CODES:
            return ContentRejected(message, status=status)
        if exc.code in BILLING_CODES or exc.type in BILLING_CODES:
            return BillingError(message, status=status)
        headers = exc.response.headers
        retry_after = _retry_after(headers.get("retry-after-ms"), headers.get("retry-after"))
        if retry_after is None and status == 429:
            retry_after = _rate_limit_reset(headers)
        return error_for_status(status, message, retry_after=retry_after)
    if isinstance(exc, openai.APIResponseValidationError | ValueError):
        # a 200 whose body is not the JSON the SDK expects (ValueError: undecodable JSON)
        return malformed_reply(f"the SDK could not read it ({type(exc).__name__})", status=200)
    if isinstance(exc, openai.OpenAIError):
        return ProviderUnavailable(f"{type(exc).__name__}: {exc}")
    return None


def _aiohttp_connection_error(exc: BaseException) -> str | None:
    """What really happened when the aiohttp transport reports a timeout that was none.

    The SDK's aiohttp transport turns every `aiohttp.ClientConnectionError` that has no closer
    match (a server that closed the connection mid-reply, say) into a connect *timeout*; the
    original is on the cause chain. A real timeout there is a `TimeoutError` subclass.
    """
    cause = exc.__cause__
    while cause is not None:
        if type(cause).__module__.startswith("aiohttp") and not isinstance(cause, TimeoutError):
            return f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        cause = cause.__cause__
    return None


#: A duration in OpenAI's `x-ratelimit-reset-*` headers: "1s", "6m0s", "20ms", "1h2m3.5s".
_DURATION = re.compile(
    r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?"
)


def _rate_limit_reset(headers: Mapping[str, str]) -> float | None:
    """When a 429 gave no Retry-After: the reset of the limit OpenAI says is used up
    (`x-ratelimit-remaining-requests: 0` → `x-ratelimit-reset-requests`, likewise tokens).
    https://platform.openai.com/docs/guides/rate-limits (headers), read 2026-12-02."""
    waits = []
    for what in ("requests", "tokens"):
        if headers.get(f"x-ratelimit-remaining-{what}", "").strip() == "0":
            wait = _duration(headers.get(f"x-ratelimit-reset-{what}"))
            if wait is not None:
                waits.append(wait)
    return max(waits) if waits else None


def _duration(text: str | None) -> float | None:
    if not text:
        return None
    found = _DURATION.fullmatch(text.strip())
    if found is None or not any(found.groups()):
        return None
    hours, minutes, secs, millis = (float(g) if g else 0.0 for g in found.groups())
    return hours * 3600 + minutes * 60 + secs + millis / 1000


def _retry_after(milliseconds: str | None, header: str | None) -> float | None:
    """OpenAI's `retry-after-ms` when present (finer), else the standard `Retry-After`."""
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    return parse_retry_after(header)
