"""A ledger whose database goes away never costs an image: records wait in a spool.

SQLite: another connection holds the write lock (as a stuck process or a full disk would stop
writes). PostgreSQL: a private throwaway server, SIGKILLed mid-run and started again; the
shared server is never touched.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from layer_core import (
    GenerationCall,
    ImageOutput,
    ImageResponse,
    Layer,
    LedgerUnavailable,
)
from layer_core.ledger import Ledger
from layer_core.ledger.spool import decode, encode
from layer_core.testing import fake_images
from tests.helpers import layer_with, two_model_provider
from tests.ledger_backends import LedgerHooks, PrivateCluster, run_worker


def spooled_lines(data_home: Path) -> list[str]:
    return [
        line
        for file in sorted((data_home / "layer" / "spool").rglob("*.jsonl"))
        for line in file.read_text().splitlines()
        if line.strip()
    ]


@pytest.fixture
def locked_sqlite(tmp_path: Path) -> tuple[str, Path]:
    """A SQLite ledger URL (short lock timeout) and its file."""
    path = tmp_path / "ledger.sqlite"
    return f"sqlite:///{path}?timeout=0.2", path


def test_records_wait_in_the_spool_while_sqlite_is_locked_and_appear_after(
    locked_sqlite: tuple[str, Path], tmp_path: Path
) -> None:
    url, path = locked_sqlite
    hooks = LedgerHooks()
    acme = two_model_provider()
    layer = layer_with(
        acme, gates={"g": {"model": "primary"}}, ledger=url, plugins=[hooks], store_prompts=False
    )
    first = layer.image("g", {"prompt": "before"})
    assert layer.costs().requests == 1

    blocker = sqlite3.connect(path)
    blocker.execute("BEGIN IMMEDIATE")  # nobody else can write now
    try:
        during = [layer.image("g", {"prompt": f"during {i}"}, metadata={"n": i}) for i in range(5)]
        assert all(len(r.images) == 1 for r in during)
        assert layer.ledger is not None
        layer.ledger.flush()
        assert sum(count for _, count in hooks.errors) == 5
        assert all("database is locked" in error for error, _ in hooks.errors)
        lines = spooled_lines(tmp_path / "data")
        assert sorted(json.loads(line)["id"] for line in lines) == sorted(r.id for r in during)
        assert not any("during" in line for line in lines)  # prompts stay out of the spool too
        assert layer.costs().requests == 1  # reads still work; the 5 are not written yet
    finally:
        blocker.rollback()
        blocker.close()

    report = layer.costs()
    layer.close()
    assert report.requests == 6
    assert report.total == sum((r.cost_exact for r in [first, *during]), Decimal(0))
    assert spooled_lines(tmp_path / "data") == []


def test_a_process_that_exits_while_the_database_is_down_leaves_its_records_to_the_next(
    locked_sqlite: tuple[str, Path], tmp_path: Path
) -> None:
    url, path = locked_sqlite
    Layer({"ledger": url}, load_entry_points=False, environ={}).costs()  # create the schema
    blocker = sqlite3.connect(path)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        out = run_worker("record", url, str(tmp_path / "calls"), "4")
        assert out.returncode == 0, out.stderr
        assert len(spooled_lines(tmp_path / "data")) == 4
    finally:
        blocker.rollback()
        blocker.close()
    costs = json.loads(out.stdout.splitlines()[-1])["costs"]

    layer = Layer({"ledger": url}, load_entry_points=False, environ={})
    report = layer.costs(by="gate")
    layer.close()
    assert [(r.group["gate"], r.requests) for r in report.rows] == [("free", 4)]
    assert report.total == sum((Decimal(c) for c in costs), Decimal(0))
    assert spooled_lines(tmp_path / "data") == []


@pytest.fixture
def private_postgres() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_killing_postgres_mid_run_returns_every_image_and_loses_no_record(
    private_postgres: PrivateCluster, tmp_path: Path
) -> None:
    cluster = private_postgres
    hooks = LedgerHooks()
    in_flight = asyncio.Event()
    killed = asyncio.Event()

    async def waits_for_the_kill(call: GenerationCall) -> list[ImageOutput]:
        in_flight.set()
        await killed.wait()
        return fake_images(call)

    acme = two_model_provider({"backup": [waits_for_the_kill]})
    gates = {
        "g": {"model": "primary"},
        # reserved while the database is up, settled after it died
        "capped": {"model": "backup", "budget": {"amount": "1", "period": "daily"}},
    }
    layer = layer_with(acme, gates=gates, ledger=cluster.url, plugins=[hooks])

    async def run() -> list[ImageResponse]:
        responses = [await layer.aimage("g", {"prompt": f"up {i}"}) for i in range(10)]
        held = asyncio.create_task(layer.aimage("capped", {"prompt": "held"}))
        await in_flight.wait()
        await asyncio.to_thread(cluster.kill)
        killed.set()
        responses.append(await held)
        down = await asyncio.gather(
            *(layer.aimage("g", {"prompt": f"down {i}"}) for i in range(10))
        )
        responses.extend(down)
        assert layer.ledger is not None
        await asyncio.to_thread(layer.ledger.flush)
        with pytest.raises(LedgerUnavailable):  # no budget check without the database
            await layer.aimage("capped", {"prompt": "blocked"})
        await asyncio.to_thread(cluster.start)
        return responses

    responses = asyncio.run(run())
    assert [len(r.images) for r in responses] == [1] * 21
    assert hooks.errors
    assert sum(count for _, count in hooks.errors) >= 11

    report = layer.costs(by=["gate", "status"])
    assert layer.ledger is not None
    state = layer.ledger.budget_state(layer.gates()["capped"], responses[10].created)
    held = layer.ledger.store().held_reservations()
    layer.close()
    assert [(r.group["gate"], r.group["status"], r.requests, r.cost) for r in report.rows] == [
        ("capped", "failed", 1, Decimal(0)),  # the one refused while its budget was unknown
        ("capped", "ok", 1, Decimal("0.01")),
        ("g", "ok", 20, Decimal("0.80")),
    ]
    assert report.total == sum((r.cost_exact for r in responses), Decimal(0))
    assert state.spent == Decimal("0.01")  # the replayed record settled its reservation
    assert held == 0
    assert spooled_lines(tmp_path / "data") == []


#: A spooled record as the version before typed spool lines wrote it: `+00:00` times, exact
#: amounts as text, the hold it settles beside it.
EARLIER_LINE = (
    '{"id":"img_earlier","created":"2026-11-30T12:00:00+00:00","gate_id":"g",'
    '"model_requested":"m","model_used":"m","provider":"acme","requested":1,"delivered":1,'
    '"cost":"0.04","latency_ms":12.5,"status":"ok","error":null,"meta":{"team":"a"},'
    '"attempts":[{"model":"m","provider":"acme","outcome":"ok","requested":1,"delivered":1,'
    '"latency":12.5}],"prompt":null,"hold":{"id":"h1","gate_id":"g","period":"daily",'
    '"period_start":"2026-11-30T00:00:00+00:00","amount":"0.04",'
    '"expires":"2026-11-30T12:05:00+00:00","limit":"1.00","spent":"0","over":false}}'
)


def test_records_spooled_by_an_earlier_version_are_written_after_an_upgrade(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "123-earlier.jsonl").write_text(EARLIER_LINE + '\n{"id":"cut short\n')
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}", spool_dir=spool)
    try:
        (record,) = ledger.records()
    finally:
        ledger.close()
    assert (record.id, record.cost, record.latency) == ("img_earlier", Decimal("0.04"), 12.5)
    assert record.created == datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert record.metadata == {"team": "a"}
    assert [a.latency for a in record.attempts] == [12.5]
    assert list(spool.glob("*.jsonl")) == []  # replayed (the cut line skipped) and removed


def test_a_spool_line_reads_back_as_the_record_it_was() -> None:
    now = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    record = decode(EARLIER_LINE)
    assert record.hold is not None
    assert record.hold.amount == Decimal("0.04")
    assert record.hold.period_start == datetime(2026, 11, 30, tzinfo=UTC)
    assert decode(encode(record)) == record
    again = replace(record, created=now, error="x", prompt="p", hold=None, attempts=())
    assert decode(encode(again)) == again
    with pytest.raises(ValueError, match="gate_id"):
        decode('{"id": "no other field"}')
