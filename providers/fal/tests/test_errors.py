"""Every way a fal call fails, through fal-client against the fake queue: each becomes one core
error, no fal-client or httpx exception escapes, fal-client's own retries never run (one request
per failure), and the key appears nowhere."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from layer_fal import FalProvider
from layer_fal.testing import FakeFal, Run, error, validation_error
from layer_fal.wire import pointed

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
from layer_core.testing import Reply

Rig = tuple[FalProvider, FakeFal]
Generate = Callable[..., object]


def _raised(generate: Generate, model: str = "fal-flux-schnell", **fields: object) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        generate(model, **fields)
    return caught.value


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (error(401, "Invalid Key Authorization header format"), AuthenticationFailed),
        (error(403, "You do not have access to this application"), AuthenticationFailed),
        (error(403, "User is locked. Reason: Exhausted balance."), BillingError),
        (error(429, "Too many concurrent requests", **{"Retry-After": "3"}), RateLimited),
        (error(500, "Internal server error", "internal_error"), ProviderUnavailable),
        (
            error(503, "No runner could be allocated", "runner_scheduling_failure"),
            ProviderUnavailable,
        ),
        (error(504, "Request timed out", "request_timeout"), ProviderTimeout),
    ],
)
def test_an_http_error_on_submit_is_one_core_error_after_one_request(
    rig: Rig, generate: Generate, reply: Reply, expected: type[ProviderError]
) -> None:
    _, fake = rig
    fake.answer_next(reply)
    raised = _raised(generate)
    assert type(raised) is expected
    assert raised.status == reply.status
    assert reply.json["detail"] in raised.message  # fal's own words
    assert len(fake.submits()) == 1  # fal-client's retries (10 tries on 429) never ran
    if expected is RateLimited:
        assert isinstance(raised, RateLimited)
        assert raised.retry_after == 3


def test_a_wrong_key_is_refused_by_the_fake_as_by_fal(rig: Rig, generate: Generate) -> None:
    _, fake = rig
    fake.key = "another-key"
    raised = _raised(generate)
    assert isinstance(raised, AuthenticationFailed)
    assert raised.status == 401


def test_a_422_from_the_model_names_the_field_it_rejected(rig: Rig, generate: Generate) -> None:
    _, fake = rig
    problem = (
        ("image_size", "width"),
        "Input should be less than or equal to 1440",
        "less_than_equal",
    )
    fake.next(Run(failure=validation_error([problem])))
    raised = _raised(generate)
    assert isinstance(raised, InvalidProviderRequest)
    assert raised.status == 422
    assert "image_size.width: Input should be less than or equal to 1440" in raised.message
    assert not fake.cancelled  # it had completed: nothing to cancel


def test_a_422_on_submit_names_the_field_too(rig: Rig, generate: Generate) -> None:
    _, fake = rig
    problem = (("num_images",), "Input should be less than or equal to 4", "less_than_equal")
    fake.answer_next(validation_error([problem]))
    raised = _raised(generate)
    assert isinstance(raised, InvalidProviderRequest)
    assert "num_images: Input should be less than or equal to 4" in raised.message


def test_a_content_policy_violation_is_content_rejected(rig: Rig, generate: Generate) -> None:
    _, fake = rig
    refusal = (("prompt",), "The content could not be processed", "content_policy_violation")
    fake.next(Run(failure=validation_error([refusal])))
    raised = _raised(generate)
    assert isinstance(raised, ContentRejected)


def test_a_queue_failure_is_provider_unavailable(rig: Rig, generate: Generate) -> None:
    _, fake = rig
    fake.next(Run(polls=1, failure=error(503, "Runner disconnected", "runner_disconnected")))
    raised = _raised(generate)
    assert isinstance(raised, ProviderUnavailable)
    assert "Runner disconnected" in raised.message


def test_a_failed_status_poll_cancels_the_request(rig: Rig, generate: Generate) -> None:
    _, fake = rig
    fake.next(Run(polls=None))
    fake.server.add("GET", "/fal-ai/flux/requests/{id}/status", error(500, "Internal server error"))
    raised = _raised(generate)
    assert isinstance(raised, ProviderUnavailable)
    (request,) = fake.submitted
    assert fake.cancelled == [request]


def test_a_dropped_connection_is_provider_unavailable_after_one_try(
    rig: Rig, generate: Generate
) -> None:
    _, fake = rig
    fake.answer_next(Reply(drop=True))
    raised = _raised(generate)
    assert isinstance(raised, ProviderUnavailable)
    assert "connection" in raised.message
    assert len(fake.submits()) == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, body=b'{"request_id": "r', content_type="application/json"),
        Reply(200, json={"request_id": "r1"}),  # no status, result or cancel URLs
    ],
)
def test_a_malformed_submit_reply_is_provider_unavailable(
    rig: Rig, generate: Generate, reply: Reply
) -> None:
    _, fake = rig
    fake.answer_next(reply)
    raised = _raised(generate)
    assert isinstance(raised, ProviderUnavailable)
    assert raised.message.startswith("malformed reply")


@pytest.mark.parametrize(
    "result",
    [{"images": "none"}, {"images": [{"width": 4}]}, ["not", "a", "result"]],
)
def test_a_malformed_result_is_provider_unavailable(
    rig: Rig, generate: Generate, result: object
) -> None:
    _, fake = rig
    fake.next(Run(failure=Reply(200, json=result)))
    raised = _raised(generate)
    assert isinstance(raised, ProviderUnavailable)
    assert raised.message.startswith("malformed reply")


def test_an_unknown_queue_status_is_a_malformed_reply(rig: Rig, generate: Generate) -> None:
    _, fake = rig
    fake.next(Run(polls=None))
    fake.server.add(
        "GET", "/fal-ai/flux/requests/{id}/status", Reply(200, json={"status": "WEIRD"})
    )
    raised = _raised(generate)
    assert isinstance(raised, ProviderUnavailable)
    assert raised.message.startswith("malformed reply")


def test_the_key_is_in_no_repr_and_no_error(rig: Rig, generate: Generate, key: str) -> None:
    provider, fake = rig
    fake.key = "another-key"
    raised = _raised(generate)
    from layer_fal.wire import connect

    fal, http = connect(key, None)
    shown = [
        repr(provider),
        repr(provider.settings),
        str(raised),
        repr(raised),
        repr(fal),
        repr(http),
    ]
    assert not [text for text in shown if key in text]


def test_only_fal_hosts_are_pointed_at_the_base_url() -> None:
    base = "http://127.0.0.1:8080/proxy"
    assert pointed("https://queue.fal.run/fal-ai/flux/schnell", base) == (
        "http://127.0.0.1:8080/proxy/fal-ai/flux/schnell"
    )
    assert pointed("https://v3.fal.media/files/a/b.jpg", base) == (
        "http://127.0.0.1:8080/proxy/files/a/b.jpg"
    )
    assert pointed("https://queue.falrun.com/x?y=1", base) == "http://127.0.0.1:8080/proxy/x?y=1"
    assert pointed("https://example.com/a.png", base) == "https://example.com/a.png"
    assert pointed("https://notfal.run/a.png", base) == "https://notfal.run/a.png"
    assert pointed("https://queue.fal.run/x", None) == "https://queue.fal.run/x"


def test_without_a_base_url_requests_go_to_fals_queue_host(rig: Rig) -> None:
    """The URL fal-client builds for a submit, as our transport receives it (no request sent)."""
    import asyncio

    import httpx
    from layer_fal.wire import connect

    seen: list[str] = []

    class Record(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(str(request.url))
            return httpx.Response(401, json={"detail": "no"})

    async def submit() -> None:
        fal, http = connect("k", None)
        http._transport._inner = Record()  # type: ignore[attr-defined]
        with pytest.raises(AuthenticationFailed):
            await fal.submit("fal-ai/flux/schnell", {"prompt": "a fox"})
        await http.aclose()

    asyncio.run(submit())
    assert seen == ["https://queue.fal.run/fal-ai/flux/schnell"]
