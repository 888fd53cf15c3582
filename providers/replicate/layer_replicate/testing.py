"""A fake Replicate for tests: the predictions API on a local `FakeServer`, driven by the real SDK.

    with FakeServer() as server:
        fake = FakeReplicate(server)
        fake.next(Run(polls=2))                  # the next prediction: processing twice, then done
        ...  # point [plugins.replicate] base_url at server.url
        assert fake.created[0].input["aspect_ratio"] == "16:9"

It answers create (POST /v1/models/{owner}/{name}/predictions and, for pinned versions,
POST /v1/predictions, honouring `Prefer: wait`), get (GET /v1/predictions/{id}), cancel
(POST /v1/predictions/{id}/cancel), and serves each output file it hands out (GET /files/{name}).
HTTP errors are scripted on the server itself: `server.add("POST", path, Reply(429, ...))`.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from layer_core.testing import FakeServer, Recorded, Reply, tiny_png

__all__ = ["FakeReplicate", "Prediction", "Run"]

MODEL_PREDICTIONS = "/v1/models/{owner}/{name}/predictions"
VERSION_PREDICTIONS = "/v1/predictions"
PREDICTION = "/v1/predictions/{id}"
CANCEL = "/v1/predictions/{id}/cancel"
FILE = "/files/{name}"
PNG = tiny_png(2, 2)


@dataclass(frozen=True)
class Run:
    """How one prediction goes.

    `polls`: how many GETs see it `processing` before it ends (0: a `Prefer: wait` create already
    answers with the end; None: it never ends on its own, only a cancel stops it). It ends as
    `status`, with `error` when failed; a success returns `outputs` file URLs (default: the
    input's `num_outputs`), as a list, or as one URL for models without `num_outputs` (Flux pro).
    `predict_time` is reported in `metrics`.
    """

    polls: int | None = 0
    status: Literal["succeeded", "failed", "canceled"] = "succeeded"
    error: str | None = None
    outputs: int | None = None
    predict_time: float = 1.25


@dataclass
class Prediction:
    """One prediction the fake holds: where it was created, its input, how it goes and has gone."""

    id: str
    model: str
    version: str
    input: dict[str, Any]
    run: Run
    prefer: str | None
    status: str = "starting"
    polled: int = 0
    canceled: bool = False
    output: Any = None
    seed: int = 0
    created_via: str = ""
    files: list[str] = field(default_factory=list)


class FakeReplicate:
    """Replicate's predictions API, registered on `server` (which must be running)."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.created: list[Prediction] = []
        self._runs: list[Run] = [Run()]
        self._next = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        server.add("POST", MODEL_PREDICTIONS, self._create_for_model)
        server.add("POST", VERSION_PREDICTIONS, self._create_for_version)
        server.add("GET", PREDICTION, self._get)
        server.add("POST", CANCEL, self._cancel)
        server.add("GET", FILE, lambda _: Reply(body=PNG, content_type="image/png"))

    def next(self, *runs: Run) -> FakeReplicate:
        """The predictions created from now on go as `runs`, in order; the last one repeats."""
        with self._lock:
            self._runs = list(runs) or [Run()]
            self._next = 0
        return self

    @property
    def canceled(self) -> list[Prediction]:
        """The predictions a client canceled."""
        return [p for p in self.created if p.canceled]

    @property
    def polls(self) -> list[Recorded]:
        """Every GET of a prediction."""
        return [r for r in self.server.requests if r.method == "GET" and "predictions" in r.path]

    # --- the API -------------------------------------------------------------------------

    def _create_for_model(self, request: Recorded) -> Reply:
        model = f"{request.params['owner']}/{request.params['name']}"
        return self._create(request, model, "fake-official-version")

    def _create_for_version(self, request: Recorded) -> Reply:
        version = str(request.json().get("version", ""))
        return self._create(request, "community/model", version)

    def _create(self, request: Recorded, model: str, version: str) -> Reply:
        body = request.json()
        with self._lock:
            run = self._runs[min(self._next, len(self._runs) - 1)]
            self._next += 1
            number = next(self._ids)
            given = body["input"].get("seed")
            prediction = Prediction(
                id=f"p{number}",
                model=model,
                version=version,
                input=body["input"],
                run=run,
                prefer=request.headers.get("prefer"),
                seed=given if isinstance(given, int) else 1000 + number,
                created_via=request.path,
            )
            self.created.append(prediction)
            if prediction.prefer and prediction.prefer.startswith("wait") and run.polls == 0:
                self._end(prediction)
            return Reply(201, json=self._json(prediction))

    def _get(self, request: Recorded) -> Reply:
        with self._lock:
            prediction = self._find(request.params["id"])
            if prediction is None:
                return Reply(404, json={"detail": "Not found.", "status": 404})
            if prediction.status not in ("succeeded", "failed", "canceled"):
                prediction.polled += 1
                polls = prediction.run.polls
                if polls is not None and prediction.polled > polls:
                    self._end(prediction)
                else:
                    prediction.status = "processing"
            return Reply(json=self._json(prediction))

    def _cancel(self, request: Recorded) -> Reply:
        with self._lock:
            prediction = self._find(request.params["id"])
            if prediction is None:
                return Reply(404, json={"detail": "Not found.", "status": 404})
            prediction.canceled = True
            if prediction.status not in ("succeeded", "failed"):
                prediction.status = "canceled"
            return Reply(json=self._json(prediction))

    # --- state -------------------------------------------------------------------------

    def _find(self, prediction_id: str) -> Prediction | None:
        return next((p for p in self.created if p.id == prediction_id), None)

    def _end(self, prediction: Prediction) -> None:
        run = prediction.run
        prediction.status = run.status
        if run.status != "succeeded":
            return
        several = "num_outputs" in prediction.input
        count = run.outputs if run.outputs is not None else prediction.input.get("num_outputs", 1)
        fmt = prediction.input.get("output_format", "png")
        prediction.files = [f"{prediction.id}-{i}.{fmt}" for i in range(count)]
        urls = [f"{self.server.url}/files/{name}" for name in prediction.files]
        prediction.output = urls if several else next(iter(urls), None)

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
            "completed_at": "2026-11-23T12:00:01.400Z" if ended else None,
            "urls": {"get": base, "cancel": f"{base}/cancel"},
        }
