"""The cost ledger: every request recorded, spend queried, gate budgets held under concurrency.

`Ledger` is what a `Layer` holds. Building one costs nothing: SQLAlchemy is imported and the
database opened by the first thing that needs it (the background writer's first batch, a budget
reservation, a query). Records go through a queue to the writer thread (see `writer`), so the
request's path does no I/O, except on gates with a budget: their estimate is reserved atomically
before the first provider call, and the request's record settles the reservation (to the real
cost) before the request returns.

Where: ``ledger = "sqlite"`` (default: `ledger.sqlite` in the user data dir), ``"memory"`` (for
tests), a ``sqlite:///path`` or ``postgresql+psycopg://...`` URL, or ``false``. The environment
variable ``LAYER_LEDGER_URL`` takes precedence over the config.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from layer_core.dirs import LEDGER_FILE, SPOOL_DIR, user_data_dir
from layer_core.errors import LedgerUnavailable
from layer_core.gates import Gate
from layer_core.ledger.records import STATUSES, BudgetState, Hold, LedgerRecord, Status
from layer_core.ledger.spool import Spool
from layer_core.ledger.writer import Writer

if TYPE_CHECKING:
    from layer_core.ledger.report import CostReport, CostRow, When
    from layer_core.ledger.store import SqlStore
    from layer_core.policy import Candidate

__all__ = [
    "STATUSES",
    "BudgetState",
    "CostReport",
    "CostRow",
    "Hold",
    "Ledger",
    "LedgerRecord",
    "Status",
    "ledger_url",
    "reservation_ttl",
    "user_data_dir",
]

log = logging.getLogger("layer.ledger")
Notify = Callable[..., None]

ENV_URL = "LAYER_LEDGER_URL"
MEMORY_URL = "sqlite://"
_PG_PREFIXES = ("postgresql+psycopg://", "postgresql://", "postgres://")
#: extra seconds a reservation outlives the longest a request could take.
RESERVATION_MARGIN = 60.0


def ledger_url(value: str | bool, environ: Mapping[str, str] | None = None) -> str | None:
    """The SQLAlchemy URL for a config's `ledger` value (and `LAYER_LEDGER_URL`), or None (off).

    Raises `ValueError` for a value that names no supported database.
    """
    env = os.environ if environ is None else environ
    value = env.get(ENV_URL) or value
    if value is False:
        return None
    if value is True or not isinstance(value, str):
        raise ValueError('ledger must be "sqlite", "memory", a database URL, or false')
    if value == "sqlite":
        return f"sqlite:///{user_data_dir() / LEDGER_FILE}"
    if value in ("memory", "sqlite://", "sqlite:///:memory:"):
        return MEMORY_URL
    if value.startswith("sqlite:///"):
        return value
    for prefix in _PG_PREFIXES:
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value.removeprefix(prefix)
    raise ValueError(
        f'ledger: {display_url(value)!r} is not "sqlite", "memory", a sqlite:///PATH URL, '
        "a postgresql+psycopg://... URL, or false"
    )


def display_url(url: str) -> str:
    """`url` with its password replaced by ***, for reprs, logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def reservation_ttl(gate: Gate, candidates: Sequence[Candidate]) -> float:
    """Seconds a budget reservation lives: the longest the request could take, plus a margin.

    After that, a reservation whose process died stops counting against the budget.
    """
    retries = gate.retries_on(nothing_else=True)  # the most any one model may get
    per_model = gate.timeout * (retries + 1) + gate.max_retry_wait * retries
    return per_model * max(len(candidates), 1) + RESERVATION_MARGIN


class Database:
    """The ledger's database, opened on first use; shared by a `Ledger` and its writer.

    The writer holds this, never the `Ledger`, so a `Ledger` nobody holds is collected and its
    writer finishes what is queued and ends.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._store: SqlStore | None = None
        self._lock = threading.Lock()
        _DATABASES.add(self)

    def store(self) -> SqlStore:
        """The open database (opened, and its schema created or upgraded, on first use)."""
        store = self._store
        if store is None:
            with self._lock:
                if self._store is None:
                    from layer_core.ledger.store import SqlStore

                    self._store = SqlStore(self.url)
                store = self._store
        return store

    def write(self, records: list[LedgerRecord]) -> None:
        self.store().write(records)

    def close(self) -> None:
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()

    def forget(self) -> None:
        """In a forked child: the parent's connections are not ours to use or close."""
        store, self._store = self._store, None
        self._lock = threading.Lock()
        if store is not None:
            store.engine.dispose(close=False)

    def unavailable(self, exc: BaseException) -> LedgerUnavailable:
        """`exc` as a `LedgerUnavailable` naming the database, free of its password."""
        if isinstance(exc, LedgerUnavailable):
            return exc
        cause = getattr(exc, "orig", None) or exc
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        password = urlsplit(self.url).password
        if password and len(password) >= 4:
            first = first.replace(password, "***")
        error = LedgerUnavailable(
            f"ledger {display_url(self.url)}: {type(cause).__name__}: {first}".rstrip(": ")
        )
        error.__cause__ = exc
        return error


def _report_failed_write(
    database: Database, notify: Notify, exc: BaseException, records: list[LedgerRecord]
) -> None:
    error = database.unavailable(exc)
    log.warning("%s; %d record(s) spooled, retrying", error, len(records))
    notify("on_ledger_error", error=error, records=records)


