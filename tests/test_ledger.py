"""The cost ledger: what each request leaves behind, and the spend queries over it.

Every test here runs twice, on a SQLite file and on the PostgreSQL server (`ledger_url`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from layer_core import (
    AllAttemptsFailed,
    ConfigError,
    ContentRejected,
    ImageResponse,
    Layer,
    LedgerRecord,
    LedgerUnavailable,
    ProviderUnavailable,
    hookimpl,
)
from layer_core.ledger import Ledger
from layer_core.testing import OK, ScriptedProvider, make_spec
from tests.helpers import layer_with, two_model_provider
from tests.ledger_backends import run_worker

TABLES = ("layer_requests", "layer_budget_periods", "layer_budget_reservations")


def table_text(layer: Layer) -> str:
    """Everything the ledger's tables hold, as text."""
    from sqlalchemy import text

    assert layer.ledger is not None
    with layer.ledger.store().engine.connect() as conn:
        return repr([conn.execute(text(f"SELECT * FROM {t}")).all() for t in TABLES])


def test_a_request_is_recorded_with_what_it_asked_what_served_it_and_what_it_cost(
    ledger_url: str,
) -> None:
    acme = two_model_provider({"primary": [ProviderUnavailable("down")]})
    gates = {"g": {"model": "primary", "fallback_models": ["backup"]}}
    with layer_with(acme, gates=gates, ledger=ledger_url) as layer:
        response = layer.image("g", {"prompt": "a lighthouse", "count": 2}, metadata={"user": 7})
        assert layer.ledger is not None
        (record,) = layer.ledger.records()

    assert record.id == response.id
    assert record.gate_id == "g"
    assert record.model_requested == "primary"
    assert (record.model_used, record.provider) == ("backup", "acme")
    assert (record.requested, record.delivered) == (2, 2)
    assert record.cost == response.cost_exact == Decimal("0.02")
    assert isinstance(record.cost, Decimal)
    assert record.latency == pytest.approx(response.latency)
    assert record.status == "ok"
    assert record.error is None
    assert record.metadata == {"user": 7}
    assert [(a.model, a.outcome, a.error) for a in record.attempts] == [
        ("primary", "error", "unavailable"),  # one call per image: primary takes 1 per call
        ("primary", "error", "unavailable"),
        ("backup", "ok", None),
    ]
    assert abs(record.created - datetime.now(UTC)) < timedelta(minutes=5)
    assert record.prompt is None


def test_prompts_are_stored_only_when_the_config_opts_in_and_keys_never(
    ledger_url: str,
) -> None:
    key = "sk-test-KEEP-THIS-OUT-0123456789"
    keyed = ScriptedProvider("acme", [make_spec("m", "acme")], key_env_var="ACME_API_KEY")
    gates = {"g": {"model": "m"}}
    environ = {"ACME_API_KEY": key}
    with layer_with(keyed, gates=gates, ledger=ledger_url, environ=environ) as layer:
        layer.image("g", {"prompt": "secret recipe"})
        assert layer.ledger is not None
        assert layer.ledger.records()[0].prompt is None
        stored = table_text(layer)
    assert "secret recipe" not in stored
    assert key not in stored

    with layer_with(
        keyed, gates=gates, ledger=ledger_url, environ=environ, store_prompts=True
    ) as layer:
        layer.image("g", {"prompt": "public recipe"})
        assert layer.ledger is not None
        assert [r.prompt for r in layer.ledger.records()] == [None, "public recipe"]
        assert key not in table_text(layer)


def test_a_failed_request_records_the_images_it_paid_for(ledger_url: str) -> None:
    acme = two_model_provider({"primary": [OK, ContentRejected("no")]})
    with layer_with(acme, gates={"g": {"model": "primary"}}, ledger=ledger_url) as layer:
        with pytest.raises(AllAttemptsFailed) as failed:
            layer.image("g", {"prompt": "x", "count": 2}, metadata={"feature": "hero"})
        assert layer.ledger is not None
        (record,) = layer.ledger.records()
    assert failed.value.cost == Decimal("0.04")
    assert record.status == "failed"
    assert record.error == "AllAttemptsFailed"
    assert (record.requested, record.delivered) == (2, 1)
    assert record.cost == Decimal("0.04")
    assert record.model_used == "primary"
    assert sorted(a.outcome for a in record.attempts) == ["error", "ok"]


