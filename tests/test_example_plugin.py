"""examples/layer-acme as an outside author has it: pip-installed into its own environment
(`.venv-acme`, so its entry point never reaches this one), its own tests run there against the
conformance suite, and deliberately broken copies of it fail that suite saying what is wrong."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from layer_core.testing.conformance import ProviderConformance

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "layer-acme"
VENV = ROOT / ".venv-acme"
KEY = ProviderConformance.api_key


@dataclass
class Outcome:
    result: str  # passed | failed | skipped
    message: str


def uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        pytest.fail("needs uv on PATH or in $UV (python3 run.py test provides it)")
    return found


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """One xdist worker builds the environment; the other waits for it."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_environment() -> None:
    """A fresh venv with layer-core[testing] from this checkout, then pip-install the example."""
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    python = str(VENV / "bin" / "python")

    def run(*args: str) -> str:
        done = subprocess.run([uv(), *args], capture_output=True, text=True, env=env, cwd=ROOT)
        assert done.returncode == 0, f"uv {' '.join(args)} failed:\n{done.stderr}"
        return done.stdout

    # the versions this repository locks, so the example is tested against what CI tests
    pins = run(
        "export", "--frozen", "--no-hashes", "--all-extras", "--all-packages",
        "--no-emit-workspace", "--no-dev", "--quiet",
    )  # fmt: skip
    run("venv", "--clear", "--quiet", "--python", sys.executable, str(VENV))
    constraints = VENV / "constraints.txt"
    constraints.write_text(pins)
    install = ("pip", "install", "--quiet", "--python", python, "-c", str(constraints))
    run(*install, "--reinstall-package", "layer-core", f"{ROOT}[testing]")
    run(*install, "--reinstall-package", "layer-acme", f"{EXAMPLE}[test]")


