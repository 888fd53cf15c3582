"""The user config and data dirs are the platform's (platformdirs), and what earlier versions
left at the Linux places on every platform is still found there: no ledger or config orphaned.

macOS is played here by platformdirs' own macOS rules (`platformdirs.macos.MacOS`) over a fake
HOME, so the paths are the ones a Mac computes.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import platformdirs
import platformdirs.macos
import pytest

from layer_core import Layer
from layer_core.dirs import isolated_environ, user_config_dir, user_data_dir
from layer_core.ledger import Ledger, LedgerRecord, ledger_url


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh HOME, with no XDG variable set (as on most Macs)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in isolated_environ(tmp_path):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def macos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platformdirs, "PlatformDirs", platformdirs.macos.MacOS)


def app_support(home: Path) -> Path:
    return home / "Library" / "Application Support" / "layer"


def earlier_data(home: Path) -> Path:
    return home / ".local" / "share" / "layer"


def earlier_config(home: Path) -> Path:
    return home / ".config" / "layer"


def record(record_id: str) -> LedgerRecord:
    return LedgerRecord(
        id=record_id, created=datetime.now(UTC), gate_id="g", model_requested="m",
        model_used="m", provider="acme", requested=1, delivered=1, cost=Decimal("0.04"),
        latency=1.0, status="ok",
    )  # fmt: skip


def write_ledger(folder: Path, record_id: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(f"sqlite:///{folder / 'ledger.sqlite'}")
    ledger.record(record(record_id))
    ledger.close()


@pytest.mark.skipif(sys.platform != "linux", reason="the Linux places")
def test_on_linux_the_dirs_are_where_they_always_were(
    home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert user_data_dir() == earlier_data(home)
    assert user_config_dir() == earlier_config(home)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert user_data_dir() == tmp_path / "data" / "layer"
    assert user_config_dir() == tmp_path / "config" / "layer"


@pytest.mark.usefixtures("macos")
def test_on_macos_a_new_user_gets_the_platform_dirs(home: Path) -> None:
    assert user_data_dir() == app_support(home)
    assert user_config_dir() == app_support(home)
    assert ledger_url("sqlite", environ={}) == f"sqlite:///{app_support(home) / 'ledger.sqlite'}"


@pytest.mark.usefixtures("macos")
def test_on_macos_a_ledger_an_earlier_version_wrote_is_still_the_one_used(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_ledger(earlier_data(home), "spent-before-the-upgrade")
    with caplog.at_level(logging.INFO, logger="layer"):
        with Layer({}, environ={}) as layer:
            report = layer.costs()
        assert user_data_dir() == earlier_data(home)
    assert report.requests == 1
    assert report.total == Decimal("0.04")
    said = [r.getMessage() for r in caplog.records if str(earlier_data(home)) in r.getMessage()]
    assert len(said) == 1  # once, however often the dir is asked for
    assert not app_support(home).exists()  # nothing was started at the new place

    write_ledger(app_support(home), "moved")  # once the platform's dir has one, it is used
    assert user_data_dir() == app_support(home)


@pytest.mark.usefixtures("macos")
def test_on_macos_records_spooled_by_an_earlier_version_keep_their_place(home: Path) -> None:
    spooled = earlier_data(home) / "spool" / "0123456789abcdef" / "1-a.jsonl"
    spooled.parent.mkdir(parents=True)
    spooled.write_text("")
    assert user_data_dir() == earlier_data(home)


@pytest.mark.usefixtures("macos")
def test_on_macos_a_config_an_earlier_version_read_is_still_read(home: Path) -> None:
    earlier_config(home).mkdir(parents=True)
    (earlier_config(home) / "plugins.toml").write_text(
        'ledger = false\n[gates.mine]\nmodel = "local"\n'
    )
    write_ledger(app_support(home), "new")  # a ledger in the new (shared) dir hides no config
    with Layer(environ={}) as layer:
        assert "mine" in layer.gates()
        assert layer.config.source == str(earlier_config(home) / "plugins.toml")

    (app_support(home) / "plugins.toml").write_text('ledger = false\n[gates.new]\nmodel = "local"')
    with Layer(environ={}) as layer:
        assert "new" in layer.gates()
        assert "mine" not in layer.gates()


@pytest.mark.usefixtures("macos")
def test_tests_put_both_dirs_in_their_own_folder_on_a_mac_too(
    home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in isolated_environ(tmp_path / "isolated").items():
        monkeypatch.setenv(name, value)
    assert user_data_dir().is_relative_to(tmp_path / "isolated")
    assert user_config_dir().is_relative_to(tmp_path / "isolated")
