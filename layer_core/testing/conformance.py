"""The provider conformance suite: subclass `ProviderConformance` in your plugin's tests.

    import pytest
    from layer_core.testing.conformance import ProviderConformance

    from acme_api import AcmeApi  # your fake of your provider's API: a `FakeApi`


    class TestAcmeConformance(ProviderConformance):
        entry_point = "acme"  # [project.entry-points.layer] acme = "layer_acme"
        distribution = "layer-acme"

        @pytest.fixture
        def fake_api(self):
            with AcmeApi(api_key=self.api_key) as api:
                yield api

Every check goes through the real path: the plugin is loaded from its installed entry point by a
`Layer` built from a config that points the provider at your fake (`FakeApi.settings`), and
images are asked for with `Layer.image` / `Layer.aimage`. What each model declares (sizes,
images per call, seed, qualities, styles) is the test plan: a capability a model does not declare
skips by name ("acme-mini declares no seed support"). A standard test you override must say why,
with `@override_reason("...")` or `@pytest.mark.xfail(strict=True, reason="...")`, or
`test_overridden_standard_tests_carry_a_reason` fails. docs/plugins/conformance.md explains each
test and what to check when it fails.

Needs pytest (install `layer-core[testing]`); nothing here is imported by `import layer_core`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args

import pytest
from pydantic import ValidationError

from layer_core.catalog import ModelSpec
from layer_core.dirs import isolated_environ
from layer_core.errors import (
    AllAttemptsFailed,
    AuthenticationFailed,
    BillingError,
    ContentRejected,
    InvalidProviderRequest,
    LayerError,
    NoEligibleModel,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from layer_core.layer import Layer
from layer_core.plugins import ENTRY_POINT_GROUP, build_host, discovered_entry_points
from layer_core.provider import GenerationCall, Provider
from layer_core.schema import SIZES, ImageOutput, ImageResponse, Size
from layer_core.sizes import megapixels, parse_size
from layer_core.testing.direct import generate_once
from layer_core.testing.fakeserver import wait_until
from layer_core.testing.images import image_info

__all__ = [
    "FAILURES",
    "RETRY_AFTER",
    "Failure",
    "FakeApi",
    "ProviderConformance",
    "override_reason",
]

F = TypeVar("F", bound=Callable[..., Any])

Failure = Literal[
    "rate_limited",
    "server_error",
    "unauthorized",
    "billing",
    "content_refused",
    "invalid_request",
    "malformed",
    "hang",
]
FAILURES: tuple[Failure, ...] = get_args(Failure)

#: Retry-After seconds a fake sends with `rate_limited`; `RateLimited.retry_after` must carry it.
RETRY_AFTER = 7

#: What each failure must become: the core error class, and the failure in words.
EXPECTED: dict[Failure, tuple[type[ProviderError], str]] = {
    "rate_limited": (RateLimited, f"a rate limit (HTTP 429, Retry-After: {RETRY_AFTER})"),
    "server_error": (ProviderUnavailable, "a server error (HTTP 5xx)"),
    "unauthorized": (AuthenticationFailed, "a rejected key (HTTP 401)"),
    "billing": (BillingError, "an account out of credit (HTTP 402)"),
    "content_refused": (ContentRejected, "a content-policy refusal"),
    "invalid_request": (InvalidProviderRequest, "a request rejected as invalid (HTTP 400)"),
    "malformed": (ProviderError, "a success status with a malformed body"),
}

GATE = "conformance"
_OVERRIDE_REASON = "__layer_override_reason__"
_LAYER_ENV = ("LAYER_CONFIG", "LAYER_PLUGINS", "LAYER_STRICT_PLUGINS", "LAYER_RAISE_ERRORS")
_SEEDS = (1234, 98765)


def override_reason(reason: str) -> Callable[[F], F]:
    """Mark an overridden standard test with why it differs for this provider.

    An override without a reason (or a strict xfail with one) fails
    `test_overridden_standard_tests_carry_a_reason`.
    """
    if not reason.strip():
        raise ValueError("override_reason needs a reason a reader can act on")

    def mark(test: F) -> F:
        setattr(test, _OVERRIDE_REASON, reason)
        return test

    return mark


class FakeApi(ABC):
    """Your fake of your provider's API, as the conformance suite drives it (on a FakeServer).

    Between failures it answers generation requests as the real API does: images of the pixel
    size the real API returns for the parameters it received, the same image for the same seed,
    and the same checks the real API makes (the key, the fields) with the same errors.
    """

    #: The failures this fake can produce; a failure left out skips its test, naming it.
    failures: ClassVar[frozenset[Failure]] = frozenset(FAILURES)

    @abstractmethod
    def settings(self) -> Mapping[str, Any]:
        """The provider's `[plugins.<name>]` table pointing it at this fake (e.g. its base_url)."""

    @abstractmethod
    def fail_next(self, failure: Failure) -> None:
        """Answer the next generation request with `failure`, as the real API words it.

        rate_limited: HTTP 429 with `Retry-After: 7` (`RETRY_AFTER`). server_error: 500 or 503.
        unauthorized: the API's answer to a wrong key (401). billing: out of credit (402).
        content_refused: the API's content-policy refusal. invalid_request: a 400 for a bad field.
        malformed: a success status whose body is not what the API sends (e.g. cut-off JSON).
        hang: never answer (`NO_REPLY`), until the client hangs up.
        """

    @abstractmethod
    def generations(self) -> list[dict[str, Any]]:
        """Every generation request received, oldest first, in layer's words.

        One dict per request, with the keys your API has among: prompt, n, quality
        ("standard" | "hd"), style ("vivid" | "natural"), seed. The suite checks each against
        what it asked for.
        """

    @abstractmethod
    def open_connections(self) -> int:
        """Connections the provider holds open to the fake now (`FakeServer.open_connections`)."""


