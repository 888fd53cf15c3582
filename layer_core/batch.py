"""Batches: many requests, at most `concurrency` in flight, each ending as a response or its error.

`Layer.aimage_batch` / `Layer.image_batch` stream `BatchResult`s; one item's failure never stops the
others, and an invalid item becomes an error result without reaching a provider. `run_batch`
writes a batch into an output folder (images, `results.jsonl`, `index.html`) and skips what an
earlier run of the same batch already did, so an interrupted or partly failed run is resumed by
running it again.

Every item has an id: the `id` it was given, or a hash of its content (the validated request), so
the same request gets the same id on every run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from pydantic import ValidationError

from layer_core.errors import AllAttemptsFailed, InvalidRequest
from layer_core.schema import ImageRequest, ImageResponse, problems_from

if TYPE_CHECKING:
    from layer_core.layer import Layer

T = TypeVar("T")

#: What a batch accepts per item: a request, or a mapping in the wire shape
#: (`{"gateId"?, "data": {...}, "model"?, "metadata"?, "id"?}`). `run_batch` also takes an
#: `InvalidRequest` for an input line that could not be read at all, to record it as failed.
BatchInput = ImageRequest | Mapping[str, Any]
MAX_ID_CHARS = 200


@dataclass(frozen=True)
class BatchItem:
    """One item of a batch, identified: its request, or why it is not a valid one."""

    index: int
    id: str
    request: ImageRequest | None
    error: InvalidRequest | None = None
    prompt: str | None = None
    repeats: int | None = None
    """For an item whose explicit id an earlier item already used: that item's index."""


@dataclass(frozen=True)
class BatchResult:
    """How one item ended: `response` when it succeeded, else `error` (never both).

    `index` is the item's position in the input, `id` its given id or content hash, `request`
    the validated request (None when the item was not a valid request), `latency` milliseconds.
    """

    index: int
    id: str
    request: ImageRequest | None
    response: ImageResponse | None = None
    error: Exception | None = None
    latency: float = 0.0
    prompt: str | None = None

    @property
    def ok(self) -> bool:
        return self.response is not None

    @property
    def cost(self) -> Decimal:
        """USD paid for this item: the response's cost, or the images delivered before a failure."""
        if self.response is not None:
            return self.response.cost_exact
        if isinstance(self.error, AllAttemptsFailed):
            return self.error.cost
        return Decimal(0)


def content_id(request: ImageRequest) -> str:
    """A stable id for a request: a hash of its validated content (defaults included)."""
    return "sha-" + _digest(request.model_dump(mode="json", by_alias=True))


def _digest(value: object) -> str:
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def batch_items(requests: Iterable[BatchInput | InvalidRequest]) -> Iterator[BatchItem]:
    """Validate and identify each request, lazily, in input order.

    A repeated request without an id gets `-2`, `-3`, ... after its hash (so a file that lists
    the same prompt twice asks for it twice); a repeated explicit id is an error result.
    """
    hashes: dict[str, int] = {}
    given: dict[str, int] = {}
    for index, raw in enumerate(requests):
        item, explicit = _identify(index, raw)
        if explicit:
            first = given.setdefault(item.id, index)
            if first != index:
                problem = f"{item.id!r} repeats the id of item {first}; ids must be unique"
                item = BatchItem(index, item.id, None, _invalid("id", problem), item.prompt, first)
        else:
            seen = hashes.get(item.id, 0) + 1
            hashes[item.id] = seen
            if seen > 1:
                item = BatchItem(index, f"{item.id}-{seen}", item.request, item.error, item.prompt)
        yield item


def _identify(index: int, raw: BatchInput | InvalidRequest) -> tuple[BatchItem, bool]:
    """The item for `raw`, and whether its id was given (rather than hashed)."""
    if isinstance(raw, ImageRequest):
        return BatchItem(index, content_id(raw), raw, prompt=raw.data.prompt), False
    if isinstance(raw, InvalidRequest):
        return BatchItem(index, "sha-" + _digest(str(raw)), None, raw), False
    if not isinstance(raw, Mapping):
        problem = f"expected a mapping or ImageRequest, got {type(raw).__name__}"
        return BatchItem(
            index, "sha-" + _digest(repr(raw)), None, _invalid("request", problem)
        ), False
    body = dict(raw)
    given = body.pop("id", None)
    if isinstance(given, int) and not isinstance(given, bool):
        given = str(given)
    problems: list[tuple[str, str]] = []
    if given is not None and not (isinstance(given, str) and 0 < len(given) <= MAX_ID_CHARS):
        problems.append(("id", f"{given!r}: use a string or integer of 1 to {MAX_ID_CHARS} chars"))
        given = None
    request: ImageRequest | None = None
    try:
        request = ImageRequest.model_validate(body)
    except ValidationError as exc:
        problems.extend(problems_from(exc))
    explicit = given is not None
    if request is None or problems:
        item_id = given if explicit else "sha-" + _digest(body)
        return BatchItem(index, item_id, None, InvalidRequest(problems), _prompt(body)), explicit
    item_id = given if explicit else content_id(request)
    return BatchItem(index, item_id, request, prompt=request.data.prompt), explicit


