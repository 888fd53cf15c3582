"""The gateway's ASGI app (FastAPI): the gates of one config over HTTP.

One `Gateway` per process holds the `Layer`, the key store (the ledger's database) and the
per-key concurrency counts; `create_app` wires its routes. Nothing here keeps state another
instance would need: spend, budgets, keys and rate counts live in the ledger database.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from layer_core.budget_guard import current_key
from layer_core.errors import AllAttemptsFailed
from layer_core.ledger import Hold, reservation_ttl
from layer_core.schema import HINTS, ImageRequest, ImageResponse
from layer_core.server import metrics
from layer_core.server.errors import HttpError, budget_of_key, classify
from layer_core.server.keys import ALL_GATES, ApiKey, find_key
from layer_core.server.middleware import Guard, request_id_of
from layer_core.server.wire import (
    OPENAI_QUALITY,
    CandidateOut,
    ErrorBody,
    ExplainResponse,
    GatewayImageResponse,
    Health,
    OpenAIError,
    OpenAIImage,
    OpenAIImageRequest,
    OpenAIImagesResponse,
    OpenAIModel,
    OpenAIModelList,
    RejectionOut,
)

if TYPE_CHECKING:
    from layer_core.layer import Layer
    from layer_core.ledger.store import SqlStore

log = logging.getLogger("layer.server")

SETTINGS_ENV = "LAYER_SERVE_SETTINGS"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ServeSettings:
    """How `layer serve` runs; handed to each worker process as JSON in `LAYER_SERVE_SETTINGS`."""

    config: str | None = None
    no_auth: bool = False
    max_body_bytes: int = 1024 * 1024
    timeout: float = 300.0
    key_concurrency: int = 16
    cors_origins: tuple[str, ...] = ()

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeSettings:
        raw = json.loads(os.environ.get(SETTINGS_ENV) or "{}")
        raw["cors_origins"] = tuple(raw.get("cors_origins", ()))
        return cls(**raw)


@dataclass
class _KeyCounts:
    """Requests in flight per key, in this process (the per-key concurrency cap)."""

    limit: int
    counts: dict[str, int] = field(default_factory=dict)

    def enter(self, name: str) -> None:
        count = self.counts.get(name, 0)
        if count >= self.limit:
            raise HttpError(
                429,
                "too_many_concurrent_requests",
                f"key {name!r} has {count} requests in flight here, the most allowed; "
                "wait for one to finish",
                headers={"retry-after": "1"},
            )
        self.counts[name] = count + 1

    def leave(self, name: str) -> None:
        left = self.counts[name] - 1
        if left:
            self.counts[name] = left
        else:
            del self.counts[name]


Check = Callable[[], Awaitable[None]]


class Gateway:
    """What the routes share in one process: the `Layer`, the key store, the limits."""

    def __init__(self, settings: ServeSettings) -> None:
        from layer_core.layer import Layer

        self.settings = settings
        self.layer: Layer = Layer(settings.config)
        ledger = self.layer.ledger
        if ledger is None and not settings.no_auth:
            raise RuntimeError(
                "keys are kept in the ledger database, and this config turns the ledger off "
                "(ledger = false): set `ledger`, or serve a loopback host with --no-auth"
            )
        self.key_counts = _KeyCounts(settings.key_concurrency)
        #: what /readyz checks, by name; a state store adds its own (`readiness["state"]`)
        self.readiness: dict[str, Check] = {}
        if ledger is not None:
            self.readiness["ledger"] = self._ledger_ready

    @property
    def store(self) -> SqlStore:
        ledger = self.layer.ledger
        assert ledger is not None
        return ledger.store()

    async def _ledger_ready(self) -> None:
        from sqlalchemy import text

        def ping() -> None:
            with self.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        await asyncio.to_thread(ping)

    async def close(self) -> None:
        """Close providers and write every ledger record still queued (on SIGTERM)."""
        await self.layer.aclose()

    # --- keys ----------------------------------------------------------------------------

    async def authenticate(self, request: Request) -> ApiKey | None:
        """The request's key (None under --no-auth); 401 when missing, unknown or revoked."""
        if self.settings.no_auth:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HttpError(
                401,
                "missing_key",
                "no API key: send `Authorization: Bearer <key>` (make one with `layer keys "
                "create`)",
            )
        try:
            key = await asyncio.to_thread(find_key, self.store, token.strip())
        except Exception as exc:  # noqa: BLE001 - every error is answered, in its shape
            raise classify(_ledger_error(self, exc), request_id_of(request)) from None
        if key is None:
            raise HttpError(401, "invalid_key", "the API key is not valid (unknown or revoked)")
        request.state.key = key.name
        return key

    def check_gate(self, key: ApiKey | None, gate_id: str) -> None:
        if key is not None and not key.allows(gate_id):
            raise HttpError(
                403,
                "gate_not_allowed",
                f"this key may not use gate {gate_id!r}; `GET /v1/models` lists its gates",
                param="model",
            )

    def gates_for(self, key: ApiKey | None) -> list[str]:
        gates = sorted(self.layer.gates())
        if key is None or ALL_GATES in key.gates:
            return gates
        return [g for g in gates if g in key.gates]

    async def _count_rate(self, key: ApiKey, now: datetime) -> None:
        if key.rpm is None:
            return
        minute = now.replace(second=0, microsecond=0)
        count = await asyncio.to_thread(self.store.count_request, key.name, minute)
        if count > key.rpm:
            wait = max(1, 60 - now.second)
            raise HttpError(
                429,
                "rate_limited",
                f"key {key.name!r} may make {key.rpm} requests a minute; try again in {wait}s",
                headers={"retry-after": str(wait)},
            )

    async def _hold_key_budget(
        self, key: ApiKey, request: ImageRequest, now: datetime
    ) -> Hold | None:
        """Hold the request's worst-case cost against the key's budget (402 when it would
        pass it), the way a gate's budget is held."""
        budget = key.budget
        if budget is None:
            return None
        plan = self.layer.explain(request.gate_id, request.data, request.model, request.metadata)
        if not plan.candidates:
            return None  # the request fails with NoEligibleModel, costing nothing
        estimate = max(c.estimated_cost for c in plan.candidates)
        gate = self.layer.gates()[request.gate_id]
        ttl = reservation_ttl(gate, plan.candidates)
        store = self.store
        result = await asyncio.to_thread(
            store.reserve, key.budget_id, budget, now, estimate, ttl, enforce=True
        )
        if isinstance(result, Hold):
            return result
        raise budget_of_key(key.name, result.limit, result.spent, result.resets_at.isoformat())

    async def _settle_key_budget(self, hold: Hold, cost: Decimal) -> None:
        try:
            await asyncio.to_thread(self.store.settle_hold, hold, cost)
        except Exception as exc:  # noqa: BLE001 - the hold expires by itself
            log.warning("settling a key's budget hold failed (it expires): %s", exc)

    # --- generating ------------------------------------------------------------------------

    async def generate(self, key: ApiKey | None, request: ImageRequest) -> ImageResponse:
        """One image request through its gate, within the key's limits and the timeout."""
        self.check_gate(key, request.gate_id)
        if key is None:
            return await self._generate(request)
        self.key_counts.enter(key.name)
        hold: Hold | None = None
        cost = Decimal(0)
        try:
            now = datetime.now(UTC)
            try:
                await self._count_rate(key, now)
                hold = await self._hold_key_budget(key, request, now)
            except HttpError:
                raise
            except Exception as exc:
                raise _ledger_error(self, exc) from exc
            token = current_key.set(key.name)
            try:
                response = await self._generate(request)
            except AllAttemptsFailed as exc:
                cost = exc.cost
                raise
            finally:
                current_key.reset(token)
            cost = response.cost_exact
            return response
        finally:
            self.key_counts.leave(key.name)
            if hold is not None:
                await self._settle_key_budget(hold, cost)

    async def _generate(self, request: ImageRequest) -> ImageResponse:
        call = self.layer.aimage(request.gate_id, request.data, request.model, request.metadata)
        try:
            response = await asyncio.wait_for(call, self.settings.timeout)
        except AllAttemptsFailed as exc:
            metrics.attempted(request.gate_id, exc.attempts)
            raise
        metrics.served(response)
        return response


