"""One call straight to a provider, without the router: for a provider's own tests."""

from __future__ import annotations

import asyncio

from layer_core.errors import ProviderError, ProviderTimeout
from layer_core.provider import GenerationCall, Provider
from layer_core.schema import ImageOutput

__all__ = ["generate_once"]


def generate_once(
    provider: Provider, call: GenerationCall, *, timeout: float | None = None
) -> list[ImageOutput]:
    """`provider.generate(call)` on an event loop of its own, then `provider.aclose()` on it.

    Returns what the provider returned, or raises what it raised (a `ProviderError`, if the
    provider maps its errors as it should, attributed to the provider and model as the core
    attributes it), so a test sees exactly what the core would. With `timeout`, a call still
    running after that many seconds is cancelled and raises `ProviderTimeout`, as the router's
    per-attempt timeout would.
    """

    async def once() -> list[ImageOutput]:
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await provider.generate(call)
        except ProviderError as exc:
            exc.attribute(provider.name, call.model.id)  # as the core does
            raise
        except TimeoutError:
            if not deadline.expired():
                raise  # the provider's own, unmapped: the caller should see it
            raise ProviderTimeout(
                f"no answer within {timeout:g}s", provider=provider.name, model=call.model.id
            ) from None
        finally:
            await provider.aclose()

    return asyncio.run(once())
