"""Shared fixtures: every test runs with a clean layer environment (no user config, no keys)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from layer_core.dirs import isolated_environ
from tests.ledger_backends import postgres_schema

LAYER_ENV = (
    "LAYER_CONFIG",
    "LAYER_PLUGINS",
    "LAYER_STRICT_PLUGINS",
    "LAYER_RAISE_ERRORS",
    "LAYER_LEDGER_URL",
    "OPENAI_API_KEY",
    "REPLICATE_API_TOKEN",
    "STABILITY_API_KEY",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in LAYER_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in isolated_environ(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh ledger database: a SQLite file, or a private schema on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite'}"
        return
    with postgres_schema() as url:
        yield url
