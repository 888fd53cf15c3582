"""The Acme Images provider: one `GenerationCall` → POST /v1/generate, and Acme's answer back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from layer_core import (
    ContentRejected,
    GenerationCall,
    ImageOutput,
    InvalidProviderRequest,
    ModelSpec,
    Provider,
    ProviderError,
    ProviderSettings,
    error_for_response,
    error_text,
    httpx_errors,
    malformed_reply,
)
from layer_core.sizes import aspect_ratio_for

from layer_acme.models import MODELS, RATIOS

if TYPE_CHECKING:
    import httpx

DEFAULT_BASE_URL = "https://api.acme-images.example"
#: layer's vocabulary → Acme's.
DETAIL = {"standard": "standard", "hd": "fine"}
PALETTE = {"vivid": "bold", "natural": "muted"}


class AcmeSettings(ProviderSettings):
    """`[plugins.acme]`: the common keys (base_url, api_key_env, prices) plus Acme's region."""

    region: Literal["eu", "us"] = "eu"


class AcmeProvider(Provider[AcmeSettings, "httpx.AsyncClient"]):
    """Calls Acme's HTTP API with httpx (imported on first call, not when layer loads plugins)."""

    name = "acme"
    key_env_var = "ACME_API_KEY"

    def models(self) -> list[ModelSpec]:
        return list(MODELS)

    def make_client(self) -> httpx.AsyncClient:
        import httpx

        return httpx.AsyncClient(
            base_url=self.settings.base_url or DEFAULT_BASE_URL,
            headers={
                "Authorization": f"Bearer {self.api_key()}",
                "Acme-Region": self.settings.region,
            },
        )

    async def generate(self, call: GenerationCall) -> list[ImageOutput]:
        model = call.model.id
        ratio = aspect_ratio_for(call.size, RATIOS[model])
        if ratio is None:
            raise InvalidProviderRequest(f"{model} has no aspect ratio for {call.size}")
        body: dict[str, Any] = {
            "model": model,
            "prompt": call.prompt,
            "aspect_ratio": ratio,
            "count": call.n,
        }
        if call.quality is not None:
            body["detail"] = DETAIL[call.quality]
        if call.style is not None:
            body["palette"] = PALETTE[call.style]
        if call.seed is not None:
            body["seed"] = call.seed
        with httpx_errors("Acme"):
            reply = await self.client().post("/v1/generate", json=body, timeout=call.timeout)
        if reply.status_code >= 400:
            raise _error(reply)
        return _images(reply)


def _error(reply: httpx.Response) -> ProviderError:
    """Acme's error body ({"error": {"type", "message"}}) → the core's error class."""
    text = error_text(reply, lambda body: body["error"]["message"])
    try:
        kind = reply.json()["error"]["type"]
    except (ValueError, LookupError, TypeError):
        kind = "unknown"
    if kind == "content_policy":
        return ContentRejected(text, status=reply.status_code)
    return error_for_response(reply, text)


def _images(reply: httpx.Response) -> list[ImageOutput]:
    """Acme's success body → images; anything else Acme never sends is a malformed reply."""
    try:
        return [
            ImageOutput(
                base64=item["b64_png"],
                mime_type="image/png",
                seed=item.get("seed"),
                size=f"{item['width']}x{item['height']}",
            )
            for item in reply.json()["images"]
        ]
    except (ValueError, LookupError, TypeError) as exc:
        raise malformed_reply(f"{type(exc).__name__}: {reply.text[:120]!r}") from None
