"""layer side by side with raw httpx, the openai SDK and LiteLLM, against a local fake OpenAI.

    python3 run.py bench                      # everything, the full request counts
    python3 run.py bench --quick              # a smoke run: a tenth of the requests
    python3 run.py bench --only httpx,layer --workloads sequential --cold-runs 5

It starts the fake Images API (fake_openai.py) in its own process, runs each contender through
each workload in a fresh worker process (worker.py), one at a time so they never compete for the
cores, measures `Layer()` cold start, `plan()` and layer's own work per request (micro.py), and
prints one markdown table with every figure's ratio to raw httpx, measured in the same run, then
the targets of issue 9. The report is also written to `--out` (default
benchmarks/results/bench.md) with the raw JSON beside it. Targets are shown, never asserted:
absolute numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from clients import CONTENDERS  # noqa: E402
from fake_openai import cpu_seconds  # noqa: E402
from worker import WORKLOADS  # noqa: E402

LABELS = {
    "httpx": "(a) raw httpx",
    "sdk": "(b) openai SDK",
    "sdk-aiohttp": "(b') openai SDK, aiohttp",
    "layer": "(c) layer gate",
    "ledger": "(c') layer gate + SQLite ledger",
    "litellm": "(d) litellm.aimage_generation",
    "router": "(e) litellm Router + fallback",
}
COUNT4_NOTE = {
    "httpx": "4 concurrent n=1 POSTs",
    "sdk": "4 concurrent n=1 images.generate",
    "sdk-aiohttp": "4 concurrent n=1 images.generate",
    "layer": "count=4, split by layer into 4 calls",
    "ledger": "count=4, split by layer into 4 calls",
    "litellm": "4 concurrent n=1 aimage_generation",
    "router": "4 concurrent n=1 Router calls",
}


class FakeServer:
    """fake_openai.py in its own process; `url` ends in /v1."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "fake_openai.py")],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"the fake server did not start (said {line!r})")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def cpu(self) -> float | None:
        """CPU seconds the fake has used so far (None without /proc)."""
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def json_line(output: str) -> dict[str, Any]:
    """The last line of a child's stdout that is a JSON object."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise ValueError("no JSON line")


def run_child(args: Sequence[str], timeout: float) -> dict[str, Any]:
    # as installed code runs: from cached bytecode (the first run writes it), not recompiled
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    try:
        out = subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=HERE,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"no answer within {timeout:.0f} s"}
    try:
        return json_line(out.stdout)
    except ValueError:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": "failed", "reason": f"exit {out.returncode}: {tail}"[:300]}


#: HTTP calls one request of a workload makes (count=4: four; fallback: primary + fallback).
CALLS_PER_REQUEST = {"count4": 4, "fallback": 2}


def fake_cost(cpu: float, workload: str, requests: int, warmup: int) -> float:
    """µs of the fake's CPU per HTTP call over a worker's life (its warm-up included)."""
    served = requests + max(warmup, WORKLOADS[workload].concurrency)
    return round(cpu * 1e6 / (served * CALLS_PER_REQUEST.get(workload, 1)), 1)


#: Figures merged across rounds by their median; peak RSS by its maximum.
MEDIAN_OF = ("median_ms", "p99_ms", "throughput_rps", "cpu_ms_per_request", "wall_s")


def merge(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from a cell's rounds: the median of each figure (one round: that round)."""
    if len(rows) == 1:
        return rows[0]
    measured = [r for r in rows if r.get("status") in ("ok", "errors")]
    if len(measured) < len(rows):  # not installed, or failed: say so, as any round did
        return next(r for r in rows if r not in measured)
    merged = dict(measured[0])
    for key in MEDIAN_OF:
        merged[key] = statistics.median(r[key] for r in measured)
    merged["peak_rss_mib"] = max(r["peak_rss_mib"] for r in measured)
    merged["requests"] = sum(r["requests"] for r in measured)
    merged["requests_per_round"] = max(r["requests"] for r in measured)
    merged["errors"] = sum(r["errors"] for r in measured)
    merged["first_error"] = next((r["first_error"] for r in measured if r["first_error"]), None)
    merged["status"] = "ok" if merged["errors"] == 0 else "errors"
    merged["budget_hit"] = any(r.get("budget_hit") for r in measured)
    costs = [r["fake_cpu_us_per_call"] for r in measured if r.get("fake_cpu_us_per_call")]
    merged["fake_cpu_us_per_call"] = max(costs) if costs else None
    merged["rounds"] = measured
    return merged


