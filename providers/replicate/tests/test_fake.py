"""The fake Replicate checks and renders what Replicate does, so tests built on it mean something.

Driven with plain HTTP here: these pin the fake itself (the provider's tests drive it through the
SDK).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from layer_replicate.testing import FakeReplicate, Run, problem

from layer_core.testing import FakeServer
from layer_core.testing.images import image_info

TOKEN = "r8_fake0token0for0the0fake"
SCHNELL = "/v1/models/black-forest-labs/flux-schnell/predictions"
PRO = "/v1/models/black-forest-labs/flux-1.1-pro/predictions"
SDXL = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
WAIT = {"Authorization": f"Bearer {TOKEN}", "Prefer": "wait=5"}


@pytest.fixture
def fake() -> Iterator[FakeReplicate]:
    with FakeServer() as server:
        yield FakeReplicate(server, token=TOKEN)


@pytest.fixture
def http(fake: FakeReplicate) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.server.url, headers=WAIT) as client:
        yield client


def create(http: httpx.Client, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return http.post(path, json=body, headers=headers)


def outputs(http: httpx.Client, path: str, **given: Any) -> list[bytes]:
    """The files of one finished prediction of `given` input."""
    answer = create(http, path, {"input": {"prompt": "a lighthouse", **given}}).json()
    urls = answer["output"] if isinstance(answer["output"], list) else [answer["output"]]
    return [http.get(url).content for url in urls]


def test_a_request_without_the_token_is_refused_as_replicate_does(
    fake: FakeReplicate, http: httpx.Client
) -> None:
    answer = create(http, SCHNELL, {"input": {"prompt": "p"}}, Authorization="Bearer r8_wrong")
    assert answer.status_code == 401
    assert answer.json()["title"] == "Unauthenticated"
    assert fake.created == []


def test_an_unknown_model_or_version_is_refused(fake: FakeReplicate, http: httpx.Client) -> None:
    assert create(http, "/v1/models/acme/nope/predictions", {"input": {}}).status_code == 404
    answer = create(http, "/v1/predictions", {"version": "f" * 64, "input": {"prompt": "p"}})
    assert (answer.status_code, answer.json()["title"]) == (422, "Invalid version or not permitted")


def test_an_input_the_schema_refuses_is_a_422_naming_each_field(
    fake: FakeReplicate, http: httpx.Client
) -> None:
    answer = create(
        http, SCHNELL, {"input": {"prompt": "p", "num_outputs": 5, "aspect_ratio": "7:3"}}
    )
    assert answer.status_code == 422
    body = answer.json()
    assert "- input.num_outputs: Must be less than or equal to 4" in body["detail"]
    assert [f["field"] for f in body["invalid_fields"]] == [
        "input.num_outputs",
        "input.aspect_ratio",
    ]
    assert fake.created == []


@pytest.mark.parametrize(
    ("path", "given", "expected"),
    [
        (SCHNELL, {"aspect_ratio": "3:2"}, ("image/webp", 1216, 832)),
        (SCHNELL, {"megapixels": "0.25"}, ("image/webp", 512, 512)),
        (SCHNELL, {"output_format": "png"}, ("image/png", 1024, 1024)),
        (PRO, {"aspect_ratio": "custom", "width": 1000, "height": 1440}, ("image/webp", 992, 1440)),
    ],
)
def test_each_file_is_a_real_image_of_the_pixels_the_model_renders(
    http: httpx.Client, path: str, given: dict[str, Any], expected: tuple[str, int, int]
) -> None:
    (data,) = outputs(http, path, **given)
    assert image_info(data) == expected


def test_sdxl_renders_width_by_height_as_pngs_and_fails_off_a_multiple_of_8(
    http: httpx.Client,
) -> None:
    body = {"version": SDXL, "input": {"prompt": "p", "width": 1536, "height": 640}}
    done = create(http, "/v1/predictions", body).json()
    assert [image_info(http.get(url).content) for url in done["output"]] == [
        ("image/png", 1536, 640)
    ]
    body["input"]["width"] = 1530
    failed = create(http, "/v1/predictions", body).json()
    assert failed["status"] == "failed"
    assert "divisible by 8" in failed["error"]


def test_a_seed_gives_the_same_picture_unless_flux_runs_in_fast_mode(http: httpx.Client) -> None:
    pinned = outputs(http, SCHNELL, seed=5, go_fast=False, num_outputs=2)
    assert outputs(http, SCHNELL, seed=5, go_fast=False, num_outputs=2) == pinned
    assert pinned[0] != pinned[1]
    assert outputs(http, SCHNELL, seed=6, go_fast=False)[0] != pinned[0]
    assert outputs(http, SCHNELL, seed=5)[0] != outputs(http, SCHNELL, seed=5)[0]  # go_fast on
    assert outputs(http, PRO, seed=5) == outputs(http, PRO, seed=5)


def test_answer_next_answers_the_next_create_only(fake: FakeReplicate, http: httpx.Client) -> None:
    fake.answer_next(problem(402, "You have insufficient credit to run this model."))
    assert create(http, SCHNELL, {"input": {"prompt": "p"}}).status_code == 402
    assert create(http, SCHNELL, {"input": {"prompt": "p"}}).status_code == 201
    assert len(fake.creates()) == 2
    assert len(fake.created) == 1


def test_only_files_it_handed_out_are_served(fake: FakeReplicate, http: httpx.Client) -> None:
    fake.next(Run(status="failed", error="CUDA out of memory"))
    failed = create(http, SCHNELL, {"input": {"prompt": "p"}}).json()
    assert failed["output"] is None
    assert http.get("/files/p1-0.webp").status_code == 404
