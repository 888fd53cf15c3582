"""The plugin as installed: it loads through its entry point, imports no SDK until a call needs
one, and without the `[grpc]` extra still loads, lists only the REST models and says how to add
the gRPC engines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from layer_stability import GRPC_EXTRA_HINT, StabilityProvider
from layer_stability.models import GRPC_MODELS, REST_MODELS

from layer_core import AllAttemptsFailed, Layer
from layer_core.cli import cli

REST_IDS = [m.id for m in REST_MODELS]
GRPC_IDS = [m.id for m in GRPC_MODELS]


@pytest.fixture
def without_grpc_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if stability-sdk were not installed: finding or importing it fails."""
    for name in ("stability_sdk", "grpc"):
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]


@pytest.fixture
def clean_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("LAYER_CONFIG", "LAYER_PLUGINS", "LAYER_STRICT_PLUGINS", "STABILITY_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)


def plugins_json() -> dict[str, dict[str, object]]:
    result = CliRunner().invoke(cli, ["plugins", "--json"], env={"LAYER_PLUGINS": "stability"})
    assert result.exit_code == 0, result.output
    return {row["name"]: row for row in json.loads(result.output)}


@pytest.mark.usefixtures("without_grpc_extra", "clean_cwd")
def test_without_the_extra_it_loads_with_rest_models_only_and_says_how_to_add_grpc() -> None:
    with pytest.raises(ImportError):
        import stability_sdk  # noqa: F401
    provider = StabilityProvider()
    assert [s.id for s in provider.models()] == REST_IDS
    assert provider.notes() == [GRPC_EXTRA_HINT]

    layer = Layer({"ledger": False}, environ={"STABILITY_API_KEY": "sk-x"})
    assert [s.id for s in layer.models() if s.provider == "stability"] == REST_IDS

    row = plugins_json()["stability"]
    assert row["status"] == "ok"
    assert row["distribution"] == "layer-stability"
    assert row["providers"] == ["stability"]
    assert row["note"] == "pip install 'layer-stability[grpc]' for the SDXL gRPC engines"
    table = CliRunner().invoke(cli, ["plugins"], env={"COLUMNS": "300"}).output
    assert "layer-stability[grpc]" in table


@pytest.mark.usefixtures("clean_cwd")
def test_with_the_extra_the_sdxl_engine_is_listed_and_there_is_no_note() -> None:
    pytest.importorskip("stability_sdk", reason="the [grpc] extra is not installed")
    assert [s.id for s in StabilityProvider().models()] == REST_IDS + GRPC_IDS
    row = plugins_json()["stability"]
    assert row["status"] == "ok"
    assert row["note"] is None


def test_loading_the_plugin_and_its_models_imports_no_sdk() -> None:
    code = (
        "import sys, json; from layer_core import Layer; "
        "layer = Layer({'ledger': False}, environ={'STABILITY_API_KEY': 'sk-x'}); "
        "assert any(s.provider == 'stability' for s in layer.models()); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in json.loads(out.stdout)}
    assert loaded.isdisjoint({"httpx", "grpc", "stability_sdk", "google", "PIL"})


def test_a_broken_extra_makes_the_grpc_engine_unavailable_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("stability_sdk", reason="the [grpc] extra is not installed")
    gate = {"model": GRPC_IDS[0], "retries": 0}
    layer = Layer(
        {"ledger": False, "gates": {"sdxl": gate}},
        plugins=[StabilityProvider()],
        load_entry_points=False,
        environ={"STABILITY_API_KEY": "sk-x"},
    )
    monkeypatch.delitem(sys.modules, "layer_stability.grpc_engine", raising=False)
    monkeypatch.setitem(sys.modules, "stability_sdk", None)  # type: ignore[arg-type]
    with pytest.raises(AllAttemptsFailed) as caught:
        layer.image("sdxl", {"prompt": "p"})
    layer.close()
    (attempt,) = caught.value.attempts
    assert attempt.error == "unavailable"
    assert GRPC_EXTRA_HINT in (attempt.message or "")