def run_worker(
    contender: str, workload: str, url: str, requests: int, warmup: int, budget: float | None
) -> dict[str, Any]:
    args = [
        str(HERE / "worker.py"),
        f"--contender={contender}",
        f"--workload={workload}",
        f"--base-url={url}",
        f"--requests={requests}",
        f"--warmup={warmup}",
    ]
    if budget:
        args.append(f"--budget={budget}")
    result = run_child(args, timeout=(budget or 600) + 120)
    result.setdefault("contender", contender)
    result.setdefault("workload", workload)
    return result


# --- the report ------------------------------------------------------------------------------


def _num(value: float | None, digits: int) -> str:
    if value is None:
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.{min(digits, 1)}f}"
    return f"{value:.{digits}f}"


def _with_ratio(value: float | None, base: float | None, digits: int) -> str:
    if value is None:
        return "–"
    if not base:
        return _num(value, digits)
    return f"{_num(value, digits)} ({value / base:.2f}×)"


#: (key, column, decimals)
METRICS = (
    ("median_ms", "median ms", 3),
    ("p99_ms", "p99 ms", 3),
    ("throughput_rps", "req/s", 0),
    ("cpu_ms_per_request", "CPU ms/req", 3),
    ("peak_rss_mib", "peak RSS MiB", 1),
)


