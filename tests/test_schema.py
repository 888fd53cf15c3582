"""The request/response schema: the gateway's wire format in and out, bad input named."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from layer_core import ImageOutput, ImageRequest, ImageResponse, InvalidRequest
from layer_core.testing import tiny_png
from layer_core.validation import parse_request

WIRE_REQUEST = {
    "gateId": "g",
    "model": "m",
    "metadata": {"feature": "x"},
    "data": {
        "prompt": "p",
        "size": "1792x1024",
        "quality": "hd",
        "style": "natural",
        "count": 4,
        "seed": 42,
    },
}


def test_the_js_sdk_wire_request_validates_as_is() -> None:
    request = ImageRequest.model_validate(WIRE_REQUEST)
    assert request.gate_id == "g"
    assert request.model == "m"
    assert request.metadata == {"feature": "x"}
    assert request.data.size == "1792x1024"
    assert request.data.quality == "hd"
    assert request.data.style == "natural"
    assert (request.data.count, request.data.seed) == (4, 42)


def test_python_names_are_accepted_too() -> None:
    request = ImageRequest(gate_id="g", data={"prompt": "p"})  # type: ignore[arg-type]
    assert request.gate_id == "g"
    assert request.data.count == 1


def test_response_dumps_to_the_wire_shape_with_camel_case() -> None:
    response = ImageResponse(
        id="img_1",
        model="dall-e-3",
        images=[ImageOutput(url="https://example.test/a.png", revised_prompt="a better prompt")],
        cost_exact=Decimal("0.08"),
        latency=1234.5,
        gate_id="g",
        provider="openai",
    )
    wire = json.loads(response.model_dump_json(by_alias=True))
    assert wire["id"] == "img_1"
    assert wire["model"] == "dall-e-3"
    assert wire["cost"] == 0.08
    assert wire["latency"] == 1234.5
    assert wire["gateId"] == "g"
    image = wire["images"][0]
    assert image["url"] == "https://example.test/a.png"
    assert image["base64"] is None
    assert image["revisedPrompt"] == "a better prompt"
    # and it reads back
    again = ImageResponse.model_validate(wire)
    assert again.cost_exact == Decimal("0.08")
    assert again.images[0].revised_prompt == "a better prompt"


def test_cost_is_a_float_on_the_response_and_exact_inside() -> None:
    output = ImageOutput(base64="aGk=", cost_exact=Decimal("0.1") + Decimal("0.2"))
    assert output.cost == 0.3
    assert output.cost_exact == Decimal("0.3")


def test_image_output_needs_a_url_or_data() -> None:
    with pytest.raises(ValueError, match="url or base64"):
        ImageOutput()


def test_bytes_decodes_base64_and_save_writes_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import base64

    png = tiny_png(2, 3)
    output = ImageOutput(base64=base64.b64encode(png).decode())
    assert output.bytes() == png
    path = output.save(tmp_path / "sub" / "a.png")
    assert path.read_bytes() == png


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"prompt": ""}, "data.prompt", "empty"),
        ({"prompt": "   "}, "data.prompt", "empty"),
        ({"prompt": "x" * 32_001}, "data.prompt", "32000"),
        ({"prompt": "p", "size": "1000x1000"}, "data.size", "1024x1024"),
        ({"prompt": "p", "count": 0}, "data.count", "1 to 10"),
        ({"prompt": "p", "count": 11}, "data.count", "1 to 10"),
        ({"prompt": "p", "quality": "ultra"}, "data.quality", "'standard' or 'hd'"),
        ({"prompt": "p", "style": "noir"}, "data.style", "'vivid' or 'natural'"),
        ({"prompt": "p", "seed": -1}, "data.seed", "0 to 4294967295"),
        ({"prompt": "p", "seed": 2**32}, "data.seed", "0 to 4294967295"),
        ({"prompt": "p", "sise": "1024x1024"}, "data.sise", "unknown field"),
        ({"size": "1024x1024"}, "data.prompt", "required"),
    ],
)
def test_bad_data_names_the_field_and_the_fix(
    data: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request("g", data)
    fields = [f for f, _ in caught.value.problems]
    assert fields == [field]
    assert words in caught.value.problems[0][1]
    assert field in str(caught.value)


def test_metadata_is_capped_with_a_reason() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request("g", {"prompt": "p"}, metadata={"blob": "x" * 5000})
    ((field, message),) = caught.value.problems
    assert field == "metadata"
    assert "4096" in message


def test_metadata_values_must_be_json_scalars() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request("g", {"prompt": "p"}, metadata={"nested": {"a": 1}})
    assert caught.value.problems[0][0].startswith("metadata")