def sources_digest() -> str:
    """What the environment is built from: layer-core, the example package, the lock."""
    digest = hashlib.sha256()
    files = [ROOT / "pyproject.toml", ROOT / "uv.lock", EXAMPLE / "pyproject.toml"]
    files += sorted((ROOT / "layer_core").rglob("*.py"))
    files += sorted((EXAMPLE / "layer_acme").rglob("*.py"))
    for path in files:
        digest.update(f"{path.relative_to(ROOT)}\0".encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def acme_bin() -> Path:
    """`.venv-acme/bin`, rebuilt when layer-core or the example changed (one worker builds)."""
    stamp = VENV / "built-from"
    with locked(ROOT / ".venv-acme.lock"):
        digest = sources_digest()
        if not (stamp.is_file() and stamp.read_text() == digest):
            build_environment()
            stamp.write_text(digest)
    return VENV / "bin"


def run_tests(
    acme_bin: Path, folder: Path, report: Path, *args: str, shadow: Path | None = None
) -> dict[str, Outcome]:
    """Run pytest in the example's environment, as its author would; outcomes by test id.

    `shadow` puts a patched copy of the package ahead of the installed one: the installed
    entry point then loads the copy.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LAYER_", "VIRTUAL_ENV", "PYTHONPATH", "PYTEST_", "UV_PROJECT"))
    }
    env["PATH"] = f"{acme_bin}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # four runs share one environment: cache bytecode
    if shadow is not None:
        env["PYTHONPATH"] = str(shadow)
    command = [str(acme_bin / "pytest"), "-p", "no:cacheprovider", f"--junitxml={report}", *args]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    assert report.is_file(), f"pytest did not run:\n{done.stdout}\n{done.stderr}"
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        result, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                result, message = "failed", f"{child.get('message')}\n{child.text}"
            elif child.tag == "skipped":
                result, message = "skipped", child.get("message") or ""
        outcomes[case.get("name", "")] = Outcome(result, message)
    return outcomes


def test_the_example_installs_and_passes_its_tests_and_the_conformance_suite(
    acme_bin: Path, tmp_path: Path
) -> None:
    outcomes = run_tests(acme_bin, EXAMPLE, tmp_path / "report.xml")
    failed = {name: o.message for name, o in outcomes.items() if o.result == "failed"}
    assert not failed
    skipped = {name: o.message for name, o in outcomes.items() if o.result == "skipped"}
    assert skipped == {
        "test_same_seed_gives_the_same_image[acme-mini]": "acme-mini declares no seed support",
        "test_each_declared_quality_is_served[acme-mini-no-quality]": (
            "acme-mini declares no quality setting"
        ),
        "test_each_declared_style_is_served[acme-1-no-style]": "acme-1 declares no style",
    }
    standard = {n for n in vars(ProviderConformance) if n.startswith("test_")}
    ran = {name.partition("[")[0] for name in outcomes}
    assert standard <= ran
    assert "test_a_wide_hd_request_is_worded_as_acme_expects" in ran  # the author's own tests

    # the tutorial shows this run's summary line: it says what the reader will see
    tutorial = (ROOT / "docs" / "plugins" / "writing-a-plugin.md").read_text()
    passed = sum(1 for o in outcomes.values() if o.result == "passed")
    assert f"\n{passed} passed, {len(skipped)} skipped\n" in tutorial, (
        f"docs/plugins/writing-a-plugin.md: the run ends '{passed} passed, {len(skipped)} skipped'"
    )
    marks = "".join(
        line.split()[1] for line in tutorial.splitlines() if line.startswith("tests/test_")
    )
    assert (marks.count("."), marks.count("s")) == (passed, len(skipped)), marks


@dataclass(frozen=True)
class Breakage:
    """A deliberate bug: `old` replaced by `new` in one file of the example's package."""

    file: str
    old: str
    new: str
    must_fail: str
    says: tuple[str, ...]


BREAKAGES = {
    "wrong-error-mapping": Breakage(
        "layer_acme/provider.py",
        '    if kind == "content_policy":\n        return ContentRejected(',
        '    if kind == "content-policy":  # a typo: refusals fall through\n'
        "        return ContentRejected(",
        "test_failure_maps_to_core_error[content_refused]",
        (
            "a content-policy refusal should raise ContentRejected; acme raised "
            "InvalidProviderRequest: acme/acme-1: HTTP 400: the prompt was refused",
        ),
    ),
    "size-it-cannot-produce": Breakage(
        "layer_acme/models.py",
        'sizes=("1024x1024", "1536x1024",',
        'sizes=("256x256", "1024x1024", "1536x1024",',
        "test_each_declared_size_is_delivered[acme-1-256x256]",
        ("acme-1 declares 256x256, but the image is 1024x1024 pixels",),
    ),
    "key-in-an-error": Breakage(
        "layer_acme/provider.py",
        "            raise _error(reply)",
        "            error = _error(reply)\n"
        '            error.message += f" (sent key {self.api_key()})"\n'
        "            raise error",
        "test_key_never_appears_in_reprs_logs_or_errors",
        (
            "the API key appears in\n",
            "the error raised for unauthorized: ",
            "HTTP 401: invalid API key (sent key <API KEY>)",
        ),
    ),
}


@pytest.mark.parametrize("breakage", BREAKAGES.values(), ids=BREAKAGES.keys())
def test_a_broken_copy_of_the_example_fails_the_suite_saying_what_is_wrong(
    acme_bin: Path, tmp_path: Path, breakage: Breakage
) -> None:
    copy = tmp_path / "layer-acme"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    source = copy / breakage.file
    text = source.read_text()
    assert text.count(breakage.old) == 1, "the example changed: fix this breakage's `old`"
    source.write_text(text.replace(breakage.old, breakage.new))

    outcomes = run_tests(
        acme_bin, copy, tmp_path / "report.xml", "tests/test_conformance.py", shadow=copy
    )
    failed = {name: o.message for name, o in outcomes.items() if o.result == "failed"}
    assert breakage.must_fail in failed
    for name, message in failed.items():
        for fragment in breakage.says:
            assert fragment in message, f"{name} failed saying something else:\n{message}"
        assert KEY not in message
    assert len(outcomes) - len(failed) > 25  # everything else still passes (or skips by name)
