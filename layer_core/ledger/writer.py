"""The ledger's background writer: requests hand it records and move on.

One daemon thread per ledger, started by the first record. When a record arrives it lets more
gather for `LINGER` seconds (a flush or stop cuts that short), then writes every record waiting
(up to `BATCH`) in one transaction: the writer wakes once per batch, not once per request, so
the database work per record stays small and a request never waits for it. When a write fails the
batch goes to the spool and the writer retries with a growing delay (`RETRY_MIN` to `RETRY_MAX`
seconds); a `flush()` retries at once.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from layer_core.ledger.records import LedgerRecord
from layer_core.ledger.spool import Spool, Write

log = logging.getLogger("layer.ledger")

BATCH = 500
LINGER = 0.05
RETRY_MIN = 0.25
RETRY_MAX = 30.0

OnError = Callable[[BaseException, list[LedgerRecord]], None]


@dataclass
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


class _Stop:
    pass


class Writer:
    """Writes queued records through `write`, spooling what the database cannot take."""

    def __init__(self, write: Write, spool: Spool, on_error: OnError) -> None:
        self._write = write
        self.spool = spool
        self._on_error = on_error
        self._queue: queue.SimpleQueue[LedgerRecord | _Flush | _Stop] = queue.SimpleQueue()
        self._urgent = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._retry_at: float | None = None
        self._delay = RETRY_MIN
        self._down = False
        self._writing: list[LedgerRecord] = []
        _WRITERS.add(self)

    def put(self, record: LedgerRecord) -> None:
        """Queue a record (the request's path: no I/O, no lock once the thread runs)."""
        global _recorded
        _recorded = True
        if self._thread is None:
            if sys.is_finalizing():
                # from a coroutine the interpreter's last garbage collection closed, say: no
                # thread can start now (in Python 3.11 starting one hangs the exit for good)
                log.error("ledger: a record came while the interpreter was exiting; it is lost")
                return
            self._start()
        self._queue.put(record)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="layer-ledger", daemon=True)
                if self.spool.orphans():
                    self._retry_at = time.monotonic()
                thread.start()
                self._thread = thread

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every record queued so far was written or spooled; retry the spool."""
        if self._thread is None:
            if not self.spool.pending():
                return True
            self._start()
        marker = _Flush()
        self._queue.put(marker)
        self._urgent.set()
        return marker.done.wait(timeout)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Write what is queued, try the spool once more, and end the thread.

        Waits up to `timeout` seconds for that (0: do not wait; the thread finishes alone).
        """
        with self._start_lock:
            thread = self._thread
            if thread is None:
                return
            self._queue.put(_Stop())
            self._urgent.set()
        if timeout != 0:
            thread.join(timeout)

    def spool_pending(self) -> int:
        """Spool what is queued or being written, for an exit that cannot wait for the database.

        The records go to a spool file of their own, which the next writer replays; the thread
        may still finish its write, and replaying a record the database has changes nothing.
        Returns how many records were spooled.
        """
        records = list(self._writing)
        markers: list[_Flush | _Stop] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, LedgerRecord):
                records.append(item)
            else:
                markers.append(item)
        for marker in markers:  # a flush or stop still waits for the thread
            self._queue.put(marker)
        if not records or self.spool.directory is None:
            return 0
        try:
            Spool(self.spool.directory).add(records)
        except OSError:
            log.exception("ledger: cannot spool %d record(s); they are lost", len(records))
            return 0
        return len(records)

    def forget(self) -> None:
        """After a fork: the thread is the parent's; start afresh on the next record."""
        self._thread = None
        self._start_lock = threading.Lock()
        self._queue = queue.SimpleQueue()
        self._urgent = threading.Event()
        self.spool.forget()
        self._retry_at = None

    # --- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            records, flushes, stop = self._take()
            if records:
                self._write_batch(records)
            self._writing = []
            due = self._retry_at is not None and time.monotonic() >= self._retry_at
            if (due or flushes or stop) and self._retry_at is not None:
                self._replay()
            for marker in flushes:
                marker.done.set()
            if stop:
                self.spool.close()
                with self._start_lock:
                    if self._thread is threading.current_thread():
                        self._thread = None
                return

    def _take(self) -> tuple[list[LedgerRecord], list[_Flush], bool]:
        """Block for the next item (or the next retry), let a batch gather, take what waits."""
        timeout = None
        if self._retry_at is not None:
            timeout = max(0.0, self._retry_at - time.monotonic())
        records: list[LedgerRecord] = []
        flushes: list[_Flush] = []
        stop = False
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return records, flushes, False
        self._writing = records  # what `spool_pending` keeps if the process cannot wait
        if isinstance(item, LedgerRecord) and self._queue.qsize() < BATCH:
            self._urgent.wait(LINGER)
        self._urgent.clear()
        while True:
            if isinstance(item, LedgerRecord):
                records.append(item)
            elif isinstance(item, _Flush):
                flushes.append(item)
            else:
                stop = True  # and take everything queued before the stop, however much
            if len(records) >= BATCH and not stop:
                return records, flushes, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return records, flushes, stop

    def _write_batch(self, records: list[LedgerRecord]) -> None:
        try:
            self._write(records)
        except Exception as exc:  # noqa: BLE001 - any database failure: keep the records
            try:
                self.spool.add(records)
            except OSError:
                log.exception(
                    "ledger: cannot spool %d record(s) either; they are lost", len(records)
                )
            self._failed(exc, records)
            return
        if self._retry_at is not None:
            self._retry_at = time.monotonic()  # the database is back: replay the spool now

    def _replay(self) -> None:
        try:
            count = self.spool.replay(self._write)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc, [])
            return
        if count:
            log.info("ledger: %d spooled record(s) written", count)
        self._recovered()

    def _failed(self, exc: BaseException, records: list[LedgerRecord]) -> None:
        if not self._down:
            log.warning("ledger: the database is unavailable; spooling until it is back")
            self._delay = RETRY_MIN
        self._down = True
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, RETRY_MAX)
        if records:
            self._on_error(exc, records)

    def _recovered(self) -> None:
        if self._down:
            log.warning("ledger: the database is back")
        self._down = False
        self._retry_at = None
        self._delay = RETRY_MIN


_WRITERS: weakref.WeakSet[Writer] = weakref.WeakSet()
_recorded = False


def recorded() -> bool:
    """Whether this process has given any writer a record."""
    return _recorded


def stop_all() -> None:
    """Every writer writes what is queued (or spools it) and ends: at interpreter exit, and
    when the `layer` script is interrupted."""
    for writer in list(_WRITERS):
        try:
            writer.stop()
        except Exception:
            log.exception("ledger: stopping a writer at exit failed")


def spool_all() -> int:
    """`spool_pending` on every writer: for an exit that cannot wait. How many were spooled."""
    return sum(writer.spool_pending() for writer in list(_WRITERS))


def _forget_all() -> None:
    for writer in list(_WRITERS):
        writer.forget()


atexit.register(stop_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all)
