"""layer's Google provider: Gemini image models and Imagen through the google-genai SDK.

The SDK is imported on the first call, not when this loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from layer_core.hookspecs import hookimpl
from layer_google.models import GoogleModel, TokenPrices
from layer_google.provider import GoogleProvider, GoogleSettings, error_from_sdk

if TYPE_CHECKING:
    from collections.abc import Callable

    from layer_core.provider import Provider

__all__ = [
    "GoogleModel",
    "GoogleProvider",
    "GoogleSettings",
    "TokenPrices",
    "error_from_sdk",
    "register_providers",
]


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    register(GoogleProvider())
