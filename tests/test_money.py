"""Amounts read one way wherever layer shows them: exact, without exponent or trailing zeros."""

from __future__ import annotations

from decimal import Decimal

import pytest

from layer_core import BudgetExceeded, ImageOutput, Layer
from layer_core.checks import check_layer
from layer_core.money import money, plain, total_cost


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("0.04"), "$0.04"),
        (Decimal("0.0400"), "$0.04"),
        (Decimal("0.300000"), "$0.3"),  # PostgreSQL's NUMERIC keeps six places
        (Decimal("1E+2"), "$100"),
        (Decimal("0.167"), "$0.167"),
        (Decimal("0.00"), "$0"),
        (Decimal("-0"), "$0"),
    ],
)
def test_an_amount_is_as_short_as_exact_allows(amount: Decimal, text: str) -> None:
    assert money(amount) == text
    assert plain(amount) == text.removeprefix("$")


def test_a_budget_refusal_writes_its_amounts_as_everything_else_does() -> None:
    error = BudgetExceeded(
        "g", Decimal("5.00"), Decimal("0.300000"), Decimal("0.0400"), "2026-01-01T00:00:00+00:00"
    )
    assert "budget $5 would be exceeded (spent $0.3, this request ~$0.04)" in str(error)


def test_layer_check_writes_a_cost_cap_as_the_tables_do() -> None:
    layer = Layer(
        {
            "ledger": False,
            "gates": {"g": {"model": "local", "max_cost_per_image": "0.0100"}},
            "plugins": {"local": {"prices": {"local": {"*/*": "0.0200"}}}},
        },
        environ={},
    )
    with layer:
        findings = check_layer(layer)
    assert (
        "error",
        "[gates.g] max_cost_per_image $0.01 is below every model's cheapest price ($0.02)",
    ) in findings


def test_images_add_up_exactly() -> None:
    images = [ImageOutput(url=f"https://x/{i}.png", cost_exact=Decimal("0.1")) for i in range(3)]
    assert total_cost(images) == Decimal("0.3")  # not 0.30000000000000004
    assert total_cost([]) == Decimal(0)
