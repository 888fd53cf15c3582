"""layer provider plugin for the Acme Images API: models `acme-1` and `acme-mini`."""

from __future__ import annotations

from collections.abc import Callable

from layer_core import Provider, hookimpl

from layer_acme.models import ACME_1, ACME_MINI, MODELS
from layer_acme.provider import AcmeProvider, AcmeSettings

__all__ = ["ACME_1", "ACME_MINI", "MODELS", "AcmeProvider", "AcmeSettings"]


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    register(AcmeProvider())