def test_a_request_no_model_can_serve_is_recorded_as_failed(ledger_url: str) -> None:
    acme = two_model_provider(sizes=("1024x1024",))
    with layer_with(acme, gates={"g": {"model": "primary"}}, ledger=ledger_url) as layer:
        with pytest.raises(Exception, match="no model of gate"):
            layer.image("g", {"prompt": "x", "size": "512x512"})
        report = layer.costs(by="status")
    assert [(r.group["status"], r.requests, r.cost) for r in report.rows] == [
        ("failed", 1, Decimal(0))
    ]


def test_cost_totals_match_the_sum_of_the_responses_costs_exactly(ledger_url: str) -> None:
    odd = ScriptedProvider(
        "odd",
        [
            make_spec("thirds", "odd", price="0.167"),
            make_spec("tiny", "odd", price="0.0025", max_images_per_call=4),
        ],
    )
    acme = two_model_provider()
    gates = {
        "hero": {"model": "thirds"},
        "thumbs": {"model": "tiny"},
        "ads": {"model": "primary"},
    }
    with layer_with(odd, acme, gates=gates, ledger=ledger_url) as layer:
        responses = []
        for i in range(7):
            for gate, feature in (("hero", "landing"), ("thumbs", "grid"), ("ads", "landing")):
                responses.append(
                    layer.image(
                        gate, {"prompt": f"p{i}", "count": 1 + i % 3}, metadata={"feature": feature}
                    )
                )
        responses.append(layer.image("thumbs", {"prompt": "untagged"}))

        total = sum((r.cost_exact for r in responses), Decimal(0))
        everything = layer.costs()
        by_gate = layer.costs(by="gate")
        by_feature = layer.costs(by=["gate", "meta.feature"])
        by_model = layer.costs(by=["provider", "model"])
        by_day = layer.costs(by="day")

    assert everything.total == total
    assert [(r.group, r.requests) for r in everything.rows] == [({}, len(responses))]
    assert everything.images == sum(len(r.images) for r in responses)
    for report in (by_gate, by_feature, by_model, by_day):
        assert report.total == total
        assert all(isinstance(row.cost, Decimal) for row in report.rows)
    assert {r.group["gate"]: r.cost for r in by_gate.rows} == {
        gate: sum((r.cost_exact for r in responses if r.gate_id == gate), Decimal(0))
        for gate in gates
    }
    assert [(r.group["gate"], r.group["meta.feature"], r.requests) for r in by_feature.rows] == [
        ("ads", "landing", 7),
        ("hero", "landing", 7),
        ("thumbs", "grid", 7),
        ("thumbs", None, 1),
    ]
    assert {(r.group["provider"], r.group["model"]) for r in by_model.rows} == {
        ("acme", "primary"),
        ("odd", "thirds"),
        ("odd", "tiny"),
    }
    assert [r.group["day"] for r in by_day.rows] == [datetime.now(UTC).date().isoformat()]


def old_record(record_id: str, created: datetime, cost: str, gate: str = "g") -> LedgerRecord:
    return LedgerRecord(
        id=record_id,
        created=created,
        gate_id=gate,
        model_requested="m",
        model_used="m",
        provider="acme",
        requested=1,
        delivered=1,
        cost=Decimal(cost),
        latency=1.0,
        status="ok",
        metadata={"feature": "archive"},
    )


def test_since_and_until_select_a_window_and_day_groups_by_utc_date(ledger_url: str) -> None:
    acme = two_model_provider()
    with layer_with(acme, gates={"g": {"model": "primary"}}, ledger=ledger_url) as layer:
        assert layer.ledger is not None
        layer.ledger.record(old_record("old-1", datetime(2026, 1, 31, 23, 59, tzinfo=UTC), "1.5"))
        layer.ledger.record(old_record("old-2", datetime(2026, 2, 1, 0, 0, tzinfo=UTC), "0.25"))
        layer.image("g", {"prompt": "now"})

        assert layer.costs().total == Decimal("1.79")
        assert layer.costs(since="1h").total == Decimal("0.04")
        assert layer.costs(until="1h").total == Decimal("1.75")
        assert layer.costs(since=date(2026, 2, 1), until="2026-02-02").total == Decimal("0.25")
        assert layer.costs(since=datetime(2026, 1, 31, 23, 59)).total == Decimal("1.79")
        days = layer.costs(by="day", until=date(2026, 3, 1))
    assert [(r.group["day"], r.cost) for r in days.rows] == [
        ("2026-01-31", Decimal("1.5")),
        ("2026-02-01", Decimal("0.25")),
    ]


def test_a_record_is_kept_once_however_often_it_is_written(ledger_url: str) -> None:
    acme = two_model_provider()
    with layer_with(acme, gates={"g": {"model": "primary"}}, ledger=ledger_url) as layer:
        assert layer.ledger is not None
        record = old_record("same", datetime(2026, 1, 5, tzinfo=UTC), "0.5")
        store = layer.ledger.store()
        store.write([record])
        store.write([record, record])
        assert layer.costs().total == Decimal("0.5")


