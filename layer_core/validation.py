"""Bad input as problems people can act on: pydantic's `ValidationError`, read one way.

A request's problems become an `InvalidRequest` (one `(field, message with the fix)` per problem,
fields in wire form); a config table's become the text of a `ConfigError` (`key: problem`, with
the right name suggested for an unknown key). Both read pydantic's errors through `_errors`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from layer_core.errors import InvalidRequest, did_you_mean
from layer_core.schema import HINTS, ImageData, ImageRequest

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

Loc = tuple[int | str, ...]


def _errors(error: ValidationError, prefix: Loc = ()) -> Iterator[tuple[Loc, str, ErrorDetails]]:
    """Each of pydantic's errors: where (after `prefix`), its message, and the whole error."""
    for item in error.errors(include_url=False):
        yield prefix + tuple(item["loc"]), str(item["msg"]).removeprefix("Value error, "), item


# --- requests ------------------------------------------------------------------------------


def _field_name(loc: Loc) -> str:
    parts = [to_camel(p) if isinstance(p, str) and p[:1].islower() else str(p) for p in loc]
    # keep python names for the top-level fields people type in Python
    return ".".join(parts).replace("gateId", "gate_id")


def problems_from(error: ValidationError, prefix: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """One `(field, message with the fix)` per pydantic error of a request (or its data)."""
    problems: list[tuple[str, str]] = []
    for loc, message, item in _errors(error, prefix):
        if item["type"] == "extra_forbidden":
            fields = ImageRequest.model_fields if len(loc) == 1 else ImageData.model_fields
            message = f"unknown field; remove it (fields: {', '.join(fields)})"
        elif "input" in item and item["type"] != "missing" and loc[:1] != ("metadata",):
            # (metadata is shown by key: all of it could be kilobytes)
            message = f"{item['input']!r}: {message}"
        hint = HINTS.get(str(loc[-1]))
        if hint and item["type"] not in ("extra_forbidden", "value_error"):
            message = f"{message}; {hint}"
        problems.append((_field_name(loc), message))
    return problems


def parse_request(
    gate_id: str,
    data: ImageData | Mapping[str, Any],
    model: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> ImageRequest:
    """Build an `ImageRequest`; bad input raises `InvalidRequest` (field and fix per problem)."""
    try:
        # One validation of the whole request: the usual case, valid input, pays for no more.
        return ImageRequest.model_validate(
            {"gate_id": gate_id, "data": data, "model": model, "metadata": metadata or {}}
        )
    except ValidationError:
        pass
    # Invalid: the problems as always reported, the data's alone when the data is bad.
    try:
        return ImageRequest(
            gate_id=gate_id,
            data=data if isinstance(data, ImageData) else ImageData.model_validate(data),
            model=model,
            metadata=dict(metadata or {}),
        )
    except ValidationError as exc:
        prefix = ("data",) if exc.title == "ImageData" else ()
        raise InvalidRequest(problems_from(exc, prefix)) from None


# --- config tables -------------------------------------------------------------------------


def unknown_key(key: str, known: Sequence[str]) -> str:
    """`unknown key 'x' (did you mean 'y'?)`, or the known keys when none is close."""
    hint = did_you_mean(key, known) or f"known keys: {', '.join(known)}"
    return f"unknown key {key!r} ({hint})"


def describe(error: ValidationError, model: type[BaseModel]) -> str:
    """A config table's pydantic error as `key: problem`s, suggesting the name of unknown keys."""
    lines = []
    for loc, message, item in _errors(error):
        key = ".".join(str(p) for p in loc)
        if item["type"] == "extra_forbidden":
            lines.append(unknown_key(key, list(model.model_fields)))
        else:
            lines.append(f"{key}: {message}" if key else message)
    return "; ".join(lines)
