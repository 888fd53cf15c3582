"""Stability's REST v2beta API through httpx: Stable Image Ultra and Core, SD 3.5.

One multipart POST to /v2beta/stable-image/generate/{ultra,core,sd3} per image, asking for JSON
(`{image: base64, seed, finish_reason}`). Imported on the first REST call, not at plugin load.
"""

from __future__ import annotations

from typing import Any

import httpx

from layer_core import (
    BillingError,
    ContentRejected,
    GenerationCall,
    ImageOutput,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    error_for_status,
    parse_retry_after,
)
from layer_stability.models import PROVIDER, StabilityModel, aspect_ratio_for
from layer_stability.replies import decode_base64, malformed, moderation, out_of_credits, png_output


def client(base_url: str, api_key: str) -> httpx.AsyncClient:
    """An async client for one event loop; the router is the only retry loop, so none here."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"authorization": f"Bearer {api_key}", "accept": "application/json"},
    )


def form(model: StabilityModel, call: GenerationCall, pixels: str) -> dict[str, str]:
    """The multipart fields for one image of `call` at `pixels` (one of the model's outputs)."""
    fields = {
        "prompt": call.prompt,
        "aspect_ratio": aspect_ratio_for(pixels),
        "output_format": "png",
    }
    if model.sd3_model is not None:
        fields["model"] = model.sd3_model
    if call.seed is not None:
        fields["seed"] = str(call.seed)
    return fields


async def generate(
    http: httpx.AsyncClient, model: StabilityModel, call: GenerationCall, pixels: str
) -> ImageOutput:
    fields = form(model, call, pixels)
    try:
        reply = await http.post(
            f"/v2beta/stable-image/generate/{model.endpoint}",
            # (None, value): a form field without a file name; httpx sends multipart for `files`
            files={name: (None, value) for name, value in fields.items()},
            timeout=call.timeout,
        )
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(
            f"no reply in {call.timeout:g}s ({type(exc).__name__})",
            provider=PROVIDER,
            model=model.id,
        ) from None
    except httpx.TransportError as exc:
        raise ProviderUnavailable(
            f"connection failed: {type(exc).__name__}: {exc}", provider=PROVIDER, model=model.id
        ) from None
    if reply.status_code >= 400:
        raise error_for(reply, model.id)
    return image_from(reply, model.id)


def image_from(reply: httpx.Response, model: str) -> ImageOutput:
    """The image of a 200 reply; CONTENT_FILTERED is a refusal, anything odd is malformed."""
    try:
        body: Any = reply.json()
    except ValueError:
        raise malformed(f"not JSON ({reply.headers.get('content-type')})", model) from None
    if not isinstance(body, dict):
        raise malformed("the body is not a JSON object", model)
    finish = body.get("finish_reason")
    if finish == "CONTENT_FILTERED":
        raise ContentRejected(
            "Stability's content filter withheld the image (finish_reason CONTENT_FILTERED)",
            provider=PROVIDER,
            model=model,
            status=reply.status_code,
        )
    if finish != "SUCCESS":
        raise malformed(f"finish_reason {finish!r}", model)
    encoded = body.get("image")
    if not isinstance(encoded, str) or not encoded:
        raise malformed("no image", model)
    seed = body.get("seed")
    if isinstance(seed, str) and seed.isdigit():
        seed = int(seed)
    if not isinstance(seed, int) or isinstance(seed, bool):
        seed = None
    return png_output(decode_base64(encoded, model), seed=seed, model=model, encoded=encoded)


def error_for(reply: httpx.Response, model: str) -> ProviderError:
    """The core error for a 4xx/5xx reply (`{name, errors: [...]}` when Stability sends JSON)."""
    status = reply.status_code
    text = describe(reply)
    if status == 403 and moderation(text):
        return ContentRejected(text, provider=PROVIDER, model=model, status=status)
    if status == 402 or out_of_credits(text):
        return BillingError(text, provider=PROVIDER, model=model, status=status)
    return error_for_status(
        status,
        text,
        provider=PROVIDER,
        model=model,
        retry_after=parse_retry_after(reply.headers.get("retry-after")),
    )


def describe(reply: httpx.Response) -> str:
    """'HTTP 400 bad_request: prompt: is required' from a Stability error body, or its text."""
    head = f"HTTP {reply.status_code}"
    try:
        body: Any = reply.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        name = body.get("name")
        errors = body.get("errors")
        parts = [str(e) for e in errors] if isinstance(errors, list) else []
        detail = "; ".join(parts) or str(body.get("message") or "")
        if name or detail:
            return f"{head} {name or 'error'}: {detail}".rstrip(": ")
    text = reply.text.strip()[:300]
    return f"{head}: {text}" if text else f"{head} {reply.reason_phrase}"
