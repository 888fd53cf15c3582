"""The contenders: one async client each, all doing the same three kinds of request.

Every contender is made by `await make(name, base_url)` (all imports and client setup happen
there, before anything is timed) and offers:

- `single(n)`: one images request on `dall-e-2` for `n` images (one HTTP call);
- `count4()`: four images from `dall-e-3`, a model that makes one image per call, so four
  concurrent calls of `n=1` (layer splits `count=4` itself; everyone else gathers four calls;
  nobody sends `n=4` to a model that would refuse it);
- `fallback()`: one image where the primary (`broken-model`, which the fake answers 500) fails
  and the fallback (`dall-e-2`) serves, with no retry of the primary;
- `settled()`: called once after the warm-up, before the timed run: work the warm-up set off in
  the background is done (only the ledger contender has any: its first write);
- `aclose()`.

Each returns the number of images it got. The contenders:

- `httpx`: a raw `httpx.AsyncClient` POST and `json.loads`, the floor;
- `sdk`: `openai.AsyncOpenAI(max_retries=0).images.generate` on the SDK's default transport;
- `sdk-aiohttp`: the same on the SDK's aiohttp transport, exactly what layer's provider calls
  (layer's overhead is measured against this one);
- `layer`: `Layer.aimage` through a gate of the openai plugin (ledger off, retries 0);
- `ledger`: the same with a SQLite cost ledger, as `Layer()` runs by default (one row per
  request, written by the ledger's background thread);
- `litellm`: `litellm.aimage_generation` (the `bench` extra);
- `router`: a `litellm.Router` whose model groups each have a fallback group (`num_retries=0`,
  cooldowns off so every fallback request really tries the 500ing primary first).
"""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

PROMPT = "a lighthouse at dusk, watercolour"
SIZE = "1024x1024"
API_KEY = "sk-bench"
MODEL = "dall-e-2"
ONE_PER_CALL_MODEL = "dall-e-3"
BROKEN_MODEL = "broken-model"  # the fake answers 500 to this model
CONTENDERS = ("httpx", "sdk", "sdk-aiohttp", "layer", "ledger", "litellm", "router")


class NotInstalled(Exception):
    """The contender's package is missing from this environment."""


class Contender(ABC):
    """The three requests, each returning how many images came back.

    By default all three are made of `_images(model, n)` (one HTTP call), the fallback done by
    hand: on `server_error` (which a contender using this fallback sets) from the primary, call
    the fallback model.
    """

    name = ""
    server_error: type[BaseException]

    @abstractmethod
    async def _images(self, model: str, n: int) -> int:
        """One images request for `n` images of `model` (or of a gate or model group)."""

    async def single(self, n: int = 1) -> int:
        return await self._images(MODEL, n)

    async def count4(self) -> int:
        return await _four(lambda: self._images(ONE_PER_CALL_MODEL, 1))

    async def fallback(self) -> int:
        try:
            return await self._images(BROKEN_MODEL, 1)
        except self.server_error:
            return await self._images(MODEL, 1)

    async def settled(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def _four(call: Callable[[], Awaitable[int]]) -> int:
    """Four concurrent one-image calls, as layer does for count=4 on a one-per-call model."""
    counts = await asyncio.gather(call(), call(), call(), call())
    return sum(counts)


class RawHttpx(Contender):
    """The floor: a POST with httpx and a JSON parse, nothing else."""

    name = "httpx"

    def __init__(self, base_url: str) -> None:
        import httpx

        # Same pool size as the openai SDK's default (httpx's own default keeps only 20 idle
        # connections, which would churn connections at 100 in flight and understate the floor).
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=httpx.Timeout(60.0),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        )

    async def _post(self, model: str, n: int) -> tuple[int, Any]:
        response = await self.client.post(
            "images/generations", json={"model": model, "prompt": PROMPT, "n": n, "size": SIZE}
        )
        return response.status_code, response.json()

    async def _images(self, model: str, n: int) -> int:
        status, body = await self._post(model, n)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body}")
        return len(body["data"])

    async def fallback(self) -> int:
        status, body = await self._post(BROKEN_MODEL, 1)
        if status == 200:
            return len(body["data"])
        if status < 500:
            raise RuntimeError(f"HTTP {status}: {body}")
        return await self._images(MODEL, 1)

    async def aclose(self) -> None:
        await self.client.aclose()


