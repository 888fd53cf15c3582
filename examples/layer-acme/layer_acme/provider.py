"""The Acme Images provider: one `GenerationCall` → POST /v1/generate, and Acme's answer back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from layer_core import (
    ContentRejected,
    GenerationCall,
    ImageOutput,
    InvalidProviderRequest,
    ModelSpec,
    PerLoop,
    Provider,
    ProviderError,
    ProviderSettings,
    ProviderTimeout,
    ProviderUnavailable,
    error_for_status,
    parse_retry_after,
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


class AcmeProvider(Provider):
    """Calls Acme's HTTP API with httpx (imported on first call, not when layer loads plugins)."""

    name = "acme"
    key_env_var = "ACME_API_KEY"
    Settings = AcmeSettings

    def __init__(self) -> None:
        super().__init__()
        self._clients: PerLoop[httpx.AsyncClient] = PerLoop(self._client)

    def models(self) -> list[ModelSpec]:
        return list(MODELS)

    def _client(self) -> httpx.AsyncClient:
        import httpx

        return httpx.AsyncClient(
            base_url=self.settings.base_url or DEFAULT_BASE_URL,
            headers={"Authorization": f"Bearer {self.api_key()}"},
        )

    async def generate(self, call: GenerationCall) -> list[ImageOutput]:
        import httpx

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
        try:
            reply = await self._clients.get().post(
                "/v1/generate",
                json=body,
                headers={"Acme-Region": call.options.get("region", "eu")},
                timeout=call.timeout,
            )
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"Acme did not answer: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"cannot reach Acme: {type(exc).__name__}") from None
        if reply.status_code >= 400:
            raise _error(reply)
        return _images(reply)

    async def aclose(self) -> None:
        client = self._clients.pop()
        if client is not None:
            await client.aclose()


def _error(reply: httpx.Response) -> ProviderError:
    """Acme's error body ({"error": {"type", "message"}}) → the core's error class."""
    try:
        error = reply.json()["error"]
        kind, message = str(error["type"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        kind, message = "unknown", reply.text[:200]
    detail = f"Acme answered {reply.status_code}: {message}"
    if kind == "content_policy":
        return ContentRejected(detail, provider="acme", status=reply.status_code)
    return error_for_status(
        reply.status_code,
        detail,
        provider="acme",
        retry_after=parse_retry_after(reply.headers.get("retry-after")),
    )


def _images(reply: httpx.Response) -> list[ImageOutput]:
    """Acme's success body → images; anything else Acme never sends is `ProviderUnavailable`."""
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
    except (ValueError, KeyError, TypeError) as exc:
        raise ProviderUnavailable(
            f"Acme sent a malformed reply ({type(exc).__name__}): {reply.text[:120]!r}"
        ) from None
