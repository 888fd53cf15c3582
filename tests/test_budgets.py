"""Gate budgets: reserved atomically before the call, settled to the real cost after it.

The ledger tests run on a SQLite file and on the PostgreSQL server (`ledger_url`); the
concurrency test runs several processes against one database.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from layer_core import (
    AllAttemptsFailed,
    Budget,
    BudgetExceeded,
    GenerationCall,
    ImageOutput,
    Layer,
    LedgerUnavailable,
    ProviderUnavailable,
)
from layer_core.ledger import Hold
from layer_core.testing import fake_images
from tests.helpers import layer_with, two_model_provider
from tests.ledger_backends import LedgerHooks, run_worker


def budget_gate(amount: str, enforcement: str = "block", **gate: Any) -> dict[str, Any]:
    return {
        "model": "primary",
        **gate,
        "budget": {"amount": amount, "period": "daily", "enforcement": enforcement},
    }


# --- periods -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "now", "start", "reset"),
    [
        ("daily", datetime(2026, 3, 9, 17, 5, tzinfo=UTC), (2026, 3, 9), (2026, 3, 10)),
        ("daily", datetime(2026, 12, 31, 23, 59, tzinfo=UTC), (2026, 12, 31), (2027, 1, 1)),
        ("monthly", datetime(2026, 2, 28, 12, tzinfo=UTC), (2026, 2, 1), (2026, 3, 1)),
        ("monthly", datetime(2026, 12, 15, tzinfo=UTC), (2026, 12, 1), (2027, 1, 1)),
        ("monthly", datetime(2026, 1, 31, 23, tzinfo=UTC), (2026, 1, 1), (2026, 2, 1)),
    ],
)
def test_budget_periods_are_utc_calendar_days_and_months(
    period: str, now: datetime, start: tuple[int, ...], reset: tuple[int, ...]
) -> None:
    budget = Budget(amount=Decimal(1), period=period)  # type: ignore[arg-type]
    assert budget.period_start(now) == datetime(*start, tzinfo=UTC)
    assert budget.resets_at(now) == datetime(*reset, tzinfo=UTC)


def test_a_period_is_read_in_utc_whatever_the_callers_timezone() -> None:
    tokyo = datetime(2026, 3, 10, 8, 0, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Asia/Tokyo")
    )
    assert Budget(amount=Decimal(1), period="daily").period_start(tokyo) == datetime(
        2026, 3, 10, tzinfo=UTC
    )


# --- enforcement ---------------------------------------------------------------------------


def test_a_block_budget_refuses_the_request_that_would_pass_it_before_any_provider_call(
    ledger_url: str,
) -> None:
    acme = two_model_provider()
    hooks = LedgerHooks()
    gates = {"capped": budget_gate("0.10")}
    with layer_with(acme, gates=gates, ledger=ledger_url, plugins=[hooks]) as layer:
        layer.image("capped", {"prompt": "one"})
        layer.image("capped", {"prompt": "two"})
        with pytest.raises(BudgetExceeded) as refused:
            layer.image("capped", {"prompt": "three"})
        report = layer.costs(by="status")

    assert len(acme.calls) == 2
    error = refused.value
    assert (error.gate_id, error.amount, error.spent, error.estimate) == (
        "capped",
        Decimal("0.10"),
        Decimal("0.08"),
        Decimal("0.04"),
    )
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    assert error.resets_at == datetime(*tomorrow.timetuple()[:3], tzinfo=UTC).isoformat()
    assert hooks.alerts == [("capped", Decimal("0.08"), Decimal("0.04"), True)]
    assert [(r.group["status"], r.requests, r.cost) for r in report.rows] == [
        ("ok", 2, Decimal("0.08")),
        ("rejected-by-budget", 1, Decimal(0)),
    ]


def test_what_is_left_of_a_budget_routes_to_a_model_that_still_fits(ledger_url: str) -> None:
    acme = two_model_provider()
    gates = {"capped": budget_gate("0.10", fallback_models=["backup"])}
    with layer_with(acme, gates=gates, ledger=ledger_url) as layer:
        served = [layer.image("capped", {"prompt": str(i)}).model for i in range(4)]
        plan = layer.explain("capped", {"prompt": "x"})
        with pytest.raises(BudgetExceeded):
            layer.image("capped", {"prompt": "over"})
    assert served == ["primary", "primary", "backup", "backup"]
    assert plan.candidates == ()
    assert [r.reason for r in plan.rejected] == [
        "primary: $0.04 for 1 image(s) over the $0 left in the gate's budget",
        "backup: $0.01 for 1 image(s) over the $0 left in the gate's budget",
    ]


def test_an_alert_only_budget_serves_with_a_warning_and_a_hook_call(ledger_url: str) -> None:
    acme = two_model_provider()
    hooks = LedgerHooks()
    gates = {"watched": budget_gate("0.05", "alert_only")}
    with layer_with(acme, gates=gates, ledger=ledger_url, plugins=[hooks]) as layer:
        first = layer.image("watched", {"prompt": "one"})
        second = layer.image("watched", {"prompt": "two"})
        assert layer.costs().total == Decimal("0.08")
    assert first.warnings == []
    assert second.warnings == [
        "gate 'watched': over its daily budget of $0.05 (spent $0.04, this request ~$0.04);"
        " enforcement is alert_only, so it was served"
    ]
    assert hooks.alerts == [("watched", Decimal("0.04"), Decimal("0.04"), False)]
    assert len(acme.calls) == 2


def test_the_reservation_is_settled_to_the_real_cost(ledger_url: str) -> None:
    def billed(call: GenerationCall) -> list[ImageOutput]:
        return [
            image.model_copy(update={"cost_exact": Decimal("0.013"), "cost_source": "billing_time"})
            for image in fake_images(call)
        ]

    acme = two_model_provider({"primary": [billed]})
    gate = budget_gate("0.12")
    with layer_with(acme, gates={"capped": gate}, ledger=ledger_url) as layer:
        for i in range(7):
            layer.image("capped", {"prompt": str(i)})  # reserves $0.04, settles $0.013
        with pytest.raises(BudgetExceeded) as refused:
            layer.image("capped", {"prompt": "8th"})  # $0.091 spent: $0.04 more does not fit
        assert layer.ledger is not None
        state = layer.ledger.budget_state(layer.gates()["capped"], datetime.now(UTC))
        held = layer.ledger.store().held_reservations()
    assert refused.value.spent == state.spent == Decimal("0.091")
    assert held == 0


def test_a_failed_request_gives_back_what_it_reserved(ledger_url: str) -> None:
    acme = two_model_provider({"primary": [ProviderUnavailable("down")]})
    with layer_with(acme, gates={"capped": budget_gate("0.04")}, ledger=ledger_url) as layer:
        for _ in range(3):
            with pytest.raises(AllAttemptsFailed):
                layer.image("capped", {"prompt": "x"})
        assert layer.ledger is not None
        layer.ledger.flush()
        state = layer.ledger.budget_state(layer.gates()["capped"], datetime.now(UTC))
    assert state.spent == 0
    # each failure (a try and the one retry of a gate with nothing else to try) released its
    # hold for the next request
    assert len(acme.calls) == 6


def test_spend_recorded_before_the_gate_had_a_budget_counts_against_it(ledger_url: str) -> None:
    acme = two_model_provider()
    with layer_with(acme, gates={"g": {"model": "primary"}}, ledger=ledger_url) as layer:
        layer.image("g", {"prompt": "x", "count": 2})
    with layer_with(acme, gates={"g": budget_gate("0.14")}, ledger=ledger_url) as layer:
        with pytest.raises(BudgetExceeded) as refused:
            layer.image("g", {"prompt": "x", "count": 2})  # $0.08 more: over
        layer.image("g", {"prompt": "x"})  # $0.04 more: fits
    assert refused.value.spent == Decimal("0.08")


def test_a_budget_that_cannot_be_checked_blocks_under_block_and_warns_under_alert_only(
    tmp_path: Path,
) -> None:
    unreadable = f"sqlite:///{tmp_path}"  # a directory: SQLite cannot open it
    acme = two_model_provider()
    hooks = LedgerHooks()
    gates = {"capped": budget_gate("1"), "watched": budget_gate("1", "alert_only")}
    with layer_with(acme, gates=gates, ledger=unreadable, plugins=[hooks]) as layer:
        with pytest.raises(LedgerUnavailable, match="unable to open database file"):
            layer.image("capped", {"prompt": "x"})
        assert acme.calls == []
        response = layer.image("watched", {"prompt": "x"})
    assert len(response.images) == 1
    assert response.warnings[0].startswith("gate 'watched': budget not checked: ledger sqlite:")
    checks = [text for text, records in hooks.errors if records == 0]
    assert len(checks) == 2  # one per budget that could not be checked
    assert all("unable to open database file" in text for text in checks)


# --- processes -----------------------------------------------------------------------------


def test_200_requests_from_4_processes_serve_exactly_what_the_budget_admits(
    ledger_url: str, tmp_path: Path
) -> None:
    """$1.00 a day at $0.02 an image admits 50; 4 processes send 50 concurrent requests each."""
    calls = tmp_path / "calls"
    out = run_worker("race", ledger_url, str(calls), "4", "50")
    assert out.returncode == 0, out.stderr
    results = [json.loads(line) for line in out.stdout.splitlines()]

    assert [r["other"] for r in results] == [[]] * 4
    assert sum(r["served"] for r in results) == 50
    assert sum(r["refused"] for r in results) == 150
    assert len(calls.read_text().splitlines()) == 50  # no refused request reached the provider
    assert sum(Decimal(r["cost"]) for r in results) == Decimal("1.00")

    layer = Layer({"ledger": ledger_url}, load_entry_points=False, environ={})
    report = layer.costs(by=["gate", "status"])
    assert layer.ledger is not None
    held = layer.ledger.store().held_reservations()
    layer.close()
    assert [(r.group["status"], r.requests, r.cost) for r in report.rows] == [
        ("ok", 50, Decimal("1.00")),
        ("rejected-by-budget", 150, Decimal(0)),
    ]
    assert held == 0


def test_a_reservation_left_by_a_crashed_process_expires(ledger_url: str, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    crashed = run_worker("crash", ledger_url, str(calls))
    assert crashed.returncode == 3, crashed.stderr  # died inside the provider call
    assert len(calls.read_text().splitlines()) == 1

    budget = Budget(amount=Decimal("1.00"), period="daily")
    layer = Layer({"ledger": ledger_url}, load_entry_points=False, environ={})
    assert layer.ledger is not None
    store = layer.ledger.store()
    assert store.held_reservations() == 1
    deadline = time.monotonic() + 30
    while store.budget_state("capped", budget, datetime.now(UTC)).spent and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)  # the dead process's hold counts until it expires (the gate's 1s timeout)
    assert store.budget_state("capped", budget, datetime.now(UTC)).spent == 0
    hold = store.reserve("capped", budget, datetime.now(UTC), Decimal("1.00"), 60, enforce=True)
    assert store.held_reservations() == 1  # the expired hold was cleared when this one was made
    layer.close()
    assert isinstance(hold, Hold)
    assert hold.amount == Decimal("1.00")


def test_a_settlement_written_twice_counts_once(ledger_url: str) -> None:
    """A spooled settlement may be replayed after a partial write: its cost is added once."""
    from layer_core.ledger import LedgerRecord
    from layer_core.ledger.spool import decode, encode

    budget = Budget(amount=Decimal(1), period="daily")
    layer = Layer({"ledger": ledger_url}, load_entry_points=False, environ={})
    assert layer.ledger is not None
    store = layer.ledger.store()
    now = datetime.now(UTC)
    hold = store.reserve("g", budget, now, Decimal("0.5"), 60, enforce=True)
    assert isinstance(hold, Hold)
    record = LedgerRecord(
        id="settles-once", created=now, gate_id="g", model_requested="m", model_used="m",
        provider="acme", requested=1, delivered=1, cost=Decimal("0.3"), latency=1.0,
        status="ok", hold=hold,
    )  # fmt: skip
    store.write([record])
    store.write([decode(encode(record))])  # as the spool replays it
    state = store.budget_state("g", budget, now)
    held = store.held_reservations()
    layer.close()
    assert state.spent == Decimal("0.3")
    assert held == 0
