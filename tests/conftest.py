"""Shared fixtures: every test runs with a clean layer environment (no user config, no keys)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

LAYER_ENV = (
    "LAYER_CONFIG",
    "LAYER_PLUGINS",
    "LAYER_STRICT_PLUGINS",
    "LAYER_RAISE_ERRORS",
    "OPENAI_API_KEY",
    "REPLICATE_API_TOKEN",
    "STABILITY_API_KEY",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in LAYER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return
