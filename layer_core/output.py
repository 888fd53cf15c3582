"""The output folder: image files plus `results.jsonl`, one line per request.

`layer image` writes here, and `layer batch` will too, so a folder holds every run's images and a
line-per-request record of what made them and what they cost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from layer_core.schema import ImageResponse

RESULTS = "results.jsonl"


def save_response(
    response: ImageResponse, out: Path, *, prompt: str, request_id: str | None = None
) -> list[Path]:
    """Write every image of `response` into `out` and append its line to results.jsonl."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for index, image in enumerate(response.images):
        path = out / f"{response.id}-{index}.{image.extension}"
        image.save(path)
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
        "created": response.created.isoformat(),
    }


def append_result(out: Path, record: dict[str, Any]) -> None:
    """Append one line in a single write, so an interrupted run never leaves half a line."""
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
    fd = os.open(out / RESULTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