def _ledger_error(gateway: Gateway, exc: BaseException) -> BaseException:
    ledger = gateway.layer.ledger
    if ledger is None or isinstance(exc, HttpError):
        return exc
    return ledger._unavailable(exc)


# --- the app ---------------------------------------------------------------------------------

_ERRORS = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "bad request: the body, a field, or what the gate cannot serve",
        401: "no API key, or one that is unknown or revoked",
        402: "the gate's or the key's budget would be exceeded",
        403: "the key may not use this gate",
        404: "no such gate",
        413: "the body is over the size cap",
        429: "the key's rate or concurrency limit",
        500: "a bug in the gateway (the request id is in the message)",
        502: "the providers failed (the attempts are in details)",
        503: "the providers are unavailable or rate-limited, or the ledger cannot be reached",
        504: "the providers or the request timed out",
    }.items()
}
_OPENAI_ERRORS = {
    status: {"model": OpenAIError, "description": spec["description"]}
    for status, spec in _ERRORS.items()
}


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def _key(request: Request) -> ApiKey | None:
    return await _gateway(request).authenticate(request)


#: the request's key, checked before its body is read (None under --no-auth)
Key = Annotated[ApiKey | None, Depends(_key)]


def _is_openai(request: Request) -> bool:
    return request.url.path.startswith("/v1/")