def _prompt(body: Mapping[str, Any]) -> str | None:
    data = body.get("data")
    prompt = data.get("prompt") if isinstance(data, Mapping) else None
    return prompt if isinstance(prompt, str) else None


def _invalid(field_name: str, problem: str) -> InvalidRequest:
    return InvalidRequest([(field_name, problem)])


def stream(
    layer: Layer,
    items: Iterable[BatchItem],
    *,
    concurrency: int = 8,
    ordered: bool = False,
) -> AsyncIterator[BatchResult]:
    """Run `items` on `layer`, at most `concurrency` at a time, yielding each result.

    Results come as they finish, or in input order when `ordered`. Leaving the iteration early
    (break, an exception, cancellation) cancels the items in flight before it returns.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an integer of at least 1, not {concurrency!r}")
    return _stream(layer, items, concurrency, ordered)


async def _stream(
    layer: Layer, items: Iterable[BatchItem], concurrency: int, ordered: bool
) -> AsyncIterator[BatchResult]:
    pending = iter(enumerate(items))
    finished: asyncio.Queue[tuple[int, BatchResult] | BaseException | None] = asyncio.Queue(
        maxsize=concurrency
    )

    async def worker() -> None:
        try:
            for position, item in pending:
                await finished.put((position, await _execute(layer, item)))
        except Exception as exc:  # noqa: BLE001 - the input iterable failed: end the batch with it
            await finished.put(exc)
        else:
            await finished.put(None)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    waiting: dict[int, BatchResult] = {}
    next_position = 0
    running = len(workers)
    try:
        while running:
            got = await finished.get()
            if got is None:
                running -= 1
                continue
            if isinstance(got, BaseException):
                raise got
            position, result = got
            if not ordered:
                yield result
                continue
            waiting[position] = result
            while next_position in waiting:
                yield waiting.pop(next_position)
                next_position += 1
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


async def _execute(layer: Layer, item: BatchItem) -> BatchResult:
    request = item.request
    if request is None:
        return BatchResult(item.index, item.id, None, error=item.error, prompt=item.prompt)
    started = time.perf_counter()
    try:
        response = await layer.aimage(
            request.gate_id, request.data, request.model, request.metadata
        )
    except Exception as exc:  # noqa: BLE001 - one item's failure is its result, never the batch's
        latency = (time.perf_counter() - started) * 1000
        return BatchResult(
            item.index, item.id, request, error=exc, latency=latency, prompt=item.prompt
        )
    return BatchResult(
        item.index, item.id, request, response, latency=response.latency, prompt=item.prompt
    )


def iterate_on(loop: asyncio.AbstractEventLoop, results: AsyncIterator[T]) -> Iterator[T]:
    """Iterate an async iterator from sync code, running it on `loop` (another thread's).

    An interrupt while waiting (Ctrl-C) cancels the step in flight (see `run_on`), and closing
    the iterator closes the async one there, so nothing keeps running on the loop afterwards.
    """
    from layer_core.bridge import run_on

    done = object()

    async def step() -> object:
        return await anext(results, done)

    try:
        while True:
            value = run_on(loop, step())
            if value is done:
                return
            yield cast(T, value)
    finally:
        closing = getattr(results, "aclose", None)
        if closing is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(closing(), loop).result(timeout=60)


# --- a batch into an output folder ---------------------------------------------------------


@dataclass
class BatchSummary:
    """Counts of a `run_batch` run so far; handed to `on_progress` after every result."""

    total: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    images: int = 0
    cost: Decimal = Decimal(0)
    started: float = field(default_factory=time.perf_counter)
    failures: list[BatchResult] = field(default_factory=list)
    state: Literal["running", "finished", "interrupted"] = "running"

    @property
    def todo(self) -> int:
        """Items this run has to do: the total less those already done."""
        return self.total - self.skipped

    @property
    def done(self) -> int:
        """Items this run has finished, either way."""
        return self.ok + self.failed

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.started


async def run_batch(
    layer: Layer,
    requests: Iterable[BatchInput | InvalidRequest],
    out: Path,
    *,
    concurrency: int = 8,
    on_progress: Callable[[BatchSummary], None] | None = None,
) -> BatchSummary:
    """Generate every request not already done in `out`, saving images and results as each ends.

    An item is done when `out/results.jsonl` has an `ok` line with its id whose files all exist;
    the rest run (failed ones again), each ending as one line. `results.jsonl` is then compacted
    to the latest line per id and `index.html` rewritten, also when the run is cancelled.
    Raises `InvalidRequest` before running anything when two items share an explicit id.
    """
    from layer_core.gallery import write_gallery
    from layer_core.output import append_result, compact_results, completed_ids, failure_line

    items = list(batch_items(requests))
    _refuse_repeated_ids(items)
    done = completed_ids(out)
    todo = [item for item in items if item.id not in done]
    summary = BatchSummary(total=len(items), skipped=len(items) - len(todo))
    if on_progress:
        on_progress(summary)
    out.mkdir(parents=True, exist_ok=True)
    try:
        async for result in stream(layer, todo, concurrency=concurrency):
            if result.response is not None:
                # fetch first (may await a download); then write files and line with no await
                # in between, so cancellation never leaves files without their line
                payloads = await _payloads(result.response)
                _save_ok(result, payloads, out)
                summary.ok += 1
                summary.images += len(payloads)
            else:
                append_result(out, failure_line(result))
                summary.failed += 1
                summary.failures.append(result)
            summary.cost += result.cost
            if on_progress:
                on_progress(summary)
        summary.state = "finished"
    except asyncio.CancelledError:
        summary.state = "interrupted"
        raise
    finally:
        compact_results(out, order=[item.id for item in items])
        write_gallery(out)
    return summary


def _refuse_repeated_ids(items: list[BatchItem]) -> None:
    problems = [
        (f"item {item.index}", f"id {item.id!r} repeats the id of item {item.repeats}")
        for item in items
        if item.repeats is not None
    ]
    if problems:
        raise InvalidRequest(problems)


async def _payloads(response: ImageResponse) -> list[bytes]:
    if all(image.base64 is not None for image in response.images):
        return [image.bytes() for image in response.images]
    return await asyncio.to_thread(lambda: [image.bytes() for image in response.images])


def _save_ok(result: BatchResult, payloads: list[bytes], out: Path) -> None:
    from layer_core.output import save_response

    assert result.response is not None
    save_response(
        result.response, out, prompt=result.prompt or "", request_id=result.id, payloads=payloads
    )


# --- a batch file ---------------------------------------------------------------------------

FileFormat = Literal["auto", "text", "jsonl"]


def read_batch_file(
    path: Path, defaults: Mapping[str, Any], *, file_format: FileFormat = "auto"
) -> list[BatchInput | InvalidRequest]:
    """The requests of a batch file, each filled in from `defaults` (a request in wire shape).

    A text file has one prompt per line; a JSONL file one request per line (wire shape plus an
    optional `id`), whose fields win over the defaults (`data` and `metadata` key by key).
    Blank lines are skipped. `auto` reads JSONL when the file is named *.jsonl / *.ndjson or its
    first non-blank line starts with `{`. A line that is not a JSON object is an `InvalidRequest`
    naming its line number, so it is recorded as failed without stopping the rest.
    """
    lines = [
        (number, line.strip())
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if line.strip()
    ]
    if file_format == "auto":
        jsonl = path.suffix in (".jsonl", ".ndjson") or (bool(lines) and lines[0][1][0] == "{")
        file_format = "jsonl" if jsonl else "text"
    if file_format == "text":
        return [_with_defaults({"data": {"prompt": line}}, defaults) for _, line in lines]
    requests: list[BatchInput | InvalidRequest] = []
    for number, line in lines:
        try:
            value = json.loads(line)
        except ValueError as exc:
            requests.append(_invalid(f"line {number}", f"not JSON ({exc}): {line[:80]!r}"))
            continue
        if not isinstance(value, dict):
            problem = f"expected a JSON object (a request), got {type(value).__name__}"
            requests.append(_invalid(f"line {number}", problem))
            continue
        requests.append(_with_defaults(value, defaults))
    return requests


def _with_defaults(line: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**defaults, **line}
    if "gate_id" in line:  # the line's own gate, under its Python name
        merged.pop("gateId", None)
    for key in ("data", "metadata"):
        base, own = defaults.get(key), line.get(key)
        if isinstance(base, Mapping) and isinstance(own, Mapping):
            merged[key] = {**base, **own}
    return merged
