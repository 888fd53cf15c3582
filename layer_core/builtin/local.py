"""layer's embedded default: an offline placeholder image generator (plugin and model `local`).

It draws a PNG from (prompt, size, quality, style, seed) with Pillow: no key, no network, free,
and byte-identical for the same inputs. It serves every layer size and up to 10 images per call.
Gates route it last (it is a `placeholder` model), so it serves only when no real provider can,
and the CLI then says which variable to set. It ships inside layer-core (entry point `local`), so
an install of the core alone can always make an image; Pillow, a dependency of the core, is
imported on first use, not at plugin load.
"""

from __future__ import annotations

import base64
import hashlib
import io
import random
import secrets
import textwrap
from datetime import date
from typing import TYPE_CHECKING

from layer_core import GenerationCall, ImageOutput, ModelSpec, Provider, hookimpl
from layer_core.schema import QUALITIES, SIZES, STYLES, Quality, Style
from layer_core.sizes import parse_size

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["LocalProvider", "render"]

MODEL = ModelSpec(
    id="local",
    provider="local",
    display_name="Local placeholder (offline)",
    sizes=SIZES,
    qualities=QUALITIES,
    styles=STYLES,
    max_images_per_call=10,
    supports_seed=True,
    quality_score=0,
    prices={"*/*": 0},
    price_date=date(2026, 11, 23),
    price_note="free: drawn offline by Pillow",
    placeholder=True,
)


class LocalProvider(Provider):
    """Draws placeholder images locally. Always available."""

    name = "local"

    def models(self) -> list[ModelSpec]:
        return [MODEL]

    async def generate(self, call: GenerationCall) -> list[ImageOutput]:
        import asyncio  # here, not at the top: loading the plugin needs no asyncio

        first = call.seed if call.seed is not None else secrets.randbelow(2**32)
        seeds = [(first + i) % 2**32 for i in range(call.n)]
        pngs = await asyncio.to_thread(
            lambda: [render(call.prompt, call.size, s, call.quality, call.style) for s in seeds]
        )
        return [
            ImageOutput(
                base64=base64.b64encode(png).decode("ascii"),
                seed=seed,
                size=call.size,
                mime_type="image/png",
            )
            for seed, png in zip(seeds, pngs, strict=True)
        ]


def render(
    prompt: str,
    size: str,
    seed: int,
    quality: Quality | None = None,
    style: Style | None = None,
) -> bytes:
    """A placeholder PNG: gradient, shapes and the prompt, all chosen by a hash of the inputs."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = parse_size(size)
    digest = hashlib.sha256(f"{prompt}\0{size}\0{seed}\0{quality}\0{style}".encode()).digest()
    rng = random.Random(digest)
    saturation = (0.75, 1.0) if style != "natural" else (0.2, 0.45)
    colour: Callable[[], tuple[int, int, int]] = lambda: _hsv(  # noqa: E731
        rng.random(), rng.uniform(*saturation), rng.uniform(0.55, 0.95)
    )

    top, bottom = (
        Image.new("RGB", (width, height), colour()),
        Image.new("RGB", (width, height), colour()),
    )
    mask = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(bottom, top, mask)
    draw = ImageDraw.Draw(image, "RGBA")
    for _ in range(24 if quality == "hd" else 8):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(min(width, height) // 16, min(width, height) // 3)
        fill = (*colour(), rng.randrange(60, 160))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        else:
            draw.rectangle((x - r, y - r // 2, x + r, y + r // 2), fill=fill)

    font_size = max(10, min(width, height) // 18)
    font = ImageFont.load_default(size=font_size)
    chars = max(8, int(width / (font_size * 0.6)) - 4)
    lines = textwrap.wrap(prompt, width=chars)[:6] or [""]
    label = f"layer · local placeholder · {size} · seed {seed}"
    small = ImageFont.load_default(size=max(8, font_size // 2))
    pad = font_size // 2
    box_h = len(lines) * int(font_size * 1.25) + int(font_size * 1.2) + 2 * pad
    draw.rectangle((0, height - box_h, width, height), fill=(0, 0, 0, 150))
    y = height - box_h + pad
    for line in lines:
        draw.text((pad, y), line, font=font, fill=(255, 255, 255, 255))
        y += int(font_size * 1.25)
    draw.text((pad, y), label, font=small, fill=(220, 220, 220, 255))

    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=6)
    return out.getvalue()


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    register(LocalProvider())
