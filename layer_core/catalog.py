"""The model catalogue: what each model can produce and what it costs, as data.

A provider plugin declares one `ModelSpec` per model. Prices are a table keyed
``"<quality>/<size>"`` (either part may be ``*``) with the date they were read; every size a model
declares must have a price for every quality it declares, so routing by cost and reporting cost
read the same table and never disagree (and a cost is never silently zero or missing).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from layer_core.schema import QUALITIES, SIZES, Quality, Size, Style

Price = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=6)]


def today() -> date:
    """The day retirement dates are read against: today, in UTC.

    Everything that says whether a model is retired asks this function (through this module, so
    a test can put another day in its place).
    """
    return datetime.now(UTC).date()


def retirement(retires: date, on: date) -> str:
    """A retirement date as of the day `on`: "retired 2026-05-12", or "retires 2027-01-14"."""
    return f"{'retired' if retires <= on else 'retires'} {retires.isoformat()}"


def lookup_price(prices: Mapping[str, Decimal], quality: str | None, size: str) -> Decimal | None:
    """The entry of a ``"<quality>/<size>"`` table for (quality, size), most specific key first.

    Providers whose own quality names differ from layer's (OpenAI's low/medium/high) keep their
    tables in their own vocabulary and read them with this before mapping onto a `ModelSpec`.
    """
    q = quality or "*"
    for key in (f"{q}/{size}", f"{q}/*", f"*/{size}", "*/*"):
        found = prices.get(key)
        if found is not None:
            return found
    return None


class ModelSpec(BaseModel):
    """One model: its exact sizes, parameters, images per call, quality score and prices."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][\w.:/-]*$")
    provider: str = Field(min_length=1)
    sizes: tuple[Size, ...] = Field(min_length=1)
    delivered: dict[Size, str] = Field(
        default_factory=dict, description="pixel size actually returned, where it differs"
    )
    qualities: tuple[Quality, ...] = ()
    styles: tuple[Style, ...] = ()
    max_images_per_call: int = Field(1, ge=1, le=10)
    supports_seed: bool = False
    quality_score: float = Field(50.0, ge=0, le=100)
    prices: dict[str, Price]
    price_date: date
    price_note: str = ""
    deprecated: date | None = None
    aliases: tuple[str, ...] = ()
    placeholder: bool = Field(
        False, description="draws stand-in images (the local model): always routed last"
    )
    max_prompt_chars: int | None = Field(None, ge=1)
    display_name: str = ""

    @field_validator("prices")
    @classmethod
    def _price_keys(cls, prices: dict[str, Decimal]) -> dict[str, Decimal]:
        for key in prices:
            quality, sep, size = key.partition("/")
            if not sep or (quality != "*" and quality not in QUALITIES):
                raise ValueError(f"price key {key!r} must be '<quality or *>/<size or *>'")
            if size != "*" and size not in SIZES:
                raise ValueError(f"price key {key!r}: {size!r} is not a layer size")
        return prices

    @model_validator(mode="after")
    def _every_size_priced(self) -> ModelSpec:
        for size in self.delivered:
            if size not in self.sizes:
                raise ValueError(f"delivered names {size}, which is not in sizes")
        for quality in self.qualities or (None,):
            for size in self.sizes:
                if self.price(quality, size) is None:
                    raise ValueError(
                        f"no price for {quality or '*'}/{size}: every declared size needs a price "
                        "for every declared quality"
                    )
        return self

    def retired(self, on: date) -> bool:
        """Whether the provider has retired the model by the day `on` (its date has come)."""
        return self.deprecated is not None and self.deprecated <= on

    def price(self, quality: Quality | None, size: Size) -> Decimal | None:
        """Per-image USD for `quality` (None: the model has no quality setting) and `size`."""
        return lookup_price(self.prices, quality, size)

    def served_quality(self, requested: Quality | None) -> Quality | None:
        """The quality this model runs at for `requested`; None if it has no quality setting."""
        if not self.qualities:
            return None
        if requested in self.qualities:
            return requested
        return "standard" if "standard" in self.qualities else self.qualities[0]

    def delivered_size(self, size: Size) -> str:
        """The pixel size that comes back when `size` is asked for."""
        return self.delivered.get(size, size)

    def with_prices(self, overrides: Mapping[str, Any]) -> ModelSpec:
        """A copy with some prices replaced (plugins.toml `prices`), re-validated."""
        merged = {**self.prices, **{k: Decimal(str(v)) for k, v in overrides.items()}}
        return ModelSpec.model_validate({**self.model_dump(), "prices": merged})


class Absent(NamedTuple):
    """A name that is not in the catalogue, and why (the reason a plan or `layer check` gives)."""

    name: str
    why: str


class Deployment(NamedTuple):
    """One model on one provider instance (an account, key, region or endpoint): the unit that
    fails, rate-limits and bills. `spec` carries that instance's prices."""

    key: str
    """``model@instance``: how pools, attempts, the ledger and `layer health` name it."""
    instance: str
    """the provider instance that serves it (`[plugins.<name>]`, or `[providers.<instance>]`)."""
    spec: ModelSpec
    weight: float = 1.0
    """its share among the deployments of the same model (ties and round-robin)."""