@dataclass
class _Loaded:
    """The plugin as the suite found it through its entry point."""

    provider_name: str = ""
    key_env_var: str | None = None
    specs: list[ModelSpec] = field(default_factory=list)
    error: str | None = None


@functools.cache
def _load(entry_point: str, provider_name: str | None) -> _Loaded:
    """Load the plugin from its entry point, as a `Layer` does, and read its models."""
    if not any(ep.name == entry_point for ep in discovered_entry_points()):
        return _Loaded(
            error=f"no entry point named {entry_point!r} in group {ENTRY_POINT_GROUP!r} is "
            "installed: add it to pyproject.toml and install the package (pip install -e .)"
        )
    host = build_host(allow=[entry_point], strict=False)
    info = next(p for p in host.plugins if p.name == entry_point)
    if info.status != "ok":
        return _Loaded(error=f"plugin {entry_point!r} {info.status}: {info.error or info.note}")
    names = info.providers
    if provider_name is None and len(names) != 1:
        return _Loaded(
            error=f"plugin {entry_point!r} registers {len(names)} providers ({', '.join(names)}): "
            "set provider_name on the test class"
        )
    name = provider_name or names[0]
    if name not in names:
        return _Loaded(error=f"plugin {entry_point!r} registers no provider named {name!r}")
    provider = host.providers[name]
    try:
        specs = provider.models()
    except Exception as exc:  # noqa: BLE001 - the plugin's own code
        return _Loaded(name, error=f"{name}.models() raised {type(exc).__name__}: {exc}")
    return _Loaded(name, provider.key_env_var, list(specs))


def _smallest(spec: ModelSpec) -> Size:
    """The declared size with the fewest delivered pixels: cheapest to generate and check."""
    return min(spec.sizes, key=lambda s: megapixels(spec.delivered_size(s)))


def _has_reason(test: object, xfail_strict: bool) -> bool:
    if getattr(test, _OVERRIDE_REASON, None):
        return True
    for mark in getattr(test, "pytestmark", []):
        strict = mark.kwargs.get("strict", xfail_strict)
        if mark.name == "xfail" and mark.kwargs.get("reason") and strict:
            return True
    return False


