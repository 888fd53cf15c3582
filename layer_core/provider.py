"""The provider contract: what a plugin implements, and the shared mechanics providers reuse.

A provider is thin: it maps a `GenerationCall` onto its SDK and the SDK's answer and errors back.
Everything else (splitting counts, retries, fallback, timeouts, cost from the price table, key
redaction, which provider and model an error came from) is the core's job. The plumbing every
provider needs lives here, once:

- settings: `class MyProvider(Provider[MySettings])` makes `self.settings` a `MySettings`,
  validated from `[plugins.<name>]` and handed over by the core (`configure`);
- the client: `make_client()` builds one async client, `client()` gives the running event loop's
  (made on first use, kept per loop), and `aclose()` closes it;
- errors: `httpx_errors` (a timeout or a failed connection), `error_for_status` and
  `error_for_response` (an HTTP status, with `Retry-After`), `error_text` (an error body, in the
  provider's words), `malformed_reply` (a success the provider should never send).
"""

from __future__ import annotations

import copy
import inspect
import time
import warnings
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from typing_extensions import TypeVar

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

    import httpx

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
    # What one deployment (a model on this provider instance) may take, and its share among the
    # deployments of the same model. Each applies to every model of the instance, separately.
    weight: float = Field(
        default=1.0,
        gt=0,
        description="share among deployments of the same model (ties, round-robin)",
    )
    rpm: int | None = Field(default=None, gt=0, description="requests per minute per deployment")
    images_per_minute: int | None = Field(
        default=None, gt=0, description="images per minute per deployment"
    )
    max_concurrency: int | None = Field(
        default=None, gt=0, description="calls in flight per deployment"
    )


#: A provider's settings model (`Provider[MySettings]`); the common keys alone by default.
SettingsT = TypeVar("SettingsT", bound=ProviderSettings, default=ProviderSettings, covariant=True)
#: The async client a provider makes per event loop (`Provider[MySettings, MyClient]`).
ClientT = TypeVar("ClientT", default=object, covariant=True)
_COMMON_KEYS = frozenset(ProviderSettings.model_fields)


