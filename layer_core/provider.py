"""The provider contract: what a plugin implements, and the shared mechanics providers reuse.

A provider is thin: it maps a `GenerationCall` onto its SDK and the SDK's answer and errors back.
Everything else (splitting counts, retries, fallback, timeouts, cost from the price table, key
redaction) is the core's job. Shared helpers live here so no two providers copy them: HTTP status
→ core error, `Retry-After` parsing, and a per-event-loop client cache.
"""

from __future__ import annotations

import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from layer_core.catalog import ModelSpec
from layer_core.errors import (
    AuthenticationFailed,
    BillingError,
    InvalidProviderRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from layer_core.schema import ImageOutput, Quality, ResponseFormat, Size, Style

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")


class ProviderSettings(BaseModel):
    """A provider's `[plugins.<name>]` table. Subclass it to add the provider's own keys.

    Unknown keys are errors. `api_key` is filled by the core from the environment variable named
    by `api_key_env` (default: the provider's `key_env_var`); it is a `SecretStr`, never printed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr | None = None
    api_key_env: str | None = None
    base_url: str | None = None
    prices: dict[str, dict[str, Decimal]] = Field(
        default_factory=dict, description="per model: price key → USD, overriding the shipped table"
    )


@dataclass(frozen=True, slots=True)
class GenerationCall:
    """One call to one model, already fitted to it by the core.

    `n` never exceeds `model.max_images_per_call`; `quality` is what the model will run at (None
    when it has no quality setting) and `style` is None unless the model declares styles;
    `seed` is set only for models that support seeds. `options` holds the provider's own
    settings (the keys its `Settings` subclass adds to `ProviderSettings`). `response_format` is
    the gate's ask, for a provider that can return either: "b64_json" for the image bytes in the
    reply, "url" for a link; None leaves it to the provider's own setting.
    """

    model: ModelSpec
    prompt: str
    size: Size
    n: int
    quality: Quality | None = None
    style: Style | None = None
    seed: int | None = None
    timeout: float = 120.0
    options: Mapping[str, Any] = field(default_factory=dict)
    response_format: ResponseFormat | None = None


class Provider(ABC):
    """Base class for a provider. Subclass, set `name` (and `key_env_var` if it needs a key).

    The core calls, in order: `models()` (at registration; must not do I/O), `configure(settings)`,
    `available()`, then `await generate(call)` per call and `await aclose()` at the end.
    """

    name: ClassVar[str]
    key_env_var: ClassVar[str | None] = None
    Settings: ClassVar[type[ProviderSettings]] = ProviderSettings

    def __init__(self) -> None:
        self.settings: ProviderSettings = self.Settings()

    @abstractmethod
    def models(self) -> list[ModelSpec]:
        """The models this provider serves, as data (no network)."""

    def configure(self, settings: ProviderSettings) -> None:
        """Take the validated settings (plugins.toml + environment). Must not do network I/O."""
        self.settings = settings

    def available(self) -> tuple[bool, str]:
        """(True, "") if calls can be made; else (False, why), e.g. "OPENAI_API_KEY is not set"."""
        if self.key_env_var is not None and self.settings.api_key is None:
            return False, f"{self.settings.api_key_env or self.key_env_var} is not set"
        return True, ""

    @abstractmethod
    async def generate(self, call: GenerationCall) -> list[ImageOutput]:
        """Make one call and return its images; raise only `ProviderError` subclasses."""

    def notes(self) -> list[str]:
        """Remarks `layer plugins` shows beside the plugin, e.g. an optional extra that would add
        models. Called at registration, before `configure`; must not do I/O."""
        return []

    async def aclose(self) -> None:  # noqa: B027 - optional: most providers hold nothing
        """Release clients and connections."""

    def api_key(self) -> str:
        """The configured key in clear, for handing to the SDK only."""
        key = self.settings.api_key
        if key is None:
            raise AuthenticationFailed(
                f"{self.settings.api_key_env or self.key_env_var} is not set", provider=self.name
            )
        return key.get_secret_value()

    def __repr__(self) -> str:
        has_key = self.settings.api_key is not None
        return f"<{type(self).__name__} name={self.name!r} key={'set' if has_key else 'unset'}>"


# --- error mapping helpers -----------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or HTTP date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils  # only for the rare HTTP-date form

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    model: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """The core error for an HTTP status; providers check their content-refusal shapes first."""
    kw: dict[str, Any] = {"provider": provider, "model": model, "status": status}
    if status == 429:
        return RateLimited(message, retry_after=retry_after, **kw)
    if status in (401, 403):
        return AuthenticationFailed(message, **kw)
    if status == 402:
        return BillingError(message, **kw)
    if status in (408, 504):
        return ProviderTimeout(message, **kw)
    if status >= 500:
        return ProviderUnavailable(message, **kw)
    return InvalidProviderRequest(message, **kw)


def split_cost(total: Decimal, count: int) -> list[Decimal]:
    """`total` shared over `count` images, exactly: the shares always sum to `total`.

    For a provider that reports one cost for a whole call (token usage, billed seconds): each
    image gets the share rounded down to 1e-12 USD and the last one takes the remainder.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    if count == 1:
        return [total]
    share = (total / count).quantize(Decimal("1e-12"), rounding=ROUND_DOWN)
    return [share] * (count - 1) + [total - share * (count - 1)]


class PerLoop(Generic[T]):
    """One object (e.g. an async SDK client) per running event loop, made on first use.

    Async HTTP clients are bound to the loop they were created on; a `Layer` serves both
    `await aimage()` on the app's loop and sync `image()` on its own, so clients are kept per loop.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._items: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> T:
        import asyncio  # here, not at the top: `Layer()` itself needs no asyncio

        loop = asyncio.get_running_loop()
        item = self._items.get(loop)
        if item is None:
            item = self._items[loop] = self._factory()
        return item

    def pop(self) -> T | None:
        """Remove and return this loop's object, if any (for closing it on this loop)."""
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return self._items.pop(loop, None)
