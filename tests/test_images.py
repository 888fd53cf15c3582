"""Reading an image's format and pixel size from its header, for every format providers return."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from layer_core.testing import tiny_png
from layer_core.testing.images import image_info


@pytest.mark.parametrize(
    ("fmt", "mime", "options"),
    [
        ("PNG", "image/png", {}),
        ("JPEG", "image/jpeg", {}),
        ("JPEG", "image/jpeg", {"progressive": True}),
        ("WEBP", "image/webp", {}),
        ("WEBP", "image/webp", {"lossless": True}),
        ("GIF", "image/gif", {}),
    ],
)
def test_format_and_size_come_from_the_header(
    fmt: str, mime: str, options: dict[str, bool]
) -> None:
    out = io.BytesIO()
    Image.new("RGB", (300, 170), (10, 200, 30)).save(out, format=fmt, **options)
    assert image_info(out.getvalue()) == (mime, 300, 170)


def test_an_extended_webp_with_alpha_is_read_too() -> None:
    out = io.BytesIO()
    Image.new("RGBA", (321, 123), (10, 200, 30, 100)).save(out, format="WEBP")
    assert image_info(out.getvalue()) == ("image/webp", 321, 123)


def test_tiny_png_is_the_size_asked_for() -> None:
    assert image_info(tiny_png(1536, 1024)) == ("image/png", 1536, 1024)


def test_anything_else_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="not a PNG, JPEG, WebP or GIF"):
        image_info(b'{"error": "not an image"}')