def _error_response(request: Request, error: HttpError) -> JSONResponse:
    body = error.openai_body() if _is_openai(request) else error.seed_body()
    request.state.error = error.code
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def _fail(request: Request, exc: BaseException, gate: str | None = None) -> JSONResponse:
    error = classify(exc, request_id_of(request))
    if gate is not None:
        metrics.failed(gate, error.code)
    return _error_response(request, error)


def _layer_headers(response: ImageResponse) -> dict[str, str]:
    return {
        "x-layer-gate": response.gate_id,
        "x-layer-model": response.model,
        "x-layer-provider": response.provider,
        "x-layer-deployment": response.deployment,
        "x-layer-cost": str(response.cost_exact),
        "x-layer-attempts": str(len(response.attempts)),
        "x-layer-latency-ms": str(response.latency),
    }


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A body FastAPI could not read, answered as layer answers bad input: 400, each problem
    with its field and fix."""
    problems = []
    for item in exc.errors():
        loc = [str(p) for p in item.get("loc", ()) if p != "body"]
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        hint = HINTS.get(loc[-1]) if loc else None
        if hint and item.get("type") not in ("value_error", "extra_forbidden"):
            message = f"{message}; {hint}"
        problems.append({"field": ".".join(loc) or "body", "message": message})
    lines = "\n".join(f"  {p['field']}: {p['message']}" for p in problems)
    first = problems[0]["field"] if problems else None
    error = HttpError(
        400,
        "invalid_request",
        f"invalid image request:\n{lines}",
        {"problems": problems},
        param=first.removeprefix("data.") if first else None,
    )
    return _error_response(request, error)


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The gateway app for `settings` (by default, those `layer serve` put in the environment)."""
    settings = settings or ServeSettings.from_env()
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await gateway.close()

    app = FastAPI(
        title="layer gateway",
        summary="The gates of one layer config over HTTP: the seed's API and OpenAI's.",
        version=_version(),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = gateway
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HttpError, _error_response)  # type: ignore[arg-type]
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type"],
            expose_headers=["x-request-id", "x-layer-cost", "x-layer-model"],
        )
    app.add_middleware(Guard, max_body_bytes=settings.max_body_bytes)
    _routes(app)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("layer-core")
    except PackageNotFoundError:  # pragma: no cover - a source checkout
        return "0"


