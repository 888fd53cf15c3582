"""Request and response models (pydantic v2).

Python names are snake_case; every model also accepts and emits the camelCase wire names of the
hosted gateway's JS SDK (`gateId`, `revisedPrompt`), so a JSON body from that SDK validates as is.
Money is `Decimal` inside (`cost_exact`); `cost` is the float of the wire format.
"""

from __future__ import annotations

import base64 as b64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from layer_core.sizes import SIZES as SIZES, Size as Size, format_size, image_info

Quality = Literal["standard", "hd"]
Style = Literal["vivid", "natural"]
QUALITIES: tuple[Quality, ...] = get_args(Quality)
STYLES: tuple[Style, ...] = get_args(Style)

MAX_PROMPT_CHARS = 32_000
MAX_COUNT = 10
MAX_SEED = 2**32 - 1
MAX_METADATA_KEYS = 32
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_BYTES = 4096
DEFAULT_DOWNLOAD_LIMIT = 50 * 1024 * 1024

SizeSource = Literal["image", "provider", "expected"]
#: How a provider that can return either is asked to return images (OpenAI's words).
ResponseFormat = Literal["url", "b64_json"]

#: How an attempt failed: the vocabulary of a gate's `fallback_on` and of `Attempt.error`; each
#: `ProviderError` subclass has one.
ErrorKind = Literal[
    "rate_limited",
    "unavailable",
    "timeout",
    "authentication",
    "billing",
    "content_rejected",
    "invalid_request",
]
ERROR_KINDS: tuple[ErrorKind, ...] = get_args(ErrorKind)

MetadataValue = StrictStr | StrictInt | StrictFloat | StrictBool | None


class _Wire(BaseModel):
    # defer_build: the request and response models are built on first use, not at import, so
    # `Layer()` (and the CLI's listing commands) never pay for validators they do not run.
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=False,
        defer_build=True,
    )


class ImageData(_Wire):
    """What to draw: the `data` of a request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
    size: Size | None = None
    quality: Quality | None = None
    style: Style | None = None
    count: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 1
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is empty; describe the image to generate")
        return value

    @field_validator("count", "seed", mode="before")
    @classmethod
    def _not_a_bool(cls, value: object, info: ValidationInfo) -> object:
        # True is an int to Python, and would pass as 1: refuse it as the mistake it is
        if isinstance(value, bool):
            name = str(info.field_name)
            raise ValueError(f"a boolean is not a {name}; {HINTS[name]}")
        return value


METADATA_VALUES = "metadata values must be str, int, float, bool or null"


def _scalar_values(value: object) -> object:
    """One line for a value that is not a JSON scalar, rather than one per type it is not."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(item, (str, int, float, bool, type(None))):
                raise ValueError(f"{key!r} is a {type(item).__name__}: {METADATA_VALUES}")
    return value


def _check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    if not value:
        return value
    if len(value) > MAX_METADATA_KEYS:
        raise ValueError(f"{len(value)} keys; at most {MAX_METADATA_KEYS} are kept")
    for key in value:
        if not key or len(key) > MAX_METADATA_KEY_CHARS:
            raise ValueError(f"key {key[:80]!r} must be 1..{MAX_METADATA_KEY_CHARS} characters")
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(
            f"{size} bytes as JSON; the limit is {MAX_METADATA_BYTES} "
            "(keep ids and labels here, not payloads)"
        )
    return value


