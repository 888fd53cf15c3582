"""Records the database could not take, kept on disk until it can.

Each ledger writer appends to its own JSON-lines file in the spool directory and holds an
exclusive `flock` on it while it lives. A file nobody holds belongs to a process that exited or
died with records unwritten: the next writer that finds it replays it into the database and
removes it. Replay is safe to repeat: the database keeps a record at most once (by id).
Without a directory (an in-memory ledger) the lines are kept in memory.

A line is a `SpoolLine`: the record's row (the columns the database stores) plus the budget hold
it settles, written and read back whole by one pydantic `TypeAdapter`.
"""

from __future__ import annotations

import functools
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import (
    IO,
    TYPE_CHECKING,
    Any,
    NotRequired,  # pydantic reads these before 3.12
)

from typing_extensions import TypedDict

from layer_core.ledger.records import Hold, LedgerRecord, Status, naive_utc
from layer_core.schema import Attempt

if TYPE_CHECKING:
    from pydantic import TypeAdapter

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no adoption of other processes' files
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("layer.ledger")
SUFFIX = ".jsonl"
Write = Callable[[list[LedgerRecord]], None]


class SpoolLine(TypedDict):
    """One spooled record: `LedgerRecord.row()`'s columns, and the hold the record settles."""

    id: str
    created: datetime
    gate_id: str
    model_requested: str | None
    model_used: str | None
    provider: str | None
    deployment: NotRequired[str | None]  # not in lines spooled before deployments
    requested: int
    delivered: int
    cost: Decimal
    latency_ms: float
    status: Status
    error: str | None
    meta: dict[str, Any]
    attempts: list[Attempt]
    prompt: str | None
    key_name: NotRequired[str | None]
    hold: NotRequired[Hold | None]


@functools.cache  # built when a record is first spooled, not when a Layer is
def _lines() -> TypeAdapter[SpoolLine]:
    from pydantic import TypeAdapter

    return TypeAdapter(SpoolLine)


def encode(record: LedgerRecord) -> str:
    """The spool line of `record` (without its newline)."""
    lines = _lines()
    row = {**record.row(), "created": record.created, "attempts": record.attempts}
    return lines.dump_json(lines.validate_python({**row, "hold": record.hold})).decode()


def decode(text: str) -> LedgerRecord:
    """The record a spool line holds; `ValueError` (pydantic's) for a line that is not one."""
    line = _lines().validate_json(text)
    record = LedgerRecord.from_row({**line, "created": naive_utc(line["created"])})
    record.hold = line.get("hold")
    return record


def _lock(handle: IO[str]) -> bool:
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class Spool:
    """This writer's spool file, plus adoption of files left behind by others."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._file: IO[str] | None = None
        self._memory: list[str] = []
        self.count = 0
        """records in this writer's own spool."""

    def add(self, records: list[LedgerRecord]) -> None:
        lines = [encode(record) + "\n" for record in records]
        if self.directory is None:
            self._memory.extend(lines)
        else:
            handle = self._own()
            handle.writelines(lines)
            handle.flush()
            os.fsync(handle.fileno())
        self.count += len(records)

    def _own(self) -> IO[str]:
        if self._file is None:
            assert self.directory is not None
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
            # locked under a name nobody adopts, then renamed: never adoptable while unlocked
            staging = self.directory / f"{name}.new"
            handle = open(staging, "a+", encoding="utf-8")  # noqa: SIM115 - held open on purpose
            os.chmod(staging, 0o600)
            _lock(handle)
            staging.rename(self.directory / f"{name}{SUFFIX}")
            self._file = handle
        return self._file

    def orphans(self) -> list[Path]:
        """Spool files in the directory other than this writer's own."""
        if self.directory is None or not self.directory.is_dir():
            return []
        own = Path(self._file.name).stem if self._file is not None else None
        return [p for p in self.directory.glob(f"*{SUFFIX}") if p.stem != own]

    def pending(self) -> bool:
        return self.count > 0 or bool(self.orphans())

    def replay(self, write: Write, batch: int = 500) -> int:
        """Write this writer's records and every orphaned file; raise if the database fails.

        Returns how many records went back into the database.
        """
        written = 0
        if self.count:
            lines = self._memory if self.directory is None else self._read_own()
            for chunk in _chunks(_parse(lines, "own spool"), batch):
                write(chunk)
                written += len(chunk)
            self._truncate()
        for path in self.orphans():
            written += self._adopt(path, write, batch)
        return written

    def _read_own(self) -> list[str]:
        assert self._file is not None
        self._file.seek(0)
        return self._file.readlines()

    def _truncate(self) -> None:
        self._memory.clear()
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            self._file.flush()
        self.count = 0

    def _adopt(self, path: Path, write: Write, batch: int) -> int:
        try:
            handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return 0  # someone else adopted it
        with handle:
            if not _lock(handle):
                return 0  # its writer is alive
            if not path.exists():
                return 0  # adopted and removed between our open and our lock
            written = 0
            for chunk in _chunks(_parse(handle.readlines(), path.name), batch):
                write(chunk)
                written += len(chunk)
            path.unlink()
        log.info("ledger: replayed %d spooled record(s) from %s", written, path.name)
        return written

    def close(self) -> None:
        """Release this writer's file; remove it when empty (else the next writer adopts it)."""
        if self._file is None:
            return
        path = Path(self._file.name)
        if self.count == 0:
            path.unlink(missing_ok=True)
        self._file.close()
        self._file = None
        self.count = 0

    def forget(self) -> None:
        """After a fork: the file and its lock belong to the parent."""
        self._file = None
        self._memory = []
        self.count = 0


def _parse(lines: list[str], where: str) -> Iterator[LedgerRecord]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield decode(line)
        except ValueError as exc:  # a line cut short by a crash
            log.warning("ledger: %s line %d is unreadable, skipped: %s", where, number, exc)


def _chunks(records: Iterator[LedgerRecord], size: int) -> Iterator[list[LedgerRecord]]:
    chunk: list[LedgerRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
