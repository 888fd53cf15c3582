"""OpenAI's image models as data, and the rules each family's requests follow.

The shipped models live in `models.toml`; plugins.toml can add or replace models
(`extra_models`, same keys) and choose which are served (`models`). Prices are kept in OpenAI's
own quality words and mapped onto layer's standard/hd here, once, when the catalogue is built,
so the table the router reads and the cost the response reports are the same numbers.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from layer_core.catalog import ModelSpec, Price, lookup_price
from layer_core.schema import QUALITIES, Quality, Size, Style

PROVIDER = "openai"
Family = Literal["dall-e-2", "dall-e-3", "gpt-image"]
OpenAIQuality = Literal["standard", "hd", "low", "medium", "high"]
GptImageQuality = Literal["low", "medium", "high"]
MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Rules:
    """What a family's requests may carry, so no request is sent that the model rejects."""

    qualities: tuple[str, ...]
    """the `quality` values it accepts; none: `quality` is never sent"""
    styles: bool
    """`style` is sent (only DALL·E 3 has one)"""
    response_format: bool
    """`response_format` is accepted (gpt-image rejects it and always returns b64_json)"""
    max_n: int
    """images per call the API allows"""
    default_quality_map: Mapping[Quality, str]
    """layer's standard/hd → the quality sent"""


FAMILIES: dict[Family, Rules] = {
    "dall-e-2": Rules((), styles=False, response_format=True, max_n=10, default_quality_map={}),
    "dall-e-3": Rules(
        ("standard", "hd"),
        styles=True,
        response_format=True,
        max_n=1,
        default_quality_map={"standard": "standard", "hd": "hd"},
    ),
    "gpt-image": Rules(
        ("low", "medium", "high"),
        styles=False,
        response_format=False,
        max_n=10,
        default_quality_map={"standard": "medium", "hd": "high"},
    ),
}


class TokenPrices(BaseModel):
    """USD per 1M tokens, with the date they were read (gpt-image bills by tokens)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text_input: Price
    image_input: Price
    image_output: Price
    text_output: Price | None = None
    price_date: date

    def cost(self, usage: object) -> Decimal | None:
        """USD for a call from the `usage` it reported; None if absent, malformed or unpriced."""
        try:
            text_in = usage.input_tokens_details.text_tokens  # type: ignore[attr-defined]
            image_in = usage.input_tokens_details.image_tokens  # type: ignore[attr-defined]
            details = usage.output_tokens_details  # type: ignore[attr-defined]
            if details is None:
                image_out, text_out = usage.output_tokens, 0  # type: ignore[attr-defined]
            else:
                image_out, text_out = details.image_tokens, details.text_tokens
        except AttributeError:
            return None
        counts = (text_in, image_in, image_out, text_out)
        if not all(type(c) is int and c >= 0 for c in counts):
            return None
        if text_out and self.text_output is None:
            return None
        total: Decimal = (
            text_in * self.text_input
            + image_in * self.image_input
            + image_out * self.image_output
            + text_out * (self.text_output or 0)
        )
        return total / MILLION


class OpenAIModel(BaseModel):
    """One model as shipped in models.toml or declared in `[plugins.openai] extra_models`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: Family
    display_name: str = ""
    sizes: tuple[Size, ...] = Field(min_length=1)
    qualities: tuple[OpenAIQuality, ...] = ()
    styles: tuple[Style, ...] = ()
    max_images_per_call: int = Field(1, ge=1, le=10)
    quality_score: float = Field(50.0, ge=0, le=100)
    max_prompt_chars: int | None = Field(None, ge=1)
    prices: dict[str, Price]
    price_date: date
    price_note: str = ""
    token_prices: TokenPrices | None = None
    deprecated: date | None = None
    aliases: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _fits_its_family(self) -> OpenAIModel:
        rules = FAMILIES[self.family]
        wrong = [q for q in self.qualities if q not in rules.qualities]
        if wrong:
            allowed = ", ".join(rules.qualities) or "none"
            raise ValueError(f"{self.family} has no quality {wrong[0]!r} (qualities: {allowed})")
        if self.styles and not rules.styles:
            raise ValueError(f"{self.family} takes no style")
        if self.max_images_per_call > rules.max_n:
            raise ValueError(f"{self.family} makes at most {rules.max_n} image(s) per call")
        if self.token_prices is not None and self.family != "gpt-image":
            raise ValueError("token_prices apply to gpt-image models only")
        for quality in self.qualities or (None,):
            for size in self.sizes:
                if lookup_price(self.prices, quality, size) is None:
                    raise ValueError(f"no price for {quality or '*'}/{size}")
        return self


@dataclass(frozen=True, slots=True)
class Served:
    """A model as this provider serves it: its catalogue entry and how to word its requests."""

    spec: ModelSpec
    request: Mapping[str, Any]
    """the keyword arguments every call to it sends (`model`, maybe `response_format`)"""
    quality: Mapping[Quality, str]
    """layer's quality → the quality sent; empty when `quality` is never sent"""
    token_prices: TokenPrices | None
    takes_response_format: bool = False
    """it accepts `response_format` (DALL·E), so a gate may ask it for base64 or URLs"""


@functools.cache
def shipped() -> dict[str, OpenAIModel]:
    """The models in models.toml, by id (read once per process)."""
    text = resources.files(__package__).joinpath("models.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text, parse_float=Decimal)
    return {model_id: OpenAIModel.model_validate(table) for model_id, table in raw.items()}


def serve(
    model_id: str,
    model: OpenAIModel,
    *,
    quality_map: Mapping[Quality, str],
    response_format: str | None,
) -> Served:
    """Map `model` onto layer's vocabulary: its `ModelSpec`, priced per layer quality."""
    rules = FAMILIES[model.family]
    wanted = {**rules.default_quality_map, **(quality_map if model.family == "gpt-image" else {})}
    quality = {q: wanted[q] for q in QUALITIES if q in wanted and wanted[q] in model.qualities}
    if model.qualities and not quality:
        raise ValueError(
            f"{model_id}: quality_map sends {wanted['standard']}/{wanted['hd']}, which it lacks "
            f"(it has {', '.join(model.qualities)})"
        )
    prices: dict[str, Decimal] = {}
    for size in model.sizes:
        for layer_quality, sent in quality.items() if quality else [(None, None)]:
            price = lookup_price(model.prices, sent, size)
            assert price is not None  # OpenAIModel checks every quality × size is priced
            prices[f"{layer_quality or '*'}/{size}"] = price
    notes = [model.price_note] if model.price_note else []
    if model.family == "gpt-image":
        notes.append(", ".join(f"{q} = OpenAI {sent}" for q, sent in quality.items()))
        if model.token_prices is not None:
            notes.append("billed from the token usage OpenAI reports")
    spec = ModelSpec(
        id=model_id,
        provider=PROVIDER,
        display_name=model.display_name,
        sizes=model.sizes,
        qualities=tuple(quality),
        styles=model.styles,
        max_images_per_call=model.max_images_per_call,
        quality_score=model.quality_score,
        max_prompt_chars=model.max_prompt_chars,
        prices=prices,
        price_date=model.price_date,
        price_note="; ".join(notes),
        deprecated=model.deprecated,
        aliases=model.aliases,
    )
    request: dict[str, Any] = {"model": model_id}
    if response_format is not None and rules.response_format:
        request["response_format"] = response_format
    return Served(spec, request, quality, model.token_prices, rules.response_format)
