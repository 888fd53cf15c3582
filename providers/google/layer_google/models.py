"""Google's image models as data (models.toml), and how each is served."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from layer_core.catalog import ModelSpec, Price
from layer_core.schema import Size

PROVIDER = "google"
Family = Literal["imagen", "gemini"]
MILLION = Decimal(1_000_000)


class TokenPrices(BaseModel):
    """USD per 1M tokens (Gemini image models bill image output by tokens)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text_input: Price
    image_output: Price
    price_date: date

    def cost(self, prompt_tokens: int, image_tokens: int) -> Decimal:
        return (prompt_tokens * self.text_input + image_tokens * self.image_output) / MILLION


class GoogleModel(BaseModel):
    """One model as shipped in models.toml or declared in `[plugins.google] extra_models`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: Family
    display_name: str = ""
    ratios: dict[Size, str] = Field(min_length=1)
    delivered: dict[Size, str] = Field(default_factory=dict)
    image_size: str | None = None
    max_images_per_call: int = Field(1, ge=1, le=4)
    quality_score: float = Field(50.0, ge=0, le=100)
    prices: dict[str, Price]
    price_date: date
    price_note: str = ""
    token_prices: TokenPrices | None = None
    deprecated: date | None = None

    @model_validator(mode="after")
    def _fits_its_family(self) -> GoogleModel:
        if self.family == "gemini" and self.max_images_per_call != 1:
            raise ValueError("a Gemini image model makes one image per call")
        if self.token_prices is not None and self.family != "gemini":
            raise ValueError("token_prices apply to Gemini image models only")
        return self


@dataclass(frozen=True, slots=True)
class Served:
    spec: ModelSpec
    model: GoogleModel


@functools.cache
def shipped() -> dict[str, GoogleModel]:
    """The models in models.toml, by id (read once per process)."""
    text = resources.files(__package__).joinpath("models.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text, parse_float=Decimal)
    return {model_id: GoogleModel.model_validate(table) for model_id, table in raw.items()}


def serve(model_id: str, model: GoogleModel) -> Served:
    notes = [model.price_note] if model.price_note else []
    if model.token_prices is not None:
        notes.append("billed from the image tokens Google's usage metadata reports")
    spec = ModelSpec(
        id=model_id,
        provider=PROVIDER,
        display_name=model.display_name,
        sizes=tuple(model.ratios),
        delivered=model.delivered,
        max_images_per_call=model.max_images_per_call,
        quality_score=model.quality_score,
        prices=model.prices,
        price_date=model.price_date,
        price_note="; ".join(notes),
        deprecated=model.deprecated,
    )
    return Served(spec, model)
