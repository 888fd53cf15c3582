"""layer provider for fal.ai: FLUX (schnell, dev, 1.1 pro, ultra), Recraft V3, Ideogram 3.0 and
Stable Diffusion 3.5 Large on fal's queue, through the official fal-client.

Model ids carry a `fal-` prefix (`fal-flux-schnell`); fal's endpoint id (`fal-ai/flux/schnell`)
resolves too. The key is read from `FAL_KEY` (or `[plugins.fal] api_key_env`). fal-client is
imported on the first call, so loading the plugin costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from layer_core import Provider, hookimpl
from layer_fal.models import MODELS, FalModel
from layer_fal.provider import FalProvider, FalSettings

__all__ = ["MODELS", "FalModel", "FalProvider", "FalSettings"]


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    register(FalProvider())
