"""Size arithmetic shared by every provider: WxH ↔ aspect ratio, megapixels, snapped dimensions.

Providers that take an aspect ratio (Flux, Stability) rather than pixels use `aspect_ratio_for`
to map a request's size onto the ratios they accept; a model declares a size only where the image
it returns has that ratio (within `tolerance`), and reports the pixels it really delivers
(`image_info` reads them from the image's header). Models that return a fixed set of pixel sizes
(SDXL) use `closest_dimensions`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from fractions import Fraction
from typing import Literal, get_args

#: The sizes a request may ask for (a model declares which of them it serves).
Size = Literal[
    "256x256", "512x512", "1024x1024", "1792x1024", "1024x1792", "1536x1024", "1024x1536"
]
SIZES: tuple[Size, ...] = get_args(Size)

#: How far (relative) a delivered ratio may be from the requested one and still count as it:
#: 1792x1024 is 7:4 (1.750), served as 16:9 (1.778), 1.6% apart.
DEFAULT_TOLERANCE = 0.02


def parse_size(size: str) -> tuple[int, int]:
    """'1792x1024' → (1792, 1024)."""
    width, sep, height = size.partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise ValueError(f"size {size!r} is not WIDTHxHEIGHT")
    return int(width), int(height)


def ratio_value(ratio: str) -> float:
    """'16:9' → 1.777…"""
    width, sep, height = ratio.partition(":")
    if not sep:
        raise ValueError(f"aspect ratio {ratio!r} is not W:H")
    return float(width) / float(height)


def exact_ratio(size: str) -> str:
    """'1536x1024' → '3:2', '1792x1024' → '7:4' (reduced, not snapped)."""
    width, height = parse_size(size)
    fraction = Fraction(width, height)
    return f"{fraction.numerator}:{fraction.denominator}"


def aspect_ratio_for(
    size: str, allowed: Iterable[str], *, tolerance: float = DEFAULT_TOLERANCE
) -> str | None:
    """The ratio in `allowed` closest to `size`'s, if within `tolerance` (relative); else None."""
    width, height = parse_size(size)
    wanted = width / height
    best: tuple[float, str] | None = None
    for ratio in allowed:
        off = abs(ratio_value(ratio) - wanted) / wanted
        if off <= tolerance and (best is None or off < best[0]):
            best = (off, ratio)
    return best[1] if best else None


def sizes_for_ratios(
    allowed: Iterable[str], *, tolerance: float = DEFAULT_TOLERANCE
) -> tuple[Size, ...]:
    """Every layer size that some ratio in `allowed` serves, in layer's size order."""
    ratios = tuple(allowed)
    return tuple(s for s in SIZES if aspect_ratio_for(s, ratios, tolerance=tolerance) is not None)


def closest_dimensions(
    size: str, allowed: Iterable[str], *, tolerance: float = DEFAULT_TOLERANCE
) -> str | None:
    """The WxH in `allowed` whose shape is closest to `size`'s, if within `tolerance`; else None.

    For models that return fixed pixel sizes (SDXL: 1024x1024, 1344x768, ...): a size is served
    only where what comes back has its shape. '1792x1024' → '1344x768' (both 7:4).
    """
    by_ratio = {exact_ratio(dimensions): dimensions for dimensions in allowed}
    ratio = aspect_ratio_for(size, by_ratio, tolerance=tolerance)
    return None if ratio is None else by_ratio[ratio]


def sizes_for_dimensions(
    allowed: Iterable[str], *, tolerance: float = DEFAULT_TOLERANCE
) -> tuple[Size, ...]:
    """Every layer size that some WxH in `allowed` serves (see `closest_dimensions`)."""
    return sizes_for_ratios([exact_ratio(d) for d in allowed], tolerance=tolerance)


