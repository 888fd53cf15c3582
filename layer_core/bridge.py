"""The sync bridge: `Layer.image()` and friends run their coroutine on a private event loop.

The loop runs on a daemon thread of its own, so a sync call works inside a running loop too (a
notebook), and the calling thread only waits: a Ctrl-C there cancels the coroutine where it
awaits and waits for it to finish (`run_on`), so its clean-up (the ledger record of a cancelled
request, a batch's results file) runs now, not never.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop, Task

T = TypeVar("T")


class LoopThread:
    """A private event loop on a daemon thread, so sync calls work even inside a running loop."""

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="layer-sync", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return run_on(self.loop, coro)

    def stop(self) -> None:
        """Cancel what still runs on the loop (a call given up on: its clean-up, such as the
        ledger record, runs now rather than never), then stop the loop and its thread."""
        self.run(_cancel_the_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


async def _cancel_the_rest() -> None:
    import asyncio

    rest = asyncio.all_tasks() - {asyncio.current_task()}
    for task in rest:
        task.cancel()
    if rest:
        await asyncio.wait(rest, timeout=CANCEL_GRACE)


#: Seconds a sync call waits, after an interrupt, for the coroutine it cancelled to finish.
CANCEL_GRACE = 60.0


def iterate_on(loop: AbstractEventLoop, results: AsyncIterator[T]) -> Iterator[T]:
    """Iterate an async iterator from sync code, running it on `loop` (another thread's).

    An interrupt while waiting (Ctrl-C) cancels the step in flight (see `run_on`), and closing
    the iterator closes the async one there, so nothing keeps running on the loop afterwards.
    """
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
            import asyncio

            asyncio.run_coroutine_threadsafe(closing(), loop).result(timeout=60)


def run_on(loop: AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on `loop` (another thread's) and wait for its result.

    An exception while waiting (Ctrl-C) cancels the coroutine and waits, up to `CANCEL_GRACE`
    seconds, until it has finished before propagating: its cleanup (the ledger record of a
    cancelled request, a batch's results file) runs now, while the loop runs, instead of never
    or at interpreter exit. A second interrupt stops the waiting.
    """
    finished = threading.Event()
    tasks: list[Task[T]] = []

    def start() -> None:
        task = loop.create_task(coro)
        task.add_done_callback(lambda _: finished.set())
        tasks.append(task)

    def cancel() -> None:  # callbacks run in order: a `start` scheduled has run by now
        if tasks:
            tasks[0].cancel()
        else:  # the interrupt came before `start` was scheduled: nothing ran
            coro.close()
            finished.set()

    try:
        loop.call_soon_threadsafe(start)
        _wait(finished)
    except BaseException:
        loop.call_soon_threadsafe(cancel)
        _wait(finished, CANCEL_GRACE)
        raise
    return tasks[0].result()


def _wait(event: threading.Event, timeout: float | None = None) -> None:
    """`event.wait()` in slices of a tenth of a second: CPython runs signal handlers between
    bytecodes, so a Ctrl-C landing just as a lock wait begins is seen when the slice ends,
    instead of when the whole wait does."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not event.wait(0.1):
        if deadline is not None and time.monotonic() >= deadline:
            return
