"""The gateway's keys in the ledger database: made, found, revoked, limited; and the schema step
that adds them to a ledger made before them. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from layer_core.ledger import Hold
from layer_core.ledger.store import SCHEMA_VERSION, SqlStore
from layer_core.server.keys import create_key, find_key, list_keys, parse_budget
from tests.ledger_backends import postgres_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    else:
        with postgres_schema() as pg:
            yield pg


def test_a_key_is_found_by_its_token_until_revoked(url: str) -> None:
    store = SqlStore(url)
    try:
        _, token = create_key(store, "app", ["a", "b"], budget=parse_budget("5/daily"), rpm=3)
        found = find_key(store, token)
        assert found is not None
        assert (found.name, found.gates, found.rpm) == ("app", ("a", "b"), 3)
        assert found.budget is not None
        assert (found.budget.amount, found.budget.period) == (Decimal(5), "daily")
        assert found.allows("a")
        assert not found.allows("c")
        assert find_key(store, token + "x") is None
        assert find_key(store, "lyr_" + "0" * 43) is None
        with pytest.raises(ValueError, match="exists"):
            create_key(store, "app", ["a"])
        assert store.revoke_key("app", datetime.now(UTC))
        assert find_key(store, token) is None
        assert not store.revoke_key("app", datetime.now(UTC))
        [listed] = list_keys(store)
        assert listed.revoked is not None
        assert token not in repr(listed)
    finally:
        store.close()


def test_the_rate_count_is_per_key_and_minute(url: str) -> None:
    store = SqlStore(url)
    try:
        minute = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
        assert [store.count_request("a", minute) for _ in range(3)] == [1, 2, 3]
        assert store.count_request("b", minute) == 1
        assert store.count_request("a", minute + timedelta(minutes=1)) == 1
    finally:
        store.close()


def test_a_key_budget_hold_settles_to_the_real_cost(url: str) -> None:
    store = SqlStore(url)
    try:
        budget = parse_budget("0.10/daily")
        now = datetime.now(UTC)
        hold = store.reserve("key:app", budget, now, Decimal("0.08"), 60, enforce=True)
        assert isinstance(hold, Hold)
        refused = store.reserve("key:app", budget, now, Decimal("0.04"), 60, enforce=True)
        assert not isinstance(refused, Hold)
        store.settle_hold(hold, Decimal("0.04"))
        assert store.budget_state("key:app", budget, now).spent == Decimal("0.04")
        assert store.held_reservations() == 0
    finally:
        store.close()


def test_a_ledger_from_before_keys_is_upgraded(url: str) -> None:
    store = SqlStore(url)
    with store.engine.begin() as conn:  # back to schema 2: no key tables, no key column
        conn.execute(text("DROP TABLE layer_keys"))
        conn.execute(text("DROP TABLE layer_key_minutes"))
        conn.execute(text("ALTER TABLE layer_requests DROP COLUMN key_name"))
        conn.execute(text("UPDATE layer_schema SET version = 2"))
    store.close()
    store = SqlStore(url)
    try:
        with store.engine.connect() as conn:
            assert conn.scalar(text("SELECT version FROM layer_schema")) == SCHEMA_VERSION
            columns = {c["name"] for c in inspect(conn).get_columns("layer_requests")}
        assert "key_name" in columns
        _, token = create_key(store, "app", ["*"])
        found = find_key(store, token)
        assert found is not None
        assert found.allows("anything")
    finally:
        store.close()


@pytest.mark.parametrize("text_", ["5", "x/daily", "-1/daily", "5/weekly", "nan/daily"])
def test_a_budget_is_amount_slash_period(text_: str) -> None:
    with pytest.raises(ValueError, match="AMOUNT/PERIOD"):
        parse_budget(text_)