@dataclass(frozen=True, slots=True)
class GenerationCall:
    """One call to one model, already fitted to it by the core.

    `n` never exceeds `model.max_images_per_call`; `quality` is what the model will run at (None
    when it has no quality setting) and `style` is None unless the model declares styles;
    `seed` is set only for models that support seeds. `response_format` is the gate's ask, for a
    provider that can return either: "b64_json" for the image bytes in the reply, "url" for a
    link; None leaves it to the provider's own setting.

    `options` is deprecated: it holds the keys the provider's settings model adds, which the
    provider reads from its own `self.settings` instead (reading `options` warns, once).
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


class Provider(ABC, Generic[SettingsT, ClientT]):
    """Base class for a provider: subclass `Provider[MySettings, MyClient]`, set `name` (and
    `key_env_var` if it needs a key).

    Both type parameters are optional: `MySettings` (default `ProviderSettings`, the common keys)
    is the model `[plugins.<name>]` is validated against, and what `self.settings` is;
    `MyClient` is what `make_client()` returns. The core calls, in order: `models()` (at
    registration; must not do I/O), `configure(settings)`, `available()`, then
    `await generate(call)` per call and `await aclose()` at the end.
    """

    name: ClassVar[str]
    key_env_var: ClassVar[str | None] = None
    #: More variables the key is read from, in order, when `key_env_var` is unset.
    key_env_fallbacks: ClassVar[tuple[str, ...]] = ()
    #: The settings model: the first type parameter (`Provider[MySettings]`), set for you.
    Settings: ClassVar[type[ProviderSettings]] = ProviderSettings
    #: This provider's settings, validated (set by `configure`; the model's defaults before).
    settings: SettingsT

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _adopt_settings_parameter(cls)

    def __init__(self) -> None:
        self.instance: str = getattr(self, "name", "")
        """The instance's name: `name` for the one `[plugins.<name>]` configures, the table's
        name for each `[providers.<instance>]` (see `another`)."""
        self._take(self.Settings())
        self._clients: PerLoop[ClientT] = PerLoop(self.make_client)
        self._call_options = _CallOptions(self)
        self._background: set[asyncio.Task[None]] = set()

    def another(self, instance: str) -> Self:
        """Another instance of this provider, named `instance`, not yet configured: the core
        makes one per `[providers.<instance>]` table, and configures it with that table.

        Made by calling the class with no arguments; a provider whose constructor needs some is
        copied instead (its client cache and settings start afresh). Override this if an
        instance holds other state that must not be shared.
        """
        try:
            clone = type(self)()
        except TypeError:
            clone = copy.copy(self)
            clone._take(clone.Settings())
            clone._clients = PerLoop(clone.make_client)
            clone._call_options = _CallOptions(clone)
            clone._background = set()
        clone.instance = instance
        return clone

    @abstractmethod
    def models(self) -> list[ModelSpec]:
        """The models this provider serves, as data (no network)."""

    def configure(self, settings: ProviderSettings) -> None:
        """Called by the core with the validated settings (plugins.toml + environment), before
        any call; they become `self.settings`, as an instance of the provider's settings model.

        Not meant to be overridden: read `self.settings` where it is needed, and derive anything
        from it in the settings model itself (a validator), so a bad value is a config error.
        """
        self._take(settings)

    def _take(self, settings: ProviderSettings) -> None:
        if not isinstance(settings, self.Settings):  # e.g. the common keys alone
            settings = self.Settings.model_validate(settings.model_dump())
        # The one step from run time to the type checker: the settings model is known at run
        # time only (read from the type parameter), and `settings` is an instance of it, which
        # is what `SettingsT` stands for.
        own: Any = settings
        self.settings = own

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

    def make_client(self) -> ClientT:
        """A new async client (an SDK's, or an `httpx.AsyncClient`) from `self.settings` and
        `api_key()`, with the client's own retries off. Import its library here, not at module
        level. The core makes at most one per event loop: use `client()` to get it."""
        raise NotImplementedError(f"{type(self).__name__} defines no make_client()")

    def client(self) -> ClientT:
        """The running event loop's client, made by `make_client()` on first use.

        Async clients are bound to the loop they were made on, and a `Layer` serves both
        `await aimage()` on the app's loop and `image()` on its own, so there is one per loop.
        """
        return self._clients.get()

    async def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Await `work` in a task of its own, so that cancelling the caller cannot interrupt it.

        For clean-up that must reach the provider even when the attempt is being cancelled (the
        gate's timeout), e.g. cancelling a queued job so it stops running and billing: the
        caller's `CancelledError` still propagates, the work goes on, and `aclose` waits for it.
        """
        import asyncio

        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        await asyncio.shield(task)

    async def aclose(self) -> None:
        """Let this loop's `in_background` work finish, then close the running loop's client, if
        one was made: with its `aclose()` (httpx) or `close()` (the openai SDK). A provider
        holding more overrides this and calls `await super().aclose()`."""
        import asyncio

        loop = asyncio.get_running_loop()
        pending = [task for task in self._background if task.get_loop() is loop]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        client = self._clients.pop()
        if client is None:
            return
        close = getattr(client, "aclose", None) or getattr(client, "close", None)
        done = close() if callable(close) else None
        if inspect.isawaitable(done):
            await done

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


def _settings_parameter(cls: type[Provider]) -> type[ProviderSettings] | None:
    """The settings model a class names as its type parameter (`Provider[MySettings]`), if any."""
    for base in vars(cls).get("__orig_bases__", ()):
        origin, args = get_origin(base), get_args(base)
        if isinstance(origin, type) and issubclass(origin, Provider) and args:
            first = args[0]
            if isinstance(first, type) and issubclass(first, ProviderSettings):
                return first
    return None


def _adopt_settings_parameter(cls: type[Provider]) -> None:
    """Set `cls.Settings` from its type parameter; warn about the older ways to get settings."""
    declared = _settings_parameter(cls)
    own = vars(cls).get("Settings")
    if declared is not None:
        if own is not None and own is not declared:
            raise TypeError(
                f"{cls.__qualname__}: Settings = {own.__name__} contradicts its type parameter "
                f"Provider[{declared.__name__}]; drop the Settings line"
            )
        cls.Settings = declared
    elif own is not None:
        _deprecated(
            f"{cls.__qualname__} sets Settings = {own.__name__}: declare the settings model as "
            f"the type parameter instead, class {cls.__name__}(Provider[{own.__name__}]), "
            "so that self.settings is typed as one"
        )
    if "configure" in vars(cls):
        _deprecated(
            f"{cls.__qualname__} overrides Provider.configure: the core hands the settings to "
            f"the base class, which keeps them as self.settings (typed by "
            f"Provider[{cls.Settings.__name__}]); read them there, derive what you need in the "
            "settings model, and drop the override"
        )


def _deprecated(message: str) -> None:
    """Warn at the provider's class statement (frames up: _adopt_settings_parameter,
    __init_subclass__, ABCMeta.__new__, then the class statement)."""
    warnings.warn(message, DeprecationWarning, stacklevel=5)


class _CallOptions(Mapping[str, Any]):
    """`GenerationCall.options` (deprecated): the keys the provider's settings model adds, read
    from `provider.settings` when first used, with a DeprecationWarning naming the provider."""

    def __init__(self, provider: Provider) -> None:
        self._provider = provider
        self._read: ProviderSettings | None = None
        self._values: dict[str, Any] = {}

    def _items(self) -> dict[str, Any]:
        settings = self._provider.settings
        if settings is not self._read:
            if self._read is None:
                warnings.warn(
                    f"provider {self._provider.name!r} reads GenerationCall.options, which is "
                    "deprecated: read self.settings instead (typed by subclassing "
                    f"Provider[{type(settings).__name__}])",
                    DeprecationWarning,
                    stacklevel=3,  # _items, the Mapping method, the provider's code
                )
            self._values = settings.model_dump(exclude=set(_COMMON_KEYS))
            self._read = settings
        return self._values

    def __getitem__(self, key: str) -> Any:
        return self._items()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._items().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._items()

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())

    def __repr__(self) -> str:
        return f"<deprecated options of provider {self._provider.name!r}>"


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
    provider: str | None = None,
    model: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """The core error for an HTTP status; providers check their content-refusal shapes first.

    (`provider` and `model` may be left out: the core fills them in from the call.)
    """
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


