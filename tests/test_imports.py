"""Import cost: nothing heavy at `import layer_core`, no provider SDK until a provider is used."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("pydantic", "pluggy", "httpx", "click", "rich", "PIL", "pytest", "_pytest", "hypothesis")
SDKS = (
    *("openai", "google", "replicate", "stability_sdk", "grpc", "fal_client"),
    *("PIL", "httpx", "aiohttp", "rich", "click"),
)
#: the gateway's server stack (`layer serve`), never loaded by a `Layer`
SERVER = ("fastapi", "starlette", "uvicorn", "prometheus_client")
#: The plugins of the development environment (the core's built-in one and the providers
#: installed), each with a provider SDK or library of its own.
PLUGINS = (
    *("layer_core.builtin.local", "layer_openai", "layer_google", "layer_replicate"),
    *("layer_stability", "layer_fal"),
)
TEST_KIT = ("pytest", "_pytest", "hypothesis")


@functools.cache  # two tests read what a default `Layer()` imports: one process serves both
def imported_after(code: str) -> frozenset[str]:
    script = f"import sys; {code}; import json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return frozenset(json.loads(out.stdout))


def test_importing_layer_core_imports_nothing_heavy() -> None:
    modules = imported_after("import layer_core")
    assert not {m for m in modules if m.split(".")[0] in HEAVY}


def test_building_a_layer_imports_no_provider_sdk() -> None:
    modules = imported_after("from layer_core import Layer; Layer({'ledger': False})")
    assert set(PLUGINS) <= modules, "every plugin is loaded"
    assert not {m for m in modules if m.split(".")[0] in SDKS + TEST_KIT}


def test_the_default_layer_imports_no_provider_sdk() -> None:
    """`Layer()` as an app first writes it: every plugin, the default config and ledger."""
    modules = imported_after("from layer_core import Layer; Layer()")
    assert set(PLUGINS) <= modules, "every plugin is loaded"
    assert not {m for m in modules if m.split(".")[0] in SDKS + TEST_KIT + SERVER}


def test_the_test_helpers_need_no_test_framework_until_asked() -> None:
    modules = imported_after("import layer_core.testing")
    assert not {m for m in modules if m.split(".")[0] in TEST_KIT}


def test_building_a_layer_with_its_default_ledger_opens_no_database() -> None:
    modules = imported_after("from layer_core import Layer; Layer({})")
    assert not {m for m in modules if m.split(".")[0] in ("sqlalchemy", "psycopg", "sqlite3")}


def test_a_sqlite_ledger_loads_no_postgresql_code(tmp_path: Path) -> None:
    """The PostgreSQL dialect is a few MiB of modules a SQLite ledger never needs."""
    code = (
        "from datetime import UTC, datetime; from decimal import Decimal;"
        "from layer_core.ledger import Ledger, LedgerRecord;"
        f"ledger = Ledger('sqlite:///{tmp_path / 'ledger.sqlite'}');"
        "ledger.record(LedgerRecord(id='r', created=datetime.now(UTC), gate_id='g',"
        " model_requested='m', model_used='m', provider='p', requested=1, delivered=1,"
        " cost=Decimal('0.04'), latency=1.0, status='ok', metadata={'team': 'a'}));"
        "assert ledger.costs(by='meta.team').requests == 1; ledger.close()"
    )
    modules = imported_after(code)
    assert "sqlalchemy.dialects.sqlite" in modules
    assert not {m for m in modules if m.startswith(("sqlalchemy.dialects.postgresql", "psycopg"))}


def test_building_a_layer_imports_no_asyncio() -> None:
    """asyncio (with ssl, sockets and subprocesses) is most of a tenth of a cold `Layer()`, and
    building one runs nothing async: modules that need it import it where they use it."""
    modules = imported_after("from layer_core import Layer; Layer()")
    assert set(PLUGINS) <= modules, "every plugin is loaded"
    assert "asyncio" not in modules
