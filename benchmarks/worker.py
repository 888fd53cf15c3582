"""Run ONE contender through ONE workload in this (fresh) process; print one JSON line.

    python benchmarks/worker.py --contender layer --workload sequential \\
        --base-url http://127.0.0.1:PORT/v1 [--requests N] [--warmup N] [--budget SECONDS]

A fresh process per contender and workload, so peak RSS and CPU belong to that contender alone.
It sets the contender up (imports, clients), warms up, then times every request with
`perf_counter_ns` (latency), the whole run (throughput) and `process_time` (client CPU, every
thread of the process), and reads the peak RSS (`ru_maxrss`) at the end. `--budget` stops
issuing requests after that many seconds of the measured run (the JSON says how many were done).
A contender whose package is missing prints `{"status": "not installed", ...}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from clients import CONTENDERS, Contender, NotInstalled, make


@dataclass(frozen=True)
class Workload:
    requests: int
    concurrency: int
    images: int
    """images each request must return"""
    description: str
    """what one run does, with `{requests}` for the number of requests"""


WORKLOADS: dict[str, Workload] = {
    "sequential": Workload(1000, 1, 1, "{requests:,} sequential requests, n=1 on dall-e-2"),
    "concurrent": Workload(5000, 100, 1, "{requests:,} requests, 100 in flight, n=1 on dall-e-2"),
    "count4": Workload(
        1000, 1, 4, "{requests:,} sequential requests for count=4 on dall-e-3 (one image per call)"
    ),
    "fallback": Workload(
        1000, 1, 1, "{requests:,} sequential requests, the primary answers 500, dall-e-2 serves"
    ),
}
KEYS = (
    "status",
    "contender",
    "workload",
    "requests",
    "errors",
    "first_error",
    "concurrency",
    "wall_s",
    "throughput_rps",
    "median_ms",
    "p99_ms",
    "cpu_ms_per_request",
    "peak_rss_mib",
    "budget_hit",
)


def request_for(contender: Contender, workload: str) -> Callable[[], Awaitable[int]]:
    if workload == "count4":
        return contender.count4
    if workload == "fallback":
        return contender.fallback
    return contender.single


async def drive(
    call: Callable[[], Awaitable[int]],
    *,
    requests: int,
    concurrency: int,
    images: int,
    deadline: float | None,
) -> tuple[list[int], int, str | None, bool]:
    """Run `requests` calls with `concurrency` in flight: (latencies ns, errors, first error,
    whether the deadline cut the run short)."""
    latencies: list[int] = []
    errors = 0
    first_error: str | None = None
    issued = 0
    cut = False

    async def worker() -> None:
        nonlocal issued, errors, first_error, cut
        while issued < requests:
            if deadline is not None and time.perf_counter() >= deadline:
                cut = True
                return
            issued += 1
            start = time.perf_counter_ns()
            try:
                got = await call()
            except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
                got = -1
                if first_error is None:
                    first_error = f"{type(exc).__name__}: {exc}"[:300]
            latencies.append(time.perf_counter_ns() - start)
            if got != images:
                errors += 1
                if first_error is None:
                    first_error = f"got {got} image(s), expected {images}"

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, first_error, cut


def p99(values: list[int]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


async def measure(
    name: str, workload_name: str, base_url: str, requests: int, warmup: int, budget: float | None
) -> dict[str, Any]:
    workload = WORKLOADS[workload_name]
    try:
        contender = await make(name, base_url)
    except NotInstalled as exc:
        return {
            "status": "not installed",
            "contender": name,
            "workload": workload_name,
            "reason": str(exc),
        }
    try:
        call = request_for(contender, workload_name)
        if warmup:
            await drive(
                call,
                requests=max(warmup, workload.concurrency),
                concurrency=workload.concurrency,
                images=workload.images,
                deadline=None,
            )
        await contender.settled()
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        latencies, errors, first_error, cut = await drive(
            call,
            requests=requests,
            concurrency=workload.concurrency,
            images=workload.images,
            deadline=wall0 + budget if budget else None,
        )
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
    finally:
        await contender.aclose()
    done = len(latencies)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "status": "ok" if errors == 0 else "errors",
        "contender": name,
        "workload": workload_name,
        "requests": done,
        "errors": errors,
        "first_error": first_error,
        "concurrency": workload.concurrency,
        "wall_s": round(wall, 4),
        "throughput_rps": round(done / wall, 1) if wall > 0 else None,
        "median_ms": round(statistics.median(latencies) / 1e6, 4) if latencies else None,
        "p99_ms": round(p99(latencies) / 1e6, 4) if latencies else None,
        "cpu_ms_per_request": round(cpu * 1000 / done, 4) if done else None,
        "peak_rss_mib": round(rss_kib / 1024, 1),
        "budget_hit": cut,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contender", required=True, choices=CONTENDERS)
    parser.add_argument("--workload", required=True, choices=sorted(WORKLOADS))
    parser.add_argument("--base-url", required=True, help="the fake's URL, ending in /v1")
    parser.add_argument("--requests", type=int, help="default: the workload's own count")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests first")
    parser.add_argument("--budget", type=float, help="stop issuing requests after SECONDS")
    args = parser.parse_args(argv)
    requests = args.requests or WORKLOADS[args.workload].requests
    result = asyncio.run(
        measure(args.contender, args.workload, args.base_url, requests, args.warmup, args.budget)
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