def _routes(app: FastAPI) -> None:
    @app.post(
        "/v3/image",
        response_model=GatewayImageResponse,
        responses=_ERRORS,  # type: ignore[arg-type]
        tags=["seed"],
        summary="Generate images through a gate (the seed's wire format)",
    )
    async def image(request: Request, body: ImageRequest, key: Key) -> Response:
        gateway = _gateway(request)
        request.state.gate = body.gate_id
        try:
            response = await gateway.generate(key, body)
        except Exception as exc:  # noqa: BLE001 - every error is answered, in its shape
            return _fail(request, exc, body.gate_id)
        wire = GatewayImageResponse.model_validate(response, from_attributes=True)
        return Response(
            wire.model_dump_json(by_alias=True),
            media_type="application/json",
            headers=_layer_headers(response),
        )

    @app.post(
        "/v3/explain",
        response_model=ExplainResponse,
        responses=_ERRORS,  # type: ignore[arg-type]
        tags=["seed"],
        summary="The plan for a request: which models, in which order, and why not the others",
    )
    async def explain(request: Request, body: ImageRequest, key: Key) -> Response:
        gateway = _gateway(request)
        try:
            gateway.check_gate(key, body.gate_id)
            plan = await asyncio.to_thread(
                gateway.layer.explain, body.gate_id, body.data, body.model, body.metadata
            )
        except Exception as exc:  # noqa: BLE001 - every error is answered, in its shape
            return _fail(request, exc)
        out = ExplainResponse(
            gate_id=plan.gate_id,
            size=plan.size,
            quality=plan.quality,
            style=plan.style,
            count=plan.count,
            candidates=[
                CandidateOut(
                    model=c.id,
                    provider=c.model.provider,
                    price=str(c.price),
                    estimated_cost=str(c.estimated_cost),
                    warnings=list(c.warnings),
                )
                for c in plan.candidates
            ],
            rejected=[RejectionOut(model=r.model, reason=r.reason) for r in plan.rejected],
        )
        return Response(out.model_dump_json(by_alias=True), media_type="application/json")

    @app.post(
        "/v1/images/generations",
        response_model=OpenAIImagesResponse,
        responses=_OPENAI_ERRORS,  # type: ignore[arg-type]
        tags=["openai"],
        summary="Generate images, OpenAI-compatible: `model` names a gate, or gate/model",
    )
    async def generations(request: Request, body: OpenAIImageRequest, key: Key) -> Response:
        gateway = _gateway(request)
        gate_id, model = _gate_and_model(body.model)
        request.state.gate = gate_id
        data: dict[str, Any] = {"prompt": body.prompt, "count": body.n or 1}
        if body.size and body.size != "auto":
            data["size"] = body.size
        quality = OPENAI_QUALITY.get(body.quality) if body.quality else None
        if quality:
            data["quality"] = quality
        if body.style:
            data["style"] = body.style
        metadata = {"user": body.user} if body.user else {}
        try:
            from layer_core.validation import parse_request

            layer_request = parse_request(gate_id, data, model, metadata)
            response = await gateway.generate(key, layer_request)
            images = [await _openai_image(i, body.response_format) for i in response.images]
        except Exception as exc:  # noqa: BLE001 - every error is answered, in its shape
            return _fail(request, exc, gate_id)
        out = OpenAIImagesResponse(created=int(response.created.timestamp()), data=images)
        return Response(
            out.model_dump_json(exclude_none=True),
            media_type="application/json",
            headers=_layer_headers(response),
        )

    @app.get(
        "/v1/models",
        response_model=OpenAIModelList,
        responses={401: _OPENAI_ERRORS[401]},
        tags=["openai"],
        summary="The gates this key may use, as OpenAI models",
    )
    async def models(request: Request, key: Key) -> OpenAIModelList:
        gates = _gateway(request).gates_for(key)
        return OpenAIModelList(data=[OpenAIModel(id=g) for g in gates])

    @app.get("/healthz", response_model=Health, tags=["operations"], summary="The process is up")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        responses={503: {"model": Health, "description": "a dependency cannot be reached"}},
        tags=["operations"],
        summary="The ledger database (and state store) can be reached",
    )
    async def readyz(request: Request) -> Response:
        checks: dict[str, str] = {}
        for name, check in _gateway(request).readiness.items():
            try:
                await asyncio.wait_for(check(), 5.0)
            except Exception as exc:  # noqa: BLE001 - reported, with no secret
                checks[name] = f"unavailable: {type(exc).__name__}"
            else:
                checks[name] = "ok"
        ready = all(v == "ok" for v in checks.values())
        health = Health(status="ok" if ready else "unavailable", checks=checks)
        return Response(
            health.model_dump_json(),
            status_code=200 if ready else 503,
            media_type="application/json",
        )

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)


def _gate_and_model(name: str | None) -> tuple[str, str | None]:
    """OpenAI's `model` as (gate, model override): `gate` or `gate/model`."""
    if not name:
        return "default", None
    gate, _, model = name.partition("/")
    return gate, model or None


async def _openai_image(image: Any, response_format: str | None) -> OpenAIImage:
    """An image as OpenAI returns it: `b64_json` when asked (fetched, if the provider gave a
    URL), else the URL (or a data: URL of the base64 the provider gave)."""
    revised = image.revised_prompt
    if response_format == "b64_json":
        data = image.base64
        if data is None:
            data = base64.b64encode(await asyncio.to_thread(image.bytes)).decode()
        return OpenAIImage(b64_json=data, revised_prompt=revised)
    if image.url is not None:
        return OpenAIImage(url=image.url, revised_prompt=revised)
    if response_format == "url":
        return OpenAIImage(
            url=f"data:{image.mime_type};base64,{image.base64}", revised_prompt=revised
        )
    return OpenAIImage(b64_json=image.base64, revised_prompt=revised)
