"""generate_once: one call straight to a provider, as a provider's own tests make it."""

from __future__ import annotations

import pytest

from layer_core import GenerationCall, ProviderTimeout
from layer_core.testing import Hang, ScriptedProvider, generate_once, make_spec

SPEC = make_spec("ink-1", "ink")


def call() -> GenerationCall:
    return GenerationCall(model=SPEC, prompt="p", size="1024x1024", n=2)


def test_it_returns_the_images_and_closes_the_provider_on_its_loop() -> None:
    ink = ScriptedProvider("ink", [SPEC])
    assert len(generate_once(ink, call())) == 2
    assert ink.closed == 1


def test_a_call_past_the_timeout_is_cancelled_as_the_router_would() -> None:
    ink = ScriptedProvider("ink", [SPEC], {"ink-1": [Hang(30)]})
    with pytest.raises(ProviderTimeout, match=r"no answer within 0.1s"):
        generate_once(ink, call(), timeout=0.1)
    assert ink.closed == 1


def test_a_timeout_error_of_the_providers_own_is_not_disguised() -> None:
    ink = ScriptedProvider("ink", [SPEC], {"ink-1": [TimeoutError("sdk read timeout")]})
    with pytest.raises(TimeoutError, match="sdk read timeout"):
        generate_once(ink, call(), timeout=5)
