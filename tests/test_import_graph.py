"""layer_core's modules import one another without a cycle.

Every import counts: at the top of a module, inside a function (imported late to keep `Layer()`
light, but still a dependency), and under ``if TYPE_CHECKING:`` (a dependency of the types, which
a reader and mypy follow all the same). A type both sides need lives in a lower module.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import layer_core

PACKAGE = Path(layer_core.__file__).parent


def modules(package: Path) -> dict[str, Path]:
    """Every module of `package` by dotted name (a package by its own name, not `__init__`)."""
    found = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """For each module of `package`, the modules of `package` it imports anywhere in its body."""
    known = modules(package)

    def owner(name: str) -> str | None:
        """The module `name` is or lives in (`layer_core.schema.Size` → `layer_core.schema`)."""
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(owner(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package `level - 1` above this one
                    anchor = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                    base = f"{anchor}.{base}" if base else anchor
                targets.update(owner(f"{base}.{alias.name}") for alias in node.names)
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def test_the_graph_sees_imports_in_functions_and_under_type_checking() -> None:
    graph = import_graph(PACKAGE)
    # `Layer` imports batch only inside its batch methods and under TYPE_CHECKING
    assert "layer_core.batch" in graph["layer_core.layer"]
    # the package re-exports lazily: its only imports are under TYPE_CHECKING
    assert "layer_core.layer" in graph["layer_core"]
    # a name imported from a module is an edge to that module
    assert "layer_core.schema" in graph["layer_core.catalog"]


def test_layer_core_has_no_import_cycle() -> None:
    graph = import_graph(PACKAGE)
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        cycle = exc.args[1][::-1]  # graphlib lists it dependency first: turn it to read "imports"
        raise AssertionError(f"import cycle: {' imports '.join(cycle)}") from None


def test_a_cycle_is_found(tmp_path: Path) -> None:
    """The check itself: a ring through a TYPE_CHECKING import and a function's import."""
    ring = tmp_path / "ring"
    ring.mkdir()
    (ring / "__init__.py").write_text("")
    (ring / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ring.b import B\n"
    )
    (ring / "b.py").write_text("def late():\n    from . import c\n")
    (ring / "c.py").write_text("import ring.a\n")
    graph = import_graph(ring)
    assert graph["ring.a"] == {"ring.b"}
    assert graph["ring.b"] == {"ring.c"}
    assert graph["ring.c"] == {"ring.a"}
    with pytest.raises(CycleError):
        TopologicalSorter(graph).prepare()
