"""The provider contract: typed settings by one route, the client kept per event loop and closed
by the base class, the shared error helpers, errors attributed by the core, and providers
written for the first contract still loading, with a warning that says what to change."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from layer_core import (
    AllAttemptsFailed,
    AuthenticationFailed,
    ConfigError,
    ContentRejected,
    GenerationCall,
    ImageOutput,
    InvalidProviderRequest,
    Layer,
    ModelSpec,
    Provider,
    ProviderSettings,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    error_for_response,
    error_text,
    httpx_errors,
    malformed_reply,
)
from layer_core.testing import ScriptedProvider, fake_images, generate_once, make_spec, plugin_for
from tests.helpers import layer_with

GATES = {"g": {"model": "ink-1"}}
PROMPT = {"prompt": "a lighthouse at dusk"}


class InkSettings(ProviderSettings):
    colour: Literal["red", "blue"] = "red"


class Ink(Provider[InkSettings]):
    """A provider of the current contract: its settings model is its type parameter."""

    name = "ink"

    def __init__(self) -> None:
        super().__init__()
        self.colours: list[str] = []

    def models(self) -> list[ModelSpec]:
        return [make_spec("ink-1", "ink")]

    async def generate(self, call: GenerationCall) -> list[ImageOutput]:
        self.colours.append(self.settings.colour)  # typed: InkSettings, no cast, no isinstance
        return fake_images(call)


def layer_configured(
    *providers: Provider, gates: dict[str, Any], settings: dict[str, Any]
) -> Layer:
    """A Layer over `providers` with `[plugins.<name>]` tables `settings`."""
    config = {"ledger": False, "gates": gates, "plugins": settings}
    return Layer(config, plugins=[plugin_for(*providers)], load_entry_points=False, environ={})


def call_for(spec: ModelSpec, **fields: Any) -> GenerationCall:
    return GenerationCall(model=spec, prompt="p", size="1024x1024", n=1, **fields)


# --- settings: the type parameter, one route in -------------------------------------------------


def test_the_type_parameter_is_the_settings_model_and_plugins_toml_reaches_self_settings() -> None:
    ink = Ink()
    assert Ink.Settings is InkSettings
    assert ink.settings == InkSettings()  # the defaults, before the core configures it
    layer = layer_configured(ink, gates=GATES, settings={"ink": {"colour": "blue"}})
    layer.image("g", PROMPT)
    assert ink.colours == ["blue"]
    assert isinstance(ink.settings, InkSettings)


def test_a_bad_value_for_the_providers_own_key_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"\[plugins.ink\] colour"):
        layer_configured(Ink(), gates=GATES, settings={"ink": {"colour": "green"}})


def test_configure_turns_the_common_keys_alone_into_the_providers_own_settings() -> None:
    ink = Ink()
    ink.configure(ProviderSettings(base_url="http://127.0.0.1:9/v1"))
    assert isinstance(ink.settings, InkSettings)
    assert (ink.settings.base_url, ink.settings.colour) == ("http://127.0.0.1:9/v1", "red")


def test_a_settings_line_that_contradicts_the_type_parameter_is_refused() -> None:
    class OtherSettings(ProviderSettings):
        pass

    with pytest.raises(TypeError, match=r"contradicts its type parameter Provider\[InkSettings\]"):

        class Confused(Provider[InkSettings]):
            name = "confused"
            Settings = OtherSettings

            def models(self) -> list[ModelSpec]:
                return []

            async def generate(self, call: GenerationCall) -> list[ImageOutput]:
                return []


def test_the_current_contract_raises_no_deprecation_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        class Plain(Provider):  # only the common keys: no type parameter needed
            name = "plain"

            def models(self) -> list[ModelSpec]:
                return [make_spec("plain-1", "plain")]

            async def generate(self, call: GenerationCall) -> list[ImageOutput]:
                return fake_images(call)

        ink = Ink()
        gates = {"g": {"model": "ink-1", "fallback_models": ["plain-1"], "allow_overrides": True}}
        layer = layer_configured(ink, Plain(), gates=gates, settings={"ink": {"colour": "blue"}})
        layer.image("g", PROMPT)  # the core never reads GenerationCall.options itself
        layer.image("g", PROMPT, model="plain-1")
        layer.close()


def test_the_shipped_providers_and_the_example_are_written_to_the_current_contract() -> None:
    code = (
        "import sys; sys.path.insert(0, 'examples/layer-acme');"
        "import layer_core.builtin.local, layer_openai, layer_replicate, layer_stability;"
        "import layer_fal;"
        "import layer_acme"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


# --- a provider written for the first contract ---------------------------------------------------


class OldSettings(ProviderSettings):
    region: str = "eu"


def old_style_provider() -> type[Provider]:
    """A provider as a third party wrote one before the type parameter: `Settings = ...`, its
    own `configure` keeping a copy, the region read from `call.options`."""

    class OldAcme(Provider):
        name = "old-acme"
        Settings = OldSettings

        def __init__(self) -> None:
            super().__init__()
            self.configured: list[ProviderSettings] = []
            self.regions: list[str] = []

        def configure(self, settings: ProviderSettings) -> None:
            super().configure(settings)
            self.configured.append(settings)

        def models(self) -> list[ModelSpec]:
            return [make_spec("old-1", "old-acme")]

        async def generate(self, call: GenerationCall) -> list[ImageOutput]:
            self.regions.append(call.options.get("region", "eu"))
            return fake_images(call)

    return OldAcme


def test_an_old_provider_warns_when_defined_naming_each_change() -> None:
    with pytest.warns(DeprecationWarning, match="OldAcme") as caught:
        old_style_provider()
    messages = [str(w.message) for w in caught]
    assert any(
        "OldAcme sets Settings = OldSettings" in m and "class OldAcme(Provider[OldSettings])" in m
        for m in messages
    ), messages
    assert any("OldAcme overrides Provider.configure" in m for m in messages), messages
    assert all(w.filename == __file__ for w in caught)  # pointing at the class, not at layer


def test_an_old_provider_still_loads_and_runs_and_warns_once_when_it_reads_options() -> None:
    with pytest.warns(DeprecationWarning, match="OldAcme"):
        old = old_style_provider()()
    layer = layer_configured(
        old, gates={"g": {"model": "old-1"}}, settings={"old-acme": {"region": "us"}}
    )
    assert layer.plugins()[0].status == "ok"
    with pytest.warns(DeprecationWarning, match=r"'old-acme' reads GenerationCall.options") as w:
        layer.image("g", PROMPT)
    assert w[0].filename == __file__  # at the provider's own line
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per provider, not once per call
        layer.image("g", PROMPT)
    assert old.regions == ["us", "us"]
    assert [type(s) for s in old.configured] == [OldSettings]  # its override was called
    assert isinstance(old.settings, OldSettings)
    layer.close()


# --- the client: made per event loop, closed by the base ----------------------------------------


class Client:
    def __init__(self) -> None:
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


class SyncClosed:
    """A client whose close() is not a coroutine."""

    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class Pooled(Provider[ProviderSettings, Client]):
    name = "pooled"

    def __init__(self, client_type: type[Any] = Client) -> None:
        super().__init__()
        self.client_type = client_type
        self.made: list[Any] = []
        self.used: list[Any] = []

    def models(self) -> list[ModelSpec]:
        return [make_spec("pooled-1", "pooled", max_images_per_call=10)]

    def make_client(self) -> Client:
        client: Client = self.client_type()
        self.made.append(client)
        return client

    async def generate(self, call: GenerationCall) -> list[ImageOutput]:
        self.used.append(self.client())
        return fake_images(call)


def test_one_client_per_event_loop_made_on_first_use_and_closed_by_aclose() -> None:
    pooled = Pooled()
    call = call_for(pooled.models()[0])

    async def three_calls() -> None:
        for _ in range(3):
            await pooled.generate(call)
        await pooled.aclose()

    assert pooled.made == []  # nothing made before a call
    asyncio.run(three_calls())
    assert len(pooled.made) == 1
    assert pooled.used == pooled.made * 3
    assert pooled.made[0].closed == 1
    asyncio.run(three_calls())  # another loop: a client of its own
    assert len(pooled.made) == 2
    assert pooled.made[1].closed == 1
    assert pooled.made[0].closed == 1


def test_a_client_with_a_plain_close_is_closed_too() -> None:
    pooled = Pooled(SyncClosed)
    generate_once(pooled, call_for(pooled.models()[0]))
    (client,) = pooled.made
    assert client.closed == 1


def test_the_layer_closes_the_clients_on_its_own_loop_and_the_apps() -> None:
    pooled = Pooled()
    layer = layer_with(pooled, gates={"g": {"model": "pooled-1"}})
    layer.image("g", {**PROMPT, "count": 2})
    layer.image("g", PROMPT)

    async def on_the_apps_loop() -> None:
        await layer.aimage("g", PROMPT)
        await layer.aclose()

    asyncio.run(on_the_apps_loop())
    sync_client, app_client = pooled.made
    assert (app_client.closed, sync_client.closed) == (1, 0)
    layer.close()
    assert sync_client.closed == 1


def test_aclose_without_a_client_does_nothing() -> None:
    pooled = Pooled()
    asyncio.run(pooled.aclose())
    assert pooled.made == []


# --- the error helpers -------------------------------------------------------------------------


def reply(status: int, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "http://127.0.0.1/v1"), **kwargs)


def acme_words(body: Any) -> str | None:
    return body["error"]["message"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("response", "text"),
    [
        (reply(400, json={"error": {"message": " count is 1 to 4 "}}), "HTTP 400: count is 1 to 4"),
        (reply(400, json={"detail": "other shape"}), 'HTTP 400: {"detail":"other shape"}'),
        (reply(400, json={"error": {"message": ""}}), 'HTTP 400: {"error":{"message":""}}'),
        (reply(400, json=["a", "list"]), 'HTTP 400: ["a","list"]'),
        (reply(502, text="<html>upstream down</html>"), "HTTP 502: <html>upstream down</html>"),
        (reply(503), "HTTP 503 Service Unavailable"),
        (reply(500, text="x" * 1000), "HTTP 500: " + "x" * 300),
    ],
    ids=["words", "other-shape", "empty-words", "not-an-object", "html", "empty", "long"],
)  # fmt: skip
def test_error_text_uses_the_providers_words_else_the_body_else_the_reason(
    response: httpx.Response, text: str
) -> None:
    assert error_text(response, acme_words) == text


def test_error_text_without_words_is_the_body() -> None:
    assert error_text(reply(422, json={"detail": "bad"})) == 'HTTP 422: {"detail":"bad"}'


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, RateLimited),
        (401, AuthenticationFailed),
        (504, ProviderTimeout),
        (503, ProviderUnavailable),
        (400, InvalidProviderRequest),
    ],
)
def test_error_for_response_maps_the_status_and_carries_retry_after(
    status: int, error: type[Exception]
) -> None:
    response = reply(status, text="nope", headers={"Retry-After": "7"})
    mapped = error_for_response(response)
    assert type(mapped) is error
    assert (mapped.status, mapped.message) == (status, "HTTP " + f"{status}: nope")
    assert (mapped.provider, mapped.model) == (None, None)  # the core fills them in
    if isinstance(mapped, RateLimited):
        assert mapped.retry_after == 7
    assert error_for_response(response, "in other words").message == "in other words"


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_httpx_errors_turns_a_refused_connection_into_unavailable_chaining_nothing() -> None:
    async def post() -> None:
        async with httpx.AsyncClient(headers={"authorization": "Bearer sk-secret"}) as client:
            with httpx_errors("Ink"):
                await client.post(f"http://127.0.0.1:{free_port()}/draw")

    with pytest.raises(ProviderUnavailable, match="Ink unreachable: connection failed") as caught:
        asyncio.run(post())
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert "sk-secret" not in repr(caught.value.__dict__)


@pytest.mark.parametrize(
    ("raised", "error", "says"),
    [
        (httpx.ReadTimeout("slow"), ProviderTimeout,
         "Ink did not answer in time (ReadTimeout: slow)"),
        (httpx.ConnectTimeout(""), ProviderTimeout, "Ink did not answer in time (ConnectTimeout)"),
        (httpx.RemoteProtocolError("gone"), ProviderUnavailable,
         "Ink unreachable: connection failed: RemoteProtocolError: gone"),
        (httpx.DecodingError("bad gzip"), ProviderUnavailable, "Ink: DecodingError: bad gzip"),
    ],
)  # fmt: skip
def test_httpx_errors_maps_each_failure(
    raised: Exception, error: type[Exception], says: str
) -> None:
    with pytest.raises(error) as caught, httpx_errors("Ink"):
        raise raised
    assert str(caught.value) == says
    assert caught.value.__cause__ is None


def test_httpx_errors_lets_everything_else_through() -> None:
    with pytest.raises(KeyError), httpx_errors("Ink"):
        raise KeyError("not httpx's")
    unmapped = ContentRejected("refused")
    with pytest.raises(ContentRejected) as caught, httpx_errors("Ink"):
        raise unmapped
    assert caught.value is unmapped


def test_malformed_reply_is_an_unavailable_provider() -> None:
    error = malformed_reply("no image list", status=200)
    assert isinstance(error, ProviderUnavailable)
    assert (error.message, error.status) == ("malformed reply: no image list", 200)
    assert error.retryable


# --- the core says which provider and model an error came from ---------------------------------


def test_the_core_attributes_an_error_raised_without_provider_or_model() -> None:
    ink = ScriptedProvider(
        "ink", [make_spec("ink-1", "ink"), make_spec("ink-2", "ink")],
        {"ink-1": [ProviderUnavailable("overloaded")], "ink-2": [ContentRejected("refused")]},
    )  # fmt: skip
    layer = layer_with(ink, gates={"g": {"model": "ink-1", "fallback_models": ["ink-2"]}})
    with pytest.raises(AllAttemptsFailed) as caught:
        layer.image("g", PROMPT)
    stopped = caught.value.stopped_by
    assert stopped is not None
    assert (stopped.provider, stopped.model) == ("ink", "ink-2")
    assert str(stopped) == "ink/ink-2: refused"
    assert [(a.provider, a.model, a.error) for a in caught.value.attempts] == [
        ("ink", "ink-1", "unavailable"),
        ("ink", "ink-2", "content_rejected"),
    ]
    assert "stopped after content_rejected from ink-2" in str(caught.value)


def test_what_a_provider_says_about_itself_is_kept() -> None:
    error = ProviderUnavailable("upstream", provider="ink", model="ink-upstream-name")
    ink = ScriptedProvider("ink", [make_spec("ink-1", "ink")], {"ink-1": [error]})
    with pytest.raises(AllAttemptsFailed):
        layer_with(ink, gates=GATES).image("g", PROMPT)
    assert (error.provider, error.model) == ("ink", "ink-upstream-name")


def test_generate_once_attributes_errors_as_the_core_does() -> None:
    ink = ScriptedProvider("ink", [make_spec("ink-1", "ink")], {"ink-1": [RateLimited("slow")]})
    with pytest.raises(RateLimited) as caught:
        generate_once(ink, call_for(ink.models()[0]))
    assert (caught.value.provider, caught.value.model) == ("ink", "ink-1")