def image_info(data: bytes) -> tuple[str, int, int]:
    """(mime type, width, height) of a PNG, JPEG, WebP or GIF, read from its header (the first
    bytes are enough); ValueError for anything else, or a header cut short."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return "image/png", width, height
    if data.startswith(b"\xff\xd8"):
        return ("image/jpeg", *_jpeg_size(data))
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return ("image/webp", *_webp_size(data))
    if data.startswith((b"GIF87a", b"GIF89a")) and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return "image/gif", width, height
    raise ValueError(f"not a PNG, JPEG, WebP or GIF image (starts {data[:12]!r})")


#: JPEG start-of-frame markers (the ones that carry the frame size).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int]:
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            break
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        at += 2 + length
    raise ValueError("JPEG without a frame header")


def _webp_size(data: bytes) -> tuple[int, int]:
    kind = data[12:16]
    if kind == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and len(data) >= 25:
        b0, b1, b2, b3 = data[21:25]
        return 1 + (b0 | (b1 & 0x3F) << 8), 1 + (b1 >> 6 | b2 << 2 | (b3 & 0x0F) << 10)
    if kind == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    raise ValueError(f"WebP chunk {kind!r} without a readable size")


#: How much of a base64 image `encoded_image_size` decodes: 64 characters first (48 bytes: a
#: PNG's, WebP's or GIF's size is in its first 30), then more for a JPEG, whose frame header
#: comes after its metadata.
_HEADS = (64, 1024, 96 * 1024)


def encoded_image_size(encoded: str) -> str | None:
    """'WxH' of a base64 image (PNG, JPEG, WebP, GIF), decoding only the first bytes; None if
    the text is not base64 or its head is not a known image header."""
    import base64
    import binascii

    for chars in _HEADS:
        try:
            _, width, height = image_info(base64.b64decode(encoded[:chars]))
        except (binascii.Error, ValueError):
            if len(encoded) <= chars:
                return None
            continue
        return format_size(width, height)
    return None


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's header, or None if `data` does not start like a PNG."""
    try:
        mime, width, height = image_info(data)
    except ValueError:
        return None
    return (width, height) if mime == "image/png" else None


def same_ratio(size: str, other: str, *, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """Whether two WxH sizes have the same aspect ratio, within `tolerance` (relative).

    How a model decides it can list a size: '1792x1024' and '1344x768' (both 7:4) → True;
    '1536x1024' and '1216x832' (1.5 and 1.46) → False.
    """
    return aspect_ratio_for(size, [exact_ratio(other)], tolerance=tolerance) is not None


def pixels_for(size: str, choices: Iterable[int]) -> int:
    """The smallest pixel count in `choices` that covers `size`'s area, else the largest one.

    How a model offering a few output areas picks one: with 512x512 and 1024x1024 worth of
    pixels on offer, '256x256' and '512x512' take the first, '1792x1024' the second.
    """
    width, height = parse_size(size)
    options = sorted(choices)
    if not options:
        raise ValueError("no pixel counts to choose from")
    return next((pixels for pixels in options if pixels >= width * height), options[-1])


def fit_within(
    size: str, *, max_side: int, min_side: int = 1, multiple: int = 1
) -> tuple[int, int] | None:
    """`size` scaled down (never up) to the largest WxH of exactly its aspect ratio whose sides
    are multiples of `multiple` within [`min_side`, `max_side`]; None if there is none.

    For models that take width and height within limits: '1792x1024' within 1440 in steps of 32
    → (1344, 768); '1536x1024' → (1440, 960); '1024x1024' → (1024, 1024).
    """
    width, height = parse_size(size)
    ratio = Fraction(width, height)
    step_w, step_h = ratio.numerator * multiple, ratio.denominator * multiple
    steps = min(width // step_w, height // step_h, max_side // step_w, max_side // step_h)
    if steps < 1 or min(step_w, step_h) * steps < min_side:
        return None
    return step_w * steps, step_h * steps


def megapixels(size: str) -> float:
    """'1024x1024' → 1.048576."""
    width, height = parse_size(size)
    return width * height / 1_000_000


def dimensions_for(ratio: str, total_pixels: int, *, multiple: int = 16) -> tuple[int, int]:
    """Width and height for `ratio` with about `total_pixels`, each a multiple of `multiple`.

    This is how ratio-based models size their output (e.g. Flux: 16:9 at 1 MP → 1344x768).
    """
    value = ratio_value(ratio)
    height = (total_pixels / value) ** 0.5
    width = height * value

    def snap(x: float) -> int:
        return max(multiple, round(x / multiple) * multiple)

    return snap(width), snap(height)


def format_size(width: int, height: int) -> str:
    """(1344, 768) → '1344x768'."""
    return f"{width}x{height}"
