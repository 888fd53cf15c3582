"""The built-in local provider passes the conformance suite that every provider plugin runs."""

from __future__ import annotations

from layer_core.testing.conformance import ProviderConformance


class TestLocalConformance(ProviderConformance):
    entry_point = "local"
    distribution = "layer-core"  # a built-in plugin: the core ships it
    remote_api = False  # it draws offline: the error, key and wire tests skip, saying so
