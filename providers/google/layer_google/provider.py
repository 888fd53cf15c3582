"""`GoogleProvider`: a `GenerationCall` → `generate_images` (Imagen) or `generate_content` (Gemini
image models) on the google-genai SDK's async client, and back.

The SDK is imported when the first call makes a client, never at plugin load.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from layer_core.catalog import ModelSpec
from layer_core.errors import (
    BillingError,
    ContentRejected,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from layer_core.provider import (
    GenerationCall,
    Provider,
    ProviderSettings,
    error_for_status,
    malformed_reply,
    split_cost,
)
from layer_core.schema import ImageOutput
from layer_google.models import PROVIDER, GoogleModel, Served, serve, shipped

if TYPE_CHECKING:
    from google.genai import Client

__all__ = ["GoogleProvider", "GoogleSettings", "error_from_sdk"]

SAFETY_REASONS = frozenset({"SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII"})
_DELAY = re.compile(r"^(\d+(?:\.\d+)?)s$")


class GoogleSettings(ProviderSettings):
    """`[plugins.google]`: the common keys plus Google's."""

    vertexai: bool = Field(False, description="call Vertex AI (project, location) instead")
    project: str | None = Field(None, description="Vertex AI: the Google Cloud project")
    location: str | None = Field(None, description="Vertex AI: the region, e.g. us-central1")
    person_generation: str | None = Field(
        None, description="Imagen: dont_allow, allow_adult or allow_all (Google's default if unset)"
    )
    output_mime_type: str = Field("image/png", description="Imagen: image/png or image/jpeg")
    extra_models: dict[str, GoogleModel] = Field(
        default_factory=dict, description="more models (or replacements) as data"
    )

    def served(self) -> dict[str, Served]:
        return {k: serve(k, v) for k, v in {**shipped(), **self.extra_models}.items()}


