"""A fake Replicate for tests: the predictions API on a local `FakeServer`, driven by the real SDK.

    with FakeServer() as server:
        fake = FakeReplicate(server, token="r8_test")
        fake.next(Run(polls=2))                  # the next prediction: processing twice, then done
        ...  # point [plugins.replicate] base_url at server.url (FAST_POLLS: poll it quickly)
        assert fake.created[0].input["aspect_ratio"] == "16:9"

It answers create (POST /v1/models/{owner}/{name}/predictions for official models and, for pinned
versions, POST /v1/predictions), get (GET /v1/predictions/{id}), cancel
(POST /v1/predictions/{id}/cancel), and serves each output file it hands out (GET /files/{name}).
A `Prefer: wait` create answers with the prediction's end when its `Run` ends at once, else at once
with it still starting (Replicate would hold the request until the end or the wait runs out).

It checks what Replicate checks: the token (when given one), that the model or version exists,
and the input against the model's schema (a 422 naming each bad field). Each output file is a real
image in the model's output format (WebP for Flux, PNG for SDXL, unless `output_format` says
otherwise) with the pixels the model renders for the input received. The picture follows from the
model, the input and the seed, so a seed gives the same image again; on Flux dev and schnell only
with `go_fast` off, as on Replicate, whose fp8 fast mode is not deterministic.

`answer_next` answers the next creates otherwise (an HTTP error as Replicate words it, a malformed
body, `NO_REPLY`); any route can also be scripted on the server itself: `server.add(...)`.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import itertools
import json
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from layer_core.testing import FakeServer, Recorded, Reply, tiny_png
from layer_core.testing.images import tiny_webp

__all__ = ["FAST_POLLS", "UNAUTHENTICATED", "FakeReplicate", "Prediction", "Run", "problem"]

MODEL_PREDICTIONS = "/v1/models/{owner}/{name}/predictions"
VERSION_PREDICTIONS = "/v1/predictions"
PREDICTION = "/v1/predictions/{id}"
CANCEL = "/v1/predictions/{id}/cancel"
FILE = "/files/{name}"

#: `[plugins.replicate]` settings that poll a local fake without pausing long.
FAST_POLLS: dict[str, float] = {"poll_interval": 0.01, "max_poll_interval": 0.05}


def problem(
    status: int,
    detail: str,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    **fields: Any,
) -> Reply:
    """An error as Replicate sends one: RFC 7807 problem details (plus any other `fields`)."""
    body = {"title": title or detail, "detail": detail, "status": status, **fields}
    return Reply(
        status, json=body, headers=dict(headers or {}), content_type="application/problem+json"
    )


#: Replicate's answer to a missing or wrong token.
UNAUTHENTICATED = problem(
    401, "You did not pass a valid authentication token", title="Unauthenticated"
)
NOT_FOUND = problem(404, "The requested resource could not be found.", title="Not found")


# --- what each model takes and renders ---------------------------------------------------------

#: What Flux dev and schnell render per aspect_ratio at megapixels "1" (the model's published
#: source, replicate/cog-flux); at "0.25" each side is halved.
FLUX_PIXELS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "3:4": (896, 1152),
    "4:3": (1152, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
FORMATS = ("webp", "jpg", "png")
IMAGE_TYPES = {"png": "image/png", "webp": "image/webp"}


def _flux(given: Mapping[str, Any]) -> tuple[int, int]:
    width, height = FLUX_PIXELS[given.get("aspect_ratio", "1:1")]
    return (width // 2, height // 2) if given.get("megapixels", "1") == "0.25" else (width, height)


def _flux_pro(given: Mapping[str, Any]) -> tuple[int, int]:
    """Flux pro renders a preset ratio as Flux does; "custom" takes width and height, each
    rounded to the nearest multiple of 32."""
    ratio = given.get("aspect_ratio", "1:1")
    if ratio != "custom":
        return FLUX_PIXELS[ratio]
    if "width" not in given or "height" not in given:
        raise ValueError("width and height are required when aspect_ratio is custom")
    return (given["width"] + 16) // 32 * 32, (given["height"] + 16) // 32 * 32


def _sdxl(given: Mapping[str, Any]) -> tuple[int, int]:
    width, height = given.get("width", 1024), given.get("height", 1024)
    if width < 8 or height < 8 or width % 8 or height % 8:
        raise ValueError(
            f"`height` and `width` have to be divisible by 8 but are {height} and {width}."
        )
    return width, height


#: An integer input's (minimum, maximum); None: unbounded.
Range = tuple[int | None, int | None]


@dataclass(frozen=True)
class Schema:
    """A model's input as Replicate validates it (unknown keys are ignored), and what it renders.

    `integers` maps each integer input to its (minimum, maximum); `render` gives the pixels for an
    input, or raises ValueError, which fails the prediction as the model would. `fast_mode`: the
    model's `go_fast` (on by default) makes a seed no promise of the same image.
    """

    integers: Mapping[str, Range]
    choices: Mapping[str, tuple[str, ...]]
    booleans: frozenset[str]
    output_format: str
    render: Callable[[Mapping[str, Any]], tuple[int, int]]
    fast_mode: bool = False

    def problems(self, given: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(field, description) for each input Replicate would refuse."""
        found: list[tuple[str, str]] = []
        if not isinstance(given.get("prompt"), str):
            found.append(("input.prompt", "prompt is required and must be a string"))
        for name, (low, high) in self.integers.items():
            value = given.get(name)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                found.append((f"input.{name}", "Invalid type. Expected: integer"))
            elif low is not None and value < low:
                found.append((f"input.{name}", f"Must be greater than or equal to {low}"))
            elif high is not None and value > high:
                found.append((f"input.{name}", f"Must be less than or equal to {high}"))
        for name, allowed in self.choices.items():
            if name in given and given[name] not in allowed:
                listed = ", ".join(f'"{a}"' for a in allowed)
                found.append((f"input.{name}", f"must be one of the following: {listed}"))
        for name in self.booleans:
            if name in given and not isinstance(given[name], bool):
                found.append((f"input.{name}", "Invalid type. Expected: boolean"))
        return found

    @property
    def several(self) -> bool:
        """Whether the model returns a list of files (it takes num_outputs), not one URL."""
        return "num_outputs" in self.integers


