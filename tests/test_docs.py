"""Docs stay true: every hook and standard test is documented, and the docs' examples run.

A fenced block whose first line is a comment naming a file of an example (`# examples/...`) is
that file, shown whole: it must match the file, and runs with the example's folders on sys.path.
"""

from __future__ import annotations

import inspect
import re
import shlex
import sys
import tempfile
from pathlib import Path

import pytest

from layer_core import hookspecs
from layer_core.testing.conformance import ProviderConformance

DOCS = Path(__file__).resolve().parents[1] / "docs"
ROOT = DOCS.parent
README = ROOT / "README.md"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
SHOWS_A_FILE = re.compile(r"#+ (examples/[\w.-]+/[\w./-]+)\n")


def hook_specs() -> list[tuple[str, list[str]]]:
    return [
        (name, list(inspect.signature(func).parameters))
        for name, func in vars(hookspecs).items()
        if callable(func) and hasattr(func, "layer_spec")
    ]


@pytest.mark.parametrize(("name", "arguments"), hook_specs(), ids=[n for n, _ in hook_specs()])
def test_every_hookspec_is_documented_with_its_arguments(name: str, arguments: list[str]) -> None:
    reference = (DOCS / "plugins" / "hooks.md").read_text()
    assert f"### `{name}({', '.join(arguments)})`" in reference, (
        f"docs/plugins/hooks.md has no section for {name}({', '.join(arguments)})"
    )


STANDARD_TESTS = sorted(n for n in vars(ProviderConformance) if n.startswith("test_"))


@pytest.mark.parametrize("name", STANDARD_TESTS)
def test_every_standard_conformance_test_is_documented(name: str) -> None:
    page = (DOCS / "plugins" / "conformance.md").read_text()
    assert f"### `{name}`" in page, f"docs/plugins/conformance.md has no section for {name}"


def blocks(path: Path, language: str = r"\w*") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def shown_file(block: str) -> Path | None:
    """The example file a block shows whole, if its first line names one."""
    match = SHOWS_A_FILE.match(block)
    return ROOT / match.group(1) if match else None


RUNNABLE = [
    (path, index, block) for path in PAGES for index, block in enumerate(blocks(path, "python"))
]
SHOWN = [(path, block) for path in PAGES for block in blocks(path) if shown_file(block)]


@pytest.mark.parametrize(
    ("path", "index", "block"),
    RUNNABLE,
    ids=[f"{p.relative_to(ROOT)}#{i}" for p, i, _ in RUNNABLE],
)
def test_doc_examples_run(
    path: Path, index: int, block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each example runs; one that leaves files behind (the working directory and the data dir
    are in tmp_path) runs a second time too, as a reader trying it again would."""
    shown = shown_file(block)
    before = set(sys.modules)
    if shown is not None:  # as the example's own tests see it: its package and tests importable
        example = ROOT.joinpath(*shown.relative_to(ROOT).parts[:2])
        monkeypatch.syspath_prepend(str(example / "tests"))
        monkeypatch.syspath_prepend(str(example))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # temporary files land here too
    code = compile(block, f"{path}#{index}", "exec")
    try:
        exec(code, {"__name__": f"doc_example_{index}"})
        if any(tmp_path.rglob("*")):
            exec(code, {"__name__": f"doc_example_{index}"})
    finally:
        for name in set(sys.modules) - before:  # forget example modules imported from source
            if str(ROOT / "examples") in str(getattr(sys.modules[name], "__file__", "")):
                del sys.modules[name]


@pytest.mark.parametrize(
    ("path", "block"), SHOWN, ids=[str(shown_file(b).relative_to(ROOT)) for _, b in SHOWN]
)
def test_files_shown_in_the_docs_are_the_example_files(path: Path, block: str) -> None:
    shown = shown_file(block)
    assert shown is not None
    assert shown.is_file(), f"{path.name} shows {shown}, which does not exist"
    body = block.split("\n", 1)[1]
    assert body == shown.read_text(), f"{path.name} shows an outdated {shown.relative_to(ROOT)}"


def test_the_quickstart_explain_example_shows_what_the_command_prints() -> None:
    """The quickstart's `layer explain` output, run on the demo config with no key set: every
    line it shows (but the `…` standing for the table) is printed, and so is every rejection."""
    from click.testing import CliRunner

    from layer_core.cli import cli

    page = (DOCS / "quickstart.md").read_text()
    command = 'layer explain "a lighthouse" --gate default --size 512x512'
    assert f"```sh\n{command}\n```" in page
    shown = re.search(r"no key set:\n\n```\n(.*?)```", page, flags=re.S)
    assert shown is not None, "quickstart.md: the explain example's output block is missing"
    args = ["-c", str(ROOT / "plugins.toml"), *shlex.split(command)[1:]]
    result = CliRunner().invoke(cli, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    printed = [line.rstrip() for line in result.stdout.splitlines()]
    expected = [line for line in shown.group(1).splitlines() if not line.startswith("…")]
    assert [line for line in expected if line not in printed] == [], result.stdout
    rejected = printed[printed.index("rejected:") :]
    assert rejected == expected[expected.index("rejected:") :], (
        "quickstart.md: paste the rejections `layer explain` prints now:\n" + "\n".join(rejected)
    )