def _silent(*_args: object, **_kwargs: object) -> None:
    return None


class Ledger:
    """Records requests, answers spend queries, and holds budget reservations.

    ``notify`` calls observation hooks (``on_ledger_error``). ``spool_dir`` is where records
    wait while the database cannot take them (None: in memory).
    """

    def __init__(
        self,
        url: str,
        *,
        notify: Notify | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        self.url = url
        self._notify = notify or _silent
        self._database = Database(url)
        self._writer = Writer(
            self._database.write,
            Spool(spool_dir),
            functools.partial(_report_failed_write, self._database, self._notify),
        )
        # dropped without close(): the writer still writes what is queued, then ends (at exit,
        # the writers' own exit handler waits for them instead)
        weakref.finalize(self, self._writer.stop, 0).atexit = False

    @classmethod
    def for_url(cls, url: str, *, notify: Notify | None = None) -> Ledger:
        """A ledger at `url`, spooling under the user data dir (in memory for an in-memory db)."""
        if url.startswith("postgresql") and importlib.util.find_spec("psycopg") is None:
            raise LedgerUnavailable(
                "ledger: a PostgreSQL ledger needs psycopg: pip install 'layer-core[postgres]'"
            )
        spool = None
        if url != MEMORY_URL:
            digest = hashlib.sha256(url.encode()).hexdigest()[:16]
            spool = user_data_dir() / SPOOL_DIR / digest
        return cls(url, notify=notify, spool_dir=spool)

    def __repr__(self) -> str:
        return f"<Ledger {display_url(self.url)}>"

    def store(self) -> SqlStore:
        """The open database (opened, and its schema created or upgraded, on first use)."""
        return self._database.store()

    def _unavailable(self, exc: BaseException) -> LedgerUnavailable:
        return self._database.unavailable(exc)

    # --- writing -----------------------------------------------------------------------------

    def record(self, record: LedgerRecord) -> None:
        """Queue a record for the background writer (no I/O here)."""
        self._writer.put(record)

    async def settle(self, record: LedgerRecord) -> None:
        """Write a record that settles a budget hold, before the request returns.

        The gate's spend is then exact for the next request. If the database fails, the record
        goes to the writer (and its spool) like any other: the response is never held back.
        """
        import asyncio  # here, not at the top: `Layer()` itself needs no asyncio

        try:
            await asyncio.to_thread(lambda: self.store().write([record]))
        except Exception:  # noqa: BLE001 - the writer retries, spools and reports it
            self._writer.put(record)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every record queued so far is written (or spooled); False on timeout."""
        return self._writer.flush(timeout)

    def close(self) -> None:
        """Write what is queued, stop the writer, close the database. Using it again reopens."""
        self._writer.stop()
        self._database.close()

    # --- budgets -----------------------------------------------------------------------------

    async def reserve(
        self, gate: Gate, now: datetime, estimate: Decimal, ttl: float
    ) -> Hold | BudgetState:
        """Reserve `estimate` against `gate.budget` (in a worker thread: it waits on a lock).

        Raises `LedgerUnavailable` when the database cannot be reached.
        """
        import asyncio  # here, not at the top: `Layer()` itself needs no asyncio

        budget = gate.budget
        assert budget is not None
        enforce = budget.enforcement == "block"
        try:
            return await asyncio.to_thread(
                lambda: self.store().reserve(gate.id, budget, now, estimate, ttl, enforce=enforce)
            )
        except Exception as exc:
            error = self._unavailable(exc)
            log.warning("%s; the budget of gate %r could not be checked", error, gate.id)
            self._notify("on_ledger_error", error=error, records=[])
            raise error from exc

    def budget_state(self, gate: Gate, now: datetime) -> BudgetState:
        """The gate's budget now: limit, spend (settled and in flight), reset time."""
        assert gate.budget is not None
        try:
            return self.store().budget_state(gate.id, gate.budget, now)
        except Exception as exc:
            raise self._unavailable(exc) from exc

    # --- queries -----------------------------------------------------------------------------

    def costs(
        self, since: When = None, until: When = None, by: str | Sequence[str] = ()
    ) -> CostReport:
        """Spend over [since, until), grouped `by` (see `Layer.costs`)."""
        from layer_core.ledger.report import build_report, check_by, parse_when

        names = check_by(by)
        start, end = parse_when(since), parse_when(until)
        self.flush()
        try:
            rows = self.store().costs(start, end, names)
        except Exception as exc:
            raise self._unavailable(exc) from exc
        return build_report(names, start, end, rows)

    def records(
        self, since: When = None, until: When = None, limit: int | None = None
    ) -> list[LedgerRecord]:
        """The recorded requests over [since, until), oldest first."""
        from layer_core.ledger.report import parse_when

        self.flush()
        try:
            return self.store().records(parse_when(since), parse_when(until), limit)
        except Exception as exc:
            raise self._unavailable(exc) from exc


def __getattr__(name: str) -> Any:
    if name in ("CostReport", "CostRow"):  # only queries need them: imported on first use
        from layer_core.ledger import report

        return getattr(report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_DATABASES: weakref.WeakSet[Database] = weakref.WeakSet()


def _forget_databases() -> None:
    for database in list(_DATABASES):
        database.forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_databases)