def test_a_recorded_response_is_counted_by_a_query_right_after_it_returns(
    ledger_url: str,
) -> None:
    acme = two_model_provider()
    with layer_with(acme, gates={"g": {"model": "primary"}}, ledger=ledger_url) as layer:
        for expected in range(1, 6):
            layer.image("g", {"prompt": "x"})
            assert layer.costs().requests == expected


def test_many_concurrent_requests_are_all_recorded(ledger_url: str) -> None:
    acme = two_model_provider()
    layer = layer_with(acme, gates={"g": {"model": "backup"}}, ledger=ledger_url)

    async def many() -> list[ImageResponse]:
        responses = await asyncio.gather(
            *(layer.aimage("g", {"prompt": str(i)}) for i in range(300))
        )
        await layer.aclose()
        return responses

    responses = asyncio.run(many())
    report = layer.costs(by="gate")
    layer.close()
    assert report.requests == 300
    assert report.total == sum((r.cost_exact for r in responses), Decimal(0)) == Decimal("3.00")


def test_records_queued_at_exit_are_written_without_close(ledger_url: str, tmp_path: Path) -> None:
    out = run_worker("record", ledger_url, str(tmp_path / "calls"), "3")
    assert out.returncode == 0, out.stderr
    costs = json.loads(out.stdout.splitlines()[-1])["costs"]
    layer = Layer({"ledger": ledger_url}, load_entry_points=False, environ={})
    report = layer.costs(by="gate")
    layer.close()
    assert [(r.group["gate"], r.requests, r.cost) for r in report.rows] == [
        ("free", 3, sum((Decimal(c) for c in costs), Decimal(0)))
    ]


def _open_files(path: Path) -> int:
    """How many of this process's file descriptors are open on `path` or its -wal/-shm files."""
    names = {str(path), f"{path}-wal", f"{path}-shm"}
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += os.readlink(fd) in names
        except OSError:
            continue
    return count


def test_writing_many_batches_holds_one_connection_one_thread_and_a_bounded_wal(
    ledger_url: str, tmp_path: Path
) -> None:
    """The ledger's resources do not grow with the records written: one pooled connection,
    one writer thread, and (SQLite) a WAL that checkpoints instead of growing without end.
    600 small batches leave a 15-25 MB WAL without checkpoints; with them it stays near 4 MB.
    """
    ledger = Ledger(ledger_url)
    store = ledger.store()
    sqlite_file = tmp_path / "ledger.sqlite" if ledger_url.startswith("sqlite") else None
    before = set(threading.enumerate())
    writers: set[threading.Thread] = set()
    try:
        for batch in range(600):
            for i in range(5):
                day = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=batch)
                ledger.record(old_record(f"r{batch}-{i}", day, "0.01"))
            assert ledger.flush()
            writers |= {t for t in threading.enumerate() if t not in before}
            if batch % 100 == 0 and sys.platform == "linux" and sqlite_file is not None:
                assert _open_files(sqlite_file) <= 3  # the database, its WAL and its shm
        assert ledger.store() is store  # one engine for the ledger's life, not one per batch
        pool: Any = store.engine.pool
        assert (pool.checkedin(), pool.checkedout()) == (1, 0)
        assert writers == {ledger._writer._thread}  # one writer thread, started once
        if sqlite_file is not None:
            # SQLite checkpoints at 1,000 pages (~4 MiB); twice that is slack
            assert Path(f"{sqlite_file}-wal").stat().st_size <= 8 * 2**20
        assert ledger.costs().requests == 3000
    finally:
        ledger.close()


def test_a_ledger_from_a_newer_layer_is_refused_with_the_fix(ledger_url: str) -> None:
    from sqlalchemy import update

    from layer_core.ledger.store import schema_version

    acme = two_model_provider()
    with layer_with(acme, gates={"g": {"model": "primary"}}, ledger=ledger_url) as layer:
        assert layer.ledger is not None
        with layer.ledger.store().engine.begin() as conn:
            conn.execute(update(schema_version).values(version=99))
    with (
        layer_with(acme, gates={"g": {"model": "primary"}}, ledger=ledger_url) as layer,
        pytest.raises(LedgerUnavailable, match=r"schema version 99.*upgrade layer-core"),
    ):
        layer.costs()


