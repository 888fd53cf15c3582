"""The gateway's Prometheus metrics (`GET /metrics`), with `prometheus-client`.

Labels are bounded and never secret: routes by their template, gates and models by id, outcomes
by error kind; never a key, a prompt or a path as sent. Under `--workers N`, each worker writes
to `PROMETHEUS_MULTIPROC_DIR` (set by `layer serve`) and `/metrics` sums them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from layer_core.schema import Attempt, ImageResponse

disable_created_metrics()  # type: ignore[no-untyped-call]  # the _created series: noise here
REGISTRY = CollectorRegistry(auto_describe=True)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120)

REQUESTS = Counter(
    "layer_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "layer_http_request_duration_seconds",
    "Time from a request's first byte to its response, by route template.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "layer_http_requests_in_flight",
    "Requests being answered now.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
IMAGES = Counter(
    "layer_images",
    "Images delivered, by gate, model, provider and deployment.",
    ["gate", "model", "provider", "deployment"],
    registry=REGISTRY,
)
COST = Counter(
    "layer_cost_usd",
    "USD spent on delivered images, by gate, model, provider and deployment.",
    ["gate", "model", "provider", "deployment"],
    registry=REGISTRY,
)
ATTEMPTS = Counter(
    "layer_attempts",
    "Calls to a model, by gate, model, provider, deployment and outcome (ok, skipped, or the "
    "error kind).",
    ["gate", "model", "provider", "deployment", "outcome"],
    registry=REGISTRY,
)
GENERATIONS = Counter(
    "layer_generation_requests",
    "Image requests through a gate, by outcome (ok, or the error code answered).",
    ["gate", "outcome"],
    registry=REGISTRY,
)


def served(response: ImageResponse) -> None:
    """Count what a served request delivered, cost and tried."""
    gate = response.gate_id
    GENERATIONS.labels(gate, "ok").inc()
    for image in response.images:
        IMAGES.labels(gate, image.model, image.provider, image.deployment).inc()
        if image.cost_exact:
            COST.labels(gate, image.model, image.provider, image.deployment).inc(
                float(image.cost_exact)
            )
    attempted(gate, response.attempts)


def attempted(gate: str, attempts: Sequence[Attempt]) -> None:
    """Count each call a request made (or skipped), by its outcome: ok, skipped, or the error."""
    for attempt in attempts:
        outcome = attempt.error or attempt.outcome
        ATTEMPTS.labels(gate, attempt.model, attempt.provider, attempt.deployment, outcome).inc()


def failed(gate: str, code: str) -> None:
    GENERATIONS.labels(gate, code).inc()


def exposition() -> tuple[bytes, str]:
    """The metrics text and its content type: every worker's, summed, under `--workers N`."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
