"""Every failure Google answers with becomes the core's error, through the real SDK, and the key
never shows in an error, a repr or a log."""

from __future__ import annotations

import logging

import pytest
from layer_google.testing import KEY, GoogleHarness, api_error

from layer_core.errors import (
    AuthenticationFailed,
    BillingError,
    ContentRejected,
    InvalidProviderRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from layer_core.testing import NO_REPLY, Reply

RETRY = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13s"}
CASES = [
    (api_error(400, "INVALID_ARGUMENT", "sampleCount must be 1 to 4."), InvalidProviderRequest),
    (api_error(401, "UNAUTHENTICATED", "Request had invalid credentials."), AuthenticationFailed),
    (api_error(403, "PERMISSION_DENIED", "Permission denied."), AuthenticationFailed),
    (api_error(400, "FAILED_PRECONDITION", "Please enable billing."), BillingError),
    (api_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", RETRY), RateLimited),
    (api_error(500, "INTERNAL", "An internal error has occurred."), ProviderUnavailable),
    (api_error(503, "UNAVAILABLE", "The model is overloaded."), ProviderUnavailable),
    (Reply(json={"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}), ContentRejected),
    (Reply(body=b"<html>bad gateway", content_type="text/html"), ProviderError),
]


@pytest.mark.parametrize("model", ["imagen-4.0-generate-001", "gemini-2.5-flash-image"])
@pytest.mark.parametrize(("reply", "error"), CASES)
def test_each_failure_maps_to_the_core_error(
    harness: GoogleHarness,
    model: str,
    reply: Reply,
    error: type[ProviderError],
    caplog: pytest.LogCaptureFixture,
) -> None:
    if error is ContentRejected and model.startswith("imagen"):
        reply = Reply(json={})  # Imagen's answer when every image was filtered, reasons not asked
    harness.reply(reply)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(error) as caught:
        harness.generate(model)
    assert caught.value.provider == "google"
    assert KEY not in str(caught.value)
    assert KEY not in repr(caught.value)
    assert KEY not in caplog.text
    assert caught.value.__cause__ is None
    if error is RateLimited:
        assert caught.value.retry_after == 13


def test_a_hung_reply_is_a_timeout(harness: GoogleHarness) -> None:
    harness.reply(NO_REPLY)
    with pytest.raises(ProviderTimeout):
        harness.generate("imagen-4.0-fast-generate-001", timeout=1)


def test_a_wrong_key_is_refused_without_showing_it() -> None:
    from layer_google.testing import serving

    wrong = "AIzaSy-wrong-key-000000000000000000"
    with serving(key=wrong) as h:
        with pytest.raises(InvalidProviderRequest) as caught:
            h.generate("gemini-2.5-flash-image")
        assert wrong not in str(caught.value)
        provider = h.layer.providers["google"]
        assert wrong not in repr(provider)
        assert wrong not in repr(provider.settings)
        assert wrong not in repr(h.layer)
