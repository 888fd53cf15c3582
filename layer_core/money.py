"""USD amounts: exact `Decimal`s everywhere, added up one way and written one way.

Every amount layer shows (plans, tables, the gallery, cost reports, budget messages) goes through
`money`, and every total of images' costs through `total_cost`, so no two places can disagree on
how $0.04 reads or what a request cost.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from layer_core.schema import ImageOutput


def plain(amount: Decimal) -> str:
    """An amount without exponent or trailing zeros: 0, 0.04, 0.167, 100."""
    return f"{amount.normalize():f}" if amount else "0"


def money(amount: Decimal) -> str:
    """$0.04, $0.167, $0: as short as exact allows."""
    return f"${plain(amount)}"


def total_cost(images: Iterable[ImageOutput]) -> Decimal:
    """What `images` cost together, exactly."""
    return sum((image.cost_exact for image in images), Decimal(0))
