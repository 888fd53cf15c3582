"""Installing layer as a user does: from a clone, with pip alone, following the docs verbatim.

The tests marked `install` are slow: they copy this checkout as a fresh clone would have it,
build wheels, make fresh virtual environments (no uv on PATH) and pip-install into them, so pip
may download dependencies from PyPI. `python3 run.py test` runs them with the rest;
`python3 run.py test -m "not install"` leaves them out. The static check of every install
command in the docs is quick and unmarked.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "plugins" / "writing-a-plugin.md"
EXAMPLE = Path("examples/layer-acme")
#: Every page that may tell a user what to install.
PAGES = sorted(
    {
        ROOT / "README.md",
        *ROOT.glob("docs/**/*.md"),
        *ROOT.glob("providers/*/README.md"),
        *ROOT.glob("examples/*/README.md"),
    }
)
#: Where a page's commands are typed: the plugin's folder for the tutorial and the example's
#: README; the root of the clone for every other page.
TYPED_IN = {TUTORIAL: EXAMPLE, ROOT / EXAMPLE / "README.md": EXAMPLE}
#: The distributions of this repository: core, providers, and the example plugin.
PROJECTS = [Path("."), *sorted(p.relative_to(ROOT) for p in ROOT.glob("providers/*")), EXAMPLE]
SECRETS = ("OPENAI_API_KEY", "REPLICATE_API_TOKEN", "STABILITY_API_KEY", "FAL_KEY", "ACME_API_KEY")


# --- reading the docs ---------------------------------------------------------------------------


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def section(text: str, number: int) -> str:
    """Section `## <number>. ...` of a page, up to the next `## `."""
    match = re.search(rf"^## {number}\. .*?(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, f"no section {number}"
    return match.group(0)


def pip_installs(page: Path) -> list[tuple[int, str]]:
    """Every `pip install` a page's shell blocks type, with the block it belongs to."""
    found = []
    for index, block in enumerate(shell_blocks(page.read_text())):
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            found += [
                (index, part.strip()) for part in command.split("&&") if "pip install" in part
            ]
    return found


def project(folder: Path) -> dict[str, Any]:
    """The `[project]` table of a folder's pyproject.toml."""
    with (folder / "pyproject.toml").open("rb") as handle:
        table: dict[str, Any] = tomllib.load(handle)["project"]
    return table


# --- a fresh machine ----------------------------------------------------------------------------


def fresh_clone(target: Path) -> Path:
    """The files a clone of this checkout has (tracked, or new and not ignored), copied."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is not in a clone
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def user_environment(tmp: Path, *, venv: Path | None = None) -> dict[str, str]:
    """A user's shell: no layer settings or keys, a fresh HOME, no uv and none of this
    repository's environments on PATH; `python3` is the interpreter running the tests."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    python3 = bin_dir / "python3"
    if not python3.exists():
        python3.symlink_to(Path(sys.base_prefix) / "bin" / "python3")
    ours = (ROOT / ".venv").resolve()
    path = [
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry
        and not (Path(entry) / "uv").exists()
        and not Path(entry).resolve().is_relative_to(ours)
    ]
    leading = [str(venv / "bin")] if venv is not None else []
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LAYER_", "UV", "VIRTUAL_ENV", "PYTHON", "PYTEST", "XDG_"))
        and key not in SECRETS
    }
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    # pip's download cache stays where it was: a new HOME should not mean downloading again
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    env.setdefault("PIP_CACHE_DIR", str(Path(cache) / "pip"))
    env.update(HOME=str(home), PATH=os.pathsep.join([*leading, str(bin_dir), *path]))
    assert shutil.which("uv", path=env["PATH"]) is None
    return env


def sh(script: str, cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
    )


def typed(block: str) -> str:
    """A shell block as a reader types it: lines with a `...` for their own secret left out."""
    return "\n".join(line for line in block.splitlines() if "..." not in line)


# --- the install commands of the docs, read ----------------------------------------------------

INSTALLS = [(page, index, command) for page in PAGES for index, command in pip_installs(page)]


