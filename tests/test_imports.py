"""Import cost: nothing heavy at `import layer_core`, no provider SDK until a provider is used."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pydantic", "pluggy", "httpx", "click", "rich", "PIL")
SDKS = ("openai", "replicate", "stability_sdk", "grpc", "PIL", "httpx", "rich", "click")


def imported_after(code: str) -> set[str]:
    script = f"import sys; {code}; import json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def test_importing_layer_core_imports_nothing_heavy() -> None:
    modules = imported_after("import layer_core")
    assert not {m for m in modules if m.split(".")[0] in HEAVY}


def test_building_a_layer_imports_no_provider_sdk() -> None:
    modules = imported_after("from layer_core import Layer; Layer({'ledger': False})")
    assert not {m for m in modules if m.split(".")[0] in SDKS}


def test_building_a_layer_with_its_default_ledger_opens_no_database() -> None:
    modules = imported_after("from layer_core import Layer; Layer({})")
    assert not {m for m in modules if m.split(".")[0] in ("sqlalchemy", "psycopg", "sqlite3")}
