"""Errors that say the fix: unknown models and plugins, bad metadata and seeds, a closed Layer."""

from __future__ import annotations

import pytest

from layer_core.errors import did_you_mean
from layer_core.testing import ScriptedProvider, make_spec


@pytest.fixture
def acme() -> ScriptedProvider:
    return ScriptedProvider("acme", [make_spec("acme-1", "acme"), make_spec("acme-fast", "acme")])


def test_did_you_mean_names_the_closest_or_nothing() -> None:
    assert (
        did_you_mean("flux-shnell", ["flux-schnell", "flux-dev"]) == "did you mean 'flux-schnell'?"
    )
    two = did_you_mean("dall-e-9", ["dall-e-2", "dall-e-3", "local"], n=2)
    assert two in (
        "did you mean 'dall-e-2' or 'dall-e-3'?",
        "did you mean 'dall-e-3' or 'dall-e-2'?",
    )
    assert did_you_mean("zzz", ["local"]) == ""
    assert did_you_mean("nope", ["openai", "local"]) == ""  # sharing letters is not a typo