@pytest.mark.parametrize(
    ("page", "index", "command"),
    INSTALLS,
    ids=[f"{p.relative_to(ROOT)}:{c}" for p, _, c in INSTALLS],
)
def test_every_install_command_in_the_docs_installs_from_a_clone(
    page: Path, index: int, command: str
) -> None:
    """Each names folders of the clone (with extras they have), never a distribution of this
    repository by name (none is on PyPI yet), and installs layer-core with anything that needs
    it: in the same command, or earlier in the same block."""
    cwd = ROOT / TYPED_IN.get(page, Path("."))
    ours = {_name(ROOT / p) for p in PROJECTS}
    block = [c for i, c in pip_installs(page) if i == index]
    installed = {
        name
        for line in block[: block.index(command) + 1]
        for name, _, _ in requirements_of(line, cwd)
    }
    for name, extras, folder in requirements_of(command, cwd):
        if folder is None:
            assert name not in ours, f"`{command}`: {name} is not on PyPI; install its folder"
            continue
        table = project(folder)
        declared = table.get("optional-dependencies") or {}
        assert extras <= set(declared), f"`{command}`: {name} has no extra {extras - set(declared)}"
        needs = [*(table.get("dependencies") or []), *(r for e in extras for r in declared[e])]
        for requirement in map(Requirement, needs):
            needed = canonicalize_name(requirement.name)
            assert needed not in ours or needed in installed, (
                f"`{command}`: {name} needs {needed}, which is not on PyPI: install it from the "
                "clone in the same command"
            )


def requirements_of(command: str, cwd: Path) -> list[tuple[str, set[str], Path | None]]:
    """What a `pip install` asks for: (distribution, extras, its folder when it names one)."""
    args = shlex.split(command.replace("$LAYER_CLONE", str(ROOT)))
    if args[0] == "uv":
        args = args[1:]
    assert args[:2] == ["pip", "install"], f"type `pip install` ({command})"
    found: list[tuple[str, set[str], Path | None]] = []
    args = args[2:]
    while args:
        arg = args.pop(0)
        if arg == "--python":  # uv's: the environment to install into
            args.pop(0)
        if arg.startswith("-"):
            continue
        target, _, rest = arg.partition("[")
        extras = set(filter(None, rest.rstrip("]").split(",")))
        if target.endswith(".whl"):  # built from one of the projects here
            name = canonicalize_name(Path(target).name.split("-")[0])
            (folder,) = [ROOT / p for p in PROJECTS if name == _name(ROOT / p)]
            found.append((name, extras, folder))
            continue
        if not target.startswith((".", "/")):
            found.append((canonicalize_name(target), extras, None))
            continue
        folder = (cwd / target).resolve()
        assert (folder / "pyproject.toml").is_file(), f"`{command}`: no project at {folder}"
        found.append((_name(folder), extras, folder))
    return found


def _name(folder: Path) -> str:
    return canonicalize_name(str(project(folder)["name"]))


# --- the install commands of the docs, run ------------------------------------------------------


