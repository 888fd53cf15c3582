"""The measurements that are not a request workload: `Layer()` cold start, `plan()`, imports.

    python benchmarks/micro.py cold [--runs N]   # fresh `python -c "...Layer()"` processes
    python benchmarks/micro.py plan               # plan() for gates of 3 and 50 models
    python benchmarks/micro.py own [--requests N] # layer's own work per request, no I/O

Each prints one JSON object. `cold` runs every child in an empty folder with empty config and
data dirs (so `Layer()` uses the built-in config, the same on every machine), with bytecode
writing allowed (PYTHONDONTWRITEBYTECODE unset) and one untimed run first, so every `.pyc` is
cached and "cold" means a fresh interpreter, not a first-ever import.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any

LAYER_CODE = "from layer_core import Layer; Layer()"
#: Timed inside the child too, so the interpreter's own start-up can be told apart.
TIMED_CHILD = (
    "import time; t = time.perf_counter(); "
    "from layer_core import Layer; Layer(); "
    "print(time.perf_counter() - t)"
)
INSPECT_CHILD = """
import json, sys
before = set(sys.modules)
from layer_core import Layer
layer = Layer()
print(json.dumps({
    "modules": sorted(set(sys.modules) - before),
    "plugins": [[p.name, p.status] for p in layer.plugins()],
    "models": len(layer.models()),
}))
"""
#: Provider SDKs (and their HTTP stacks) that building a Layer must not import.
SDK_MODULES = (
    "openai",
    "replicate",
    "stability_sdk",
    "grpc",
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "litellm",
    "PIL",
)


def child_env(folder: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAYER_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for key in ("OPENAI_API_KEY", "REPLICATE_API_TOKEN", "STABILITY_API_KEY"):
        env.pop(key, None)
    env["XDG_CONFIG_HOME"] = os.path.join(folder, "config")
    env["XDG_DATA_HOME"] = os.path.join(folder, "data")
    return env


def _run(code: str, folder: str, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{code!r} failed: {out.stderr[-2000:]}")
    return wall, out.stdout


def cold(runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="layer-bench-") as folder:
        env = child_env(folder)
        _run(TIMED_CHILD, folder, env)  # compile and cache every .pyc
        _run("pass", folder, env)
        walls, inside, bare = [], [], []
        for _ in range(runs):
            wall, out = _run(TIMED_CHILD, folder, env)
            walls.append(wall)
            inside.append(float(out.strip()))
            bare.append(_run("pass", folder, env)[0])
        _, out = _run(INSPECT_CHILD, folder, env)
    seen = json.loads(out)
    modules: list[str] = seen["modules"]
    top = sorted({m.split(".")[0] for m in modules})
    stdlib = sys.stdlib_module_names
    return {
        "runs": runs,
        "process_median_s": round(statistics.median(walls), 4),
        "process_min_s": round(min(walls), 4),
        "import_and_construct_median_s": round(statistics.median(inside), 4),
        "bare_python_median_s": round(statistics.median(bare), 4),
        "plugins": seen["plugins"],
        "models": seen["models"],
        "modules_imported": len(modules),
        "top_level_third_party": [m for m in top if m not in stdlib and not m.startswith("_")],
        "top_level_stdlib": [m for m in top if m in stdlib or m.startswith("_")],
        "sdk_modules_imported": [m for m in top if m in SDK_MODULES],
    }


def _timings(call: Any) -> dict[str, float]:
    timer = timeit.Timer(call)
    number, _ = timer.autorange()
    per_call = [t / number * 1e6 for t in timer.repeat(repeat=7, number=number)]
    return {"min_us": round(min(per_call), 2), "median_us": round(statistics.median(per_call), 2)}


def plan_timings() -> dict[str, Any]:
    from datetime import date
    from decimal import Decimal

    from layer_core.catalog import Catalog
    from layer_core.gates import Gate
    from layer_core.policy import ProviderState, plan
    from layer_core.schema import ImageData, ImageRequest
    from layer_core.testing.scripted import make_spec

    specs = [
        make_spec(
            f"model-{i:02d}",
            ("alpha", "beta", "gamma")[i % 3],
            sizes=("1024x1024", "1792x1024", "1024x1792") if i % 2 else ("1024x1024",),
            price=Decimal(i % 17 + 1) / 100,
            qualities=("standard", "hd") if i % 4 == 0 else (),
            quality_score=float(i % 100),
        )
        for i in range(50)
    ]
    catalog = Catalog(specs)
    state = ProviderState(today=date(2026, 11, 23))
    ids = [spec.id for spec in specs]
    results: dict[str, Any] = {}
    for label, pool, strategy in (
        ("3 models, fallback", ids[:3], "fallback"),
        ("50 models, fallback", ids, "fallback"),
        ("50 models, cost", ids, "cost"),
    ):
        gate = Gate(
            id="g", model=pool[0], fallback_models=tuple(pool[1:]), routing_strategy=strategy
        )
        request = ImageRequest(gate_id="g", data=ImageData(prompt="a fox", size="1024x1024"))
        result = plan(request, gate, catalog, state)
        assert len(result.candidates) == len(pool), result.rejected
        results[label] = _timings(lambda r=request, g=gate: plan(r, g, catalog, state))
    return results


def own_cost(requests: int = 5000, repeat: int = 7, state: str | None = None) -> dict[str, Any]:
    """layer's own work per request: `await layer.aimage(...)` with an SDK that answers at once.

    The openai SDK's `AsyncImages.generate` is replaced by a coroutine that yields to the event
    loop once (as any real call does, which also lets the loop clear the cancelled timers that
    each attempt's timeout leaves behind) and returns a ready `ImagesResponse`. The same stand-in
    awaited alone is timed too, and subtracted: what is left is layer's work per request (parsing,
    planning, the executor and its timeout, the provider's mapping in and out, the response),
    with no I/O and no SDK. With real I/O in between, the same code runs with colder caches and
    costs more; the sequential workload shows that. `state` puts the live provider state in
    that store (e.g. ``redis://127.0.0.1:6379/0``) instead of this process's memory.
    """
    import asyncio
    from unittest import mock

    from clients import PROMPT, layer_config
    from openai.resources.images import AsyncImages
    from openai.types import ImagesResponse

    from layer_core import Layer

    answer = ImagesResponse.model_validate(
        {"created": 1_700_000_000, "data": [{"b64_json": "iVBORw0KGgo="}]}
    )

    async def at_once(*_args: Any, **_kwargs: Any) -> ImagesResponse:
        await asyncio.sleep(0)
        return answer

    async def timed(call: Callable[[], Awaitable[object]]) -> list[float]:
        for _ in range(requests // 2):
            await call()
        per_request = []
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(requests):
                await call()
            per_request.append((time.perf_counter() - start) / requests * 1e6)
        return per_request

    async def run() -> tuple[list[float], list[float]]:
        config = layer_config("http://127.0.0.1:9/v1")  # never contacted
        layer = Layer({**config, "state": state} if state else config)
        body = {"prompt": PROMPT, "count": 1}
        try:
            through_layer = await timed(lambda: layer.aimage("bench", body))
            response = await layer.aimage("bench", body)
            if response.model != "dall-e-2" or len(response.images) != 1:
                raise RuntimeError(f"the timed request did not answer as expected: {response}")
        finally:
            await layer.aclose()
            layer.close()
        return through_layer, await timed(at_once)

    with mock.patch.object(AsyncImages, "generate", at_once):
        through_layer, alone = asyncio.run(run())
    baseline = statistics.median(alone)
    return {
        "requests": requests * repeat,
        "min_us": round(min(through_layer) - baseline, 2),
        "median_us": round(statistics.median(through_layer) - baseline, 2),
        "stand_in_us": round(baseline, 2),
        "state": state or "memory",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("cold", "plan", "own"))
    parser.add_argument("--runs", type=int, default=20, help="cold: fresh processes")
    parser.add_argument("--requests", type=int, default=5000, help="own: requests per timed run")
    parser.add_argument("--state", help="own: the live state store's URL (default: memory)")
    args = parser.parse_args(argv)
    if args.what == "cold":
        result = cold(args.runs)
    elif args.what == "plan":
        result = plan_timings()
    else:
        result = own_cost(args.requests, state=args.state)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