class OpenAISDK(Contender):
    """The openai SDK directly, with its own default transport (httpx2), retries off."""

    name = "sdk"

    def __init__(self, base_url: str) -> None:
        import openai

        self.openai = openai
        self.server_error = openai.InternalServerError
        self.client = openai.AsyncOpenAI(
            base_url=base_url, api_key=API_KEY, max_retries=0, http_client=self._http_client()
        )

    def _http_client(self) -> Any:
        return None  # the SDK's default

    async def _images(self, model: str, n: int) -> int:
        response = await self.client.images.generate(model=model, prompt=PROMPT, n=n, size=SIZE)
        return len(response.data or ())

    async def aclose(self) -> None:
        await self.client.close()


class OpenAISDKAiohttp(OpenAISDK):
    """The openai SDK exactly as layer's provider configures it: aiohttp transport, no retries."""

    name = "sdk-aiohttp"

    def _http_client(self) -> Any:
        return self.openai.DefaultAioHttpClient()


def layer_config(base_url: str, ledger: str | bool = False) -> dict[str, Any]:
    """layer's config for the benchmark: the openai plugin on the fake, three gates."""
    return {
        "ledger": ledger,
        "plugins": {
            "load": ["openai"],
            "openai": {
                "base_url": base_url,
                "api_key": API_KEY,
                # the fallback workload's primary: a model the fake answers 500
                "extra_models": {
                    BROKEN_MODEL: {
                        "family": "dall-e-2",
                        "sizes": [SIZE],
                        "max_images_per_call": 10,
                        "prices": {"*/*": 0.02},
                        "price_date": "2026-11-23",
                    }
                },
            },
        },
        "gates": {
            "bench": {"model": MODEL, "routing_strategy": "single", "retries": 0},
            "bench-count4": {
                "model": ONE_PER_CALL_MODEL,
                "routing_strategy": "single",
                "retries": 0,
            },
            "bench-fallback": {
                "model": BROKEN_MODEL,
                "fallback_models": [MODEL],
                "routing_strategy": "fallback",
                "retries": 0,
            },
        },
    }


class LayerContender(Contender):
    """layer: `Layer.aimage` through a gate of the openai plugin."""

    name = "layer"

    def __init__(self, base_url: str, ledger: str | bool = False) -> None:
        from layer_core import Layer

        self.layer = Layer(layer_config(base_url, ledger))
        if "openai" not in self.layer.providers:
            raise RuntimeError(f"the openai plugin did not load: {self.layer.plugins()}")

    async def _images(self, gate: str, count: int) -> int:
        response = await self.layer.aimage(gate, {"prompt": PROMPT, "count": count})
        return len(response.images)

    async def single(self, n: int = 1) -> int:
        return await self._images("bench", n)

    async def count4(self) -> int:
        return await self._images("bench-count4", 4)

    async def fallback(self) -> int:
        return await self._images("bench-fallback", 1)

    async def aclose(self) -> None:
        await self.layer.aclose()
        self.layer.close()


class LayerWithLedger(LayerContender):
    """layer with a SQLite ledger in a fresh temporary folder (removed at `aclose`)."""

    name = "ledger"

    def __init__(self, base_url: str) -> None:
        import tempfile

        self.folder = tempfile.TemporaryDirectory(prefix="layer-bench-")
        super().__init__(base_url, ledger=f"sqlite:///{self.folder.name}/ledger.db")

    async def settled(self) -> None:
        # The warm-up's records make the ledger start: its thread imports SQLAlchemy, opens the
        # database and creates the tables (about 0.5 s of CPU, once per process). That is set-up,
        # like every contender's imports; left to run into the timed run, it would be charged to
        # the first requests measured.
        ledger = self.layer.ledger
        if ledger is None or not ledger.flush():
            raise RuntimeError("the ledger did not write the warm-up's records")

    async def aclose(self) -> None:
        await super().aclose()
        self.folder.cleanup()


