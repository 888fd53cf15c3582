"""Price-table lookup and sharing one call's cost over its images: exact, never lossy."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from layer_core.catalog import lookup_price
from layer_core.provider import split_cost


@given(
    total=st.decimals(min_value=0, max_value=1000, places=9, allow_nan=False),
    count=st.integers(min_value=1, max_value=10),
)
def test_shares_sum_exactly_to_the_total_and_are_never_negative(total: Decimal, count: int) -> None:
    shares = split_cost(total, count)
    assert len(shares) == count
    assert sum(shares, Decimal(0)) == total
    assert all(share >= 0 for share in shares)
    assert max(shares) - min(shares) < Decimal("1e-11")


def test_a_total_that_does_not_divide_evenly_puts_the_remainder_on_the_last_image() -> None:
    assert split_cost(Decimal("0.1"), 3) == [
        Decimal("0.033333333333"),
        Decimal("0.033333333333"),
        Decimal("0.033333333334"),
    ]
    with pytest.raises(ValueError, match="at least 1"):
        split_cost(Decimal(1), 0)


def test_the_most_specific_price_key_wins() -> None:
    prices = {
        "*/*": Decimal(1),
        "*/512x512": Decimal(2),
        "low/*": Decimal(3),
        "low/512x512": Decimal(4),
    }
    assert lookup_price(prices, "low", "512x512") == 4
    assert lookup_price(prices, "low", "256x256") == 3
    assert lookup_price(prices, "high", "512x512") == 2
    assert lookup_price(prices, None, "256x256") == 1
    assert lookup_price({"low/*": Decimal(3)}, "high", "512x512") is None
