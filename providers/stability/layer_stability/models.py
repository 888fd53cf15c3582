"""Stability's models as data: endpoint or engine, price in credits (and USD), output sizes.

Prices were read from Stability's price list on `PRICE_DATE`; one credit is $0.01. The REST
models take an aspect ratio and return about one megapixel at the pixel sizes in `REST_OUTPUTS`;
the SDXL engine takes exact pixel sizes from `SDXL_DIMENSIONS`. Either way a layer size is
declared only where what comes back has its shape (`layer_core.sizes.closest_dimensions`), so
1536x1024 (3:2) is not offered: the 3:2 output, 1216x832, is 2.6% narrower than 3:2.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

from layer_core import ModelSpec
from layer_core.schema import Size
from layer_core.sizes import closest_dimensions, sizes_for_dimensions

PROVIDER = "stability"
USD_PER_CREDIT = Decimal("0.01")
PRICE_DATE = date(2026, 11, 23)
# Checked again 2026-12-02: no retirement of these models or of the v2beta endpoints is announced
# in what could be read (so none has `deprecated`); the price list could not be read again.
#: The REST API's longest prompt.
MAX_PROMPT_CHARS = 10_000
#: Seeds Stability can honour: 0 asks it for a random one, and 2**32 - 1 is out of its range.
MIN_SEED, MAX_SEED = 1, 4_294_967_294

#: aspect_ratio sent to the REST API → pixel size that comes back (the ratios no layer size
#: matches, 21:9, 9:21, 4:5 and 5:4, are left out).
REST_OUTPUTS: dict[str, str] = {
    "1:1": "1024x1024",
    "16:9": "1344x768",
    "9:16": "768x1344",
    "3:2": "1216x832",
    "2:3": "832x1216",
}
#: The pixel sizes the SDXL 1.0 engine accepts (and returns).
SDXL_DIMENSIONS: tuple[str, ...] = (
    "1024x1024",
    "1152x896",
    "896x1152",
    "1216x832",
    "832x1216",
    "1344x768",
    "768x1344",
    "1536x640",
    "640x1536",
)
Transport = Literal["rest", "grpc"]


@dataclass(frozen=True)
class StabilityModel:
    """One Stability model and how to call it."""

    id: str
    display_name: str
    transport: Transport
    #: REST: the endpoint's last path segment (ultra, core, sd3); gRPC: the engine id.
    endpoint: str
    credits: Decimal
    quality_score: float
    #: The `model` form field of the sd3 endpoint.
    sd3_model: str | None = None
    aliases: tuple[str, ...] = ()
    price_source: str = "Stability's price list"

    @property
    def usd(self) -> Decimal:
        return self.credits * USD_PER_CREDIT

    @property
    def outputs(self) -> tuple[str, ...]:
        """The pixel sizes this model can return."""
        return tuple(REST_OUTPUTS.values()) if self.transport == "rest" else SDXL_DIMENSIONS

    def pixels_for(self, size: str) -> str | None:
        """The pixel size that comes back for a layer size, or None if none has its shape."""
        return closest_dimensions(size, self.outputs)

    def spec(self) -> ModelSpec:
        sizes: tuple[Size, ...] = sizes_for_dimensions(self.outputs)
        delivered = {size: self.pixels_for(size) or size for size in sizes}
        return ModelSpec(
            id=self.id,
            provider=PROVIDER,
            display_name=self.display_name,
            sizes=sizes,
            delivered={size: pixels for size, pixels in delivered.items() if pixels != size},
            max_images_per_call=1,
            supports_seed=True,
            quality_score=self.quality_score,
            prices={"*/*": self.usd},
            price_date=PRICE_DATE,
            price_note=f"{self.credits} credits at ${USD_PER_CREDIT}/credit ({self.price_source})",
            aliases=self.aliases,
            max_prompt_chars=MAX_PROMPT_CHARS if self.transport == "rest" else None,
        )


def aspect_ratio_for(pixels: str) -> str:
    """The REST `aspect_ratio` whose output is `pixels` (one of `REST_OUTPUTS`' values)."""
    return next(ratio for ratio, out in REST_OUTPUTS.items() if out == pixels)


REST_MODELS: tuple[StabilityModel, ...] = (
    StabilityModel("stable-image-ultra", "Stable Image Ultra", "rest", "ultra", Decimal(8), 90),
    StabilityModel(
        "sd3.5-large",
        "Stable Diffusion 3.5 Large",
        "rest",
        "sd3",
        Decimal("6.5"),
        84,
        sd3_model="sd3.5-large",
    ),
    StabilityModel(
        "sd3.5-large-turbo",
        "Stable Diffusion 3.5 Large Turbo",
        "rest",
        "sd3",
        Decimal(4),
        78,
        sd3_model="sd3.5-large-turbo",
    ),
    StabilityModel(
        "sd3.5-medium",
        "Stable Diffusion 3.5 Medium",
        "rest",
        "sd3",
        Decimal("3.5"),
        72,
        sd3_model="sd3.5-medium",
    ),
    StabilityModel("stable-image-core", "Stable Image Core", "rest", "core", Decimal(3), 74),
)

#: Served only with the `[grpc]` extra (the `stability-sdk` package).
GRPC_MODELS: tuple[StabilityModel, ...] = (
    StabilityModel(
        "stable-diffusion-xl-1024-v1-0",
        "Stable Diffusion XL 1.0 (gRPC)",
        "grpc",
        "stable-diffusion-xl-1024-v1-0",
        Decimal("0.2"),
        60,
        aliases=("sdxl-1.0",),
        price_source="a third-party figure (about 5,000 images per 1,000 credits); unverified",
    ),
)

MODELS: dict[str, StabilityModel] = {m.id: m for m in (*REST_MODELS, *GRPC_MODELS)}
