"""Batches in Python: results per item, failures isolated, a global concurrency limit, resuming."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from layer_core import (
    AllAttemptsFailed,
    GenerationCall,
    ImageOutput,
    ImageRequest,
    InvalidRequest,
    ProviderUnavailable,
    run_batch,
)
from layer_core.batch import content_id, read_batch_file
from layer_core.testing import Hang, ScriptedProvider, fake_images, make_spec
from tests.helpers import layer_with


def every_fifth_fails() -> Callable[[GenerationCall], list[ImageOutput]]:
    """A script step: every fifth call the provider gets fails (as an outage would)."""
    calls = 0

    def step(call: GenerationCall) -> list[ImageOutput]:
        nonlocal calls
        calls += 1
        if calls % 5 == 0:
            raise ProviderUnavailable(f"scripted outage on call {calls}")
        return fake_images(call)

    return step


def requests(count: int, **data: Any) -> list[dict[str, Any]]:
    return [{"gateId": "g", "data": {"prompt": f"prompt {i}", **data}} for i in range(count)]


def test_a_failing_item_never_stops_the_others() -> None:
    flaky = ScriptedProvider("acme", [make_spec("m", "acme")], {"m": [every_fifth_fails()]})
    layer = layer_with(flaky, gates={"g": {"model": "m", "retries": 0}})  # each outage fails
    results = list(layer.image_batch(requests(20), concurrency=4))

    assert len(results) == 20
    assert sorted(r.index for r in results) == list(range(20))
    failed = [r for r in results if not r.ok]
    assert len(failed) == 4
    for result in failed:
        assert result.response is None
        assert isinstance(result.error, AllAttemptsFailed)
        assert "scripted outage" in str(result.error)
    assert all(r.response is not None and len(r.response.images) == 1 for r in results if r.ok)
    assert len(flaky.calls) == 20


def test_ordered_results_follow_the_input_even_when_later_items_finish_first() -> None:
    finished: list[str] = []

    def last_for_the_first(call: GenerationCall) -> Any:
        async def later() -> list[ImageOutput]:
            for _ in range(500):  # the first item waits for the other five
                if call.prompt != "prompt 0" or len(finished) == 5:
                    break
                await asyncio.sleep(0.01)
            finished.append(call.prompt)
            return fake_images(call)

        return later()

    acme = ScriptedProvider("acme", [make_spec("m", "acme")], {"m": [last_for_the_first]})
    layer = layer_with(acme, gates={"g": {"model": "m"}})

    unordered = [r.index for r in layer.image_batch(requests(6), concurrency=6)]
    assert unordered[-1] == 0
    finished.clear()
    ordered = [r.index for r in layer.image_batch(requests(6), concurrency=6, ordered=True)]
    assert ordered == list(range(6))


def test_invalid_items_are_error_results_and_reach_no_provider() -> None:
    acme = ScriptedProvider("acme", [make_spec("m", "acme")])
    layer = layer_with(acme, gates={"g": {"model": "m"}})
    batch: list[Any] = [
        {"gateId": "g", "data": {"prompt": "fine"}},
        {"gateId": "g", "data": {"prompt": "   "}},
        {"gateId": "g", "data": {"prompt": "x", "size": "13x13"}},
        {"gateId": "g", "data": {"prompt": "x"}, "colour": "red"},
        {"id": ["not", "an", "id"], "gateId": "g", "data": {"prompt": "x"}},
        "a bare string",
        ImageRequest(gate_id="g", data={"prompt": "typed"}),  # type: ignore[arg-type]
    ]
    results = list(layer.image_batch(batch, ordered=True))

    assert [r.ok for r in results] == [True, False, False, False, False, False, True]
    problems = [r.error.problems for r in results if isinstance(r.error, InvalidRequest)]
    assert [p[0][0] for p in problems] == ["data.prompt", "data.size", "colour", "id", "request"]
    assert sorted(c.prompt for c in acme.calls) == ["fine", "typed"]


def test_ids_are_given_or_a_stable_content_hash() -> None:
    acme = ScriptedProvider("acme", [make_spec("m", "acme")])
    layer = layer_with(acme, gates={"g": {"model": "m"}})
    batch = [
        {"id": "spring", "gateId": "g", "data": {"prompt": "a"}},
        {"id": 7, "gateId": "g", "data": {"prompt": "b"}},
        {"gateId": "g", "data": {"prompt": "c"}},
        {"gateId": "g", "data": {"prompt": "c", "count": 1}},  # the same request, spelt longer
        {"id": "spring", "gateId": "g", "data": {"prompt": "d"}},
    ]
    results = list(layer.image_batch(batch, ordered=True))
    ids = [r.id for r in results]

    hashed = content_id(ImageRequest(gate_id="g", data={"prompt": "c"}))  # type: ignore[arg-type]
    assert ids == ["spring", "7", hashed, f"{hashed}-2", "spring"]
    assert [r.ok for r in results] == [True, True, True, True, False]
    assert isinstance(results[4].error, InvalidRequest)
    assert "repeats the id of item 0" in str(results[4].error)
    again = [r.id for r in layer.image_batch(batch, ordered=True)]
    assert again == ids


def test_the_concurrency_limit_holds_across_providers() -> None:
    limit, total = 4, 24
    state = {"now": 0, "peak": 0, "finished": 0}

    async def busy(call: GenerationCall) -> list[ImageOutput]:
        """Stay in flight until as many calls are in flight as the limit allows."""
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        try:
            for _ in range(500):  # bounded: a broken limit fails the asserts, not the clock
                if state["now"] >= min(limit, total - state["finished"]):
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0)
            return fake_images(call)
        finally:
            state["now"] -= 1
            state["finished"] += 1

    first = ScriptedProvider("one", [make_spec("a", "one")], {"a": [busy]})
    second = ScriptedProvider("two", [make_spec("b", "two")], {"b": [busy]})
    layer = layer_with(first, second, gates={"ga": {"model": "a"}, "gb": {"model": "b"}})
    batch = [{"gateId": "ga" if i % 2 else "gb", "data": {"prompt": f"p{i}"}} for i in range(total)]

    results = list(layer.image_batch(batch, concurrency=limit))

    assert all(r.ok for r in results)
    assert len(first.calls) == len(second.calls) == 12
    assert state["peak"] == limit


def hanging_provider() -> tuple[ScriptedProvider, list[str]]:
    """`prompt 0` returns at once, every other call hangs; the list gets each one cancelled."""
    cancelled: list[str] = []

    async def hang(call: GenerationCall) -> list[ImageOutput]:
        if call.prompt != "prompt 0":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(call.prompt)
                raise
        return fake_images(call)

    return ScriptedProvider("acme", [make_spec("m", "acme")], {"m": [hang]}), cancelled


def assert_every_call_in_flight_was_cancelled(acme: ScriptedProvider, cancelled: list[str]) -> None:
    started = {c.prompt for c in acme.calls} - {"prompt 0"}
    assert {"prompt 1", "prompt 2"} <= started  # in flight when the first result came
    assert sorted(cancelled) == sorted(started)
    assert len(acme.calls) <= 4  # and no new item started after the loop was left


def test_leaving_the_loop_early_cancels_the_items_in_flight() -> None:
    acme, cancelled = hanging_provider()
    layer = layer_with(acme, gates={"g": {"model": "m"}})

    async def first_only() -> list[int]:
        batch = layer.aimage_batch(requests(10), concurrency=3)
        seen = []
        async for result in batch:
            seen.append(result.index)
            break
        await batch.aclose()  # type: ignore[attr-defined]
        return seen

    assert asyncio.run(first_only()) == [0]
    assert_every_call_in_flight_was_cancelled(acme, cancelled)


def test_breaking_out_of_the_sync_loop_cancels_the_items_in_flight() -> None:
    acme, cancelled = hanging_provider()
    layer = layer_with(acme, gates={"g": {"model": "m"}})
    for result in layer.image_batch(requests(10), concurrency=3):
        assert result.index == 0
        break

    assert_every_call_in_flight_was_cancelled(acme, cancelled)
    assert layer.image(data={"prompt": "prompt 0"}, gate_id="g").images  # the loop is free
    layer.close()


def test_concurrency_must_be_positive() -> None:
    layer = layer_with(
        ScriptedProvider("acme", [make_spec("m", "acme")]), gates={"g": {"model": "m"}}
    )
    with pytest.raises(ValueError, match="concurrency"):
        layer.image_batch(requests(1), concurrency=0)


def lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_a_rerun_retries_only_the_failed_items(tmp_path: Path) -> None:
    out = tmp_path / "out"
    flaky = ScriptedProvider(
        "acme", [make_spec("m", "acme", price="0.02")], {"m": [every_fifth_fails()]}
    )
    layer = layer_with(flaky, gates={"g": {"model": "m", "retries": 0}})  # each outage fails
    batch = requests(25)

    first = asyncio.run(run_batch(layer, batch, out, concurrency=8))

    assert (first.ok, first.failed, first.skipped) == (20, 5, 0)
    assert first.cost == Decimal("0.40")
    records = lines(out)
    assert len(records) == 25
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 5
    for record in failed:
        assert record["files"] == []
        assert record["error"]["type"] == "AllAttemptsFailed"
        assert "scripted outage" in record["error"]["message"]
    for record in records:
        if record["status"] == "ok":
            assert [(out / f).is_file() for f in record["files"]] == [True]

    flaky.script["m"] = [Hang(0)]  # the outage is over
    called_before = len(flaky.calls)
    second = asyncio.run(run_batch(layer, batch, out, concurrency=8))

    retried = sorted(c.prompt for c in flaky.calls[called_before:])
    assert retried == sorted(r["prompt"] for r in failed)
    assert (second.ok, second.failed, second.skipped) == (5, 0, 20)
    records = lines(out)
    assert len(records) == 25  # compacted: the latest line per id
    assert len({r["id"] for r in records}) == 25
    assert all(r["status"] == "ok" for r in records)
    on_disk = {p.name for p in out.glob("*.png")}
    assert on_disk == {f for r in records for f in r["files"]}

    third = asyncio.run(run_batch(layer, batch, out))
    assert (third.ok, third.failed, third.skipped) == (0, 0, 25)
    assert len(flaky.calls) == called_before + 5


def test_an_item_whose_file_was_deleted_is_done_again(tmp_path: Path) -> None:
    out = tmp_path / "out"
    acme = ScriptedProvider("acme", [make_spec("m", "acme")])
    layer = layer_with(acme, gates={"g": {"model": "m"}})
    asyncio.run(run_batch(layer, requests(3), out))
    victim = lines(out)[1]
    (out / victim["files"][0]).unlink()

    again = asyncio.run(run_batch(layer, requests(3), out))

    assert (again.ok, again.skipped) == (1, 2)
    assert acme.calls[-1].prompt == victim["prompt"]
    assert len(lines(out)) == 3


def test_repeated_explicit_ids_refuse_the_folder_run_before_any_call(tmp_path: Path) -> None:
    acme = ScriptedProvider("acme", [make_spec("m", "acme")])
    layer = layer_with(acme, gates={"g": {"model": "m"}})
    batch = [
        {"id": "x", "gateId": "g", "data": {"prompt": "a"}},
        {"id": "x", "gateId": "g", "data": {"prompt": "b"}},
    ]
    with pytest.raises(InvalidRequest, match="repeats the id of item 0"):
        asyncio.run(run_batch(layer, batch, tmp_path / "out"))
    assert acme.calls == []


def test_a_batch_file_fills_each_line_from_the_defaults(tmp_path: Path) -> None:
    defaults = {
        "gateId": "g",
        "data": {"size": "256x256", "count": 2},
        "metadata": {"run": "r1"},
    }
    text = tmp_path / "prompts.txt"
    text.write_text("a red fox\n\n  a blue whale  \n")
    assert read_batch_file(text, defaults) == [
        {**defaults, "data": {"size": "256x256", "count": 2, "prompt": "a red fox"}},
        {**defaults, "data": {"size": "256x256", "count": 2, "prompt": "a blue whale"}},
    ]

    jsonl = tmp_path / "requests.data"
    jsonl.write_text(
        '{"id": "a", "data": {"prompt": "p", "count": 1}, "metadata": {"k": 1}}\n'
        '{"gate_id": "other", "data": {"prompt": "q"}, "model": "m2"}\n'
        "not json\n"
        "[1, 2]\n"
    )
    parsed = read_batch_file(jsonl, defaults)
    assert parsed[0] == {
        "id": "a",
        "gateId": "g",
        "data": {"size": "256x256", "count": 1, "prompt": "p"},
        "metadata": {"run": "r1", "k": 1},
    }
    assert parsed[1] == {
        "gate_id": "other",
        "data": {"size": "256x256", "count": 2, "prompt": "q"},
        "metadata": {"run": "r1"},
        "model": "m2",
    }
    assert isinstance(parsed[2], InvalidRequest)
    assert parsed[2].problems[0][0] == "line 3"
    assert isinstance(parsed[3], InvalidRequest)
    assert "expected a JSON object" in str(parsed[3])
    assert read_batch_file(jsonl, defaults, file_format="text")[2] == {
        **defaults,
        "data": {"size": "256x256", "count": 2, "prompt": "not json"},
    }
