"""The output folder: image files plus `results.jsonl`, one line per request.

`layer image` and `layer batch` write here, so a folder holds every run's images and a
line-per-request record of what made them and what they cost (or, for a failed batch item, why
it failed). Readers take the latest line per id: a batch item retried after a failure has two
until `compact_results` keeps only the latest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layer_core.schema import ImageResponse

if TYPE_CHECKING:
    from layer_core.batch import BatchResult

RESULTS = "results.jsonl"


def save_response(
    response: ImageResponse,
    out: Path,
    *,
    prompt: str,
    request_id: str | None = None,
    payloads: Sequence[bytes] | None = None,
) -> list[Path]:
    """Write every image of `response` into `out` and append its line to results.jsonl.

    `payloads` are the images' bytes when the caller already has them (else they are decoded or
    downloaded here). The line is written last, so a line never names a file that is not there.
    """
    out.mkdir(parents=True, exist_ok=True)
    if payloads is None:
        payloads = [image.bytes() for image in response.images]
    files = []
    for index, (image, payload) in enumerate(zip(response.images, payloads, strict=True)):
        path = out / f"{response.id}-{index}.{image.extension}"
        path.write_bytes(payload)
        files.append(path)
    append_result(out, result_line(response, files, prompt=prompt, request_id=request_id))
    return files


def result_line(
    response: ImageResponse, files: list[Path], *, prompt: str, request_id: str | None = None
) -> dict[str, Any]:
    """The results.jsonl record of one successful request (file names relative to the folder)."""
    return {
        "id": request_id or response.id,
        "response_id": response.id,
        "status": "ok",
        "prompt": prompt,
        "gate": response.gate_id,
        "files": [f.name for f in files],
        "model": response.model,
        "provider": response.provider,
        "cost": str(response.cost_exact),
        "latency_ms": round(response.latency, 1),
        "error": None,
        "images": [
            {
                "file": f.name,
                "model": image.model,
                "size": image.size,
                "seed": image.seed,
                "cost": str(image.cost_exact),
                "revised_prompt": image.revised_prompt,
            }
            for f, image in zip(files, response.images, strict=True)
        ],
        "warnings": response.warnings,
        "metadata": response.metadata,
        "created": response.created.isoformat(),
    }


def failure_line(result: BatchResult) -> dict[str, Any]:
    """The results.jsonl record of a batch item that failed: the same fields, and the error."""
    request = result.request
    error = result.error
    return {
        "id": result.id,
        "response_id": None,
        "status": "failed",
        "prompt": result.prompt,
        "gate": request.gate_id if request else None,
        "files": [],
        "model": request.model if request else None,
        "provider": None,
        "cost": str(result.cost),
        "latency_ms": round(result.latency, 1),
        "error": {"type": type(error).__name__, "message": str(error)},
        "images": [],
        "warnings": [],
        "metadata": dict(request.metadata) if request else {},
        "created": datetime.now(UTC).isoformat(),
    }


def append_result(out: Path, record: dict[str, Any]) -> None:
    """Append one line in a single write, so an interrupted run never leaves half a line."""
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
    fd = os.open(out / RESULTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_results(out: Path) -> list[dict[str, Any]]:
    """Every record of `out/results.jsonl` in file order (none when there is no file yet)."""
    try:
        text = (out / RESULTS).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # not a line this code wrote; never let it stop a run
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            records.append(record)
    return records


def latest_results(out: Path) -> dict[str, dict[str, Any]]:
    """The latest record per id, in the order the latest ones were written."""
    return _latest(read_results(out))


def _latest(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        latest.pop(record["id"], None)
        latest[record["id"]] = record
    return latest


def completed_ids(out: Path) -> set[str]:
    """Ids whose latest record succeeded and whose files are all still on disk."""
    return {
        record_id
        for record_id, record in latest_results(out).items()
        if record.get("status") == "ok"
        and all((out / str(name)).is_file() for name in record.get("files") or [])
    }


def compact_results(out: Path, order: Sequence[str] = ()) -> int:
    """Rewrite results.jsonl with only the latest record per id; returns how many were dropped.

    The records whose ids are in `order` (a batch's, in input order: they were written as each
    finished) are put in that order, in the places they held among the other records, so the
    gallery shows a batch as its file lists it. The new file replaces the old in one rename,
    so a reader sees one or the other, never a mix.
    """
    records = read_results(out)
    latest = list(_latest(records).values())
    rank = {record_id: place for place, record_id in enumerate(order)}
    places = [i for i, record in enumerate(latest) if record["id"] in rank]
    ranked = sorted((latest[i] for i in places), key=lambda record: rank[record["id"]])
    for i, record in zip(places, ranked, strict=True):
        latest[i] = record
    if latest == records:
        return 0
    target = out / RESULTS
    scratch = target.with_name(f".{RESULTS}.{os.getpid()}.tmp")
    text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in latest)
    scratch.write_text(text, encoding="utf-8")
    os.replace(scratch, target)
    return len(records) - len(latest)
