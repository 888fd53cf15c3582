"""Reading an image's format and pixel size from its header, for every format providers return."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from layer_core.testing import tiny_png
from layer_core.testing.images import image_info, tiny_webp


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


@pytest.mark.parametrize(("width", "height"), [(1, 1), (1344, 768), (640, 1536), (16384, 3)])
def test_tiny_webp_decodes_to_a_solid_image_of_the_size_asked_for(width: int, height: int) -> None:
    data = tiny_webp(width, height, (9, 180, 250))
    assert image_info(data) == ("image/webp", width, height)
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert (image.format, image.size) == ("WEBP", (width, height))
        assert image.convert("RGBA").getextrema() == ((9, 9), (180, 180), (250, 250), (255, 255))


def test_tiny_webp_refuses_a_size_webp_cannot_hold() -> None:
    with pytest.raises(ValueError, match="1 to 16384 pixels"):
        tiny_webp(16385, 1)


def test_anything_else_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="not a PNG, JPEG, WebP or GIF"):
        image_info(b'{"error": "not an image"}')
