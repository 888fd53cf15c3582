"""A fleet: three `layer serve` processes on one PostgreSQL ledger, behind no balancer but the
test's own round robin. A gate budget holds across them to the cent, and a killed instance loses
no record of a request it served. (PostgreSQL is mandatory under LAYER_REQUIRE_POSTGRES=1.)"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.gateway import Serving, openai_fake, write_config
from tests.ledger_backends import postgres_schema

INSTANCES = 3
GATES: dict[str, dict[str, Any]] = {
    # DALL·E 3 standard 1024x1024 is $0.04 an image: a $1.00 budget is 25 of them
    gate: {
        "model": "dall-e-3",
        "routing_strategy": "single",
        "budget": {"amount": "1.00", "period": "daily"},
    }
    for gate in ("fleet", "killed", "drained")
}


class Fleet:
    def __init__(self, serving: Serving, url: str, key: str) -> None:
        self.serving = serving
        self.ledger_url = url
        self.key = key

    async def requests(
        self, gate: str, count: int, *, prompt: str = "a fox", on_reply: Any = None
    ) -> list[httpx.Response | Exception]:
        """`count` requests at once, spread round robin over the instances."""
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:

            async def one(i: int) -> httpx.Response | Exception:
                url = self.serving.urls[i % len(self.serving.urls)]
                try:
                    reply = await client.post(
                        f"{url}/v3/image",
                        json={"gateId": gate, "data": {"prompt": prompt}},
                        headers={"authorization": f"Bearer {self.key}"},
                    )
                except httpx.TransportError as exc:
                    return exc
                if on_reply is not None:
                    on_reply(reply)
                return reply

            return await asyncio.gather(*(one(i) for i in range(count)))

    def ledger(self, gate: str) -> list[tuple[str, str, Decimal, str | None]]:
        """(id, status, cost, key) of every request the ledger holds for `gate`."""
        engine = create_engine(self.ledger_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT id, status, cost, key_name FROM layer_requests"
                        " WHERE gate_id = :gate"
                    ),
                    {"gate": gate},
                ).all()
        finally:
            engine.dispose()
        return [(r[0], r[1], Decimal(r[2]), r[3]) for r in rows]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    home: Path = tmp_path_factory.mktemp("fleet")
    with postgres_schema() as url, openai_fake() as fake:
        config = write_config(
            home / "plugins.toml", ledger="sqlite", openai_url=fake.url, gates=GATES
        )
        serving = Serving(config, home, env={"LAYER_LEDGER_URL": url})
        key = serving.create_key("fleet-app", "--gates", "*")
        for _ in range(INSTANCES):
            serving.start("--key-concurrency", "300")
        try:
            yield Fleet(serving, url, key)
        finally:
            serving.stop()


def _served(replies: list[httpx.Response | Exception]) -> list[httpx.Response]:
    return [r for r in replies if isinstance(r, httpx.Response) and r.status_code == 200]


def test_a_gate_budget_holds_across_instances_to_the_cent(fleet: Fleet) -> None:
    replies = asyncio.run(fleet.requests("fleet", 300))
    statuses = [r.status_code if isinstance(r, httpx.Response) else repr(r) for r in replies]
    assert statuses.count(200) == 25, statuses
    assert statuses.count(402) == 275, sorted(set(map(str, statuses)))
    served = _served(replies)
    assert len({r.headers["x-request-id"] for r in served}) == 25
    rows = fleet.ledger("fleet")
    ok = [row for row in rows if row[1] == "ok"]
    assert {row[0] for row in ok} == {r.json()["id"] for r in served}
    assert sum(row[2] for row in rows) == Decimal("1.00")
    assert {row[3] for row in rows} == {"fleet-app"}
    assert sum(1 for row in rows if row[1] == "rejected-by-budget") == 275


def test_killing_an_instance_mid_load_loses_no_record_of_a_served_request(fleet: Fleet) -> None:
    """SIGKILL, with requests in flight: every request answered 200 is in the ledger (a budget
    gate's record is written before its response is sent)."""
    victim = len(fleet.serving.processes) - 1
    answered = 0

    def on_reply(reply: httpx.Response) -> None:
        nonlocal answered
        answered += 1
        if answered == 20:
            fleet.serving.stop(victim, sig=signal.SIGKILL)

    replies = asyncio.run(fleet.requests("killed", 90, prompt="slow: a fox", on_reply=on_reply))
    served = _served(replies)
    assert any(isinstance(r, httpx.TransportError) for r in replies), "killed mid-load"
    assert 0 < len(served) <= 25
    recorded = {row[0]: row for row in fleet.ledger("killed")}
    for reply in served:
        assert recorded[reply.json()["id"]][1] == "ok"
    assert sum(row[2] for row in recorded.values()) == Decimal("0.04") * len(served)
    fleet.serving.urls.pop(victim)
    fleet.serving.processes.pop(victim)


def test_sigterm_drains_requests_in_flight_and_writes_their_records(fleet: Fleet) -> None:
    """SIGTERM while requests are in flight (each takes a second at the provider): the instance
    finishes them, answers them, writes their records, then exits."""
    target = fleet.serving.urls[0]

    async def load() -> list[httpx.Response | Exception]:
        async with httpx.AsyncClient(timeout=60) as client:

            async def one() -> httpx.Response | Exception:
                try:
                    return await client.post(
                        f"{target}/v3/image",
                        json={"gateId": "drained", "data": {"prompt": "slow: a fox"}},
                        headers={"authorization": f"Bearer {fleet.key}"},
                    )
                except httpx.TransportError as exc:
                    return exc

            tasks = [asyncio.create_task(one()) for _ in range(5)]
            await asyncio.sleep(0.5)  # in flight: each waits a second on the provider
            fleet.serving.processes[0].send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks)

    replies = asyncio.run(load())
    assert fleet.serving.stop(0) == [-signal.SIGTERM]
    assert [r.status_code if isinstance(r, httpx.Response) else r for r in replies] == [200] * 5
    recorded = {row[0] for row in fleet.ledger("drained") if row[1] == "ok"}
    assert {r.json()["id"] for r in _served(replies)} <= recorded
    assert "Application shutdown complete" in fleet.serving.log(0)
