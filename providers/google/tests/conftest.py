"""The fixtures the tests here build on: a Layer with the google plugin and a fake Gemini API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from layer_google.testing import GoogleHarness, serving


@pytest.fixture
def harness() -> Iterator[GoogleHarness]:
    """`(layer, server)`: a Layer with one `single` gate per model, and the fake it calls."""
    with serving() as pair:
        yield pair
