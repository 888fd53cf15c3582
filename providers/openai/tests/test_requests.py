"""What goes over the wire to the Images API, per model, and how its answer comes back."""

from __future__ import annotations

import asyncio
import base64
import json
from decimal import Decimal
from email.message import Message
from typing import Any

import pytest
from layer_openai.provider import OpenAISettings
from layer_openai.testing import (
    KEY,
    PNG_B64,
    PROMPT_TOKENS,
    ROUTE,
    OpenAIHarness,
    images_api,
    output_tokens,
    png,
    serving,
)

from layer_core.testing import Recorded, Reply, tiny_png
from layer_core.testing.images import image_info

PROMPT = "A cozy coffee shop interior"


@pytest.mark.parametrize(
    ("model", "data", "sent"),
    [
        pytest.param(
            "dall-e-2",
            {"size": "512x512", "quality": "hd", "style": "vivid", "count": 3},
            {"n": 3, "size": "512x512"},
            id="dall-e-2: no quality, no style, n up to 10",
        ),
        pytest.param(
            "dall-e-3",
            {"size": "1792x1024", "quality": "hd", "style": "natural"},
            {"n": 1, "size": "1792x1024", "quality": "hd", "style": "natural"},
            id="dall-e-3: quality and style",
        ),
        pytest.param(
            "dall-e-3",
            {"size": "1024x1792"},
            {"n": 1, "size": "1024x1792", "quality": "standard"},
            id="dall-e-3: standard unless asked, no style unless asked",
        ),
        pytest.param(
            "gpt-image-1",
            {"size": "1536x1024", "quality": "hd", "style": "vivid", "count": 2},
            {"n": 2, "size": "1536x1024", "quality": "high"},
            id="gpt-image-1: hd is high, no style, no response_format",
        ),
        pytest.param(
            "gpt-image-1-mini",
            {"quality": "standard"},
            {"n": 1, "size": "1024x1024", "quality": "medium"},
            id="gpt-image-1-mini: standard is medium",
        ),
        pytest.param(
            "gpt-image-1.5",
            {"size": "1024x1536", "count": 4},
            {"n": 4, "size": "1024x1536", "quality": "medium"},
            id="gpt-image-1.5: medium when no quality is asked",
        ),
        pytest.param(
            "gpt-image-2",
            {"size": "1536x1024", "quality": "hd", "style": "natural", "count": 10},
            {"n": 10, "size": "1536x1024", "quality": "high"},
            id="gpt-image-2: hd is high, no style, n up to 10",
        ),
    ],
)
def test_each_model_is_sent_exactly_the_parameters_it_accepts(
    harness: OpenAIHarness, model: str, data: dict[str, Any], sent: dict[str, Any]
) -> None:
    response = harness.layer.image(model, {"prompt": PROMPT, **data})
    assert harness.bodies() == [{"model": model, "prompt": PROMPT, **sent}]
    assert len(response.images) == data.get("count", 1)
    assert response.model == model
    assert [a.outcome for a in response.attempts] == ["ok"]


def test_requests_carry_the_key_and_the_sdk_does_not_retry(harness: OpenAIHarness) -> None:
    harness.layer.image("gpt-image-1.5", {"prompt": PROMPT})
    (request,) = harness.server.requests
    assert request.path == "/v1/images/generations"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["x-stainless-retry-count"] == "0"


@pytest.mark.parametrize(("setting", "transport"), [("aiohttp", "AioHttp"), ("httpx", "Httpx")])
def test_the_sdk_client_uses_the_configured_transport(setting: str, transport: str) -> None:
    async def http_client_class() -> str:
        client = provider.make_client()  # the one place the provider makes its SDK client
        try:
            return type(client._client).__name__
        finally:
            await client.close()

    with serving(http_client=setting) as harness:
        provider = harness.layer.providers["openai"]
        assert transport in asyncio.run(http_client_class())
        assert harness.layer.image("dall-e-2", {"prompt": PROMPT}).images


def test_the_default_transport_is_aiohttp() -> None:
    assert OpenAISettings().http_client == "aiohttp"


def test_response_format_is_sent_to_dall_e_models_only() -> None:
    with serving(response_format="b64_json") as harness:
        dalle = harness.layer.image("dall-e-2", {"prompt": PROMPT, "size": "256x256"})
        gpt = harness.layer.image("gpt-image-1-mini", {"prompt": PROMPT})
        first, second = harness.bodies()
    assert first["response_format"] == "b64_json"
    assert "response_format" not in second
    assert dalle.images[0].base64 is not None
    assert dalle.images[0].url is None
    assert image_info(dalle.images[0].bytes()) == ("image/png", 256, 256)
    assert image_info(gpt.images[0].bytes()) == ("image/png", 1024, 1024)


