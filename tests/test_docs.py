"""Docs stay true: every hook is documented, and the docs' Python examples run."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from layer_core import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs"
README = DOCS.parent / "README.md"


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


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


RUNNABLE = [
    (path, index, block)
    for path in [README, *sorted(DOCS.rglob("*.md"))]
    for index, block in enumerate(python_blocks(path))
]


@pytest.mark.parametrize(
    ("path", "index", "block"),
    RUNNABLE,
    ids=[f"{p.relative_to(DOCS.parent)}#{i}" for p, i, _ in RUNNABLE],
)
def test_doc_examples_run(path: Path, index: int, block: str, tmp_path: Path) -> None:
    namespace: dict[str, object] = {"__name__": f"doc_example_{index}"}
    exec(compile(block, f"{path}#{index}", "exec"), namespace)