def results_table(results: list[dict[str, Any]], workloads: Sequence[str]) -> list[str]:
    head = ["workload", "contender", "requests", *(label for _, label, _ in METRICS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for workload in workloads:
        rows = [r for r in results if r["workload"] == workload]
        base = next((r for r in rows if r["contender"] == "httpx" and r["status"] == "ok"), None)
        for row in rows:
            label = LABELS[row["contender"]]
            if row["status"] not in ("ok", "errors"):
                reason = row.get("reason", "")
                cells = [workload, label, row["status"], reason] + [""] * (len(METRICS) - 1)
                lines.append("| " + " | ".join(cells) + " |")
                continue
            done = f"{row['requests']:,}"
            if row["errors"]:
                done += f" ({row['errors']} errors: {row['first_error']})"
            if row.get("budget_hit"):
                done += " (budget)"
            cells = [workload, label, done]
            for key, _, digits in METRICS:
                reference = base.get(key) if base is not None and row is not base else None
                cells.append(_with_ratio(row.get(key), reference, digits))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _result(results: list[dict[str, Any]], contender: str, workload: str) -> dict[str, Any] | None:
    for row in results:
        if row["contender"] == contender and row["workload"] == workload and row["status"] == "ok":
            return row
    return None


def targets(
    results: list[dict[str, Any]], cold: dict[str, Any] | None, plans: dict[str, Any] | None
) -> list[str]:
    """Issue 9's targets, each with the figures it compares and a verdict (never an assert)."""
    lines = ["| target | measured | met |", "|---|---|---|"]

    def add(target: str, measured: str, met: bool | None) -> None:
        verdict = "–" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {target} | {measured} | {verdict} |")

    layer_seq = _result(results, "layer", "sequential")
    # against the SDK on the transport layer gives it (b'), and on the SDK's default (b)
    for sdk in ("sdk-aiohttp", "sdk"):
        target = f"layer adds ≤ 0.10 ms median over {LABELS[sdk]} (sequential)"
        sdk_seq = _result(results, sdk, "sequential")
        if layer_seq and sdk_seq:
            extra = layer_seq["median_ms"] - sdk_seq["median_ms"]
            figures = f"{layer_seq['median_ms']:.3f} vs {sdk_seq['median_ms']:.3f}"
            add(target, f"{extra:+.3f} ms ({figures})", extra <= 0.10)
        else:
            add(target, "not measured", None)

    layer_c = _result(results, "layer", "concurrent")
    router_c = _result(results, "router", "concurrent")
    httpx_c = _result(results, "httpx", "concurrent")
    if layer_c and router_c:
        ratio = layer_c["throughput_rps"] / router_c["throughput_rps"]
        add("100 in flight: layer ≥ 2× Router's throughput", f"{ratio:.2f}×", ratio >= 2)
    else:
        add("100 in flight: layer ≥ 2× Router's throughput", "not measured", None)
    if layer_c and httpx_c:
        ratio = layer_c["throughput_rps"] / httpx_c["throughput_rps"]
        add("100 in flight: layer ≥ raw httpx's throughput", f"{ratio:.2f}×", ratio >= 1)
    else:
        add("100 in flight: layer ≥ raw httpx's throughput", "not measured", None)

    layer_f = _result(results, "layer", "fallback")
    add(
        "fallback past a 500ing primary < 5 ms median",
        f"{layer_f['median_ms']:.2f} ms" if layer_f else "not measured",
        layer_f["median_ms"] < 5 if layer_f else None,
    )
    if cold:
        add(
            "`Layer()` with four plugins < 0.25 s cold",
            f"{cold['process_median_s']:.3f} s per process "
            f"({cold['import_and_construct_median_s']:.3f} s import + Layer(), "
            f"{len(cold['plugins'])} plugins)",
            cold["process_median_s"] < 0.25,
        )
    else:
        add("`Layer()` with four plugins < 0.25 s cold", "not measured", None)
    fifty = (plans or {}).get("50 models, fallback")
    add(
        "`plan()` < 50 µs for a 50-model gate",
        f"{fifty['median_us']:.1f} µs median" if fifty else "not measured",
        fifty["median_us"] < 50 if fifty else None,
    )
    for name in ("layer", "ledger"):
        seq = _result(results, name, "sequential")
        who = LABELS[name].split(") ", 1)[1]
        add(
            f"peak RSS after 1,000 requests < 90 MiB ({who}, sequential)",
            f"{seq['peak_rss_mib']:.1f} MiB after "
            f"{seq.get('requests_per_round', seq['requests']):,}"
            if seq
            else "not measured",
            seq["peak_rss_mib"] < 90 if seq else None,
        )
    return lines


def report(
    results: list[dict[str, Any]],
    workloads: Sequence[str],
    cold: dict[str, Any] | None,
    plans: dict[str, Any] | None,
    own: dict[str, Any] | None,
    fake: dict[str, Any],
) -> str:
    cells = (
        f"each cell is the median of {fake['rounds']} rounds, one fresh process each, the "
        "contenders interleaved (requests: the total; peak RSS: the highest)"
        if fake["rounds"] > 1
        else "each cell is one fresh process"
    )
    out = [
        f"# layer benchmark, {fake['started']}",
        "",
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {fake['load']} at the start; "
        f"fake OpenAI on 127.0.0.1:{fake['port']}; {cells}; "
        "(×) is the ratio to (a) raw httpx in the same workload.",
        "",
    ]
    for name in workloads:
        w = WORKLOADS[name]
        warmup = max(fake["warmup"], w.concurrency)
        what = w.description.format(requests=fake["requests"][name])
        out.append(f"- **{name}**: {what} (after {warmup} untimed warm-up requests)")
    out.append("")
    out += results_table(results, workloads)
    costs = [r for r in results if r.get("fake_cpu_us_per_call") and r.get("cpu_ms_per_request")]
    check = fake.get("self_check")
    out.append("")
    if costs:
        worst = max(r["fake_cpu_us_per_call"] for r in costs)
        share = max(
            r["fake_cpu_us_per_call"]
            / (r["cpu_ms_per_request"] * 1000 / CALLS_PER_REQUEST.get(r["workload"], 1))
            for r in costs
        )
        out.append(
            f"The fake used at most {worst:.0f} µs of CPU per HTTP call in any run (warm-up "
            f"included; /proc ticks are 10 ms), at most {share:.0%} of what the client spent "
            "per call in the same run: the clients, never the fake, set the pace."
        )
    if check and check["one_in_flight"].get("requests_per_server_cpu_second"):
        out.append(
            f"Its capacity in this run (`fake_openai.py --self-check`): "
            f"{check['pipelined']['requests_per_second']:,} req/s to pipelined raw-socket "
            f"clients; {check['one_in_flight']['requests_per_server_cpu_second']:,} req per "
            "second of its own CPU to clients with one request in flight per connection."
        )
    if "count4" in workloads:
        out += ["", "count=4: " + "; ".join(f"{k}: {v}" for k, v in COUNT4_NOTE.items()) + "."]
    out += ["", "## Targets (issue 9)", ""]
    out += targets(results, cold, plans)
    if cold:
        out += [
            "",
            "## Cold start",
            "",
            f'`python -c "from layer_core import Layer; Layer()"`, median of {cold["runs"]} '
            f"fresh processes: **{cold['process_median_s'] * 1000:.0f} ms** "
            f"(min {cold['process_min_s'] * 1000:.0f} ms; a bare `python -c pass` takes "
            f"{cold['bare_python_median_s'] * 1000:.0f} ms; import + `Layer()` inside the "
            f"process {cold['import_and_construct_median_s'] * 1000:.0f} ms).",
            "",
            "Plugins: "
            + ", ".join(f"{name} ({status})" for name, status in cold["plugins"])
            + f"; {cold['models']} models.",
            "",
            f"It imported {cold['modules_imported']} modules. Third-party top-level packages: "
            + ", ".join(cold["top_level_third_party"])
            + f"; plus {len(cold['top_level_stdlib'])} standard-library ones. Provider SDKs "
            "or HTTP stacks imported: "
            + (", ".join(cold["sdk_modules_imported"]) or "**none**")
            + ".",
        ]
    if plans:
        out += ["", "## plan()", "", "| gate | min µs | median µs |", "|---|---|---|"]
        out += [f"| {k} | {v['min_us']:.1f} | {v['median_us']:.1f} |" for k, v in plans.items()]
    if own:
        out += [
            "",
            "## layer's own work per request",
            "",
            f"`await layer.aimage(...)` through the sequential workload's gate with the SDK's "
            f"`images.generate` replaced by a stand-in that yields to the loop once and answers "
            f"(no I/O), less the stand-in's own {own['stand_in_us']:.1f} µs: "
            f"**{own['median_us']:.1f} µs** median (min {own['min_us']:.1f} µs, "
            f"{own['requests']:,} requests). With real I/O in between, the same code runs with "
            "colder caches; the sequential rows show that.",
        ]
    rss = [r for r in results if r["status"] in ("ok", "errors")]
    if rss:
        out += ["", "## Peak RSS (MiB, whole worker process, after warm-up + the run)", ""]
        out += ["| contender | " + " | ".join(workloads) + " |", "|---|" + "---|" * len(workloads)]
        for contender in dict.fromkeys(r["contender"] for r in rss):
            cells = []
            for workload in workloads:
                row = _result(results, contender, workload)
                cells.append(f"{row['peak_rss_mib']:.1f}" if row else "–")
            out.append(f"| {LABELS[contender]} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the requests, 5 cold runs")
    parser.add_argument("--requests-scale", type=float, help="multiply every workload's requests")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests per worker")
    parser.add_argument("--cold-runs", type=int, help="fresh processes for Layer() (default 20)")
    parser.add_argument(
        "--only", help=f"comma-separated contenders (default all: {','.join(CONTENDERS)})"
    )
    parser.add_argument(
        "--workloads", help=f"comma-separated workloads (default all: {','.join(WORKLOADS)})"
    )
    parser.add_argument("--budget", type=float, help="seconds per worker before it stops early")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every cell N times, interleaved; report the median of each figure",
    )
    parser.add_argument(
        "--no-micro", action="store_true", help="skip cold start, plan() and the own-work timing"
    )
    parser.add_argument(
        "--out", type=Path, default=HERE / "results" / "bench.md", help="report file (markdown)"
    )
    args = parser.parse_args(argv)
    if args.workloads == "outage":  # issue 16's outage workload: outage.py, its own report
        import outage

        requests = max(1, round(60 * (args.requests_scale or (0.1 if args.quick else 1.0))))
        only = [c for c in (args.only or "layer,router,floor").split(",") if c in outage.CONTENDERS]
        rows = outage.run_all(only, requests, 2.0, min(10, requests // 2), list(outage.SCENARIOS))
        text = outage.report(rows, requests, 2.0, min(10, requests // 2))
        print(text)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        return 0
    scale = args.requests_scale or (0.1 if args.quick else 1.0)
    cold_runs = args.cold_runs or (5 if args.quick else 20)
    contenders = args.only.split(",") if args.only else list(CONTENDERS)
    workloads = args.workloads.split(",") if args.workloads else list(WORKLOADS)
    for name in contenders:
        if name not in CONTENDERS:
            parser.error(f"unknown contender {name!r} (known: {', '.join(CONTENDERS)})")
    for name in workloads:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)})")
    if "httpx" not in contenders:
        print("bench: without httpx there is no baseline; ratios are left out", file=sys.stderr)

    counts = {name: max(1, round(WORKLOADS[name].requests * scale)) for name in workloads}
    meta: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "warmup": args.warmup,
        "requests": counts,
        "rounds": args.rounds,
    }
    server = FakeServer()
    meta["port"] = server.port
    results: list[dict[str, Any]] = []
    try:
        # one tiny untimed run each, so every contender's bytecode is cached before it is measured
        for contender in contenders:
            run_worker(contender, workloads[0], server.url, 1, 1, None)
        for workload in workloads:
            requests = counts[workload]
            rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
            for number in range(1, args.rounds + 1):
                for contender in contenders:  # interleaved, so load drift hits everyone alike
                    started = time.perf_counter()
                    print(
                        f"bench: {workload} × {contender} ({requests:,} requests"
                        f"{f', round {number}' if args.rounds > 1 else ''})...",
                        file=sys.stderr,
                    )
                    cpu_before = server.cpu()
                    row = run_worker(
                        contender, workload, server.url, requests, args.warmup, args.budget
                    )
                    cpu_after = server.cpu()
                    if cpu_before is not None and cpu_after is not None and row.get("requests"):
                        row["fake_cpu_us_per_call"] = fake_cost(
                            cpu_after - cpu_before, workload, row["requests"], args.warmup
                        )
                    rounds[contender].append(row)
                    print(
                        f"bench:   {row['status']}, {time.perf_counter() - started:.1f} s",
                        file=sys.stderr,
                    )
            results += [merge(rows) for rows in rounds.values()]
    finally:
        server.stop()
    cold = plans = own = None
    if not args.no_micro:
        print("bench: the fake's own capacity...", file=sys.stderr)
        fake_py = str(HERE / "fake_openai.py")
        pipelined = run_child([fake_py, "--self-check", "--seconds=2"], timeout=120)
        one = run_child(
            [fake_py, "--self-check", "--seconds=2", "--depth=1", "--connections=16"], timeout=120
        )
        if "requests_per_second" in pipelined and "requests_per_second" in one:
            meta["self_check"] = {"pipelined": pipelined, "one_in_flight": one}
        print(f"bench: Layer() cold start × {cold_runs}...", file=sys.stderr)
        cold = run_child([str(HERE / "micro.py"), "cold", f"--runs={cold_runs}"], timeout=600)
        if "process_median_s" not in cold:
            print(f"bench: cold start failed: {cold}", file=sys.stderr)
            cold = None
        print("bench: plan()...", file=sys.stderr)
        plans = run_child([str(HERE / "micro.py"), "plan"], timeout=600)
        if "status" in plans:
            print(f"bench: plan() timing failed: {plans}", file=sys.stderr)
            plans = None
        print("bench: layer's own work per request...", file=sys.stderr)
        own = run_child([str(HERE / "micro.py"), "own"], timeout=600)
        if "median_us" not in own:
            print(f"bench: own-work timing failed: {own}", file=sys.stderr)
            own = None
    text = report(results, workloads, cold, plans, own, meta)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    raw = {
        "meta": meta,
        "results": results,
        "cold": cold,
        "plan": plans,
        "own": own,
        "scale": scale,
    }
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=2), encoding="utf-8")
    print(
        f"bench: written to {args.out} (and {args.out.with_suffix('.json').name})", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