_ANY: Range = (None, None)
_PRO_RATIOS = ("custom", "1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3")


def _flux_fast(most_steps: int) -> Schema:
    """Flux schnell and dev: an aspect ratio and megapixels, 1 to 4 outputs, go_fast."""
    return Schema(
        {"seed": _ANY, "num_outputs": (1, 4), "num_inference_steps": (1, most_steps)},
        {"aspect_ratio": tuple(FLUX_PIXELS), "megapixels": ("1", "0.25"), "output_format": FORMATS},
        frozenset({"go_fast", "disable_safety_checker"}),
        "webp",
        _flux,
        fast_mode=True,
    )


def _flux_pro_schema(**integers: Range) -> Schema:
    """Flux 1.1 pro and pro: a preset ratio or custom width and height, one output."""
    sides: Range = (256, 1440)
    return Schema(
        {"seed": _ANY, "width": sides, "height": sides, "safety_tolerance": (1, 6), **integers},
        {"aspect_ratio": _PRO_RATIOS, "output_format": FORMATS},
        frozenset({"prompt_upsampling"}),
        "webp",
        _flux_pro,
    )


#: The official models, created through POST /v1/models/{owner}/{name}/predictions.
OFFICIAL: dict[str, Schema] = {
    "black-forest-labs/flux-schnell": _flux_fast(most_steps=4),
    "black-forest-labs/flux-dev": _flux_fast(most_steps=50),
    "black-forest-labs/flux-1.1-pro": _flux_pro_schema(),
    "black-forest-labs/flux-pro": _flux_pro_schema(steps=(1, 50), interval=(1, 4)),
}
#: The community model versions, created through POST /v1/predictions: (model, schema).
VERSIONS: dict[str, tuple[str, Schema]] = {
    "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b": (
        "stability-ai/sdxl",
        Schema(
            {"seed": _ANY, "width": _ANY, "height": _ANY, "num_outputs": (1, 4)},
            {},
            frozenset({"apply_watermark", "disable_safety_checker"}),
            "png",
            _sdxl,
        ),
    ),
}