class GoogleProvider(Provider[GoogleSettings, "Client"]):
    """Google's Gemini API (or Vertex AI): Imagen and Gemini image models."""

    name = PROVIDER
    key_env_var = "GEMINI_API_KEY"
    key_env_fallbacks = ("GOOGLE_API_KEY",)

    def models(self) -> list[ModelSpec]:
        return [served.spec for served in self.settings.served().values()]

    def make_client(self) -> Client:
        from google.genai import Client, types

        options = types.HttpOptions(
            base_url=self.settings.base_url,
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        if self.settings.vertexai:
            return Client(
                vertexai=True,
                project=self.settings.project,
                location=self.settings.location,
                http_options=options,
            )
        return Client(api_key=self.api_key(), http_options=options)

    async def generate(self, call: GenerationCall) -> list[ImageOutput]:
        served = self.settings.served()[call.model.id]
        try:
            if served.model.family == "imagen":
                return await self._imagen(call, served.model)
            return await self._gemini(call, served.model)
        except ProviderError:
            raise
        except Exception as exc:
            error = error_from_sdk(exc)
            if error is None:
                raise
            raise error from None

    async def _imagen(self, call: GenerationCall, model: GoogleModel) -> list[ImageOutput]:
        from google.genai import types

        config: dict[str, Any] = {
            "number_of_images": call.n,
            "aspect_ratio": model.ratios[call.size],
            "output_mime_type": self.settings.output_mime_type,
            "include_rai_reason": True,
            "http_options": types.HttpOptions(timeout=int(call.timeout * 1000)),
        }
        if model.image_size:
            config["image_size"] = model.image_size
        if self.settings.person_generation:
            config["person_generation"] = self.settings.person_generation
        response = await self.client().aio.models.generate_images(
            model=call.model.id, prompt=call.prompt, config=types.GenerateImagesConfig(**config)
        )
        images, reasons = [], []
        for item in response.generated_images or []:
            image = item.image
            if image is not None and image.image_bytes:
                images.append((image.image_bytes, image.mime_type or "image/png"))
            elif item.rai_filtered_reason:
                reasons.append(item.rai_filtered_reason)
        if not images:
            if reasons or not response.generated_images:
                why = (
                    "; ".join(reasons) or "no image came back (filtered by Google's safety filters)"
                )
                raise ContentRejected(why)
            raise malformed_reply("an image without bytes", status=200)
        size = model.delivered.get(call.size, call.size)
        return [
            ImageOutput(base64=base64.b64encode(data).decode(), mime_type=mime, size=size)
            for data, mime in images
        ]

    async def _gemini(self, call: GenerationCall, model: GoogleModel) -> list[ImageOutput]:
        from google.genai import types

        image_config: dict[str, Any] = {"aspect_ratio": model.ratios[call.size]}
        if model.image_size:
            image_config["image_size"] = model.image_size
        response = await self.client().aio.models.generate_content(
            model=call.model.id,
            contents=call.prompt,
            config=types.GenerateContentConfig(
                response_modalities=["IMAGE"],
                image_config=types.ImageConfig(**image_config),
                http_options=types.HttpOptions(timeout=int(call.timeout * 1000)),
            ),
        )
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason:
            raise ContentRejected(f"prompt blocked by Google: {feedback.block_reason}")
        candidates = response.candidates or []
        images, text, finish = [], [], None
        for candidate in candidates:
            finish = candidate.finish_reason
            for part in (candidate.content.parts if candidate.content else None) or []:
                if part.inline_data is not None and part.inline_data.data:
                    images.append((part.inline_data.data, part.inline_data.mime_type))
                elif part.text:
                    text.append(part.text)
        if not images:
            reason = getattr(finish, "value", finish)
            if reason in SAFETY_REASONS:
                raise ContentRejected(f"image withheld by Google's safety filters ({reason})")
            if text:
                raise ProviderUnavailable(
                    f"{call.model.id} answered with text only, no image: {' '.join(text)[:200]}"
                )
            raise malformed_reply("no image in the response", status=200)
        images = images[: call.n]
        size = model.delivered.get(call.size, call.size)
        costs: list[Any] = [None] * len(images)
        usage = response.usage_metadata
        if model.token_prices is not None and usage is not None:
            image_tokens = sum(
                d.token_count or 0
                for d in usage.candidates_tokens_details or []
                if getattr(d.modality, "value", d.modality) == "IMAGE"
            )
            if image_tokens:
                total = model.token_prices.cost(usage.prompt_token_count or 0, image_tokens)
                costs = split_cost(total, len(images))
        outputs = []
        for (data, mime), cost in zip(images, costs, strict=True):
            fields: dict[str, Any] = {
                "base64": base64.b64encode(data).decode(),
                "mime_type": mime or "image/png",
                "size": size,
            }
            if cost is not None:
                fields["cost_exact"] = cost
                fields["cost_source"] = "provider_usage"
            outputs.append(ImageOutput(**fields))
        return outputs


def error_from_sdk(exc: BaseException) -> ProviderError | None:
    """The core error for an exception out of google-genai or its HTTP transport; None if not."""
    error = _mapped(exc)
    if error is not None:
        error.provider = PROVIDER
    return error


def _mapped(exc: BaseException) -> ProviderError | None:
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        status = exc.code
        message = exc.message or exc.status or f"HTTP {status}"
        # Google's 400 FAILED_PRECONDITION is an account that must enable billing (or a country
        # without a free tier), Vertex's 403 BILLING_DISABLED a project without billing; a 429's
        # "check your plan and billing details" is a rate limit, not this.
        if exc.status == "FAILED_PRECONDITION" or (status == 403 and "billing" in message.lower()):
            return BillingError(message, status=status)
        if status == 400 and ("safety" in message.lower() or "blocked" in message.lower()):
            return ContentRejected(message, status=status)
        return error_for_status(status, message, retry_after=_retry_delay(exc.details))
    if isinstance(exc, TimeoutError) or type(exc).__name__ in (
        "ReadTimeout",
        "ConnectTimeout",
        "TimeoutException",
        "WriteTimeout",
        "PoolTimeout",
        "ServerTimeoutError",
    ):
        return ProviderTimeout("the request to Google timed out")
    module = type(exc).__module__
    if module.startswith(("httpx", "aiohttp")):
        return ProviderUnavailable(f"could not reach Google: {type(exc).__name__}")
    if isinstance(exc, errors.UnknownApiResponseError | ValueError):
        return malformed_reply(f"the SDK could not read it ({type(exc).__name__})", status=200)
    return None


def _retry_delay(details: object) -> float | None:
    """`retryDelay` ("7s") of the `google.rpc.RetryInfo` in an error's details."""
    error = details.get("error") if isinstance(details, Mapping) else None
    for item in (error.get("details") if isinstance(error, Mapping) else None) or []:
        if isinstance(item, Mapping) and str(item.get("@type", "")).endswith("RetryInfo"):
            match = _DELAY.match(str(item.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None