@pytest.mark.install
def test_pip_install_from_a_clone_makes_an_image_and_checks_the_demo_config(
    tmp_path: Path,
) -> None:
    """The quickstart's install into a fresh venv, with pip alone; then `layer image` draws with
    the embedded default, and `layer check` finds nothing wrong with the shipped plugins.toml."""
    clone = fresh_clone(tmp_path / "layer")
    venv = tmp_path / "venv"
    env = user_environment(tmp_path, venv=venv)
    made = sh(f"python3 -m venv {shlex.quote(str(venv))}", tmp_path, env)
    assert made.returncode == 0, made.stderr
    (install,) = [b for b in shell_blocks((clone / "docs/quickstart.md").read_text()) if "pip" in b]
    done = sh(typed(install), clone, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (venv / "bin" / "uv").exists()

    work = tmp_path / "work"
    work.mkdir()
    drawn = sh('layer image "a fox"', work, env)
    assert drawn.returncode == 0, drawn.stdout + drawn.stderr
    (png,) = (work / "images").glob("*.png")
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size == (1024, 1024)
    assert "placeholders from the local provider" in drawn.stdout

    listed = sh("layer plugins --json", work, env)
    assert listed.returncode == 0, listed.stderr
    plugins = {row["name"]: row for row in json.loads(listed.stdout)}
    assert plugins["local"]["distribution"] == "layer-core"
    assert plugins["local"]["status"] == plugins["openai"]["status"] == "ok"

    checked = sh(f"layer check {shlex.quote(str(clone / 'plugins.toml'))}", work, env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 error(s), 0 warning(s)" in checked.stdout, checked.stdout


@pytest.mark.install
def test_the_plugin_tutorial_can_be_followed_verbatim_from_a_clone(tmp_path: Path) -> None:
    """Step 1's commands, the files the tutorial shows, step 5's install (core from the clone,
    plugin editable with its test extra) in a venv of its own, then step 8's `pytest`."""
    clone = fresh_clone(tmp_path / "layer")
    env = {**user_environment(tmp_path), "LAYER_CLONE": str(clone)}
    text = TUTORIAL.read_text()
    author = tmp_path / "author"
    author.mkdir()

    (start,) = shell_blocks(section(text, 1))
    done = sh(start, author, env)
    assert done.returncode == 0, done.stderr
    folder = author / "layer-acme"
    for block in re.findall(r"```\w*\n(.*?)```", text, flags=re.S):
        shown = re.match(rf"#+ {EXAMPLE}/([\w./-]+)\n", block)
        if shown:
            (folder / shown.group(1)).parent.mkdir(parents=True, exist_ok=True)
            (folder / shown.group(1)).write_text(block.split("\n", 1)[1])

    (install,) = shell_blocks(section(text, 5))
    done = sh(typed(install), folder, env)
    assert done.returncode == 0, done.stdout + done.stderr
    activate = ". ~/.venvs/layer-acme/bin/activate"
    listed = sh(f"{activate}\nlayer plugins --json", folder, env)
    assert listed.returncode == 0, listed.stderr
    plugins = {row["name"]: row for row in json.loads(listed.stdout)}
    assert (plugins["acme"]["distribution"], plugins["acme"]["status"]) == ("layer-acme", "ok")
    assert plugins["local"]["status"] == "ok"

    (tests, *_) = shell_blocks(section(text, 8))
    ran = sh(f"{activate}\n{typed(tests)}", folder, env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert " passed" in ran.stdout


# --- the wheels ---------------------------------------------------------------------------------


def uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        pytest.fail("needs uv on PATH or in $UV (python3 run.py test provides it)")
    return found


@pytest.mark.install
@pytest.mark.parametrize("folder", PROJECTS, ids=[str(p) for p in PROJECTS])
def test_each_distribution_builds_with_complete_metadata(folder: Path, tmp_path: Path) -> None:
    """`uv build` (an sdist, then the wheel from it) of a fresh clone; the wheel says what
    pyproject.toml says, its README is its description, every dependency is bounded, and each
    entry point names a module the wheel holds."""
    clone = fresh_clone(tmp_path / "layer")
    out = tmp_path / "dist"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    built = subprocess.run(
        [uv(), "build", "--quiet", "--python", sys.executable, "--out-dir", str(out)],
        cwd=clone / folder,
        env=env,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    table = project(clone / folder)
    name, version = str(table["name"]), str(table["version"])
    stem = f"{name.replace('-', '_')}-{version}"
    (wheel,) = out.glob(f"{stem}-py3-none-any.whl")
    (sdist,) = out.glob(f"{stem}.tar.gz")
    with tarfile.open(sdist) as archive:
        assert {f"{stem}/README.md", f"{stem}/pyproject.toml"} <= set(archive.getnames())

    files = zipfile.ZipFile(wheel).namelist()
    (info,) = {name.split("/")[0] for name in files if name.endswith(".dist-info/METADATA")}
    dist = importlib.metadata.PathDistribution(zipfile.Path(wheel, f"{info}/"))
    meta = dist.metadata
    assert (meta["Name"], meta["Version"]) == (name, version)
    assert meta["Summary"] == table["description"]
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["License-Expression"] == "MIT"
    assert meta["Description-Content-Type"] == "text/markdown"
    readme = (clone / folder / "README.md").read_text()
    assert str(meta.json["description"]).strip() == readme.strip()
    requirements = [Requirement(r) for r in dist.requires or []]
    assert requirements
    for requirement in requirements:
        bounds = {spec.operator for spec in requirement.specifier}
        assert {">=", "<"} <= bounds, f"{name}: {requirement} is not bounded below and above"
        if requirement.name == "layer-core":
            assert requirement.specifier.contains(project(clone)["version"]), (
                f"{name} requires {requirement}, which the core in this repository is not"
            )

    package = name.replace("-", "_")
    assert f"{package}/py.typed" in files
    assert not [f for f in files if f.startswith("tests/")]
    plugins = {ep.name: ep.value for ep in dist.entry_points.select(group="layer")}
    assert plugins, f"{name} declares no entry point in group `layer`"
    for value in plugins.values():
        module = value.split(":")[0].replace(".", "/")
        assert {f"{module}.py", f"{module}/__init__.py"} & set(files), (
            f"{value} is not in the wheel"
        )
    if folder == Path("."):
        assert plugins == {"local": "layer_core.builtin.local"}
        scripts = dist.entry_points.select(group="console_scripts")
        assert {ep.name: ep.value for ep in scripts} == {"layer": "layer_core.script:main"}
        from layer_core import __version__

        assert __version__ == version
