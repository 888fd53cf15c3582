"""One call straight to a provider, without the router: for a provider's own tests."""

from __future__ import annotations

import asyncio

from layer_core.provider import GenerationCall, Provider
from layer_core.schema import ImageOutput

__all__ = ["generate_once"]


def generate_once(provider: Provider, call: GenerationCall) -> list[ImageOutput]:
    """`provider.generate(call)` on an event loop of its own, then `provider.aclose()` on it.

    Returns what the provider returned, or raises what it raised (a `ProviderError`, if the
    provider maps its errors as it should), so a test sees exactly what the core would.
    """

    async def once() -> list[ImageOutput]:
        try:
            return await provider.generate(call)
        finally:
            await provider.aclose()

    return asyncio.run(once())
