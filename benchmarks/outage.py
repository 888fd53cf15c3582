"""The outage workload (issue 16): the primary hangs, 500s or 429s (Retry-After: 30).

    python benchmarks/outage.py                     # every scenario, 60 requests each
    python benchmarks/outage.py --requests 6 --timeout 0.3 --only layer,floor

Two fakes (fake_openai.py): the primary with `--fault`, the fallback answering normally.
Contenders: layer (a gate whose primary is dall-e-3 on one deployment, fallback dall-e-3 on the
other, per-attempt timeout 2 s, ledger off), LiteLLM's Router (two deployments in one model
group, its default cooldowns), and the floor (the fallback alone, openai SDK). Each cell runs in
its own process with fresh fakes, so no state (breaker, cooldown, hit count) leaks between cells.
Columns: hits on the dead primary (counted by the fake), p50, p99, wall time, and p50 of the
requests after the first `--after` (once a breaker should have opened).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from clients import API_KEY, PROMPT, NotInstalled, _import_litellm  # noqa: E402

MODEL = "dall-e-3"
SCENARIOS = {  # name: (fault, in flight)
    "hang, sequential": ("hang", 1),
    "hang, 10 in flight": ("hang", 10),
    "500, sequential": ("500", 1),
    "500, 10 in flight": ("500", 10),
    "429 Retry-After: 30, sequential": ("429", 1),
    "429 Retry-After: 30, 10 in flight": ("429", 10),
}
CONTENDERS = ("layer", "router", "floor")
LABELS = {
    "layer": "layer (two deployments, gate defaults)",
    "router": "LiteLLM Router (default cooldowns)",
    "floor": "floor (fallback alone, openai SDK)",
}
#: Where the breaker's thresholds go once layer has one (None: its defaults).
LAYER_HEALTH: dict[str, Any] | None = None


class Fake:
    def __init__(self, fault: str | None = None) -> None:
        args = [sys.executable, str(HERE / "fake_openai.py")]
        if fault:
            args.append(f"--fault={fault}")
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def hits(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as reply:
            return int(json.loads(reply.read())["hits"])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def layer_config(primary: str, fallback: str, timeout: float) -> dict[str, Any]:
    gate: dict[str, Any] = {
        "model": f"{MODEL}@openai",
        "fallback_models": [f"{MODEL}@openai-b"],
        "routing_strategy": "fallback",
        "timeout": timeout,
    }
    config: dict[str, Any] = {
        "ledger": False,
        "plugins": {"load": ["openai"], "openai": {"base_url": primary, "api_key": API_KEY}},
        "providers": {"openai-b": {"plugin": "openai", "base_url": fallback, "api_key": API_KEY}},
        "gates": {"outage": gate},
    }
    if LAYER_HEALTH is not None:
        config["health"] = LAYER_HEALTH
    return config


async def _contender(name: str, primary: str, fallback: str, timeout: float) -> Any:
    """An async `call()` making one request, and an async `close()`."""
    if name == "layer":
        from layer_core import Layer

        layer = Layer(layer_config(primary, fallback, timeout))

        async def call() -> None:
            await layer.aimage("outage", {"prompt": PROMPT})

        async def close() -> None:
            await layer.aclose()
            layer.close()

        return call, close
    if name == "router":
        litellm = _import_litellm()
        import openai

        # LiteLLM sets max_retries = 2 on the SDK clients it builds (see clients.py): with two
        # URLs one `client=` cannot serve both deployments, so in this process (the router's cell
        # only) every SDK client keeps max_retries at 0, as in the other rows.
        openai.AsyncOpenAI.max_retries = property(lambda self: 0, lambda self, value: None)  # type: ignore[assignment]

        def deployment(url: str, order: int) -> dict[str, Any]:
            return {
                "model_name": "outage",
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": url,
                    "api_key": API_KEY,
                    "timeout": timeout,
                    "max_retries": 0,
                    "order": order,  # the primary first while it is healthy, as layer's gate
                },
            }

        router = litellm.Router(
            model_list=[deployment(primary, 1), deployment(fallback, 2)],
            num_retries=0,
            # the failing deployment's error is retried on the other one in the group
            fallbacks=[],
            timeout=timeout,
        )

        async def call() -> None:
            await router.aimage_generation(model="outage", prompt=PROMPT, n=1)

        async def close() -> None:
            pass

        return call, close
    import openai

    sdk = openai.AsyncOpenAI(base_url=fallback, api_key=API_KEY, max_retries=0, timeout=timeout)

    async def call() -> None:
        await sdk.images.generate(model=MODEL, prompt=PROMPT, n=1)

    return call, sdk.close


async def _run(name: str, primary: str, fallback: str, requests: int, flight: int, timeout: float):
    # untimed warm-up on a contender whose both endpoints are the healthy fallback: imports and
    # first connections are paid before the run, and the measured contender starts with no state
    call, close = await _contender(name, fallback, fallback, timeout)
    await call()
    await close()
    call, close = await _contender(name, primary, fallback, timeout)
    times: list[float] = []
    errors: list[str] = []
    queue = iter(range(requests))

    async def lane() -> None:
        for _ in queue:
            started = time.perf_counter()
            try:
                await call()
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
            times.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(flight)))
    wall = time.perf_counter() - started
    await close()
    return times, errors, wall


def cell(name: str, fault: str, flight: int, requests: int, timeout: float, after: int) -> dict:
    primary, fallback = Fake(fault), Fake()
    try:
        try:
            times, errors, wall = asyncio.run(
                _run(name, primary.url, fallback.url, requests, flight, timeout)
            )
        except NotInstalled as exc:
            return {"status": "not installed", "reason": str(exc)}
        hits = primary.hits()
    finally:
        primary.stop()
        fallback.stop()
    later = times[after:] or times
    return {
        "status": "ok" if not errors else "errors",
        "requests": requests,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "primary_hits": hits,
        "p50_s": statistics.median(times),
        "p99_s": sorted(times)[min(len(times) - 1, round(0.99 * (len(times) - 1)))],
        "p50_after_s": statistics.median(later),
        "after": after,
        "wall_s": wall,
    }


def run_all(
    contenders: list[str], requests: int, timeout: float, after: int, scenarios: list[str]
) -> list[dict[str, Any]]:
    rows = []
    for scenario in scenarios:
        fault, flight = SCENARIOS[scenario]
        for name in contenders:
            print(f"outage: {scenario} × {name}...", file=sys.stderr)
            args = [
                sys.executable, str(Path(__file__)), "--cell", name, f"--fault={fault}",
                f"--flight={flight}", f"--requests={requests}", f"--timeout={timeout}",
                f"--after={after}",
            ]  # fmt: skip
            out = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=HERE)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
            row = (
                json.loads(lines[-1])
                if lines
                else {"status": "failed", "reason": (out.stderr.strip().splitlines() or ["?"])[-1]}
            )
            row.update(scenario=scenario, contender=name)
            rows.append(row)
    return rows


def report(rows: list[dict[str, Any]], requests: int, timeout: float, after: int) -> str:
    out = [
        "## Outage: the primary hangs, 500s or 429s (issue 16)",
        "",
        f"{requests} requests per cell, per-attempt timeout {timeout:g} s; primary dall-e-3 on "
        "one fake, fallback dall-e-3 on another. Hits: requests the dead primary received "
        f"(counted by its fake). p50 after: the median of the requests after the first {after}, "
        "once a breaker should be open; the goal is layer's within 1.5× of the floor's in a hang.",
        "",
        "| scenario | contender | hits on the dead primary | p50 s | p99 s | wall s "
        f"| p50 after {after} s | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("status") not in ("ok", "errors"):
            out.append(
                f"| {r['scenario']} | {LABELS[r['contender']]} | {r.get('status')}: "
                f"{r.get('reason', '')} | | | | | |"
            )
            continue
        hits = "–" if r["contender"] == "floor" else f"{r['primary_hits']} of {r['requests']}"
        out.append(
            f"| {r['scenario']} | {LABELS[r['contender']]} | {hits} | {r['p50_s']:.4f} "
            f"| {r['p99_s']:.4f} | {r['wall_s']:.2f} | {r['p50_after_s']:.4f} | {r['errors']} |"
        )
    floors = {r["scenario"]: r for r in rows if r["contender"] == "floor" and "p50_after_s" in r}
    for r in rows:
        scenario = r["scenario"]
        if r["contender"] == "layer" and "p50_after_s" in r and scenario.startswith("hang"):
            if scenario not in floors:
                continue
            ratio = r["p50_after_s"] / floors[scenario]["p50_after_s"]
            out.append("")
            out.append(
                f"Goal, {scenario}: layer's p50 after {after} = {ratio:.1f}× the floor's "
                f"(target ≤ 1.5×): {'met' if ratio <= 1.5 else 'not met'}."
            )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per attempt")
    parser.add_argument("--after", type=int, default=10, help="p50 of the requests after these")
    parser.add_argument("--only", help=f"comma-separated contenders ({','.join(CONTENDERS)})")
    parser.add_argument("--cell", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--fault", choices=("hang", "500", "429"), help=argparse.SUPPRESS)
    parser.add_argument("--flight", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        print(json.dumps(cell(args.cell, args.fault, args.flight, args.requests, args.timeout,
                              args.after)))  # fmt: skip
        return 0
    contenders = args.only.split(",") if args.only else list(CONTENDERS)
    rows = run_all(contenders, args.requests, args.timeout, args.after, list(SCENARIOS))
    print(report(rows, args.requests, args.timeout, args.after))
    return 0


if __name__ == "__main__":
    sys.exit(main())
