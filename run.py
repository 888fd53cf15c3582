#!/usr/bin/env python3
"""Set up the development environment (if needed) and run a command in it.

    python3 run.py layer image "A cozy coffee shop interior"    # the main job, offline
    python3 run.py test                                           # every test
    python3 run.py check                                          # lint, format, types
    python3 run.py bench [--quick]                                # side-by-side benchmark
    python3 run.py <any command>                                  # e.g. python, pytest, layer

Needs only python3 and pip: it installs uv into ./.bootstrap, and uv builds ./.venv from
uv.lock with this same interpreter (it never downloads a Python).
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
BOOTSTRAP = ROOT / ".bootstrap"
#: The benchmark's own uv project and environment (LiteLLM's pins stay out of ./.venv).
BENCH = ROOT / "benchmarks"
UV_VERSION = "0.13.9"

#: The test command: every package's tests, on both cores.
TEST = ["pytest", "-n", "2", "-p", "no:cacheprovider"]
#: Static checks, as CI runs them.
CHECKS = [
    ["ruff", "check", "."],
    ["ruff", "format", "--check", "."],
    [
        "mypy",
        "layer_core",
        "providers/openai/layer_openai",
        "providers/stability/layer_stability",
        "providers/replicate/layer_replicate",
        "providers/google/layer_google",
        "providers/fal/layer_fal",
        "examples/layer-acme/layer_acme",
    ],
]


def uv() -> Path:
    exe = BOOTSTRAP / "bin" / "uv"
    if not exe.exists():
        print(f"run.py: installing uv {UV_VERSION} into {BOOTSTRAP.name}/", file=sys.stderr)
        venv.create(BOOTSTRAP, with_pip=True)
        subprocess.run(
            [BOOTSTRAP / "bin" / "python", "-m", "pip", "install", "-q", f"uv=={UV_VERSION}"],
            check=True,
        )
    return exe


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["UV_PYTHON"] = sys.executable
    env.setdefault("UV_PROJECT_ENVIRONMENT", str(ROOT / ".venv"))
    return env


def sync(env: dict[str, str]) -> None:
    subprocess.run(
        [uv(), "sync", "--all-packages", "--all-extras", "--locked", "--quiet"],
        cwd=ROOT,
        env=env,
        check=True,
    )


def run(command: list[str], env: dict[str, str], *, here: bool = False) -> int:
    """Run `command` in the environment, from the repo root (or the caller's folder if `here`)."""
    return subprocess.run(
        [uv(), "run", "--project", ROOT, "--no-sync", *command],
        cwd=None if here else ROOT,
        env=env,
    ).returncode


def bench(argv: list[str]) -> int:
    """Sync benchmarks/.venv from benchmarks/uv.lock (with the `bench` extra), run bench.py."""
    env = environment()
    env["UV_PROJECT_ENVIRONMENT"] = str(BENCH / ".venv")
    subprocess.run(
        [uv(), "sync", "--project", BENCH, "--extra", "bench", "--locked", "--quiet"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    return subprocess.run(
        [uv(), "run", "--project", BENCH, "--no-sync", "python", BENCH / "bench.py", *argv],
        cwd=ROOT,
        env=env,
    ).returncode


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "bench":
        return bench(argv[1:])
    env = environment()
    sync(env)
    if argv[0] == "test":
        return run([*TEST, *argv[1:]], env)
    if argv[0] == "check":
        return max(run(command, env) for command in CHECKS)
    return run(argv, env, here=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
