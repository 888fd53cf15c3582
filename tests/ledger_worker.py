"""A separate app process for the ledger's cross-process tests.

    python ledger_worker.py race URL CALLS P N   # P app processes, N concurrent requests each
    python ledger_worker.py crash URL CALLS      # dies inside its provider call
    python ledger_worker.py record URL CALLS N   # N requests, then exits without close()

Every app has the same gate `capped` (model `paid`, $0.02/image, $1.00 a day: 50 images) and
`free` (same model, no budget). The provider appends its pid to CALLS on every call, so the test
counts provider calls across processes. Results are printed as JSON lines.

`race` imports everything once, then forks the P app processes while it is still single-threaded
(each builds its own `Layer` and database connections after the fork), so a test pays for one
interpreter start, not P.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import layer_core.ledger
import layer_core.ledger.store
from layer_core import BudgetExceeded, GenerationCall, ImageOutput, Layer
from layer_core.testing import ScriptedProvider, fake_images, make_spec, plugin_for

PRICE = Decimal("0.02")
BUDGET = Decimal("1.00")


def build(url: str, calls: Path, *, crash: bool = False, timeout: float = 120) -> Layer:
    async def generate(call: GenerationCall) -> list[ImageOutput]:
        with calls.open("a") as log:
            log.write(f"{os.getpid()}\n")
        if crash:
            os._exit(3)
        await asyncio.sleep(0.02)  # hold the reservation while others try
        return fake_images(call)

    provider = ScriptedProvider(
        "acme", [make_spec("paid", "acme", price=PRICE)], {"paid": [generate]}
    )
    budget = {"amount": str(BUDGET), "period": "daily", "enforcement": "block"}
    return Layer(
        {
            "ledger": url,
            "gates": {
                # no retry: a reservation then lives the gate's timeout (plus the margin)
                "capped": {"model": "paid", "timeout": timeout, "retries": 0, "budget": budget},
                "free": {"model": "paid"},
            },
        },
        plugins=[plugin_for(provider)],
        load_entry_points=False,
        environ={},
    )


async def run_budget(layer: Layer, count: int) -> dict[str, Any]:
    results = await asyncio.gather(
        *(layer.aimage("capped", {"prompt": f"p{i}"}) for i in range(count)),
        return_exceptions=True,
    )
    served = [r for r in results if not isinstance(r, BaseException)]
    return {
        "served": len(served),
        "refused": sum(isinstance(r, BudgetExceeded) for r in results),
        "other": [repr(r) for r in results if isinstance(r, BaseException)
                  and not isinstance(r, BudgetExceeded)],
        "cost": str(sum((r.cost_exact for r in served), Decimal(0))),
    }  # fmt: skip


def app(url: str, calls: Path, count: int, start: Any, results: Any) -> None:
    """One app process of the race: its own Layer, its own connections."""
    layer = build(url, calls)
    assert layer.ledger is not None
    layer.ledger.store()  # open (and create the schema) before the race starts
    start.wait()
    results.put(asyncio.run(run_budget(layer, count)))
    layer.close()


def race(url: str, calls: Path, processes: int, count: int) -> None:
    if url.startswith("postgresql"):
        import psycopg  # noqa: F401 - imported before forking, not once per process
    context = multiprocessing.get_context("fork")
    start = context.Barrier(processes, timeout=120)
    results = context.Queue()
    apps = [
        context.Process(target=app, args=(url, calls, count, start, results))
        for _ in range(processes)
    ]
    for process in apps:
        process.start()
    for _ in apps:
        print(json.dumps(results.get(timeout=300)), flush=True)
    for process in apps:
        process.join(timeout=60)
    if any(process.exitcode != 0 for process in apps):
        raise SystemExit(f"app exit codes: {[p.exitcode for p in apps]}")


def main(mode: str, url: str, calls: str, *rest: str) -> None:
    if mode == "race":
        race(url, Path(calls), int(rest[0]), int(rest[1]))
    elif mode == "crash":
        layer_core.ledger.RESERVATION_MARGIN = 0.0  # the reservation lives only the gate's timeout
        build(url, Path(calls), crash=True, timeout=1).image("capped", {"prompt": "doomed"})
    elif mode == "record":
        layer = build(url, Path(calls))
        costs = [
            str(layer.image("free", {"prompt": f"p{i}"}).cost_exact) for i in range(int(rest[0]))
        ]
        print(json.dumps({"costs": costs}), flush=True)
        # no close(): the ledger writes what is queued at interpreter exit
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
