"""The fake fal queue itself, over plain HTTP: the wire shapes the plugin's tests rely on."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
from layer_fal.testing import FakeFal, Run
from PIL import Image

from layer_core.testing import FakeServer

KEY = "fake-key"


@pytest.fixture
def fal() -> Iterator[tuple[FakeFal, httpx.Client]]:
    with FakeServer() as server:
        fake = FakeFal(server, key=KEY)
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Key {KEY}"}) as http:
            yield fake, http


def test_a_request_goes_through_the_queue_lifecycle(fal: tuple[FakeFal, httpx.Client]) -> None:
    fake, http = fal
    fake.next(Run(polls=1))
    submitted = http.post("/fal-ai/flux/dev", json={"prompt": "a fox", "num_images": 2, "seed": 7})
    assert submitted.status_code == 200
    urls = submitted.json()
    assert urls["status_url"].endswith(f"/fal-ai/flux/requests/{urls['request_id']}/status")
    early = http.get(urls["response_url"])
    assert early.status_code == 400
    first = http.get(urls["status_url"])
    assert (first.status_code, first.json()["status"]) == (202, "IN_PROGRESS")
    done = http.get(urls["status_url"])
    assert (done.status_code, done.json()["status"]) == (200, "COMPLETED")
    result = http.get(urls["response_url"]).json()
    assert result["seed"] == 7
    assert result["has_nsfw_concepts"] == [False, False]
    assert [(i["width"], i["height"]) for i in result["images"]] == [(1024, 768)] * 2  # the default
    image = httpx.get(result["images"][0]["url"])  # files need no key
    assert image.headers["content-type"] == "image/jpeg"
    cancel = http.put(urls["cancel_url"])
    assert (cancel.status_code, cancel.json()) == (400, {"status": "ALREADY_COMPLETED"})


def test_an_input_the_model_refuses_completes_with_a_422_naming_it(
    fal: tuple[FakeFal, httpx.Client],
) -> None:
    _, http = fal
    body = {"prompt": "a fox", "image_size": {"width": 2048, "height": 1024}}
    urls = http.post("/fal-ai/flux-pro/v1.1", json=body).json()
    status = http.get(urls["status_url"]).json()
    assert (status["status"], status["error"]) == ("COMPLETED", "Unprocessable Entity")
    refused = http.get(urls["response_url"])
    assert refused.status_code == 422
    (problem,) = refused.json()["detail"]
    assert problem["loc"] == ["body", "image_size", "width"]
    assert problem["type"] == "less_than_equal"


def test_cancel_stops_a_running_request(fal: tuple[FakeFal, httpx.Client]) -> None:
    fake, http = fal
    fake.next(Run(polls=None))
    urls = http.post("/fal-ai/flux/schnell", json={"prompt": "a fox"}).json()
    cancel = http.put(urls["cancel_url"])
    assert (cancel.status_code, cancel.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    assert fake.cancelled == fake.submitted
    assert http.get(urls["status_url"]).json()["status"] == "COMPLETED"
    assert http.get(urls["response_url"]).status_code == 400


def test_the_key_and_the_endpoint_are_checked(fal: tuple[FakeFal, httpx.Client]) -> None:
    fake, http = fal
    assert httpx.post(f"{fake.server.url}/fal-ai/flux/dev", json={"prompt": "x"}).status_code == 401
    assert http.post("/fal-ai/no-such-model", json={"prompt": "x"}).status_code == 404


def test_a_flagged_image_is_black_and_flagged(fal: tuple[FakeFal, httpx.Client]) -> None:
    fake, http = fal
    fake.next(Run(nsfw=(0,)))
    urls = http.post("/fal-ai/flux/schnell", json={"prompt": "x", "num_images": 2}).json()
    http.get(urls["status_url"])
    result = http.get(urls["response_url"]).json()
    assert result["has_nsfw_concepts"] == [True, False]
    flagged, kept = (Image.open(io.BytesIO(httpx.get(i["url"]).content)) for i in result["images"])
    assert flagged.convert("RGB").getpixel((0, 0)) == (0, 0, 0)
    assert kept.convert("RGB").getpixel((0, 0)) != (0, 0, 0)