class ImageRequest(_Wire):
    """One call: which gate, what to draw, an optional model override and metadata to record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gate_id: str = "default"
    data: ImageData
    model: str | None = None
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)

    _metadata_scalars = field_validator("metadata", mode="before")(_scalar_values)
    _metadata_ok = field_validator("metadata")(_check_metadata)


class ImageOutput(_Wire):
    """One generated image: a `url` or `base64` PNG/JPEG/WebP, where it came from, its cost."""

    model_config = ConfigDict(extra="ignore")

    url: str | None = None
    base64: str | None = None
    revised_prompt: str | None = None
    model: str = ""
    provider: str = ""
    deployment: str = Field(
        default="", description="model@instance: the provider instance that made it"
    )
    seed: int | None = None
    size: str | None = Field(
        default=None,
        description="pixel size delivered, WxH (only expected when size_source says so)",
    )
    size_source: SizeSource = Field(
        default="provider",
        description=(
            "where `size` comes from: 'image' (read from the image's own header), 'provider' "
            "(the provider's reply said so), 'expected' (what the model returns for the size "
            "asked, per its catalogue entry; the image was not at hand to check)"
        ),
    )
    expires_at: datetime | None = Field(
        default=None,
        description=(
            "when `url` stops working, for providers whose image URLs expire (DALL-E and "
            "Replicate: about an hour); None when it does not, or is not known to"
        ),
    )
    mime_type: str = "image/png"
    cost_exact: Decimal = Decimal(0)
    cost_source: Literal["price_table", "provider_usage", "billing_time"] = "price_table"

    @model_validator(mode="after")
    def _has_image(self) -> ImageOutput:
        if not self.url and not self.base64:
            raise ValueError("an image output needs a url or base64 data")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cost(self) -> float:
        """USD for this image, as a float (the wire format); `cost_exact` is the Decimal."""
        return float(self.cost_exact)

    def bytes(self, *, max_bytes: int = DEFAULT_DOWNLOAD_LIMIT, timeout: float = 60.0) -> bytes:
        """The image bytes: decoded base64, or downloaded from an http(s) URL up to `max_bytes`.

        Once the bytes are here, an `expected` size is replaced by the image's own
        (`size_source` becomes "image"): a URL's image need not be what its model promised.
        """
        if self.base64 is not None:
            data = _decode_base64(self.base64)
        elif self.url is not None and self.url.startswith("data:"):
            data = _decode_base64(self.url.partition(",")[2])
        else:
            assert self.url is not None
            data = _download(self.url, max_bytes=max_bytes, timeout=timeout)
        if self.size_source == "expected":
            try:
                _, width, height = image_info(data)
            except ValueError:
                pass
            else:
                self.size, self.size_source = format_size(width, height), "image"
        return data

    def save(self, path: str | Path, *, max_bytes: int = DEFAULT_DOWNLOAD_LIMIT) -> Path:
        """Write the image to `path` (parents created) and return it."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.bytes(max_bytes=max_bytes))
        return target

    @property
    def extension(self) -> str:
        """File extension for `mime_type` (png, jpeg → jpg, webp)."""
        sub = self.mime_type.partition("/")[2] or "png"
        return {"jpeg": "jpg"}.get(sub, sub)


#: "skipped": no request was sent, because the deployment's circuit was open, it was cooling
#: after a 429, or its configured limits had no room (`message` says which; `requested` is the
#: images that moved on).
AttemptOutcome = Literal["ok", "error", "skipped"]


def _tenth_of_a_ms(value: float) -> float:
    """A latency as kept and shown: milliseconds to a tenth (below that is the clock's noise)."""
    return round(value, 1)


class Attempt(_Wire):
    """One call to one model: what it was asked, how it ended, how long it took."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str
    provider: str
    outcome: AttemptOutcome
    requested: int
    deployment: str = Field(default="", description="model@instance the call went to")
    delivered: int = 0
    error: ErrorKind | None = None
    message: str | None = None
    latency: float = Field(description="milliseconds, to a tenth")
    retry: int = Field(0, description="0 for the first try of this call on this model")
    retry_after: float | None = None

    _latency_rounded = field_validator("latency")(_tenth_of_a_ms)


class ImageResponse(_Wire):
    """The answer to one request. `cost` is USD (float), `latency` milliseconds."""

    model_config = ConfigDict(extra="ignore")

    id: str
    model: str
    images: list[ImageOutput]
    cost_exact: Decimal
    latency: float
    gate_id: str
    provider: str
    deployment: str = Field(default="", description="model@instance of the first image")
    attempts: list[Attempt] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))

    _latency_rounded = field_validator("latency")(_tenth_of_a_ms)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cost(self) -> float:
        """USD for the whole request, as a float (the wire format); `cost_exact` is the Decimal."""
        return float(self.cost_exact)


#: How to fix each field of a request's data, added to what pydantic says is wrong with it.
HINTS: dict[str, str] = {
    "size": "use one of " + ", ".join(SIZES),
    "quality": "use " + " or ".join(map(repr, QUALITIES)),
    "style": "use " + " or ".join(map(repr, STYLES)),
    "count": f"ask for 1 to {MAX_COUNT} images",
    "seed": f"use an integer from 0 to {MAX_SEED}, or omit it for a random seed",
    "prompt": f"give 1 to {MAX_PROMPT_CHARS} characters",
}


def _decode_base64(data: str) -> bytes:
    try:
        return b64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"image base64 data is malformed: {exc}") from None


def _download(url: str, *, max_bytes: int, timeout: float) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"cannot download {url[:40]!r}: only http(s) and data: URLs are supported")
    import httpx

    with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as reply:
        reply.raise_for_status()
        declared = int(reply.headers.get("content-length") or 0)
        if declared > max_bytes:
            raise ValueError(f"image is {declared} bytes, over max_bytes={max_bytes}")
        chunks: list[bytes] = []
        total = 0
        for chunk in reply.iter_bytes():
            total += len(chunk)
            if total > max_bytes:
                raise ValueError(f"image is over max_bytes={max_bytes}")
            chunks.append(chunk)
    return b"".join(chunks)
