"""fal's image models as data (models.toml), and how a call to each is worded.

Each model says how a layer size becomes its input (`sizing`): exact `{width, height}` where fal
takes any size (FLUX, SD 3.5), one of its aspect ratios (FLUX ultra) or one of its fixed
resolutions (Recraft, Ideogram). A model lists a size only where what comes back has exactly that
size's aspect ratio, and `delivered` records the pixels where they differ from the size asked.

Prices are per image, or per megapixel of the delivered image (1024x1024 pixels, rounded up):
the catalogue's table holds the price of each declared size, and a per-megapixel model's cost is
worked out again from the pixels fal reports it delivered (`FalModel.cost`).
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from layer_core.catalog import ModelSpec, Price
from layer_core.errors import InvalidProviderRequest
from layer_core.provider import GenerationCall
from layer_core.schema import QUALITIES, SIZES, Quality, Size
from layer_core.sizes import exact_ratio, fit_within, format_size, parse_size

__all__ = ["MODELS", "FalModel", "Fitted", "billed_megapixels", "model_for", "shipped"]

PROVIDER = "fal"
#: Pixels in one billed megapixel.
MEGAPIXEL = 1024 * 1024


def billed_megapixels(width: int, height: int) -> int:
    """Megapixels fal bills for an image: 1024x1024 pixels each, rounded up (at least one)."""
    return max(1, math.ceil(width * height / MEGAPIXEL))


@dataclass(frozen=True, slots=True)
class Fitted:
    """A size fitted to a model: the input that asks for it and the pixels that come back."""

    inputs: dict[str, Any]
    delivered: str


class Entry(BaseModel):
    """One model as models.toml declares it (see the key list at the top of that file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint: str = Field(pattern=r"^[\w.-]+/[\w.-]+(/[\w.-]+)*$")
    display_name: str = ""
    sizing: Literal["width_height", "aspect_ratio", "resolutions"]
    min_side: int = Field(256, ge=1)
    max_side: int = Field(2048, ge=1)
    multiple: int = Field(16, ge=1)
    ratios: dict[str, str] = Field(default_factory=dict)
    resolutions: tuple[str, ...] = ()
    sizes: tuple[Size, ...] = ()
    max_images_per_call: int = Field(1, ge=1, le=10)
    seed: bool = False
    safety_checker: bool = False
    quality_score: float = Field(50.0, ge=0, le=100)
    quality_input: str | None = None
    qualities: dict[Quality, str] = Field(default_factory=dict)
    price_per_image: Price | None = None
    price_per_megapixel: Price | None = None
    prices: dict[Quality, Price] = Field(default_factory=dict)
    price_date: date
    source: str
    deprecated: date | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Entry:
        priced = [self.price_per_image, self.price_per_megapixel, self.prices or None]
        if sum(p is not None for p in priced) != 1:
            raise ValueError("give one of price_per_image, price_per_megapixel or prices")
        if bool(self.qualities) != bool(self.quality_input) or set(self.prices) != set(
            self.qualities
        ):
            raise ValueError("qualities need quality_input and a price for each quality")
        if self.sizing == "aspect_ratio" and not self.ratios:
            raise ValueError("an aspect_ratio model lists its ratios")
        if self.sizing == "resolutions" and not self.resolutions:
            raise ValueError("a resolutions model lists its resolutions")
        return self


@dataclass(frozen=True)
class FalModel:
    """A model as this provider serves it: its catalogue entry and how to word a call to it."""

    spec: ModelSpec
    entry: Entry

    @property
    def endpoint(self) -> str:
        return self.entry.endpoint

    def fit(self, size: str) -> Fitted:
        fitted = _fit(self.entry, size)
        if fitted is None:  # the core sends only the sizes the spec lists
            raise InvalidProviderRequest(
                f"size {size} is not one {self.spec.id} lists",
                provider=PROVIDER,
                model=self.spec.id,
            )
        return fitted

    def arguments(self, call: GenerationCall) -> dict[str, Any]:
        """The input submitted to fal's queue for `call`."""
        entry = self.entry
        arguments: dict[str, Any] = {"prompt": call.prompt, **self.fit(call.size).inputs}
        if entry.max_images_per_call > 1:
            arguments["num_images"] = call.n
        if call.seed is not None and entry.seed:
            arguments["seed"] = call.seed
        if entry.safety_checker:
            arguments["enable_safety_checker"] = True
        if entry.quality_input is not None and call.quality is not None:
            arguments[entry.quality_input] = entry.qualities[call.quality]
        return arguments

    def cost(self, width: int, height: int) -> Decimal | None:
        """USD for one delivered image of `width` x `height`, for a model billed per megapixel;
        None for a model billed per image (the catalogue's table price is its cost)."""
        rate = self.entry.price_per_megapixel
        return None if rate is None else rate * billed_megapixels(width, height)


def _fit(entry: Entry, size: str) -> Fitted | None:
    """The input for `size` and the pixels it delivers, or None if the model cannot deliver an
    image of exactly that shape (or the model's `sizes` leave it out)."""
    if entry.sizes and size not in entry.sizes:
        return None
    if entry.sizing == "width_height":
        dims = fit_within(
            size, max_side=entry.max_side, min_side=entry.min_side, multiple=entry.multiple
        )
        if dims is None:
            return None
        width, height = dims
        return Fitted({"image_size": {"width": width, "height": height}}, format_size(*dims))
    ratio = exact_ratio(size)
    if entry.sizing == "aspect_ratio":
        for allowed, pixels in entry.ratios.items():
            if exact_ratio(allowed.replace(":", "x")) == ratio:
                return Fitted({"aspect_ratio": allowed}, pixels)
        return None
    for resolution in entry.resolutions:
        if exact_ratio(resolution) == ratio:
            width, height = parse_size(resolution)
            return Fitted({"image_size": {"width": width, "height": height}}, resolution)
    return None


def _serve(model_id: str, entry: Entry) -> FalModel:
    fitted = {size: fit for size in SIZES if (fit := _fit(entry, size)) is not None}
    prices: dict[str, Decimal] = {}
    for size, fit in fitted.items():
        if entry.prices:
            for quality in QUALITIES:
                prices[f"{quality}/{size}"] = entry.prices[quality]
        elif entry.price_per_image is not None:
            prices[f"*/{size}"] = entry.price_per_image
        else:
            assert entry.price_per_megapixel is not None  # Entry checks one price is given
            megapixels = billed_megapixels(*parse_size(fit.delivered))
            prices[f"*/{size}"] = entry.price_per_megapixel * megapixels
    if entry.price_per_megapixel is not None:
        note = f"${entry.price_per_megapixel} per megapixel delivered (1024x1024, rounded up)"
    else:
        note = "per image"
    spec = ModelSpec(
        id=model_id,
        provider=PROVIDER,
        display_name=entry.display_name,
        aliases=(entry.endpoint,),
        sizes=tuple(fitted),
        delivered={s: f.delivered for s, f in fitted.items() if f.delivered != s},
        qualities=tuple(q for q in QUALITIES if q in entry.qualities),
        max_images_per_call=entry.max_images_per_call,
        supports_seed=entry.seed,
        quality_score=entry.quality_score,
        prices=prices,
        price_date=entry.price_date,
        price_note=f"{note}; {entry.source}",
        deprecated=entry.deprecated,
    )
    return FalModel(spec, entry)


@functools.cache
def shipped() -> dict[str, Entry]:
    """The models in models.toml, by id (read once per process)."""
    text = resources.files(__package__).joinpath("models.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text, parse_float=Decimal)
    return {model_id: Entry.model_validate(table) for model_id, table in raw.items()}


MODELS: tuple[FalModel, ...] = tuple(_serve(i, e) for i, e in shipped().items())
_BY_ID: Mapping[str, FalModel] = {model.spec.id: model for model in MODELS}


def model_for(spec: ModelSpec) -> FalModel:
    """The fal model behind a catalogue entry (which may carry overridden prices)."""
    return _BY_ID[spec.id]
