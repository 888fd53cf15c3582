"""layer's OpenAI provider: DALL·E 2 and 3 and the gpt-image models through the openai SDK.

Also serves any OpenAI-compatible image endpoint (`base_url` in `[plugins.openai]`), with its
models declared as data there. The SDK is imported on the first call, not when this loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from layer_core.hookspecs import hookimpl
from layer_openai.models import FAMILIES, OpenAIModel, TokenPrices
from layer_openai.provider import OpenAIProvider, OpenAISettings, error_from_sdk

if TYPE_CHECKING:
    from collections.abc import Callable

    from layer_core.provider import Provider

__all__ = [
    "FAMILIES",
    "OpenAIModel",
    "OpenAIProvider",
    "OpenAISettings",
    "TokenPrices",
    "error_from_sdk",
    "register_providers",
]


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    register(OpenAIProvider())