def deployment_key(model: str, instance: str) -> str:
    """``model@instance``: the one place a deployment's name is made."""
    return f"{model}@{instance}"


class Catalog(Mapping[str, ModelSpec]):
    """Models by id, with aliases (e.g. `flux-schnell` for `black-forest-labs/flux-schnell`),
    and each model's deployments: the provider instances that serve it.

    A name in a gate's pool is a model (every deployment of it) or ``model@instance`` (that one).
    """

    __slots__ = ("_by_id", "_deployments", "_names", "absent", "derived")

    def __init__(self, specs: Iterable[ModelSpec] = ()) -> None:
        self._by_id: dict[str, ModelSpec] = {}
        self._names: dict[str, str] = {}
        self._deployments: dict[str, tuple[Deployment, ...]] = {}
        self.derived: dict[Hashable, Any] = {}
        """Values worked out from the models, kept for reuse (the routing policy's fitted pools);
        emptied when a model is added."""
        self.absent: dict[str, str] = {}
        """Names a config uses that are not here, and why (a shipped plugin that is not
        loaded): the reason the plan gives for each."""
        for spec in specs:
            self.add(spec)

    def add(self, spec: ModelSpec, *, instance: str | None = None, weight: float = 1.0) -> None:
        """Add a model served by `instance` (default: its provider's own instance).

        The same model from another instance of the same provider is another deployment of it;
        ValueError if another provider declared the id, or the instance already serves it.
        """
        instance = instance or spec.provider
        real = self._names.get(spec.id)
        if real is not None:
            known = self._by_id[real]
            if real != spec.id or known.provider != spec.provider:  # another model's name
                raise ValueError(
                    f"model id {spec.id!r} is already declared by provider {known.provider!r}"
                )
            if any(d.instance == instance for d in self._deployments[real]):
                raise ValueError(f"model id {spec.id!r} is already declared by {instance!r}")
        self.derived.clear()
        deployment = Deployment(deployment_key(spec.id, instance), instance, spec, weight)
        if spec.id in self._by_id:
            self._deployments[spec.id] += (deployment,)
            return
        self._by_id[spec.id] = spec
        self._deployments[spec.id] = (deployment,)
        self._names[spec.id] = spec.id
        for alias in spec.aliases:
            # an alias never shadows a real id; the first provider to claim an alias keeps it
            self._names.setdefault(alias, spec.id)

    def resolve(self, name: str) -> ModelSpec | None:
        """The spec for an id, an alias or ``model@instance``, or None."""
        found = self.resolve_deployments(name)
        return found[0].spec if found else None

    def resolve_deployments(self, name: str) -> tuple[Deployment, ...]:
        """The deployments a name means: every one of a model (id or alias), or the one
        ``model@instance`` names; empty when there is none."""
        model, at, instance = name.partition("@")
        real = self._names.get(model)
        if real is None:
            return ()
        deployments = self._deployments[real]
        if not at:
            return deployments
        return tuple(d for d in deployments if d.instance == instance)

    def label(self, deployment: Deployment) -> str:
        """How messages name a deployment: its model's id when that model has no other, else
        ``model@instance``."""
        several = len(self._deployments.get(deployment.spec.id, ())) > 1
        return deployment.key if several else deployment.spec.id

    def deployments(self) -> list[Deployment]:
        """Every deployment of every model, models in the order added."""
        return [d for found in self._deployments.values() for d in found]

    def resolve_pool(self, names: Iterable[str]) -> list[Deployment | Absent]:
        """The deployments a gate's pool names, in its order: each once (an id and its alias are
        one model; a model after one of its pinned deployments brings the others), and in its
        place each name that is not here, as `Absent`."""
        seen: set[str] = set()
        members: list[Deployment | Absent] = []
        for name in names:
            found = self.resolve_deployments(name)
            if not found:
                if name in seen:
                    continue
                seen.add(name)
                why = self.absent.get(name) or self._why_absent(name)
                members.append(Absent(name, why))
                continue
            for deployment in found:
                if deployment.key not in seen:
                    seen.add(deployment.key)
                    members.append(deployment)
        return members

    def _why_absent(self, name: str) -> str:
        model, at, instance = name.partition("@")
        if at and model in self._names:
            serving = ", ".join(d.instance for d in self._deployments[self._names[model]])
            return f"no provider instance {instance!r} serves {model} (served by: {serving})"
        return "not in the catalogue (is its plugin installed?)"

    def names(self) -> list[str]:
        """Every id and alias."""
        return list(self._names)

    def __getitem__(self, key: str) -> ModelSpec:
        spec = self.resolve(key)
        if spec is None:
            raise KeyError(key)
        return spec

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return key in self._names or ("@" in key and bool(self.resolve_deployments(key)))

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __repr__(self) -> str:
        return f"Catalog({list(self._by_id)})"


class Rejection(NamedTuple):
    """A model of a pool that will not be tried, and why (the reason starts with its id).

    Made by the policy (`layer_core.policy`, which re-exports it); kept here, below the errors
    that carry it, so that no import goes in a circle.
    """

    model: str
    reason: str

    @property
    def warning(self) -> str:
        """As a response's warning: "dall-e-3 skipped: size 512x512 not supported (...)"."""
        return f"{self.model} skipped: {self.reason.removeprefix(f'{self.model}: ')}"
