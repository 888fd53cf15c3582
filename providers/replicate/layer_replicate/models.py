"""The Replicate models layer offers, as data: catalogue entry, how a size becomes input, billing.

Each model says how a layer size turns into its input (an aspect ratio and a megapixels choice for
Flux dev/schnell; width and height for Flux pro and SDXL), all through `layer_core.sizes`. A model
lists a size only where the image that comes back has that size's aspect ratio, and `delivered`
records the pixels it really returns. Prices were read on `PRICE_DATE`; `plugins.toml` can
override any of them (`[plugins.replicate] prices`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from layer_core.catalog import ModelSpec
from layer_core.errors import InvalidProviderRequest
from layer_core.provider import GenerationCall
from layer_core.schema import SIZES
from layer_core.sizes import (
    aspect_ratio_for,
    dimensions_for,
    fit_within,
    format_size,
    pixels_for,
    same_ratio,
)

__all__ = ["MODELS", "AspectRatio", "Fitted", "ReplicateModel", "WidthHeight", "model_for"]

PRICE_DATE = date(2026, 11, 23)
# Checked again 2026-12-02: replicate.com/black-forest-labs/flux-pro still lists $0.055 per image;
# no retirement of these models is announced in what could be read (so none has `deprecated`);
# the other prices could not be read again, so they keep their date.


class Fitted(NamedTuple):
    """A size fitted to a model: the input keys that ask for it and the pixels that come back."""

    inputs: dict[str, Any]
    delivered: str


class Sizing(Protocol):
    def fit(self, size: str) -> Fitted | None:
        """The input for `size`, or None if the model cannot return an image of that shape."""


@dataclass(frozen=True)
class AspectRatio:
    """Models that take `aspect_ratio` and a `megapixels` choice, and pick the pixels themselves.

    `megapixels` maps each input value to the pixel count it stands for; the model renders a ratio
    at about that many pixels, each side a multiple of `multiple`.
    """

    ratios: tuple[str, ...]
    megapixels: Mapping[str, int]
    multiple: int

    def fit(self, size: str) -> Fitted | None:
        ratio = aspect_ratio_for(size, self.ratios)
        if ratio is None:
            return None
        pixels = pixels_for(size, self.megapixels.values())
        delivered = format_size(*dimensions_for(ratio, pixels, multiple=self.multiple))
        if not same_ratio(size, delivered):
            return None
        choice = next(value for value, count in self.megapixels.items() if count == pixels)
        return Fitted({"aspect_ratio": ratio, "megapixels": choice}, delivered)


@dataclass(frozen=True)
class WidthHeight:
    """Models that take `width` and `height` within limits (plus any `inputs` that enable them)."""

    max_side: int
    min_side: int
    multiple: int
    inputs: Mapping[str, Any] = field(default_factory=dict)

    def fit(self, size: str) -> Fitted | None:
        dims = fit_within(
            size, max_side=self.max_side, min_side=self.min_side, multiple=self.multiple
        )
        if dims is None:
            return None
        width, height = dims
        return Fitted({**self.inputs, "width": width, "height": height}, format_size(*dims))


@dataclass(frozen=True)
class ReplicateModel:
    """One Replicate model: its catalogue entry and what calling it takes.

    `version` pins a community model (created through POST /v1/predictions); official models have
    none and are created through their own endpoint. `seeded_inputs` go with every seeded call
    (Flux dev/schnell are only deterministic with `go_fast` off). `gpu_price_per_second` marks a
    model billed by GPU time: its cost is `metrics.predict_time` × that price.
    """

    spec: ModelSpec
    ref: str
    sizing: Sizing
    version: str | None = None
    seeded_inputs: Mapping[str, Any] = field(default_factory=dict)
    gpu_price_per_second: Decimal | None = None

    def fit(self, size: str) -> Fitted:
        fitted = self.sizing.fit(size)
        if fitted is None:  # the core sends only the sizes the spec lists
            raise InvalidProviderRequest(
                f"size {size} is not one {self.spec.id} lists",
                provider="replicate",
                model=self.spec.id,
            )
        return fitted

    def inputs(self, call: GenerationCall) -> dict[str, Any]:
        """The prediction input for `call`."""
        inputs: dict[str, Any] = {"prompt": call.prompt, **self.fit(call.size).inputs}
        if self.spec.max_images_per_call > 1:
            inputs["num_outputs"] = call.n
        if call.seed is not None:
            inputs["seed"] = call.seed
            inputs.update(self.seeded_inputs)
        return inputs


def _model(
    ref: str,
    sizing: Sizing,
    *,
    version: str | None = None,
    seeded_inputs: Mapping[str, Any] | None = None,
    gpu_price_per_second: str | None = None,
    **spec: Any,
) -> ReplicateModel:
    """A model whose sizes and delivered pixels come from `sizing`, with id = the short name."""
    fitted = {size: fit for size in SIZES if (fit := sizing.fit(size)) is not None}
    return ReplicateModel(
        spec=ModelSpec(
            id=ref.split("/")[1],
            provider="replicate",
            aliases=(ref,),
            sizes=tuple(fitted),
            delivered={s: f.delivered for s, f in fitted.items() if f.delivered != s},
            price_date=PRICE_DATE,
            **spec,
        ),
        ref=ref,
        sizing=sizing,
        version=version,
        seeded_inputs=seeded_inputs or {},
        gpu_price_per_second=Decimal(gpu_price_per_second) if gpu_price_per_second else None,
    )


# Flux dev and schnell render each aspect ratio at fixed sizes, multiples of 64 near 1 megapixel
# (1024x1024 = "1"), or half each side at "0.25". 3:2 comes back as 1216x832 (1.46), so 1536x1024
# and 1024x1536 are not listed; 1792x1024 comes back as 1344x768, exactly its 7:4.
FLUX_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
FLUX_SIZING = AspectRatio(
    FLUX_RATIOS, megapixels={"1": 1024 * 1024, "0.25": 512 * 512}, multiple=64
)
# Flux pro takes aspect_ratio "custom" with width and height from 256 to 1440, in steps of 32.
FLUX_PRO_SIZING = WidthHeight(
    max_side=1440, min_side=256, multiple=32, inputs={"aspect_ratio": "custom"}
)
# SDXL renders width x height as asked (multiples of 8). Below 512 px its images fall apart (it was
# trained at about 1 megapixel), so 256x256 is not offered; it has no declared maximum.
SDXL_SIZING = WidthHeight(max_side=2048, min_side=512, multiple=8)

# Flux dev/schnell run fp8-quantised by default, which the model card says is not deterministic
# even with a seed: a seeded call turns it off, because a seed is a promise of reproducibility.
_DETERMINISTIC = {"go_fast": False}

MODELS: tuple[ReplicateModel, ...] = (
    _model(
        "black-forest-labs/flux-schnell",
        FLUX_SIZING,
        seeded_inputs=_DETERMINISTIC,
        display_name="FLUX.1 [schnell] on Replicate",
        max_images_per_call=4,
        supports_seed=True,
        quality_score=62,
        prices={"*/*": "0.003"},
        price_note="replicate.com model page: $3 per thousand output images",
    ),
    _model(
        "black-forest-labs/flux-dev",
        FLUX_SIZING,
        seeded_inputs=_DETERMINISTIC,
        display_name="FLUX.1 [dev] on Replicate",
        max_images_per_call=4,
        supports_seed=True,
        quality_score=72,
        prices={"*/*": "0.025"},
        price_note="$0.025 per output image, as listed by third-party catalogues of Replicate",
    ),
    _model(
        "black-forest-labs/flux-1.1-pro",
        FLUX_PRO_SIZING,
        display_name="FLUX 1.1 [pro] on Replicate",
        max_images_per_call=1,
        supports_seed=True,
        quality_score=85,
        prices={"*/*": "0.04"},
        price_note="$0.04 per output image, as listed by third-party catalogues of Replicate",
    ),
    _model(
        "black-forest-labs/flux-pro",
        FLUX_PRO_SIZING,
        display_name="FLUX.1 [pro] on Replicate",
        max_images_per_call=1,
        supports_seed=True,
        quality_score=80,
        prices={"*/*": "0.055"},
        price_note="replicate.com model page: $0.055 per image",
    ),
    _model(
        "stability-ai/sdxl",
        SDXL_SIZING,
        version="39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b",
        gpu_price_per_second="0.000975",
        display_name="Stable Diffusion XL on Replicate",
        max_images_per_call=4,
        supports_seed=True,
        quality_score=55,
        prices={"*/*": "0.0048"},
        price_note=(
            "billed by GPU time (Nvidia L40S, $0.000975/s on replicate.com/pricing): each "
            "response's cost is metrics.predict_time x that price; $0.0048 is the model page's "
            "per-run estimate, used only to rank it for routing"
        ),
    ),
)

_BY_ID = {model.spec.id: model for model in MODELS}


def model_for(spec: ModelSpec) -> ReplicateModel:
    """The Replicate model behind a catalogue entry (which may carry overridden prices)."""
    return _BY_ID[spec.id]
