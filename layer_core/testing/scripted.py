"""A scripted provider and plugin for tests: decide per call what a model does.

    flaky = ScriptedProvider("acme", [make_spec("acme-1", "acme")],
                             script={"acme-1": [RateLimited("slow down", retry_after=0.01), OK]})
    layer = Layer(config, plugins=[plugin_for(flaky)], load_entry_points=False)

The plugin goes through the real plugin path (`register_providers`), so tests of the router
exercise exactly what a third-party plugin would.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from layer_core.catalog import ModelSpec, deployment_key
from layer_core.hookspecs import hookimpl
from layer_core.provider import GenerationCall, Provider
from layer_core.schema import SIZES, ImageOutput, Size

__all__ = [
    "OK",
    "Hang",
    "ScriptedProvider",
    "Step",
    "fake_images",
    "make_spec",
    "plugin_for",
    "tiny_png",
]


class _Ok:
    def __repr__(self) -> str:
        return "OK"


OK = _Ok()
"""Script step: succeed with `call.n` images."""


@dataclass(frozen=True)
class Hang:
    """Script step: take `seconds` (then succeed), e.g. to trip a gate's timeout."""

    seconds: float


Step = _Ok | Hang | BaseException | Callable[[GenerationCall], Any]


def tiny_png(width: int = 1, height: int = 1, rgb: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    """A valid solid-colour PNG, built without Pillow."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


_PNG_B64 = base64.b64encode(tiny_png()).decode()


def fake_images(call: GenerationCall) -> list[ImageOutput]:
    """`call.n` tiny PNG outputs, as a provider would return them for `call`."""
    return [
        ImageOutput(base64=_PNG_B64, seed=call.seed, revised_prompt=f"{call.prompt} (#{i})")
        for i in range(call.n)
    ]


def make_spec(
    model_id: str,
    provider: str,
    *,
    sizes: Sequence[Size] = SIZES,
    price: Decimal | float | str = "0.01",
    prices: Mapping[str, Any] | None = None,
    **fields: Any,
) -> ModelSpec:
    """A ModelSpec with test-friendly defaults (all sizes, one flat price)."""
    return ModelSpec(
        id=model_id,
        provider=provider,
        sizes=tuple(sizes),
        prices=dict(prices) if prices is not None else {"*/*": Decimal(str(price))},
        price_date=fields.pop("price_date", date(2026, 11, 1)),
        **fields,
    )


class ScriptedProvider(Provider):
    """A provider whose every call follows a script; it records the calls it gets.

    `script` maps a model id, or ``model@instance`` for one deployment of it, to steps taken in
    order, one per call (the last step repeats); a model with no script always succeeds. A step
    is `OK`, a `Hang`, an exception to raise, or a function of the call returning images (or
    raising). Each instance (`another`, for `[providers.<name>]`) shares the script and keeps
    its own `calls`.
    """

    def __init__(
        self,
        name: str,
        specs: Iterable[ModelSpec],
        script: Mapping[str, Sequence[Step]] | None = None,
        *,
        key_env_var: str | None = None,
    ) -> None:
        self.name = name  # type: ignore[misc]
        self.key_env_var = key_env_var  # type: ignore[misc]
        super().__init__()
        self._specs = list(specs)
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.calls: list[GenerationCall] = []
        self.closed = 0

    def models(self) -> list[ModelSpec]:
        return list(self._specs)

    def another(self, instance: str) -> ScriptedProvider:
        clone = ScriptedProvider(self.name, self._specs, key_env_var=self.key_env_var)
        clone.script = self.script
        clone.instance = instance
        return clone

    def calls_to(self, model_id: str) -> list[GenerationCall]:
        return [c for c in self.calls if c.model.id == model_id]

    async def generate(self, call: GenerationCall) -> list[ImageOutput]:
        index = len(self.calls_to(call.model.id))
        self.calls.append(call)
        script = self.script
        own = script.get(deployment_key(call.model.id, self.instance))
        steps = own or script.get(call.model.id) or [OK]
        step = steps[min(index, len(steps) - 1)]
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, Hang):
            await asyncio.sleep(step.seconds)
        elif callable(step) and not isinstance(step, _Ok):
            result = step(call)
            if asyncio.iscoroutine(result):
                result = await result
            return list(result)
        return fake_images(call)

    async def aclose(self) -> None:
        self.closed += 1


def plugin_for(*providers: Provider, name: str = "test-plugin") -> object:
    """A plugin object that registers `providers` through the `register_providers` hook."""

    class _Plugin:
        __name__ = name

        @hookimpl
        def register_providers(self, register: Callable[[Provider], None]) -> None:
            for provider in providers:
                register(provider)

    return _Plugin()
