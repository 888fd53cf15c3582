"""The fixture every test here builds on: a Layer with the openai plugin and a fake Images API.

It yields `(layer, server)` (an `OpenAIHarness`), so a conformance-suite subclass can reuse it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from layer_openai.testing import OpenAIHarness, serving


@pytest.fixture
def harness() -> Iterator[OpenAIHarness]:
    with serving() as pair:
        yield pair