def _error_text(error: BaseException) -> str:
    """Everything an error would show: str, repr, args, details, and the chain a traceback
    prints (its cause, or its context unless raised `from None`)."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args)]
        parts.append(repr(getattr(current, "details", "")))
        shown_context = None if current.__suppress_context__ else current.__context__
        current = current.__cause__ or shown_context
    return "\n".join(parts)


def _around(text: str, secret: str, width: int = 80) -> str:
    """The text near `secret`, with the secret itself masked (never print a key in a report)."""
    at = text.find(secret)
    start = max(0, at - width)
    snippet = text[start : at + len(secret) + width].replace(secret, "<API KEY>")
    return " ".join(snippet.split())


async def _until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def _close_loop(loop: asyncio.AbstractEventLoop, grace: float) -> None:
    """Cancel what is left on `loop`, let it unwind briefly, and close it (threads not awaited)."""
    left = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in left:
        task.cancel()
    if left:
        with contextlib.suppress(BaseException):
            loop.run_until_complete(asyncio.wait(left, timeout=grace))
    loop.close()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class ProviderConformance:
    """The standard tests for a layer provider plugin. Subclass it in your tests (see module doc).

    Set `entry_point` and `distribution`; give a `fake_api` fixture that yields your `FakeApi`
    (or set `remote_api = False` for a provider that calls no API, like `local`). Set
    `provider_name` if your plugin registers more than one provider, and `models` to test only
    some of its models (e.g. those one of its APIs serves).
    """

    entry_point: ClassVar[str]
    """The entry point's name in group `layer` (what `LAYER_PLUGINS` selects)."""
    distribution: ClassVar[str]
    """The distribution that installs it (e.g. "layer-acme")."""
    provider_name: ClassVar[str | None] = None
    models: ClassVar[tuple[str, ...] | None] = None
    """The model ids this class tests (default: every model the provider declares). The tests
    of one call (errors, timeout, key, cancellation) use the first. A provider whose models are
    served by different APIs gives each API's fake a class of its own, naming its models."""
    remote_api: ClassVar[bool] = True
    """False for a provider that calls no API: the error and key tests then skip, saying so."""
    api_key: ClassVar[str] = "lk-conformance-4f1c9e27d8a3b605"
    """The key the suite configures (through the provider's key_env_var); it must never leak."""
    prompt: ClassVar[str] = "a red bicycle leaning on a lighthouse, conformance test"
    timeout: ClassVar[float] = 30.0
    """The gate timeout for calls that should succeed (generous: CI machines are shared)."""
    hang_timeout: ClassVar[float] = 0.5
    """The gate timeout for the call that never answers."""
    grace: ClassVar[float] = 10.0
    """How long a cancelled call's tasks, threads and connections get to stop."""

    # --- fixtures --------------------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _isolated_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """No LAYER_* settings, user config or working-directory plugins.toml leak into a test."""
        for name in _LAYER_ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in isolated_environ(tmp_path).items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(tmp_path)

    @pytest.fixture
    def fake_api(self) -> FakeApi | None:
        """Override: yield your running `FakeApi` (stopped after the test)."""
        if not self.remote_api:
            return None
        pytest.fail(
            f"{type(self).__name__} needs a `fake_api` fixture that yields your fake of the "
            "provider's API (a layer_core.testing.conformance.FakeApi); set remote_api = False "
            "if the provider calls no API"
        )

    @pytest.fixture
    def layer_factory(self, fake_api: FakeApi | None) -> Iterator[Callable[..., Layer]]:
        """Build `Layer`s that load the plugin from its entry point, pointed at the fake."""
        made: list[Layer] = []

        def make(*, key: bool = True, timeout: float | None = None) -> Layer:
            layer = Layer(
                self._config(fake_api, timeout or self.timeout),
                environ=self._environ() if key else {},
            )
            made.append(layer)
            return layer

        yield make
        for layer in made:
            layer.close()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Parametrize by what the plugin declares: a test per model, size, quality, style."""
        names = set(metafunc.fixturenames)
        if "failure" in names:
            metafunc.parametrize("failure", [f for f in FAILURES if f != "hang"])
        if "model_id" not in names:
            return
        loaded = self._loaded()
        axis = next((a for a in ("size", "quality", "style") if a in names), None)
        params: list[Any] = []
        for spec in loaded.specs:
            if axis is None:
                params.append(pytest.param(spec.id, id=spec.id))
                continue
            values: tuple[str | None, ...] = {
                "size": spec.sizes,
                "quality": spec.qualities or (None,),
                "style": spec.styles or (None,),
            }[axis]
            for value in values:
                label = value if value is not None else f"no-{axis}"
                params.append(pytest.param(spec.id, value, id=f"{spec.id}-{label}"))
        if not params:  # the plugin did not load: run once, and fail saying why
            blank = (None,) if axis is None else (None, None)
            params = [pytest.param(*blank, id="no-models")]
        metafunc.parametrize("model_id" if axis is None else ("model_id", axis), params)

    # --- helpers ---------------------------------------------------------------------------------

    @classmethod
    def _loaded(cls) -> _Loaded:
        """The plugin as loaded, its models narrowed to `models` (in that order) if set."""
        loaded = _load(cls.entry_point, cls.provider_name)
        if cls.models is None or loaded.error:
            return loaded
        declared = {spec.id: spec for spec in loaded.specs}
        missing = [m for m in cls.models if m not in declared]
        if missing or not cls.models:
            return replace(
                loaded,
                specs=[],
                error=f"{cls.__name__}.models names {missing or 'no model'}; "
                f"{loaded.provider_name} declares {list(declared)}",
            )
        return replace(loaded, specs=[declared[m] for m in cls.models])

    def _name(self) -> str:
        loaded = self._loaded()
        if loaded.error:
            pytest.fail(loaded.error)
        return loaded.provider_name

    def _spec(self, model_id: str | None) -> ModelSpec:
        loaded = self._loaded()
        if loaded.error:
            pytest.fail(loaded.error)
        for spec in loaded.specs:
            if spec.id == model_id:
                return spec
        pytest.fail(f"{loaded.provider_name} declares no models")

    def _first(self) -> ModelSpec:
        specs = self._loaded().specs
        return self._spec(specs[0].id if specs else None)

    def _environ(self) -> dict[str, str]:
        var = self._loaded().key_env_var
        return {var: self.api_key} if var else {}

    def _config(self, fake: FakeApi | None, timeout: float) -> dict[str, Any]:
        specs = self._loaded().specs
        return {
            "ledger": False,
            "plugins": {
                "load": [self.entry_point],
                self._name(): dict(fake.settings()) if fake is not None else {},
            },
            "gates": {
                GATE: {
                    "model": specs[0].id if specs else "none",
                    "routing_strategy": "single",
                    "allow_overrides": True,
                    "retries": 0,
                    "timeout": timeout,
                }
            },
        }

    def _fake(self, fake_api: FakeApi | None, failure: Failure | None = None) -> FakeApi:
        if fake_api is None:
            pytest.skip(f"{self._name()} calls no remote API (remote_api = False)")
        if failure is not None and failure not in fake_api.failures:
            pytest.skip(f"{type(fake_api).__name__} cannot produce {failure} (not in its failures)")
        return fake_api

    def _generate(self, layer: Layer, spec: ModelSpec, **data: Any) -> ImageResponse:
        asked = ", ".join(f"{k}={v}" for k, v in data.items())
        try:
            return layer.image(GATE, {"prompt": self.prompt, **data}, model=spec.id)
        except AllAttemptsFailed as exc:
            details = "; ".join(f"{a.error}: {a.message}" for a in exc.attempts if a.error)
            pytest.fail(f"{spec.id} failed to generate ({asked}): {details}")
        except LayerError as exc:
            pytest.fail(f"{spec.id} was not called ({asked}): {exc}")

    def _check_image(self, spec: ModelSpec, size: Size, image: ImageOutput) -> None:
        want = spec.delivered_size(size)
        declared = size if want == size else f"{size} (delivered as {want})"
        try:
            mime, width, height = image_info(image.bytes())
        except Exception as exc:  # noqa: BLE001 - undecodable or undownloadable: the finding
            pytest.fail(f"{spec.id} at {size}: the output is not a readable image: {exc}")
        got = f"{width}x{height}"
        if got != want:
            pytest.fail(
                f"{spec.id} declares {declared}, but the image is {got} pixels: if the API "
                f"really returns {got} for {size}, declare delivered={{{size!r}: {got!r}}}; "
                f"if it cannot produce {size}, drop it from sizes"
            )
        if image.size != want:
            pytest.fail(f"{spec.id} at {size}: ImageOutput.size is {image.size}, the pixels {got}")
        if image.mime_type != mime:
            pytest.fail(f"{spec.id}: ImageOutput.mime_type is {image.mime_type}, the bytes {mime}")

    def _direct_call(self, layer: Layer, spec: ModelSpec) -> list[ImageOutput] | BaseException:
        """One call straight to the provider the Layer loaded, before the core's redaction.

        Returns the images, or the exception exactly as the provider raised it.
        """
        provider: Provider = layer.providers[self._name()]
        call = GenerationCall(
            model=spec,
            prompt=self.prompt,
            size=_smallest(spec),
            n=1,
            quality=spec.served_quality(None),
            timeout=self.timeout,
            options=provider._call_options,  # deprecated, for providers that still read it
        )

        try:
            return generate_once(provider, call, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - any exception is what we inspect
            return exc

    def _failed_through_layer(self, layer: Layer, spec: ModelSpec) -> AllAttemptsFailed | None:
        try:
            layer.image(GATE, {"prompt": self.prompt, "size": _smallest(spec)}, model=spec.id)
        except AllAttemptsFailed as exc:
            return exc
        return None

    # --- installation ----------------------------------------------------------------------------

    def test_entry_point_is_installed(self) -> None:
        eps = [
            ep
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            if ep.name == self.entry_point
        ]
        if not eps:
            pytest.fail(
                f"no entry point {self.entry_point!r} in group {ENTRY_POINT_GROUP!r}: add "
                f'[project.entry-points.layer] {self.entry_point} = "your_package" to '
                "pyproject.toml and install the package (pip install -e .)"
            )
        dists = sorted({ep.dist.name if ep.dist else "?" for ep in eps})
        if len(eps) > 1:
            pytest.fail(f"entry point {self.entry_point!r} is installed by {', '.join(dists)}")
        (ep,) = eps
        if ep.dist is None or _canonical(ep.dist.name) != _canonical(self.distribution):
            pytest.fail(
                f"entry point {self.entry_point!r} comes from {dists[0]}, not {self.distribution}"
            )
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - an import error is the finding
            pytest.fail(f"entry point {ep.value!r} does not import: {type(exc).__name__}: {exc}")
        if not callable(getattr(plugin, "register_providers", None)):
            pytest.fail(f"{ep.value} has no register_providers hook implementation")

    def test_layer_plugins_lists_it_as_ok(self, tmp_path: Path) -> None:
        from click.testing import CliRunner

        from layer_core.cli import cli

        config = tmp_path / "plugins.toml"
        config.write_text("ledger = false\n")
        result = CliRunner().invoke(cli, ["--config", str(config), "plugins", "--json"])
        if result.exit_code != 0:
            pytest.fail(f"`layer plugins --json` exited {result.exit_code}: {result.output}")
        rows = {row["name"]: row for row in json.loads(result.stdout)}
        row = rows.get(self.entry_point)
        if row is None:
            pytest.fail(
                f"`layer plugins` does not list {self.entry_point!r} (it lists {list(rows)})"
            )
        if row["status"] != "ok":
            pytest.fail(
                f"`layer plugins` shows {self.entry_point!r} {row['status']}: {row['error']}"
            )
        version = importlib.metadata.version(self.distribution)
        shown = (row["distribution"], row["version"])
        if _canonical(shown[0] or "") != _canonical(self.distribution) or shown[1] != version:
            pytest.fail(
                f"`layer plugins` shows {self.entry_point!r} from {shown[0]} {shown[1]}, "
                f"not {self.distribution} {version}"
            )
        if self._name() not in row["providers"]:
            pytest.fail(f"`layer plugins` lists no provider {self._name()!r} for the plugin")

    def test_loading_the_plugin_imports_no_sdk(self) -> None:
        script = (
            "import json, sys\nfrom layer_core import Layer\n"
            "Layer({'ledger': False, 'plugins': {'load': []}})\nbefore = set(sys.modules)\n"
            f"Layer({{'ledger': False, 'plugins': {{'load': [{self.entry_point!r}]}}}})\n"
            "print(json.dumps(sorted(set(sys.modules) - before)))"
        )
        env = {k: v for k, v in os.environ.items() if k not in _LAYER_ENV}
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env
        )
        if done.returncode != 0:
            pytest.fail(f"building a Layer with plugin {self.entry_point!r} failed:\n{done.stderr}")
        extra = set(json.loads(done.stdout))
        ep = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=self.entry_point)
        own = {e.module.split(".")[0] for e in ep}
        foreign = sorted(
            {
                m.split(".")[0]
                for m in extra
                if m.split(".")[0] not in own | {"layer_core"}
                and m.split(".")[0] not in sys.stdlib_module_names
                and not m.startswith("_")
            }
        )
        if foreign:
            pytest.fail(
                f"loading plugin {self.entry_point!r} imports {', '.join(foreign)} when a Layer "
                "is built: import SDKs inside generate (or the client factory), so Layer() "
                "stays fast for apps that never call this provider"
            )

    # --- models are data -------------------------------------------------------------------------

    def test_model_specs_are_valid(self, model_id: str) -> None:
        spec = self._spec(model_id)
        today = datetime.now(UTC).date()
        problems: list[str] = []
        try:
            ModelSpec.model_validate(spec.model_dump())
        except ValidationError as exc:
            problems.append(f"does not validate as a ModelSpec: {exc}")
        if spec.provider != self._name():
            problems.append(f"names provider {spec.provider!r}, not {self._name()!r}")
        problems += [f"size {s} is not a layer size" for s in spec.sizes if s not in SIZES]
        for quality in spec.qualities or (None,):
            problems += [
                f"no price for {quality or '*'}/{size}"
                for size in spec.sizes
                if spec.price(quality, size) is None
            ]
        for size, pixels in spec.delivered.items():
            try:
                parse_size(pixels)
            except ValueError:
                problems.append(f"delivered[{size}] = {pixels!r} is not WIDTHxHEIGHT")
        if spec.price_date > today:
            problems.append(f"price_date {spec.price_date} is in the future")
        if spec.price_date < date(2020, 1, 1):
            problems.append(f"price_date {spec.price_date} is before 2020: a typo?")
        retires = spec.deprecated
        if retires is not None and not date(2020, 1, 1) <= retires <= date(today.year + 10, 1, 1):
            problems.append(f"deprecated {retires} is not a plausible retirement date")
        if problems:
            pytest.fail(f"{spec.id}:\n  " + "\n  ".join(problems))

    def test_model_ids_are_unique(self) -> None:
        loaded = _load(self.entry_point, self.provider_name)  # all its models, not just `models`
        specs = loaded.specs
        if not specs:
            pytest.fail(loaded.error or f"{self._name()} declares no models")
        names = [spec.id for spec in specs] + [a for spec in specs for a in spec.aliases]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            pytest.fail(f"{self._name()} declares these ids or aliases twice: {repeated}")

    # --- capabilities, through the Layer --------------------------------------------------------

    def test_each_declared_size_is_delivered(
        self,
        model_id: str,
        size: Size,
        layer_factory: Callable[..., Layer],
        fake_api: FakeApi | None,
    ) -> None:
        spec = self._spec(model_id)
        response = self._generate(layer_factory(), spec, size=size)
        if len(response.images) != 1:
            pytest.fail(f"{spec.id} at {size}: asked for 1 image, got {len(response.images)}")
        self._check_image(spec, size, response.images[0])
        if fake_api is not None:
            self._check_wire(fake_api, -1, prompt=self.prompt)

    def test_max_images_per_call_come_back_in_one_call(
        self, model_id: str, layer_factory: Callable[..., Layer], fake_api: FakeApi | None
    ) -> None:
        spec = self._spec(model_id)
        count, size = spec.max_images_per_call, _smallest(spec)
        before = len(fake_api.generations()) if fake_api is not None else 0
        response = self._generate(layer_factory(), spec, size=size, count=count)
        if len(response.images) != count:
            pytest.fail(f"{spec.id}: asked for {count} images, got {len(response.images)}")
        calls = [(a.requested, a.outcome) for a in response.attempts]
        if calls != [(count, "ok")]:
            pytest.fail(f"{spec.id}: {count} images took these calls: {calls}")
        for image in response.images:
            self._check_image(spec, size, image)
        if fake_api is not None:
            sent = fake_api.generations()[before:]
            if len(sent) != 1:
                pytest.fail(
                    f"{spec.id}: max_images_per_call is {count}, but {count} images took "
                    f"{len(sent)} requests to the API"
                )
            self._check_wire(fake_api, -1, n=count)

    def test_same_seed_gives_the_same_image(
        self, model_id: str, layer_factory: Callable[..., Layer], fake_api: FakeApi | None
    ) -> None:
        spec = self._spec(model_id)
        if not spec.supports_seed:
            pytest.skip(f"{spec.id} declares no seed support")
        layer, size = layer_factory(), _smallest(spec)
        first, again, other = (
            self._generate(layer, spec, size=size, seed=seed).images[0]
            for seed in (_SEEDS[0], _SEEDS[0], _SEEDS[1])
        )
        if first.seed != _SEEDS[0]:
            pytest.fail(f"{spec.id}: asked for seed {_SEEDS[0]}, the image reports {first.seed}")
        if first.bytes() != again.bytes():
            pytest.fail(
                f"{spec.id}: seed {_SEEDS[0]} twice gave two different images "
                "(is the seed sent to the API?)"
            )
        if first.bytes() == other.bytes():
            pytest.fail(
                f"{spec.id}: seeds {_SEEDS[0]} and {_SEEDS[1]} gave the same image "
                "(is the seed sent to the API?)"
            )
        if fake_api is not None:
            for back, seed in zip((-3, -2, -1), (_SEEDS[0], _SEEDS[0], _SEEDS[1]), strict=True):
                self._check_wire(fake_api, back, seed=seed)

    def test_each_declared_quality_is_served(
        self,
        model_id: str,
        quality: str | None,
        layer_factory: Callable[..., Layer],
        fake_api: FakeApi | None,
    ) -> None:
        spec = self._spec(model_id)
        if quality is None:
            pytest.skip(f"{spec.id} declares no quality setting")
        self._check_setting(spec, layer_factory(), fake_api, quality=quality)

    def test_each_declared_style_is_served(
        self,
        model_id: str,
        style: str | None,
        layer_factory: Callable[..., Layer],
        fake_api: FakeApi | None,
    ) -> None:
        spec = self._spec(model_id)
        if style is None:
            pytest.skip(f"{spec.id} declares no style")
        self._check_setting(spec, layer_factory(), fake_api, style=style)

    def _check_setting(
        self, spec: ModelSpec, layer: Layer, fake: FakeApi | None, **setting: str
    ) -> None:
        size = _smallest(spec)
        response = self._generate(layer, spec, size=size, **setting)
        (key, value) = next(iter(setting.items()))
        ignored = [w for w in response.warnings if spec.id in w and key in w]
        if ignored:
            pytest.fail(f"{spec.id} declares {key} {value!r}, yet: {'; '.join(ignored)}")
        self._check_image(spec, size, response.images[0])
        if fake is not None:
            self._check_wire(fake, -1, **setting)

    def _check_wire(self, fake: FakeApi, index: int, **expected: Any) -> None:
        """What the API received (as `FakeApi.generations` reports it) matches what was asked."""
        sent = fake.generations()
        if len(sent) < abs(index):
            pytest.fail(f"the fake API received {len(sent)} generation requests, expected more")
        request = sent[index]
        for key, value in expected.items():
            if key in request and request[key] != value:
                pytest.fail(f"asked for {key}={value!r}, but the API received {request[key]!r}")

    # --- errors ----------------------------------------------------------------------------------

    def test_failure_maps_to_core_error(
        self, failure: Failure, layer_factory: Callable[..., Layer], fake_api: FakeApi | None
    ) -> None:
        fake = self._fake(fake_api, failure)
        expected, what = EXPECTED[failure]
        layer, spec, name = layer_factory(), self._first(), self._name()

        fake.fail_next(failure)
        before = len(fake.generations())
        raised = self._direct_call(layer, spec)
        if len(fake.generations()) == before:
            pytest.fail(f"{name} never sent the request to the fake API (for {failure})")
        if not isinstance(raised, BaseException):
            pytest.fail(
                f"{what}: {name} returned {len(raised)} image(s) instead of raising "
                f"{expected.__name__}"
            )
        kind = f"{type(raised).__module__}.{type(raised).__qualname__}"
        if not isinstance(raised, ProviderError):
            pytest.fail(
                f"{what}: {kind} escaped from {name}'s generate: catch it and raise a "
                f"layer_core error ({expected.__name__}) ({raised})"
            )
        if not isinstance(raised, expected):
            pytest.fail(
                f"{what} should raise {expected.__name__}; {name} raised "
                f"{type(raised).__name__}: {raised}"
            )
        retry_after = raised.retry_after if isinstance(raised, RateLimited) else None
        if failure == "rate_limited" and (
            retry_after is None or abs(retry_after - RETRY_AFTER) > 1
        ):
            pytest.fail(
                f"{what}: RateLimited.retry_after is {retry_after}, not {RETRY_AFTER}: "
                "read the Retry-After header (layer_core.parse_retry_after)"
            )

        fake.fail_next(failure)
        failed = self._failed_through_layer(layer, spec)
        if failed is None:
            pytest.fail(f"{what}: Layer.image succeeded")
        attempt = failed.attempts[0]
        if expected is not ProviderError and attempt.error != expected.kind:
            pytest.fail(f"{what}: the Layer recorded {attempt.error}, not {expected.kind}")
        if failure == "rate_limited" and attempt.retry_after != retry_after:
            pytest.fail(f"{what}: the Layer recorded retry_after {attempt.retry_after}")

    def test_a_hanging_call_times_out(
        self, layer_factory: Callable[..., Layer], fake_api: FakeApi | None
    ) -> None:
        fake = self._fake(fake_api, "hang")
        spec = self._first()
        fake.fail_next("hang")
        failed = self._failed_through_layer(layer_factory(timeout=self.hang_timeout), spec)
        if failed is None:
            pytest.fail(f"{spec.id}: a call the API never answered succeeded")
        outcome = [(a.error, a.message) for a in failed.attempts]
        if outcome[0][0] != "timeout":
            pytest.fail(f"{spec.id}: a call the API never answered ended as {outcome}")

    # --- secrets ---------------------------------------------------------------------------------

    def test_key_never_appears_in_reprs_logs_or_errors(
        self,
        layer_factory: Callable[..., Layer],
        fake_api: FakeApi | None,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        fake = self._fake(fake_api)
        if self._loaded().key_env_var is None:
            pytest.skip(f"{self._name()} needs no key (key_env_var is None)")
        caplog.set_level(logging.DEBUG)
        layer, spec = layer_factory(), self._first()
        provider = layer.providers[self._name()]
        shown = [
            ("repr(provider)", repr(provider)),
            ("repr(provider.settings)", repr(provider.settings)),
            ("the provider's settings as JSON", provider.settings.model_dump_json()),
            ("repr(layer)", repr(layer)),
        ]
        response = self._generate(layer, spec, size=_smallest(spec))
        shown.append(("the response as JSON", response.model_dump_json()))
        for failure in sorted(fake.failures - {"hang"}):
            fake.fail_next(failure)
            raised = self._direct_call(layer, spec)
            if isinstance(raised, BaseException):
                shown.append((f"the error raised for {failure}", _error_text(raised)))
            fake.fail_next(failure)
            failed = self._failed_through_layer(layer, spec)
            if failed is not None:
                shown.append((f"Layer.image's error for {failure}", _error_text(failed)))
        shown.append(("the log", caplog.text))
        leaks = [
            f"{where}: …{_around(text, self.api_key)}…"
            for where, text in shown
            if self.api_key in text
        ]
        if leaks:
            pytest.fail("the API key appears in\n  " + "\n  ".join(leaks))

    def test_without_a_key_the_provider_is_unavailable_and_never_called(
        self, layer_factory: Callable[..., Layer], fake_api: FakeApi | None
    ) -> None:
        var = self._loaded().key_env_var
        if var is None:
            pytest.skip(f"{self._name()} needs no key (key_env_var is None)")
        layer, spec = layer_factory(key=False), self._first()
        why = layer.unavailable().get(self._name())
        if why is None or var not in why:
            pytest.fail(f"without {var}, layer.unavailable() says {layer.unavailable()}")
        with pytest.raises(NoEligibleModel):
            layer.image(GATE, {"prompt": self.prompt, "size": _smallest(spec)}, model=spec.id)
        if fake_api is not None and fake_api.generations():
            pytest.fail(f"without {var}, the fake API still received a generation request")

    # --- cancellation ----------------------------------------------------------------------------

    def test_cancelling_a_call_leaves_nothing_running(
        self, layer_factory: Callable[..., Layer], fake_api: FakeApi | None
    ) -> None:
        if fake_api is not None:
            self._fake(fake_api, "hang")
        spec = self._first()
        threads = set(threading.enumerate())
        layer = layer_factory()
        problems: list[str] = []

        async def scenario() -> None:
            data: dict[str, Any] = {"prompt": self.prompt, "size": _smallest(spec)}
            if fake_api is not None:
                fake_api.fail_next("hang")
                before = len(fake_api.generations())
            else:
                data["count"] = spec.max_images_per_call
            task = asyncio.ensure_future(layer.aimage(GATE, data, model=spec.id))
            if fake_api is not None:
                if not await _until(lambda: len(fake_api.generations()) > before, self.grace):
                    problems.append("the call never reached the fake API")
            else:
                await asyncio.sleep(0.01)
            if task.done():
                pytest.skip(f"{spec.id} answered before it could be cancelled")
            task.cancel()
            try:
                await task
                problems.append("the call returned normally after it was cancelled")
            except asyncio.CancelledError:
                pass
            except BaseException as exc:  # noqa: BLE001 - reported, not raised
                problems.append(
                    f"cancelling raised {type(exc).__name__} instead of CancelledError "
                    "(re-raise CancelledError in generate)"
                )

            def running() -> list[asyncio.Task[Any]]:
                me = asyncio.current_task()
                return [t for t in asyncio.all_tasks() if t is not me and not t.done()]

            if not await _until(lambda: not running(), self.grace):
                problems.append(
                    "tasks still running after the cancel: "
                    + ", ".join(repr(t.get_coro()) for t in running())
                )
            await layer.aclose()
            if fake_api is not None and not await _until(
                lambda: fake_api.open_connections() == 0, self.grace
            ):
                problems.append(
                    f"{fake_api.open_connections()} connection(s) to the API still open after "
                    "the cancel and aclose()"
                )

        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(scenario())
        finally:
            _close_loop(loop, self.grace)

        def new_threads() -> list[threading.Thread]:
            return [t for t in threading.enumerate() if t not in threads and t.is_alive()]

        if not wait_until(lambda: not new_threads(), self.grace):
            problems.append(f"threads still running: {[t.name for t in new_threads()]}")
        if problems:
            pytest.fail(f"{spec.id}, cancelled mid-call:\n  " + "\n  ".join(problems))

    # --- the suite's own integrity -------------------------------------------------------------

    def test_overridden_standard_tests_carry_a_reason(self, request: pytest.FixtureRequest) -> None:
        strict = bool(request.config.getini("xfail_strict"))
        cls = type(self)
        problems = []
        for name in sorted(vars(ProviderConformance)):
            if not name.startswith("test_"):
                continue
            mine, standard = getattr(cls, name, None), getattr(ProviderConformance, name)
            if mine is standard:
                continue
            if not callable(mine):
                problems.append(f"{name} is removed")
            elif not _has_reason(mine, strict):
                problems.append(f"{name} is overridden without a reason")
        if problems:
            pytest.fail(
                f"{cls.__name__}: "
                + "; ".join(problems)
                + '. Decorate an override with @override_reason("why") (from '
                "layer_core.testing.conformance) or @pytest.mark.xfail(strict=True, "
                'reason="why"), so the difference is visible, and expires when it is fixed'
            )
