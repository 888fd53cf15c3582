"""What an image really is, read from its header: format and pixel size, without Pillow.

`image_info` is `layer_core.sizes.image_info`, which the core reads delivered sizes with; tests use
it to check that a provider delivered what its `ModelSpec` promised
(`image_info(output.bytes()) == ("image/png", 1024, 1024)`). `tiny_webp` makes a real WebP for a
fake API whose provider returns WebP (as `tiny_png` does a PNG).
"""

from __future__ import annotations

import struct

from layer_core.sizes import image_info

__all__ = ["image_info", "tiny_webp"]


def tiny_webp(width: int = 1, height: int = 1, rgb: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    """A valid solid-colour lossless WebP, built without Pillow: about 34 bytes at any size.

    A VP8L bitstream with no transforms whose five prefix codes each hold one symbol (a code of
    one symbol takes no bits), so every pixel decodes to `rgb`, fully opaque.
    """
    if not (1 <= width <= 16384 and 1 <= height <= 16384):
        raise ValueError(f"a WebP is 1 to 16384 pixels a side, not {width}x{height}")
    fields = [(0x2F, 8), (width - 1, 14), (height - 1, 14), (0, 1), (0, 3)]  # signature, header
    fields += [(0, 1), (0, 1), (0, 1)]  # no transform, no colour cache, no meta prefix codes
    red, green, blue = rgb
    for symbol in (green, red, blue, 255, 0):  # green, red, blue, alpha, distance
        fields += [(1, 1), (0, 1), (1, 1), (symbol, 8)]  # simple code: one 8-bit symbol
    bits = at = 0
    for value, size in fields:  # VP8L packs fields from the least significant bit up
        bits |= value << at
        at += size
    data = bits.to_bytes((at + 7) // 8, "little")
    chunk = b"VP8L" + struct.pack("<I", len(data)) + data + b"\0" * (len(data) % 2)
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk
