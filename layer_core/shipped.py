"""The models of the provider plugins that ship with layer, by plugin (ids and aliases).

A config may name a model whose plugin is not installed or not loaded here: the demo config names
models of every shipped provider. That is not a typo, and layer says which plugin serves it
instead of calling it unknown. Only messages read this table; the catalogue always comes from the
plugins that are loaded. tests/test_shipped.py keeps it in step with the providers' own lists.
"""

from __future__ import annotations

SHIPPED_MODELS: dict[str, tuple[str, ...]] = {
    "google": (
        "imagen-4.0-generate-001",
        "imagen-4.0-ultra-generate-001",
        "imagen-4.0-fast-generate-001",
        "gemini-2.5-flash-image",
        "gemini-3-pro-image-preview",
    ),
    "local": ("local",),
    "openai": (
        "dall-e-2",
        "dall-e-3",
        "gpt-image-1",
        "gpt-image-1-mini",
        "gpt-image-1.5",
        "gpt-image-2",
    ),
    "replicate": (
        "flux-schnell",
        "black-forest-labs/flux-schnell",
        "flux-dev",
        "black-forest-labs/flux-dev",
        "flux-1.1-pro",
        "black-forest-labs/flux-1.1-pro",
        "flux-pro",
        "black-forest-labs/flux-pro",
        "sdxl",
        "stability-ai/sdxl",
    ),
    "fal": (
        "fal-flux-schnell",
        "fal-ai/flux/schnell",
        "fal-flux-dev",
        "fal-ai/flux/dev",
        "fal-flux-1.1-pro",
        "fal-ai/flux-pro/v1.1",
        "fal-flux-1.1-pro-ultra",
        "fal-ai/flux-pro/v1.1-ultra",
        "fal-recraft-v3",
        "fal-ai/recraft/v3/text-to-image",
        "fal-ideogram-v3",
        "fal-ai/ideogram/v3",
        "fal-sd3.5-large",
        "fal-ai/stable-diffusion-v35-large",
    ),
    "stability": (
        "stable-image-ultra",
        "sd3.5-large",
        "sd3.5-large-turbo",
        "sd3.5-medium",
        "stable-image-core",
        "stable-diffusion-xl-1024-v1-0",
        "sdxl-1.0",
    ),
}
"""Plugin (entry point) name → every model id and alias it declares. The plugin's distribution
is `layer-<plugin>` (`local` is built into layer-core) and its provider has the plugin's name."""


def shipped_plugin(model: str) -> str | None:
    """The shipped plugin that declares `model` (an id or alias), or None."""
    for plugin, names in SHIPPED_MODELS.items():
        if model in names:
            return plugin
    return None


def shipped_names() -> list[str]:
    """Every model id and alias of every shipped plugin."""
    return [name for names in SHIPPED_MODELS.values() for name in names]
