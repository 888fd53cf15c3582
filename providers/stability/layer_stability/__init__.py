"""layer's Stability AI provider: Stable Image Ultra and Core and SD 3.5 over REST (httpx), and
the SDXL engines over gRPC when the `[grpc]` extra (`stability-sdk`) is installed.

Stability's current models are served only by its REST v2beta API; `stability-sdk` speaks only
the older gRPC generation API and pins old grpcio/protobuf, so it is optional. httpx, grpc and
the SDK are imported on the first call that needs them, never when the plugin loads.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import TYPE_CHECKING

from layer_core import (
    GenerationCall,
    ImageOutput,
    InvalidProviderRequest,
    ModelSpec,
    Provider,
    ProviderSettings,
    ProviderUnavailable,
    hookimpl,
)
from layer_stability.models import (
    GRPC_MODELS,
    MAX_SEED,
    MIN_SEED,
    MODELS,
    PROVIDER,
    REST_MODELS,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from layer_stability.grpc_engine import Engine

__all__ = ["GRPC_EXTRA_HINT", "StabilityProvider", "StabilitySettings", "grpc_extra_installed"]

DEFAULT_BASE_URL = "https://api.stability.ai"
DEFAULT_GRPC_HOST = "grpc.stability.ai:443"
GRPC_EXTRA_HINT = "pip install 'layer-stability[grpc]' for the SDXL gRPC engines"


class StabilitySettings(ProviderSettings):
    """`[plugins.stability]`: `base_url` (REST), `grpc_host` (host:port; ":443" means TLS)."""

    grpc_host: str = DEFAULT_GRPC_HOST


def grpc_extra_installed() -> bool:
    """Whether `stability-sdk` and `grpc` can be found (without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("stability_sdk", "grpc"))


class StabilityProvider(Provider[StabilitySettings, "httpx.AsyncClient"]):
    """Stability AI: one image per request, by aspect ratio (REST) or pixel size (gRPC)."""

    name = PROVIDER
    key_env_var = "STABILITY_API_KEY"

    def __init__(self) -> None:
        super().__init__()
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()

    def models(self) -> list[ModelSpec]:
        served = REST_MODELS + (GRPC_MODELS if grpc_extra_installed() else ())
        return [model.spec() for model in served]

    def notes(self) -> list[str]:
        return [] if grpc_extra_installed() else [GRPC_EXTRA_HINT]

    async def generate(self, call: GenerationCall) -> list[ImageOutput]:
        model = MODELS[call.model.id]
        pixels = model.pixels_for(call.size)
        if pixels is None:  # the planner only sends declared sizes
            raise InvalidProviderRequest(f"{model.id} cannot produce {call.size}")
        if call.seed is not None and not MIN_SEED <= call.seed <= MAX_SEED:
            raise InvalidProviderRequest(
                f"seed {call.seed} cannot be honoured: Stability takes seeds {MIN_SEED}.."
                f"{MAX_SEED} (0 means a random seed)"
            )
        if model.transport == "rest":
            from layer_stability import rest

            return [await rest.generate(self.client(), model, call, pixels)]
        return await self._grpc_engine().generate(model, call, pixels)

    def make_client(self) -> httpx.AsyncClient:
        """The REST client (the gRPC channel is shared by every event loop: `_grpc_engine`)."""
        from layer_stability import rest

        return rest.client(self.settings.base_url or DEFAULT_BASE_URL, self.api_key())

    def _grpc_engine(self) -> Engine:
        """The channel to the gRPC host, opened on first use (shared by every event loop)."""
        with self._engine_lock:
            if self._engine is None:
                try:
                    from layer_stability.grpc_engine import Engine
                except Exception as exc:  # noqa: BLE001 - a missing or broken [grpc] extra
                    raise ProviderUnavailable(
                        f"the gRPC engines need a working stability-sdk "
                        f"({type(exc).__name__}: {exc}); {GRPC_EXTRA_HINT}"
                    ) from None
                self._engine = Engine(self.settings.grpc_host, self.api_key())
            return self._engine

    async def aclose(self) -> None:
        await super().aclose()
        with self._engine_lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    register(StabilityProvider())