def test_dall_e_3_returns_its_url_and_revised_prompt_and_no_seed(harness: OpenAIHarness) -> None:
    response = harness.layer.image("dall-e-3", {"prompt": PROMPT, "size": "1792x1024"})
    (image,) = response.images
    assert image.url is not None
    assert image.url.startswith(f"{harness.server.url}/images/1792x1024/img-")
    assert image.base64 is None
    assert image.bytes() == png("1792x1024")
    assert image.revised_prompt == f"revised: {PROMPT}"
    assert image.seed is None
    assert image.size == "1792x1024"
    assert image.mime_type == "image/png"
    assert (image.model, image.provider) == ("dall-e-3", "openai")
    assert image.cost_source == "price_table"
    assert image.cost_exact == Decimal("0.08")
    assert response.cost_exact == Decimal("0.08")


def test_gpt_image_returns_base64_with_the_delivered_size_and_format(
    harness: OpenAIHarness,
) -> None:
    harness.reply(
        Reply(
            json={
                "created": 1,
                "data": [{"b64_json": PNG_B64}],
                "size": "1536x1024",
                "output_format": "webp",
            }
        )
    )
    (image,) = harness.layer.image("gpt-image-1", {"prompt": PROMPT, "size": "1536x1024"}).images
    assert image.base64 == PNG_B64
    assert image.bytes() == tiny_png()
    assert image.url is None
    assert image.revised_prompt is None
    assert image.seed is None
    assert image.size == "1536x1024"
    assert image.mime_type == "image/webp"


def test_count_3_on_dall_e_3_makes_three_calls_at_three_times_the_price(
    harness: OpenAIHarness,
) -> None:
    response = harness.layer.image("dall-e-3", {"prompt": PROMPT, "count": 3})
    assert [body["n"] for body in harness.bodies()] == [1, 1, 1]
    assert len(response.images) == 3
    assert [a.requested for a in response.attempts] == [1, 1, 1]
    price = harness.layer.catalog["dall-e-3"].price("standard", "1024x1024")
    assert price == Decimal("0.04")
    assert response.cost_exact == 3 * price
    assert [i.cost_exact for i in response.images] == [price] * 3


def test_gpt_image_cost_comes_from_the_token_usage_it_reports(harness: OpenAIHarness) -> None:
    response = harness.layer.image("gpt-image-1", {"prompt": PROMPT, "count": 3, "quality": "hd"})
    image_tokens = 3 * output_tokens("high", "1024x1024")
    # gpt-image-1: $5 per 1M text input tokens, $40 per 1M image output tokens
    expected = (PROMPT_TOKENS * Decimal(5) + image_tokens * Decimal(40)) / 1_000_000
    assert response.cost_exact == expected == Decimal("0.49926")
    assert sum(i.cost_exact for i in response.images) == expected
    assert {i.cost_source for i in response.images} == {"provider_usage"}
    table = harness.layer.explain("gpt-image-1", {"prompt": PROMPT, "count": 3, "quality": "hd"})
    assert table.estimated_cost == Decimal("0.501")  # 3 × $0.167: close, and billed is what counts


def test_a_usage_cost_is_shared_over_the_images_exactly(harness: OpenAIHarness) -> None:
    usage = {
        "input_tokens": 7,
        "input_tokens_details": {"text_tokens": 7, "image_tokens": 0},
        "output_tokens": 3001,
        "output_tokens_details": {"image_tokens": 3000, "text_tokens": 1},
        "total_tokens": 3008,
    }
    harness.reply(Reply(json={"created": 1, "data": [{"b64_json": PNG_B64}] * 3, "usage": usage}))
    response = harness.layer.image("gpt-image-1.5", {"prompt": PROMPT, "count": 3})
    # gpt-image-1.5: text in $5, image out $32, text out $10 per 1M tokens
    total = (7 * Decimal(5) + 3000 * Decimal(32) + 1 * Decimal(10)) / 1_000_000
    shares = [image.cost_exact for image in response.images]
    assert sum(shares) == total == response.cost_exact
    assert len(set(shares[:2])) == 1
    assert all(share > 0 for share in shares)


@pytest.mark.parametrize(
    "usage",
    [
        pytest.param(
            {
                "input_tokens": 5,
                "input_tokens_details": {"text_tokens": 5, "image_tokens": 0},
                "output_tokens": 1060,
                "output_tokens_details": {"image_tokens": 1056, "text_tokens": 4},
                "total_tokens": 1065,
            },
            id="text output tokens gpt-image-1 has no price for",
        ),
        pytest.param({"input_tokens": "many"}, id="malformed usage"),
        pytest.param(
            {
                "input_tokens": 5,
                "input_tokens_details": {"text_tokens": -5, "image_tokens": 0},
                "output_tokens": 1056,
                "total_tokens": 1051,
            },
            id="negative token count",
        ),
    ],
)
def test_usage_that_cannot_be_priced_leaves_the_price_table_cost(
    harness: OpenAIHarness, usage: dict[str, Any]
) -> None:
    harness.reply(Reply(json={"created": 1, "data": [{"b64_json": PNG_B64}], "usage": usage}))
    (image,) = harness.layer.image("gpt-image-1", {"prompt": PROMPT}).images
    assert image.cost_source == "price_table"
    assert image.cost_exact == Decimal("0.042")


