"""layer provider for Replicate: Flux (schnell, dev, 1.1 pro, pro) and SDXL, via the replicate SDK.

Model ids are the short names (`flux-schnell`); the full `owner/name` resolves too. The key is read
from `REPLICATE_API_TOKEN` (or `[plugins.replicate] api_key_env`). The SDK is imported on the first
call, so loading the plugin costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from layer_core import Provider, hookimpl
from layer_replicate.models import MODELS, ReplicateModel
from layer_replicate.provider import ReplicateProvider, ReplicateSettings

__all__ = ["MODELS", "ReplicateModel", "ReplicateProvider", "ReplicateSettings"]


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    register(ReplicateProvider())
