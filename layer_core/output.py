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
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer

from layer_core.schema import ImageRequest, ImageResponse

RESULTS = "results.jsonl"


class ImageLine(BaseModel):
    """One image of a results line: its file (relative to the folder) and what made it."""

    model_config = ConfigDict(frozen=True, extra="allow")

    file: str
    model: str = ""
    size: str | None = None
    seed: int | None = None
    cost: Decimal = Decimal(0)
    revised_prompt: str | None = None


class LineError(BaseModel):
    """Why a batch item failed: the error's class name and its message."""

    model_config = ConfigDict(frozen=True, extra="allow")

    type: str = "error"
    message: str = ""


class ResultLine(BaseModel):
    """One line of results.jsonl: a request that succeeded (its files), or a batch item that
    failed (its error). Fields this version does not know are kept, so a rewrite keeps them."""

    model_config = ConfigDict(frozen=True, extra="allow")

    id: str
    response_id: str | None = None
    status: Literal["ok", "failed"]
    prompt: str | None = None
    gate: str | None = None
    files: list[str] = Field(default_factory=list)
    model: str | None = None
    provider: str | None = None
    cost: Decimal = Decimal(0)
    latency_ms: float = 0.0
    error: LineError | None = None
    images: list[ImageLine] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created: datetime | None = None

    @field_serializer("created")
    def _iso(self, created: datetime | None) -> str | None:
        return created.isoformat() if created is not None else None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def of_response(
        cls,
        response: ImageResponse,
        files: Sequence[Path],
        *,
        prompt: str,
        request_id: str | None = None,
    ) -> ResultLine:
        """The line of a successful request (file names relative to the folder)."""
        return cls(
            id=request_id or response.id,
            response_id=response.id,
            status="ok",
            prompt=prompt,
            gate=response.gate_id,
            files=[f.name for f in files],
            model=response.model,
            provider=response.provider,
            cost=response.cost_exact,
            latency_ms=round(response.latency, 1),
            images=[
                ImageLine(
                    file=f.name,
                    model=image.model,
                    size=image.size,
                    seed=image.seed,
                    cost=image.cost_exact,
                    revised_prompt=image.revised_prompt,
                )
                for f, image in zip(files, response.images, strict=True)
            ],
            warnings=response.warnings,
            metadata=response.metadata,
            created=response.created,
        )

    @classmethod
    def of_failure(
        cls,
        item_id: str,
        error: BaseException,
        *,
        request: ImageRequest | None,
        prompt: str | None,
        cost: Decimal,
        latency: float,
    ) -> ResultLine:
        """The line of a batch item that failed: the same fields, and the error."""
        return cls(
            id=item_id,
            status="failed",
            prompt=prompt,
            gate=request.gate_id if request else None,
            model=request.model if request else None,
            cost=cost,
            latency_ms=round(latency, 1),
            error=LineError(type=type(error).__name__, message=str(error)),
            metadata=dict(request.metadata) if request else {},
            created=datetime.now(UTC),
        )

    def to_json(self) -> str:
        """The line as written (without its newline)."""
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False)


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
    append_result(
        out, ResultLine.of_response(response, files, prompt=prompt, request_id=request_id)
    )
    return files


def append_result(out: Path, line: ResultLine) -> None:
    """Append one line in a single write, so an interrupted run never leaves half a line."""
    data = (line.to_json() + "\n").encode()
    fd = os.open(out / RESULTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_results(out: Path) -> list[ResultLine]:
    """Every line of `out/results.jsonl` in file order (none when there is no file yet)."""
    try:
        text = (out / RESULTS).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = []
    for text_line in text.splitlines():
        try:
            lines.append(ResultLine.model_validate_json(text_line))
        except ValidationError:
            continue  # not a line this code wrote; never let it stop a run
    return lines


def latest_results(out: Path) -> dict[str, ResultLine]:
    """The latest line per id, in the order the latest ones were written."""
    return _latest(read_results(out))


def _latest(lines: list[ResultLine]) -> dict[str, ResultLine]:
    latest: dict[str, ResultLine] = {}
    for line in lines:
        latest.pop(line.id, None)
        latest[line.id] = line
    return latest


def completed_ids(out: Path) -> set[str]:
    """Ids whose latest line succeeded and whose files are all still on disk."""
    return {
        line_id
        for line_id, line in latest_results(out).items()
        if line.ok and all((out / name).is_file() for name in line.files)
    }


def compact_results(out: Path, order: Sequence[str] = ()) -> int:
    """Rewrite results.jsonl with only the latest line per id; returns how many were dropped.

    The lines whose ids are in `order` (a batch's, in input order: they were written as each
    finished) are put in that order, in the places they held among the other lines, so the
    gallery shows a batch as its file lists it. The new file replaces the old in one rename,
    so a reader sees one or the other, never a mix.
    """
    lines = read_results(out)
    latest = list(_latest(lines).values())
    rank = {line_id: place for place, line_id in enumerate(order)}
    places = [i for i, line in enumerate(latest) if line.id in rank]
    ranked = sorted((latest[i] for i in places), key=lambda line: rank[line.id])
    for i, line in zip(places, ranked, strict=True):
        latest[i] = line
    if latest == lines:
        return 0
    target = out / RESULTS
    scratch = target.with_name(f".{RESULTS}.{os.getpid()}.tmp")
    scratch.write_text("".join(line.to_json() + "\n" for line in latest), encoding="utf-8")
    os.replace(scratch, target)
    return len(lines) - len(latest)
