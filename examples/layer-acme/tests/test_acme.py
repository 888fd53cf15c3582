"""What only Acme does: how layer's request is worded on Acme's wire."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from layer_core import Layer
from layer_core.errors import ConfigError

from acme_api import AcmeApi

KEY = "acme-test-key-0123"


@pytest.fixture
def acme() -> Iterator[AcmeApi]:
    with AcmeApi(api_key=KEY) as api:
        yield api


def layer_for(acme: AcmeApi, **settings: Any) -> Layer:
    config = {
        "ledger": False,
        "plugins": {"load": ["acme"], "acme": {**acme.settings(), **settings}},
        "gates": {"art": {"model": "acme-1", "allow_overrides": True}},
    }
    return Layer(config, environ={"ACME_API_KEY": KEY})


def test_a_wide_hd_request_is_worded_as_acme_expects(acme: AcmeApi) -> None:
    with layer_for(acme, region="us") as layer:
        response = layer.image(
            "art", {"prompt": "a kite", "size": "1792x1024", "quality": "hd", "seed": 9, "count": 2}
        )
    (request,) = acme.server.requests_to("/v1/generate")
    assert request.json() == {
        "model": "acme-1",
        "prompt": "a kite",
        "aspect_ratio": "16:9",
        "count": 2,
        "detail": "fine",
        "seed": 9,
    }
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["acme-region"] == "us"
    assert [image.size for image in response.images] == ["1344x768", "1344x768"]
    assert [image.seed for image in response.images] == [9, 10]
    assert response.cost == pytest.approx(0.08)


def test_a_style_becomes_acme_minis_palette(acme: AcmeApi) -> None:
    with layer_for(acme) as layer:
        layer.image(
            "art", {"prompt": "a fox", "size": "512x512", "style": "natural"}, model="acme-mini"
        )
    (request,) = acme.server.requests_to("/v1/generate")
    assert request.json()["palette"] == "muted"
    assert request.headers["acme-region"] == "eu"


def test_an_unknown_region_is_a_config_error_naming_the_key(acme: AcmeApi) -> None:
    with pytest.raises(ConfigError, match=r"\[plugins.acme\] region"):
        layer_for(acme, region="mars")
