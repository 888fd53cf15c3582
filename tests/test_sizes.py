"""The shared size helper providers use to map sizes onto aspect ratios."""

from __future__ import annotations

import base64
import struct

import pytest

from layer_core.sizes import (
    aspect_ratio_for,
    closest_dimensions,
    dimensions_for,
    encoded_image_size,
    exact_ratio,
    fit_within,
    megapixels,
    parse_size,
    pixels_for,
    png_size,
    same_ratio,
    sizes_for_dimensions,
    sizes_for_ratios,
)
from layer_core.testing import tiny_png
from layer_core.testing.images import tiny_webp

FLUX = ["1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"]


@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        ("1024x1024", "1:1"),
        ("256x256", "1:1"),
        ("1792x1024", "16:9"),
        ("1024x1792", "9:16"),
        ("1536x1024", "3:2"),
        ("1024x1536", "2:3"),
    ],
)
def test_sizes_map_to_the_nearest_allowed_ratio(size: str, ratio: str) -> None:
    assert aspect_ratio_for(size, FLUX) == ratio


def test_a_size_with_no_close_ratio_maps_to_none() -> None:
    assert aspect_ratio_for("1792x1024", ["1:1", "3:2"]) is None
    assert sizes_for_ratios(["1:1"]) == ("256x256", "512x512", "1024x1024")


def test_every_layer_size_is_servable_by_flux_ratios() -> None:
    assert len(sizes_for_ratios(FLUX)) == 7


def test_arithmetic() -> None:
    assert parse_size("1792x1024") == (1792, 1024)
    assert exact_ratio("1792x1024") == "7:4"
    assert megapixels("1000x1000") == 1.0
    assert dimensions_for("16:9", 1024 * 1024, multiple=16) == (1360, 768)
    assert dimensions_for("1:1", 1024 * 1024) == (1024, 1024)
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        parse_size("big")


SDXL = ["1024x1024", "1152x896", "896x1152", "1216x832", "832x1216", "1344x768", "768x1344"]


def test_fixed_pixel_sizes_serve_a_size_only_where_their_shape_matches() -> None:
    assert closest_dimensions("1792x1024", SDXL) == "1344x768"  # both 7:4
    assert closest_dimensions("1024x1792", SDXL) == "768x1344"
    assert closest_dimensions("256x256", SDXL) == "1024x1024"
    assert closest_dimensions("1536x1024", SDXL) is None  # 1216x832 is 2.6% off 3:2
    assert closest_dimensions("1536x1024", SDXL, tolerance=0.03) == "1216x832"
    assert sizes_for_dimensions(SDXL) == (
        "256x256",
        "512x512",
        "1024x1024",
        "1792x1024",
        "1024x1792",
    )


def test_png_size_reads_the_header_and_refuses_other_bytes() -> None:
    assert png_size(tiny_png(1344, 768)) == (1344, 768)
    assert png_size(b"GIF89a" + bytes(30)) is None
    assert png_size(tiny_png()[:20]) is None


def jpeg_header(width: int, height: int, metadata: int) -> bytes:
    """The start of a JPEG: `metadata` bytes of APP1 segments, then the frame header."""
    sizes = [60_000] * (metadata // 60_000) + [metadata % 60_000]
    app1 = b"".join(b"\xff\xe1" + struct.pack(">H", n + 2) + bytes(n) for n in sizes)
    frame = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + bytes(9)
    return b"\xff\xd8" + app1 + frame + bytes(100)


@pytest.mark.parametrize(
    ("image", "size"),
    [
        (tiny_png(1792, 1024), "1792x1024"),
        (tiny_webp(1280, 720), "1280x720"),
        (jpeg_header(1536, 1024, metadata=20), "1536x1024"),
        (jpeg_header(1024, 1536, metadata=40_000), "1024x1536"),  # past the first short read
        (b"GIF89a" + struct.pack("<HH", 300, 200) + bytes(20), "300x200"),
    ],
    ids=["png", "webp", "jpeg", "jpeg-after-exif", "gif"],
)
def test_encoded_image_size_reads_the_header_of_base64_images(image: bytes, size: str) -> None:
    assert encoded_image_size(base64.b64encode(image).decode()) == size


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(b"not an image at all" * 100).decode(),
        base64.b64encode(tiny_png(64, 64)[:20]).decode(),  # cut inside the header
        base64.b64encode(jpeg_header(8, 8, metadata=200_000)).decode(),  # frame beyond the reads
        "this is not base64!",
        "",
    ],
    ids=["text", "truncated-png", "jpeg-frame-too-far", "not-base64", "empty"],
)
def test_encoded_image_size_is_none_when_the_head_is_no_image_it_knows(text: str) -> None:
    assert encoded_image_size(text) is None


def test_same_ratio_tells_a_delivered_size_that_keeps_the_shape_from_one_that_does_not() -> None:
    assert same_ratio("1792x1024", "1344x768")
    assert same_ratio("256x256", "512x512")
    assert not same_ratio("1536x1024", "1216x832")
    assert not same_ratio("1024x1024", "1024x1536")


def test_pixels_for_picks_the_smallest_area_that_covers_the_size_else_the_largest() -> None:
    areas = [1024 * 1024, 512 * 512]
    assert pixels_for("256x256", areas) == 512 * 512
    assert pixels_for("512x512", areas) == 512 * 512
    assert pixels_for("1024x1024", areas) == 1024 * 1024
    assert pixels_for("1792x1024", areas) == 1024 * 1024
    with pytest.raises(ValueError, match="no pixel counts"):
        pixels_for("512x512", [])


@pytest.mark.parametrize(
    ("size", "fitted"),
    [
        ("256x256", (256, 256)),
        ("1024x1024", (1024, 1024)),
        ("1792x1024", (1344, 768)),
        ("1024x1792", (768, 1344)),
        ("1536x1024", (1440, 960)),
        ("1024x1536", (960, 1440)),
    ],
)
def test_fit_within_keeps_the_exact_ratio_in_steps_and_never_scales_up(
    size: str, fitted: tuple[int, int]
) -> None:
    width, height = fit_within(size, max_side=1440, min_side=256, multiple=32) or (0, 0)
    assert (width, height) == fitted
    assert width % 32 == 0
    assert height % 32 == 0
    assert exact_ratio(f"{width}x{height}") == exact_ratio(size)


def test_fit_within_says_none_when_no_size_fits_the_limits() -> None:
    assert fit_within("256x256", max_side=1440, min_side=512, multiple=8) is None
    assert fit_within("1792x1024", max_side=100, multiple=32) is None
    assert fit_within("1792x1024", max_side=2048, min_side=512, multiple=8) == (1792, 1024)
