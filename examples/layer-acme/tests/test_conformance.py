"""layer's standard provider tests, run against the fake Acme API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from layer_core.testing.conformance import ProviderConformance

from acme_api import AcmeApi


class TestAcmeConformance(ProviderConformance):
    entry_point = "acme"
    distribution = "layer-acme"

    @pytest.fixture
    def fake_api(self) -> Iterator[AcmeApi]:
        with AcmeApi(api_key=self.api_key) as api:
            yield api
