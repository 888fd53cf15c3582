"""What an image really is, read from its header: format and pixel size, without Pillow.

Tests use it to check that a provider delivered what its `ModelSpec` promised
(`image_info(output.bytes()) == ("image/png", 1024, 1024)`). `tiny_webp` makes a real WebP for a
fake API whose provider returns WebP (as `tiny_png` does a PNG).
"""

from __future__ import annotations

import struct

__all__ = ["image_info", "tiny_webp"]


def image_info(data: bytes) -> tuple[str, int, int]:
    """(mime type, width, height) of a PNG, JPEG, WebP or GIF; ValueError for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return "image/png", width, height
    if data.startswith(b"\xff\xd8"):
        return ("image/jpeg", *_jpeg_size(data))
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return ("image/webp", *_webp_size(data))
    if data.startswith((b"GIF87a", b"GIF89a")):
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
