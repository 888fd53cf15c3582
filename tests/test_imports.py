"""Import cost: nothing heavy at `import layer_core`, no provider SDK until a provider is used."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pydantic", "pluggy", "httpx", "click", "rich", "PIL", "pytest", "_pytest", "hypothesis")
SDKS = ("openai", "replicate", "stability_sdk", "grpc", "PIL", "httpx", "aiohttp", "rich", "click")
#: The plugins installed in the development environment, each with a provider SDK of its own.
PLUGINS = ("layer_local", "layer_openai", "layer_replicate", "layer_stability")
TEST_KIT = ("pytest", "_pytest", "hypothesis")


def imported_after(code: str) -> set[str]:
    script = f"import sys; {code}; import json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def test_importing_layer_core_imports_nothing_heavy() -> None:
    modules = imported_after("import layer_core")
    assert not {m for m in modules if m.split(".")[0] in HEAVY}


def test_building_a_layer_imports_no_provider_sdk() -> None:
    modules = imported_after("from layer_core import Layer; Layer({'ledger': False})")
    assert set(PLUGINS) <= modules, "the four plugins are loaded"
    assert not {m for m in modules if m.split(".")[0] in SDKS + TEST_KIT}


def test_the_default_layer_imports_no_provider_sdk() -> None:
    """`Layer()` as an app first writes it: every plugin, the default config and ledger."""
    modules = imported_after("from layer_core import Layer; Layer()")
    assert set(PLUGINS) <= modules, "the four plugins are loaded"
    assert not {m for m in modules if m.split(".")[0] in SDKS + TEST_KIT}


def test_the_test_helpers_need_no_test_framework_until_asked() -> None:
    modules = imported_after("import layer_core.testing")
    assert not {m for m in modules if m.split(".")[0] in TEST_KIT}


def test_building_a_layer_with_its_default_ledger_opens_no_database() -> None:
    modules = imported_after("from layer_core import Layer; Layer({})")
    assert not {m for m in modules if m.split(".")[0] in ("sqlalchemy", "psycopg", "sqlite3")}


def test_building_a_layer_imports_no_asyncio() -> None:
    """asyncio (with ssl, sockets and subprocesses) is most of a tenth of a cold `Layer()`, and
    building one runs nothing async: modules that need it import it where they use it."""
    modules = imported_after("from layer_core import Layer; Layer()")
    assert set(PLUGINS) <= modules, "the four plugins are loaded"
    assert "asyncio" not in modules
