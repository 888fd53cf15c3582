"""Gates: named routing configs (`[gates.<id>]` in plugins.toml, or built in code)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from layer_core.errors import OverrideNotAllowed
from layer_core.schema import (
    ERROR_KINDS,
    ErrorKind,
    ImageRequest,
    Quality,
    ResponseFormat,
    Size,
    Style,
)
from layer_core.state import HealthRules

if TYPE_CHECKING:
    from layer_core.catalog import Catalog

RoutingStrategy = Literal["single", "fallback", "round-robin", "cost", "quality"]
ROUTING_STRATEGIES: tuple[RoutingStrategy, ...] = get_args(RoutingStrategy)
OverrideField = Literal["model", "size", "quality", "style"]
OVERRIDE_FIELDS: tuple[OverrideField, ...] = get_args(OverrideField)

#: Errors that move a request on to the next model unless the gate says otherwise. Content
#: rejections and invalid requests stop: rerouting a refused prompt is the app's decision, and
#: an invalid request is a bug to see, not to hide behind another model.
DEFAULT_FALLBACK_ON: tuple[ErrorKind, ...] = (
    "rate_limited",
    "unavailable",
    "timeout",
    "authentication",
    "billing",
)

#: Extra tries on the same model, when a gate does not set `retries`, for a failure with nothing
#: else to try (no real model after it, or an error the gate does not fall back on): a single
#: transient 429 or 5xx should not fail the request. Where another model follows, it is tried
#: at once instead.
DEFAULT_LAST_RETRIES = 1

#: When a gate says nothing: the request may set size/quality/style, but not swap the model.
DEFAULT_OVERRIDES: dict[OverrideField, bool] = {
    "model": False,
    "size": True,
    "quality": True,
    "style": True,
}


class GateDefaults(BaseModel):
    """Values applied when a request omits them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: Size | None = None
    quality: Quality | None = None
    style: Style | None = None


class Budget(BaseModel):
    """Spend limit for a gate over a UTC calendar period."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: Annotated[Decimal, Field(gt=0)]
    period: Literal["daily", "monthly"] = "monthly"
    enforcement: Literal["block", "alert_only"] = "block"

    def period_start(self, now: datetime) -> datetime:
        """Start of the UTC calendar period holding `now` (an aware datetime)."""
        day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return day if self.period == "daily" else day.replace(day=1)

    def resets_at(self, now: datetime) -> datetime:
        """When the period holding `now` ends and the budget starts afresh."""
        start = self.period_start(now)
        if self.period == "daily":
            return start + timedelta(days=1)
        return (start + timedelta(days=32)).replace(day=1)


class Gate(BaseModel):
    """A named routing config: the pool of models, how to order it, and what may be overridden."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    description: str = ""
    model: str | None = None
    fallback_models: tuple[str, ...] = ()
    routing_strategy: RoutingStrategy = "fallback"
    allow_overrides: bool | dict[OverrideField, bool] = Field(
        default_factory=lambda: dict(DEFAULT_OVERRIDES)
    )
    defaults: GateDefaults = GateDefaults()
    max_cost_per_image: Annotated[Decimal, Field(ge=0)] | None = None
    retries: int | None = Field(
        None,
        ge=0,
        le=10,
        description=(
            "extra tries on the same model for a retryable error; unset: "
            f"{DEFAULT_LAST_RETRIES} when there is nothing else to try, none when there is"
        ),
    )
    retry_backoff: float = Field(
        0.25,
        ge=0,
        le=60,
        description="seconds before the first retry without Retry-After (doubling, jittered)",
    )
    max_retry_wait: float = Field(
        30.0, ge=0, description="longest Retry-After honoured; longer moves on at once"
    )
    timeout: float = Field(120.0, gt=0, le=3600, description="seconds per attempt")
    response_format: ResponseFormat | None = Field(
        None,
        description=(
            "how images come back from providers that offer both: 'b64_json' asks for the "
            "bytes in the response, 'url' for a link (DALL-E's expire after about an hour); "
            "unset: each provider's own setting"
        ),
    )
    fallback_on: tuple[ErrorKind, ...] = DEFAULT_FALLBACK_ON
    budget: Budget | None = None
    health: HealthRules | None = Field(
        None,
        description=(
            "circuit breaker rules for this gate's requests (failures, cooldown, max_cooldown, "
            "rate_limit_cooldown); unset: the config's [health]"
        ),
    )

    @field_validator("fallback_on", mode="before")
    @classmethod
    def _known_kinds(cls, value: object) -> object:
        if isinstance(value, (list, tuple)):
            for kind in value:
                if kind not in ERROR_KINDS:
                    raise ValueError(
                        f"{kind!r} is not an error kind; use any of {list(ERROR_KINDS)}"
                    )
        return value

    @model_validator(mode="after")
    def _has_pool(self) -> Gate:
        if not self.pool:
            raise ValueError("a gate needs `model` or `fallback_models`")
        if self.routing_strategy == "single" and self.model is None:
            raise ValueError("routing_strategy 'single' needs `model`")
        return self

    @property
    def pool(self) -> tuple[str, ...]:
        """`model` then `fallback_models`, without repeats, in the order written."""
        names = ((self.model,) if self.model else ()) + self.fallback_models
        return tuple(dict.fromkeys(names))

    def retries_on(self, *, nothing_else: bool) -> int:
        """Extra tries on the same model after a retryable error: `retries` when the gate sets
        it; unset, `DEFAULT_LAST_RETRIES` when there is `nothing_else` to try, else none."""
        if self.retries is not None:
            return self.retries
        return DEFAULT_LAST_RETRIES if nothing_else else 0

    def allows_override(self, field: OverrideField) -> bool:
        """Whether a request may set `field` to something other than this gate's value."""
        if isinstance(self.allow_overrides, bool):
            return self.allow_overrides
        return self.allow_overrides.get(field, DEFAULT_OVERRIDES[field])

    def check_overrides(self, request: ImageRequest, catalog: Catalog) -> None:
        """Raise `OverrideNotAllowed` when `request` sets what this gate does not let it: a model
        other than the gate's own (`request.model` is known to `catalog`), or a size, quality or
        style other than one the gate's defaults pin."""
        if request.model is not None:
            spec = catalog.resolve(request.model)
            primary = catalog.resolve(self.model) if self.model else None
            if spec is not primary and not self.allows_override("model"):
                asked = spec.id if spec is not None else request.model
                raise OverrideNotAllowed(
                    self.id, "model", f"it routes {', '.join(self.pool)}; asked for {asked}"
                )
        for field in OVERRIDE_FIELDS[1:]:
            pinned = getattr(self.defaults, field)
            asked = getattr(request.data, field)
            if pinned and asked and asked != pinned and not self.allows_override(field):
                raise OverrideNotAllowed(
                    self.id, f"data.{field}", f"it pins {pinned}; asked for {asked}"
                )
