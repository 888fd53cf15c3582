"""Acme's models, as data: what each can produce, and what it costs (read 2026-11-20)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from layer_core import ModelSpec

ACME_1 = ModelSpec(
    id="acme-1",
    provider="acme",
    display_name="Acme Images 1",
    # Acme takes an aspect ratio, not pixels. 1792x1024 is served as 16:9 at 1344x768:
    # `delivered` says so, so nobody is promised pixels they will not get.
    sizes=("1024x1024", "1536x1024", "1024x1536", "1792x1024", "1024x1792"),
    delivered={"1792x1024": "1344x768", "1024x1792": "768x1344"},
    qualities=("standard", "hd"),
    max_images_per_call=4,
    supports_seed=True,
    quality_score=72,
    prices={"standard/*": Decimal("0.02"), "hd/*": Decimal("0.04")},
    price_date=date(2026, 11, 20),
    price_note="per image, any aspect ratio; hd is Acme's 'fine' detail",
)

ACME_MINI = ModelSpec(
    id="acme-mini",
    provider="acme",
    display_name="Acme Images mini",
    sizes=("512x512",),
    styles=("vivid", "natural"),
    quality_score=35,
    prices={"*/*": Decimal("0.004")},
    price_date=date(2026, 11, 20),
    deprecated=date(2027, 6, 30),
)

MODELS = (ACME_1, ACME_MINI)

#: The aspect ratios each model accepts (Acme answers 400 to any other).
RATIOS = {
    "acme-1": ("1:1", "3:2", "2:3", "16:9", "9:16"),
    "acme-mini": ("1:1",),
}
