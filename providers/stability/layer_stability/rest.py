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
    error_for_response,
    error_text,
    httpx_errors,
    malformed_reply,
)
from layer_stability.models import StabilityModel, aspect_ratio_for
from layer_stability.replies import decode_base64, moderation, out_of_credits, png_output


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
    with httpx_errors("Stability"):
        reply = await http.post(
            f"/v2beta/stable-image/generate/{model.endpoint}",
            # (None, value): a form field without a file name; httpx sends multipart for `files`
            files={name: (None, value) for name, value in fields.items()},
            timeout=call.timeout,
        )
    if reply.status_code >= 400:
        raise error_for(reply)
    return image_from(reply)


def image_from(reply: httpx.Response) -> ImageOutput:
    """The image of a 200 reply; CONTENT_FILTERED is a refusal, anything odd is malformed."""
    try:
        body: Any = reply.json()
    except ValueError:
        raise malformed_reply(f"not JSON ({reply.headers.get('content-type')})") from None
    if not isinstance(body, dict):
        raise malformed_reply("the body is not a JSON object")
    finish = body.get("finish_reason")
    if finish == "CONTENT_FILTERED":
        raise ContentRejected(
            "Stability's content filter withheld the image (finish_reason CONTENT_FILTERED)",
            status=reply.status_code,
        )
    if finish != "SUCCESS":
        raise malformed_reply(f"finish_reason {finish!r}")
    encoded = body.get("image")
    if not isinstance(encoded, str) or not encoded:
        raise malformed_reply("no image")
    seed = body.get("seed")
    if isinstance(seed, str) and seed.isdigit():
        seed = int(seed)
    if not isinstance(seed, int) or isinstance(seed, bool):
        seed = None
    return png_output(decode_base64(encoded), seed=seed, encoded=encoded)


def error_for(reply: httpx.Response) -> ProviderError:
    """The core error for a 4xx/5xx reply (`{name, errors: [...]}` when Stability sends JSON)."""
    status = reply.status_code
    text = error_text(reply, _words)
    if status == 403 and moderation(text):
        return ContentRejected(text, status=status)
    if status == 402 or out_of_credits(text):
        return BillingError(text, status=status)
    return error_for_response(reply, text)


def _words(body: Any) -> str | None:
    """'bad_request: prompt: is required' from a Stability error body."""
    name = body.get("name")
    errors = body.get("errors")
    parts = [str(e) for e in errors] if isinstance(errors, list) else []
    detail = "; ".join(parts) or str(body.get("message") or "")
    return f"{name or 'error'}: {detail}".rstrip(": ") if name or detail else None