def error_for_response(response: httpx.Response, text: str | None = None) -> ProviderError:
    """The core error for an httpx error reply (4xx/5xx): by its status (`error_for_status`),
    with its `Retry-After`, worded `text` (default: `error_text(response)`).

    Check your API's own shapes first (a refusal is often a 400 or 403 with its own code).
    """
    return error_for_status(
        response.status_code,
        error_text(response) if text is None else text,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


def error_text(response: httpx.Response, words: Callable[[Any], str | None] | None = None) -> str:
    """An error reply as a message, in the provider's words: "HTTP 422: count must be 1 to 4".

    `words` picks them out of the JSON body, e.g. `lambda body: body["error"]["message"]`. A body
    that is not JSON or not of that shape (the lookup raises), or no words, gives the body's
    text instead (its first 300 characters), and an empty body the status's reason phrase. The
    response must have been read (`await response.aread()`, for a streamed one).
    """
    found: object = None
    if words is not None:
        try:
            found = words(response.json())
        except (ValueError, LookupError, TypeError, AttributeError):
            found = None
    text = (found.strip() if isinstance(found, str) else "") or response.text.strip()[:300]
    head = f"HTTP {response.status_code}"
    return f"{head}: {text}" if text else f"{head} {response.reason_phrase}".rstrip()


@contextmanager
def httpx_errors(service: str) -> Iterator[None]:
    """Turns httpx's failures to get a reply into the core's errors, inside the block.

    A timeout is `ProviderTimeout`; a refused, reset or dropped connection, or any other
    failure (a body that cannot be decoded, too many redirects), `ProviderUnavailable`. Each
    names `service` as users know it ("Acme") and what httpx said, never the request (which
    holds the key), and chains nothing.

        with httpx_errors("Acme"):
            reply = await self.client().post("/v1/generate", json=body)
    """
    import httpx

    try:
        yield
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(f"{service} did not answer in time ({_said(exc)})") from None
    except httpx.TransportError as exc:
        raise ProviderUnavailable(
            f"{service} unreachable: connection failed: {_said(exc)}"
        ) from None
    except httpx.RequestError as exc:
        raise ProviderUnavailable(f"{service}: {_said(exc)}") from None


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def malformed_reply(what: str, *, status: int | None = None) -> ProviderUnavailable:
    """The error for a success reply the provider should never send (not JSON, a field
    missing, an image that is not one): the call failed on the provider's side, so another model
    may serve it. `what` says what is wrong, in a few words."""
    return ProviderUnavailable(f"malformed reply: {what}", status=status)


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