def test_usage_without_output_details_counts_output_tokens_as_image_tokens(
    harness: OpenAIHarness,
) -> None:
    usage = {
        "input_tokens": 10,
        "input_tokens_details": {"text_tokens": 10, "image_tokens": 0},
        "output_tokens": 272,
        "total_tokens": 282,
    }
    harness.reply(Reply(json={"created": 1, "data": [{"b64_json": PNG_B64}], "usage": usage}))
    (image,) = harness.layer.image("gpt-image-1-mini", {"prompt": PROMPT}).images
    # gpt-image-1-mini: text in $2, image out $8 per 1M tokens
    assert image.cost_exact == (10 * Decimal(2) + 272 * Decimal(8)) / 1_000_000
    assert image.cost_source == "provider_usage"


def test_quality_map_changes_what_is_sent_and_what_is_priced_alike() -> None:
    with serving(quality_map={"standard": "low"}) as harness:
        catalog = harness.layer.catalog
        assert catalog["gpt-image-1"].price("standard", "1024x1024") == Decimal("0.011")
        assert catalog["gpt-image-1"].price("hd", "1024x1024") == Decimal("0.167")
        assert catalog["dall-e-3"].price("standard", "1024x1024") == Decimal("0.04")
        plan = harness.layer.explain("gpt-image-1", {"prompt": PROMPT, "count": 2})
        assert plan.estimated_cost == Decimal("0.022")
        harness.reply(Reply(json={"created": 1, "data": [{"b64_json": PNG_B64}] * 2}))
        response = harness.layer.image("gpt-image-1", {"prompt": PROMPT, "count": 2})
        harness.layer.image("dall-e-3", {"prompt": PROMPT})
        gpt, dalle = harness.bodies()
    assert gpt["quality"] == "low"
    assert dalle["quality"] == "standard"
    assert response.cost_exact == plan.estimated_cost


def test_a_retired_model_is_still_served_with_a_warning(harness: OpenAIHarness) -> None:
    response = harness.layer.image("dall-e-3", {"prompt": PROMPT})
    assert "dall-e-3: retired 2026-05-12; the provider may refuse it" in response.warnings


def ask(body: dict[str, Any], key: str = KEY) -> Reply:
    """What the fake Images API answers to `body` sent with `key`, without a server in between."""
    headers = Message()
    headers["Authorization"] = f"Bearer {key}"
    return images_api(Recorded("POST", ROUTE, {}, headers, json.dumps(body).encode()))


@pytest.mark.parametrize(
    "forbidden",
    [
        {"model": "gpt-image-1", "response_format": "url"},
        {"model": "dall-e-2", "quality": "standard"},
        {"model": "dall-e-3", "n": 2},
        {"model": "gpt-image-1", "style": "vivid"},
        {"model": "dall-e-3", "size": "512x512"},
        {"model": "gpt-image-1", "quality": "hd"},
        {"model": "gpt-image-1", "size": "1792x1024"},
        {"model": "gpt-image-2", "size": "512x512"},  # under its pixel floor
        {"model": "gpt-image-2", "size": "1000x1000"},  # sides not multiples of 16
        {"model": "gpt-image-2", "size": "3840x1024"},  # wider than 3:1
        {"model": "gpt-image-2", "size": "4096x2304"},  # over 3840x2160
        {"model": "gpt-image-2", "response_format": "b64_json"},
    ],
)
def test_the_fake_api_refuses_what_openai_refuses(forbidden: dict[str, Any]) -> None:
    """The oracle the tests above rely on: it really rejects each parameter a model refuses."""
    assert ask({"prompt": "p", "model": forbidden["model"]}).status == 200
    reply = ask({"prompt": "p", **forbidden})
    assert reply.status == 400
    assert reply.json["error"]["message"]


@pytest.mark.parametrize("size", ["1792x1024", "1024x1792", "2048x2048", "3840x2160", "auto"])
def test_the_fake_api_takes_any_size_gpt_image_2_takes(size: str) -> None:
    """gpt-image-2 takes sizes beyond the three listed ones (its SDK documents the rules)."""
    reply = ask({"prompt": "p", "model": "gpt-image-2", "size": size, "quality": "low"})
    assert reply.status == 200
    served = "1024x1024" if size == "auto" else size
    _, width, height = image_info(base64.b64decode(reply.json["data"][0]["b64_json"]))
    assert f"{width}x{height}" == served
    assert reply.json["usage"]["output_tokens"] == output_tokens("low", served)
    assert ask({"prompt": "p", "model": "gpt-image-1.5", "size": size}).status == (
        200 if size == "auto" else 400
    )


def test_the_fake_api_refuses_a_wrong_key_as_openai_does_without_echoing_it() -> None:
    reply = ask({"prompt": "p", "model": "gpt-image-1"}, key="sk-wrong-0123456789")
    assert reply.status == 401
    assert reply.json["error"]["code"] == "invalid_api_key"
    assert "sk-wrong-0123456789" not in reply.json["error"]["message"]
    assert "sk-************6789" in reply.json["error"]["message"]