@functools.lru_cache(maxsize=64)
def _image(fmt: str, width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    return tiny_webp(width, height, rgb) if fmt == "webp" else tiny_png(width, height, rgb)


# --- predictions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """How one prediction goes.

    `polls`: how many GETs see it `processing` before it ends (0: a `Prefer: wait` create already
    answers with the end; None: it never ends on its own, only a cancel stops it). It ends as
    `status`, with `error` when failed; a success returns `outputs` file URLs (default: the
    input's `num_outputs`), as a list, or as one URL for models without `num_outputs` (Flux pro).
    `predict_time` is reported in `metrics`. `pixels` renders that (width, height) instead of what
    the model renders for the input (as a new version of a model may); `inline` hands the
    outputs out as base64 `data:` URLs, a form Replicate's clients accept for file outputs,
    instead of file URLs.
    """

    polls: int | None = 0
    status: Literal["succeeded", "failed", "canceled"] = "succeeded"
    error: str | None = None
    outputs: int | None = None
    predict_time: float = 1.25
    pixels: tuple[int, int] | None = None
    inline: bool = False


@dataclass
class Prediction:
    """One prediction the fake holds: where it was created, its input, how it goes and has gone."""

    id: str
    model: str
    version: str
    input: dict[str, Any]
    run: Run
    prefer: str | None
    schema: Schema
    status: str = "starting"
    polled: int = 0
    canceled: bool = False
    output: Any = None
    seed: int = 0
    created_via: str = ""
    pixels: tuple[int, int] = (0, 0)
    files: list[str] = field(default_factory=list)
    completed_at: str | None = None


class FakeReplicate:
    """Replicate's predictions API, registered on `server` (which must be running).

    With a `token`, every API request must carry it (`Authorization: Bearer <token>`), or gets
    Replicate's 401; output files need none, as on Replicate's file host.
    """

    def __init__(self, server: FakeServer, token: str | None = None) -> None:
        self.server = server
        self.token = token
        self.created: list[Prediction] = []
        self._runs: list[Run] = [Run()]
        self._next = 0
        self._answers: deque[Reply] = deque()
        self._files: dict[str, tuple[str, int, int, tuple[int, int, int]]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        server.add("POST", MODEL_PREDICTIONS, self._create_for_model)
        server.add("POST", VERSION_PREDICTIONS, self._create_for_version)
        server.add("GET", PREDICTION, self._get)
        server.add("POST", CANCEL, self._cancel)
        server.add("GET", FILE, self._file)

    def next(self, *runs: Run) -> FakeReplicate:
        """The predictions created from now on go as `runs`, in order; the last one repeats."""
        with self._lock:
            self._runs = list(runs) or [Run()]
            self._next = 0
        return self

    def answer_next(self, *replies: Reply) -> FakeReplicate:
        """The next create requests get `replies` instead, one each, whatever they hold (no
        prediction is made); then creates go on as before."""
        with self._lock:
            self._answers.extend(replies)
        return self

    @property
    def canceled(self) -> list[Prediction]:
        """The predictions a client canceled."""
        return [p for p in self.created if p.canceled]

    @property
    def polls(self) -> list[Recorded]:
        """Every GET of a prediction."""
        return [r for r in self.server.requests if r.method == "GET" and "predictions" in r.path]

    def creates(self) -> list[Recorded]:
        """Every create request received (answered or not), oldest first."""
        return [
            r
            for r in self.server.requests
            if r.method == "POST"
            and (r.path == VERSION_PREDICTIONS or r.path.startswith("/v1/models/"))
        ]

    # --- the API -------------------------------------------------------------------------

    def _create_for_model(self, request: Recorded) -> Reply:
        model = f"{request.params['owner']}/{request.params['name']}"
        schema = OFFICIAL.get(model)
        return self._create(request, model, "fake-official-version", schema, NOT_FOUND)

    def _create_for_version(self, request: Recorded) -> Reply:
        body = request.json()
        version = str(body.get("version", "")) if isinstance(body, dict) else ""
        model, schema = VERSIONS.get(version, ("", None))
        invalid = problem(
            422,
            "The specified version does not exist (or perhaps you don't have permission to "
            "use it?)",
            title="Invalid version or not permitted",
        )
        return self._create(request, model, version, schema, invalid)

    def _create(
        self, request: Recorded, model: str, version: str, schema: Schema | None, unknown: Reply
    ) -> Reply:
        with self._lock:
            if self._answers:
                return self._answers.popleft()
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        if schema is None:
            return unknown
        body = request.json()
        given = body.get("input") if isinstance(body, dict) else None
        if not isinstance(given, dict):
            return _invalid([("input", "Invalid type. Expected: object")])
        problems = schema.problems(given)
        if problems:
            return _invalid(problems)
        fmt = given.get("output_format", schema.output_format)
        if "output_format" in schema.choices and fmt not in IMAGE_TYPES:
            raise NotImplementedError(f"FakeReplicate renders png and webp outputs, not {fmt}")
        with self._lock:
            run = self._runs[min(self._next, len(self._runs) - 1)]
            self._next += 1
            number = next(self._ids)
            seed = given.get("seed")
            prediction = Prediction(
                id=f"p{number}",
                model=model,
                version=version,
                input=given,
                run=run,
                prefer=request.headers.get("prefer"),
                schema=schema,
                seed=seed if isinstance(seed, int) else 1000 + number,
                created_via=request.path,
            )
            try:
                prediction.pixels = schema.render(given)
            except ValueError as exc:  # the model's own check: the prediction fails
                prediction.run = dataclasses.replace(run, status="failed", error=str(exc))
            else:
                prediction.pixels = run.pixels or prediction.pixels
            self.created.append(prediction)
            if prediction.prefer and prediction.prefer.startswith("wait") and run.polls == 0:
                self._end(prediction)
            return Reply(201, json=self._json(prediction))

    def _get(self, request: Recorded) -> Reply:
        return self._on_prediction(request, self._poll)

    def _cancel(self, request: Recorded) -> Reply:
        return self._on_prediction(request, self._mark_canceled)

    def _on_prediction(self, request: Recorded, change: Callable[[Prediction], None]) -> Reply:
        """Check the token, find the prediction named in the path, `change` it, answer with it."""
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        with self._lock:
            prediction = self._find(request.params["id"])
            if prediction is None:
                return NOT_FOUND
            change(prediction)
            return Reply(json=self._json(prediction))

    def _poll(self, prediction: Prediction) -> None:
        if prediction.status not in ("succeeded", "failed", "canceled"):
            prediction.polled += 1
            polls = prediction.run.polls
            if polls is not None and prediction.polled > polls:
                self._end(prediction)
            else:
                prediction.status = "processing"

    @staticmethod
    def _mark_canceled(prediction: Prediction) -> None:
        prediction.canceled = True
        if prediction.status not in ("succeeded", "failed"):
            prediction.status = "canceled"

    def _file(self, request: Recorded) -> Reply:
        with self._lock:
            found = self._files.get(request.params["name"])
        if found is None:
            return NOT_FOUND
        fmt, width, height, rgb = found
        return Reply(body=_image(fmt, width, height, rgb), content_type=IMAGE_TYPES[fmt])

    # --- state -------------------------------------------------------------------------

    def _unauthorized(self, request: Recorded) -> Reply | None:
        if self.token is None or request.headers.get("authorization") == f"Bearer {self.token}":
            return None
        return UNAUTHENTICATED

    def _find(self, prediction_id: str) -> Prediction | None:
        return next((p for p in self.created if p.id == prediction_id), None)

    def _end(self, prediction: Prediction) -> None:
        run = prediction.run
        prediction.status = run.status
        prediction.completed_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        if run.status != "succeeded":
            return
        given, schema = prediction.input, prediction.schema
        count = run.outputs if run.outputs is not None else given.get("num_outputs", 1)
        fmt = given.get("output_format", schema.output_format)
        prediction.files = [f"{prediction.id}-{i}.{fmt}" for i in range(count)]
        for index, name in enumerate(prediction.files):
            self._files[name] = (fmt, *prediction.pixels, _colour(prediction, index))
        if run.inline:
            urls = [
                f"data:{IMAGE_TYPES[fmt]};base64,"
                + base64.b64encode(_image(*self._files[name])).decode()
                for name in prediction.files
            ]
        else:
            urls = [f"{self.server.url}/files/{name}" for name in prediction.files]
        prediction.output = urls if schema.several else next(iter(urls), None)

    def _json(self, prediction: Prediction) -> dict[str, Any]:
        ended = prediction.status in ("succeeded", "failed", "canceled")
        base = f"{self.server.url}/v1/predictions/{prediction.id}"
        return {
            "id": prediction.id,
            "model": prediction.model,
            "version": prediction.version,
            "input": prediction.input,
            "status": prediction.status,
            "output": prediction.output,
            "error": prediction.run.error if prediction.status == "failed" else None,
            "logs": f"Using seed: {prediction.seed}\n",
            "metrics": {"predict_time": prediction.run.predict_time} if ended else {},
            "created_at": "2026-11-23T12:00:00.000Z",
            "started_at": "2026-11-23T12:00:00.100Z",
            "completed_at": prediction.completed_at if ended else None,
            "urls": {"get": base, "cancel": f"{base}/cancel"},
        }


def _invalid(problems: list[tuple[str, str]]) -> Reply:
    """Replicate's 422 for an input its schema refuses."""
    return problem(
        422,
        "\n".join(f"- {name}: {description}" for name, description in problems),
        title="Input validation failed",
        invalid_fields=[{"field": name, "description": text} for name, text in problems],
    )


def _colour(prediction: Prediction, index: int) -> tuple[int, int, int]:
    """The colour of output `index`: the same model, input and seed paint the same picture, except
    in a fast mode that a seed does not pin (Flux dev and schnell with go_fast on)."""
    given = {k: v for k, v in prediction.input.items() if k not in ("seed", "num_outputs")}
    unpinned = prediction.schema.fast_mode and given.get("go_fast", True) is not False
    picture = [prediction.model, given, prediction.seed, index, prediction.id if unpinned else ""]
    red, green, blue = hashlib.sha256(json.dumps(picture, sort_keys=True).encode()).digest()[:3]
    return red, green, blue