def test_the_default_ledger_is_a_wal_sqlite_file_in_the_user_data_dir_opened_on_first_use(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data" / "layer" / "ledger.sqlite"
    acme = two_model_provider()
    layer = Layer(
        {"gates": {"g": {"model": "primary"}}},
        plugins=[_plugin(acme)],
        load_entry_points=False,
        environ={},
    )
    assert layer.ledger is not None
    assert not path.exists()  # nothing opened by Layer()
    layer.image("g", {"prompt": "x"})
    assert layer.costs().requests == 1
    layer.close()
    assert path.is_file()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def _plugin(*providers: Any) -> object:
    from layer_core.testing import plugin_for

    return plugin_for(*providers)


def test_an_in_memory_ledger_needs_no_file(tmp_path: Path) -> None:
    acme = two_model_provider()
    with layer_with(acme, gates={"g": {"model": "primary"}}, ledger="memory") as layer:
        layer.image("g", {"prompt": "x"})
        layer.image("g", {"prompt": "y"})
        assert layer.costs().total == Decimal("0.08")
    assert not (tmp_path / "data").exists()


def test_ledger_false_records_nothing_and_says_so_when_asked() -> None:
    acme = two_model_provider()
    with layer_with(acme, gates={"g": {"model": "primary"}}, ledger=False) as layer:
        layer.image("g", {"prompt": "x"})
        assert layer.ledger is None
        with pytest.raises(LedgerUnavailable, match="ledger is off"):
            layer.costs()


def test_LAYER_LEDGER_URL_takes_precedence_over_the_config(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'env.sqlite'}"
    layer = layer_with(
        two_model_provider(), gates={"g": {"model": "primary"}}, environ={"LAYER_LEDGER_URL": url}
    )
    assert layer.ledger is not None
    assert layer.ledger.url == url


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("memory", "sqlite://"),
        ("postgresql://u@db/x", "postgresql+psycopg://u@db/x"),
        ("postgres://u@db/x", "postgresql+psycopg://u@db/x"),
        ("sqlite:////var/x.db", "sqlite:////var/x.db"),
    ],
)
def test_ledger_values_name_a_database(value: str, url: str) -> None:
    from layer_core.ledger import ledger_url

    assert ledger_url(value, {}) == url


@pytest.mark.parametrize("value", ["mysql://x", "ledger.db", True, 3])
def test_a_ledger_value_that_names_no_database_is_a_config_error(value: object) -> None:
    with pytest.raises(ConfigError, match="ledger"):
        Layer({"ledger": value}, load_entry_points=False)


def test_a_database_password_never_shows_in_reprs_or_errors(tmp_path: Path) -> None:
    password = "hunter2-very-secret"
    port = _closed_port()
    seen: list[str] = []

    class Errors:
        @hookimpl
        def on_ledger_error(self, error: LedgerUnavailable) -> None:
            seen.append(str(error))

    acme = two_model_provider()
    budget = {"amount": 1, "enforcement": "block"}
    with layer_with(
        acme,
        gates={"g": {"model": "primary", "budget": budget}},
        ledger=f"postgresql://bob:{password}@127.0.0.1:{port}/nowhere",
        plugins=[Errors()],
    ) as layer:
        with pytest.raises(LedgerUnavailable) as caught:
            layer.image("g", {"prompt": "x"})
        assert password not in repr(layer.ledger)
        assert "bob:***@" in repr(layer.ledger)
    assert password not in str(caught.value)
    assert seen
    assert all(password not in text for text in seen)


def _closed_port() -> int:
    from tests.ledger_backends import free_port

    return free_port()


def test_grouping_on_an_unknown_dimension_is_refused_with_the_choices() -> None:
    acme = two_model_provider()
    with layer_with(acme, gates={"g": {"model": "primary"}}, ledger="memory") as layer:
        with pytest.raises(
            ValueError,
            match=r"gate, model, provider, deployment, day, status, key or meta.<key>",
        ):
            layer.costs(by="colour")
        with pytest.raises(ValueError, match="not a time"):
            layer.costs(since="last tuesday")


def test_a_layer_dropped_without_close_writes_what_it_queued_and_its_writer_ends(
    ledger_url: str,
) -> None:
    import gc

    acme = two_model_provider()

    async def requests() -> threading.Thread | None:
        layer = layer_with(acme, gates={"g": {"model": "primary"}}, ledger=ledger_url)
        for i in range(3):
            await layer.aimage("g", {"prompt": str(i)})
        assert layer.ledger is not None
        return layer.ledger._writer._thread  # the layer goes out of scope here, unclosed

    writer = asyncio.run(requests())
    gc.collect()
    assert writer is not None
    writer.join(timeout=60)
    assert not writer.is_alive()
    with layer_with(acme, gates={}, ledger=ledger_url) as layer:
        assert layer.costs().requests == 3
