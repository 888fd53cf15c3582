"""results.jsonl: typed lines, written and read back by one model, in the format readers know."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from layer_core import Layer, run_batch
from layer_core.output import (
    RESULTS,
    ResultLine,
    compact_results,
    completed_ids,
    latest_results,
    read_results,
)

CONFIG = {
    "ledger": False,
    "gates": {"default": {"model": "local", "routing_strategy": "single"}},
    "plugins": {"local": {"prices": {"local": {"*/*": "0.0130"}}}},
}
#: The fields of a line, in the order every version has written them.
FIELDS = [
    "id",
    "response_id",
    "status",
    "prompt",
    "gate",
    "files",
    "model",
    "provider",
    "cost",
    "latency_ms",
    "error",
    "images",
    "warnings",
    "metadata",
    "created",
]


def run(out: Path) -> None:
    batch: list[Any] = [
        {"id": "a", "data": {"prompt": "a fox", "size": "256x256", "count": 2, "seed": 1}},
        {"id": "b", "data": {"prompt": "bad", "size": "3x3"}},
    ]
    with Layer(CONFIG) as layer:
        asyncio.run(run_batch(layer, batch, out))


def test_a_line_reads_back_as_what_was_written_in_the_known_format(tmp_path: Path) -> None:
    run(tmp_path)
    written = (tmp_path / RESULTS).read_text(encoding="utf-8").splitlines()
    raw = [json.loads(text) for text in written]
    assert [list(r) for r in raw] == [FIELDS, FIELDS]
    ok, failed = raw
    assert ok["cost"] == "0.0260"  # exact, as text
    assert ok["images"][0]["cost"] == "0.0130"
    assert ok["created"].endswith("+00:00")
    assert list(ok["images"][0]) == ["file", "model", "size", "seed", "cost", "revised_prompt"]
    assert failed["error"]["type"] == "InvalidRequest"

    lines = read_results(tmp_path)
    assert [line.to_json() for line in lines] == written  # one model both ways
    first, second = lines
    assert first.ok
    assert first.cost == Decimal("0.0260")
    assert first.images[1].seed == 2
    assert not second.ok
    assert second.error is not None
    assert "data.size" in second.error.message
    assert completed_ids(tmp_path) == {"a"}


def test_a_rewrite_keeps_fields_this_version_does_not_know(tmp_path: Path) -> None:
    """A line another tool (or a later layer) added to keeps its extra fields on compaction."""
    older = {"id": "x", "status": "failed", "cost": "0", "note": "keep me"}
    newer = {"id": "x", "status": "ok", "files": [], "cost": "0.04", "rating": 5}
    (tmp_path / RESULTS).write_text(json.dumps(older) + "\n" + json.dumps(newer) + "\n")

    assert compact_results(tmp_path) == 1
    (kept,) = (tmp_path / RESULTS).read_text().splitlines()
    assert json.loads(kept)["rating"] == 5
    assert latest_results(tmp_path)["x"] == ResultLine.model_validate(newer)


def test_lines_that_are_not_results_are_passed_over(tmp_path: Path) -> None:
    good = {"id": "ok-1", "status": "ok", "files": []}
    junk = [
        "not json",
        "[]",
        json.dumps({"id": 7, "status": "ok"}),
        json.dumps({"id": "y", "status": "maybe"}),
        json.dumps({"id": "z", "status": "ok", "images": [{"seed": 1}]}),
    ]
    (tmp_path / RESULTS).write_text("\n".join([*junk, json.dumps(good)]) + "\n")
    assert [line.id for line in read_results(tmp_path)] == ["ok-1"]
    assert completed_ids(tmp_path) == {"ok-1"}
