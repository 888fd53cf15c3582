"""What the plugin sends Google through the real SDK, and what it makes of the answers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from layer_google.models import shipped
from layer_google.testing import IMAGE_TOKENS, KEY, PROMPT_TOKENS, GoogleHarness, serving

from layer_core.errors import ContentRejected, NoEligibleModel, ProviderUnavailable
from layer_core.testing.images import image_info

PROMPT = "a lighthouse at dusk"
CASES = [(model, size) for model, m in shipped().items() for size in m.ratios]


@pytest.mark.parametrize(("model", "size"), CASES)
def test_each_size_sends_its_ratio_and_delivers_the_declared_pixels(
    harness: GoogleHarness, model: str, size: str
) -> None:
    response = harness.layer.image(model, {"prompt": PROMPT, "size": size})
    body = harness.bodies()[-1]
    declared = shipped()[model]
    if declared.family == "imagen":
        assert harness.server.requests[-1].path == f"/v1beta/models/{model}:predict"
        sent = body["parameters"]["aspectRatio"]
        assert body["instances"] == [{"prompt": PROMPT}]
    else:
        assert harness.server.requests[-1].path == f"/v1beta/models/{model}:generateContent"
        sent = body["generationConfig"]["imageConfig"]["aspectRatio"]
        assert body["generationConfig"]["responseModalities"] == ["IMAGE"]
    assert sent == declared.ratios[size]
    image = response.images[0]
    _, width, height = image_info(image.bytes())
    pixels = declared.delivered.get(size, size)
    assert f"{width}x{height}" == pixels == image.size
    # the delivered shape is exactly the layer size's
    want_w, want_h = (int(x) for x in size.split("x"))
    assert width * want_h == height * want_w


def test_the_key_goes_in_googles_header(harness: GoogleHarness) -> None:
    harness.layer.image("imagen-4.0-fast-generate-001", {"prompt": PROMPT})
    request = harness.server.requests[-1]
    assert request.headers["x-goog-api-key"] == KEY
    assert KEY not in request.path


def test_google_api_key_is_read_when_gemini_api_key_is_absent() -> None:
    import layer_google
    from layer_google.testing import GEMINI_ROUTE, IMAGEN_ROUTE, gemini_api

    from layer_core import Layer
    from layer_core.testing import FakeServer

    with FakeServer() as server:
        server.add("POST", IMAGEN_ROUTE, gemini_api)
        server.add("POST", GEMINI_ROUTE, gemini_api)
        layer = Layer(
            {
                "ledger": False,
                "plugins": {"google": {"base_url": server.url}},
                "gates": {"g": {"model": "gemini-2.5-flash-image"}},
            },
            plugins=[layer_google],
            load_entry_points=False,
            environ={"GOOGLE_API_KEY": KEY},
        )
        try:
            assert layer.image("g", {"prompt": PROMPT}).images
        finally:
            layer.close()
        assert server.requests[-1].headers["x-goog-api-key"] == KEY


def test_imagen_count_is_split_by_four_per_call(harness: GoogleHarness) -> None:
    response = harness.layer.image("imagen-4.0-generate-001", {"prompt": PROMPT, "count": 6})
    assert len(response.images) == 6
    counts = sorted(b["parameters"]["sampleCount"] for b in harness.bodies())
    assert counts == [2, 4]
    assert response.cost_exact == Decimal("0.24")


def test_gemini_makes_one_image_per_call(harness: GoogleHarness) -> None:
    response = harness.layer.image("gemini-2.5-flash-image", {"prompt": PROMPT, "count": 3})
    assert len(response.images) == 3
    assert len(harness.bodies()) == 3


def test_gemini_cost_comes_from_the_reported_image_tokens(harness: GoogleHarness) -> None:
    (image,) = harness.generate("gemini-2.5-flash-image")
    tokens = IMAGE_TOKENS["gemini-2.5-flash-image"]
    price = shipped()["gemini-2.5-flash-image"].token_prices
    assert price is not None
    expected = (PROMPT_TOKENS * price.text_input + tokens * price.image_output) / 1_000_000
    assert image.cost_exact == expected
    assert image.cost_source == "provider_usage"


def test_a_seed_is_refused_before_google_is_called(harness: GoogleHarness) -> None:
    # the Gemini API takes no seed for Imagen or Gemini image models: none is declared
    with pytest.raises(NoEligibleModel, match="seed"):
        harness.layer.image("imagen-4.0-generate-001", {"prompt": PROMPT, "seed": 5})
    assert harness.server.requests == []


@pytest.mark.parametrize("model", ["imagen-4.0-generate-001", "gemini-2.5-flash-image"])
def test_a_filtered_image_is_content_rejected(harness: GoogleHarness, model: str) -> None:
    with pytest.raises(ContentRejected):
        harness.generate(model, prompt="BLOCKED harbour")


def test_an_imagen_call_with_one_image_filtered_returns_the_rest(harness: GoogleHarness) -> None:
    images = harness.generate("imagen-4.0-generate-001", prompt="FILTER_ONE harbour", n=4)
    assert len(images) == 3
    assert all(image.bytes() for image in images)


def test_a_text_only_answer_is_an_error_that_says_so(harness: GoogleHarness) -> None:
    with pytest.raises(ProviderUnavailable, match="text only"):
        harness.generate("gemini-2.5-flash-image", prompt="TEXT_ONLY harbour")


def test_the_sdk_is_not_imported_until_first_use() -> None:
    import subprocess
    import sys

    code = (
        "import sys, layer_google; from layer_core import Layer; "
        "Layer({'ledger': False}, plugins=[layer_google], load_entry_points=False); "
        "print(any(m.startswith('google.genai') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_vertex_settings_make_a_vertex_client() -> None:
    with serving(vertexai=True, project="my-project", location="us-central1") as h:
        client = h.layer.providers["google"].make_client()
        assert client.vertexai
        assert client._api_client.project == "my-project"
        assert client._api_client.location == "us-central1"