def _import_litellm() -> Any:
    # LiteLLM fetches its model price map from GitHub at import unless told to use its own copy;
    # the benchmark is offline (and a network fetch at import is not what is measured).
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm
    except ImportError as exc:
        raise NotInstalled("litellm (python3 run.py bench installs the bench extra)") from exc
    litellm.telemetry = False
    litellm.suppress_debug_info = True
    return litellm


def _no_retry_client(base_url: str) -> Any:
    """An SDK client that never retries, handed to LiteLLM with `client=`.

    LiteLLM (1.83) drops a `max_retries` argument on the way to an OpenAI image call and sets
    `max_retries = 2` on the SDK client it uses, even on one passed with `client=`. Left alone,
    every fallback request would retry the 500ing primary twice with the SDK's back-off (about
    1.3 s a request): that would measure sleeps, not LiteLLM. So the client it gets keeps
    `max_retries` at 0 whatever it is told; LiteLLM's own code path is untouched. (Passing a
    client also skips LiteLLM's client-cache lookup: if anything, a small advantage to it.)
    """
    import openai

    class NoRetryAsyncOpenAI(openai.AsyncOpenAI):
        @property  # type: ignore[override]
        def max_retries(self) -> int:
            return 0

        @max_retries.setter
        def max_retries(self, value: int) -> None:
            pass

    return NoRetryAsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0)


class LiteLLM(Contender):
    """`litellm.aimage_generation` with the OpenAI provider prefix."""

    name = "litellm"

    def __init__(self, base_url: str) -> None:
        self.litellm = _import_litellm()
        self.server_error = self.litellm.InternalServerError
        self.base_url = base_url
        self.client = _no_retry_client(base_url)

    async def _images(self, model: str, n: int) -> int:
        response = await self.litellm.aimage_generation(
            model=f"openai/{model}",
            prompt=PROMPT,
            n=n,
            size=SIZE,
            api_base=self.base_url,
            api_key=API_KEY,
            max_retries=0,
            client=self.client,
        )
        return len(response.data or ())

    async def aclose(self) -> None:
        await self.client.close()


class LiteLLMRouter(Contender):
    """A `litellm.Router`: every model group has a fallback group; retries and cooldowns off."""

    name = "router"

    def __init__(self, base_url: str) -> None:
        litellm = _import_litellm()

        def deployment(group: str, model: str) -> dict[str, Any]:
            return {
                "model_name": group,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": base_url,
                    "api_key": API_KEY,
                    "max_retries": 0,
                },
            }

        self.router = litellm.Router(
            model_list=[
                deployment("bench", MODEL),
                deployment("bench-backup", MODEL),
                deployment("bench-count4", ONE_PER_CALL_MODEL),
                deployment("bench-count4-backup", ONE_PER_CALL_MODEL),
                deployment("bench-fallback", BROKEN_MODEL),
            ],
            fallbacks=[
                {"bench": ["bench-backup"]},
                {"bench-count4": ["bench-count4-backup"]},
                {"bench-fallback": ["bench-backup"]},
            ],
            num_retries=0,
            # Without this the Router benches a deployment after a few failures and skips it,
            # so the fallback workload would stop calling the 500ing primary at all.
            disable_cooldowns=True,
        )
        self.client = _no_retry_client(base_url)  # every deployment has the same URL and key

    async def _images(self, group: str, n: int) -> int:
        response = await self.router.aimage_generation(
            model=group, prompt=PROMPT, n=n, size=SIZE, client=self.client
        )
        return len(response.data or ())

    async def single(self, n: int = 1) -> int:
        return await self._images("bench", n)

    async def count4(self) -> int:
        return await _four(lambda: self._images("bench-count4", 1))

    async def fallback(self) -> int:
        return await self._images("bench-fallback", 1)

    async def aclose(self) -> None:
        await self.client.close()


FACTORIES: dict[str, Callable[[str], Contender]] = {
    "httpx": RawHttpx,
    "sdk": OpenAISDK,
    "sdk-aiohttp": OpenAISDKAiohttp,
    "layer": LayerContender,
    "ledger": LayerWithLedger,
    "litellm": LiteLLM,
    "router": LiteLLMRouter,
}


async def make(name: str, base_url: str) -> Contender:
    """The contender `name`, pointed at `base_url` (".../v1"); raises `NotInstalled`."""
    return FACTORIES[name](base_url)
