"""The built-in local placeholder provider: every size, seed-deterministic, free, offline."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from layer_core import Layer
from layer_core.builtin.local import LocalProvider, render
from layer_core.schema import SIZES
from layer_core.sizes import parse_size


def layer() -> Layer:
    return Layer({"ledger": False}, load_entry_points=False, plugins=[LocalProvider()])


@pytest.mark.parametrize("size", SIZES)
def test_every_size_is_drawn_at_exactly_that_size(size: str) -> None:
    response = layer().image(data={"prompt": "a lighthouse at dusk", "size": size, "seed": 1})
    (output,) = response.images
    with Image.open(io.BytesIO(output.bytes())) as image:
        assert image.format == "PNG"
        assert image.size == parse_size(size)
    assert output.size == size
    assert output.cost_exact == 0
    assert output.model == "local"
    assert output.provider == "local"


def test_same_prompt_and_seed_give_identical_bytes_and_different_seeds_differ() -> None:
    first = render("a fox", "512x512", 42)
    assert render("a fox", "512x512", 42) == first
    assert render("a fox", "512x512", 43) != first
    assert render("a dog", "512x512", 42) != first


def test_without_a_seed_a_random_one_is_chosen_and_reported() -> None:
    response = layer().image(data={"prompt": "p", "count": 3, "size": "256x256"})
    seeds = [image.seed for image in response.images]
    assert all(isinstance(s, int) for s in seeds)
    assert len(set(seeds)) == 3
    again = layer().image(data={"prompt": "p", "size": "256x256", "seed": seeds[0]})
    assert again.images[0].bytes() == response.images[0].bytes()


def test_count_up_to_ten_comes_back_in_one_call() -> None:
    response = layer().image(data={"prompt": "p", "count": 10, "size": "256x256", "seed": 5})
    assert len(response.images) == 10
    assert [i.seed for i in response.images] == list(range(5, 15))
    assert len(response.attempts) == 1
    assert response.attempts[0].requested == 10
    assert response.cost_exact == 0


def test_style_and_quality_change_the_picture() -> None:
    vivid = render("p", "256x256", 1, "standard", "vivid")
    natural = render("p", "256x256", 1, "standard", "natural")
    hd = render("p", "256x256", 1, "hd", "vivid")
    assert len({vivid, natural, hd}) == 3


def test_it_is_always_available_and_needs_no_key() -> None:
    assert LocalProvider().available() == (True, "")
    assert layer().unavailable() == {}
