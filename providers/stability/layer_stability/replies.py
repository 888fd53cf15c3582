"""Reading Stability's replies the same way on both transports: refusals, empty accounts,
malformed bodies, and images (whose pixel size is read from the image itself)."""

from __future__ import annotations

import base64
import binascii
import re

from layer_core import ImageOutput, malformed_reply
from layer_core.sizes import format_size, png_size

_OUT_OF_CREDITS = re.compile(
    r"payment_required|(insufficient|lack sufficient|not enough|out of) (credits|balance)", re.I
)
_MODERATION = re.compile(r"moderation|content[ _]filter", re.I)


def out_of_credits(text: str) -> bool:
    """Whether an error text says the account cannot pay (a billing error, not a rate limit)."""
    return _OUT_OF_CREDITS.search(text) is not None


def moderation(text: str) -> bool:
    """Whether an error text says Stability's content moderation refused the request."""
    return _MODERATION.search(text) is not None


def png_output(data: bytes, *, seed: int | None, encoded: str | None = None) -> ImageOutput:
    """An output for PNG bytes (`encoded`: the same, in base64, if at hand), with its pixel size."""
    size = png_size(data)
    if size is None:
        raise malformed_reply("the image is not a PNG")
    return ImageOutput(
        base64=encoded or base64.b64encode(data).decode("ascii"),
        seed=seed,
        size=format_size(*size),
        size_source="image",
        mime_type="image/png",
    )


def decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise malformed_reply("the image is not valid base64") from None
