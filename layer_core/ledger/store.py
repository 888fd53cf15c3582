"""The ledger's tables and every statement that touches them: one implementation over SQLAlchemy
Core, for SQLite (embedded) and PostgreSQL (shared by many app instances).

Imported only when a ledger is first used, never by `import layer_core` or `Layer()`.

Money is exact on both backends: NUMERIC on PostgreSQL; on SQLite, whose NUMERIC is a float, a
decimal string summed and added by two small SQL functions registered on each connection.
Timestamps are naive UTC. Every write runs in one transaction that takes the write lock up front
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a row lock on the budget period), so a budget
reservation is a read-compare-insert that no other process can interleave with.

Schema versions: a fresh database is created at `SCHEMA_VERSION`; an older one runs the steps
of `UPGRADES` in order; a newer one is refused (this layer is too old for it).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta
from decimal import Context, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

from layer_core.gates import Budget
from layer_core.ledger.records import BudgetState, Hold, LedgerRecord, naive_utc

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PgInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert

    UpsertInsert = SqliteInsert | PgInsert

SCHEMA_VERSION = 3


def _add_deployment(conn: Connection) -> None:
    """1 → 2: the deployment (model@instance) that served each request; NULL for the older
    records (their provider column still says who served them)."""
    conn.execute(text("ALTER TABLE layer_requests ADD COLUMN deployment VARCHAR(400)"))


#: version → the step that brings a database at that version to the next one.
UPGRADES: dict[int, Callable[[Connection], None]] = {1: _add_deployment}
#: an arbitrary constant: the PostgreSQL advisory lock held while the schema is created/upgraded.
_SCHEMA_LOCK = 7_331_020_117
_EXACT = Context(prec=60)


class Money(TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC on PostgreSQL, a decimal string on SQLite."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = Decimal(value)
        return str(amount) if dialect.name == "sqlite" else amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))


class Document(TypeDecorator[Any]):
    """A JSON document: JSONB on PostgreSQL, JSON elsewhere.

    A type of its own rather than ``JSON().with_variant(postgresql.JSONB(), ...)``, which needs
    the PostgreSQL dialect imported to build the table: a SQLite ledger never loads it (~3 MiB
    of modules, and 0.1-0.2 s of importing at the first record).
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


class exact_sum(FunctionElement[Decimal]):
    """SUM of a `Money` column, exact, 0 over no rows."""

    type = Money()
    inherit_cache = True


class exact_add(FunctionElement[Decimal]):
    """a + b of two `Money` values, exact."""

    type = Money()
    inherit_cache = True


@compiles(exact_sum)
def _sum(element: exact_sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"coalesce(sum({compiler.process(element.clauses, **kw)}), 0)"


@compiles(exact_sum, "sqlite")
def _sum_sqlite(element: exact_sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"coalesce(layer_sum({compiler.process(element.clauses, **kw)}), '0')"


@compiles(exact_add)
def _add(element: exact_add, compiler: SQLCompiler, **kw: Any) -> str:
    left, right = element.clauses
    return f"({compiler.process(left, **kw)} + {compiler.process(right, **kw)})"


@compiles(exact_add, "sqlite")
def _add_sqlite(element: exact_add, compiler: SQLCompiler, **kw: Any) -> str:
    return f"layer_add({compiler.process(element.clauses, **kw)})"


class _DecimalSum:
    """The `layer_sum` aggregate for SQLite: decimal strings in, a decimal string out."""

    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: str | None) -> None:
        if value is not None:
            self.total = _EXACT.add(self.total, Decimal(value))

    def finalize(self) -> str:
        return str(self.total)


def _decimal_add(left: str | None, right: str | None) -> str:
    return str(_EXACT.add(Decimal(left or 0), Decimal(right or 0)))


# --- tables --------------------------------------------------------------------------------

METADATA = MetaData()

requests = Table(
    "layer_requests",
    METADATA,
    Column("id", String(64), primary_key=True),
    Column("created", DateTime, nullable=False),
    Column("gate_id", String(200), nullable=False),
    Column("model_requested", String(200)),
    Column("model_used", String(200)),
    Column("provider", String(200)),
    Column("deployment", String(400)),
    Column("requested", Integer, nullable=False),
    Column("delivered", Integer, nullable=False),
    Column("cost", Money, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("status", String(32), nullable=False),
    Column("error", String(200)),
    Column("metadata", Document, key="meta", nullable=False),
    Column("attempts", Document, nullable=False),
    Column("prompt", Text),
    Column("key_name", String(200)),
    Index("ix_layer_requests_created", "created"),
    Index("ix_layer_requests_gate_created", "gate_id", "created"),
)

budget_periods = Table(
    "layer_budget_periods",
    METADATA,
    Column("gate_id", String(200), primary_key=True),
    Column("period", String(16), primary_key=True),
    Column("period_start", DateTime, primary_key=True),
    Column("spent", Money, nullable=False),
)

reservations = Table(
    "layer_budget_reservations",
    METADATA,
    Column("id", String(64), primary_key=True),
    Column("gate_id", String(200), nullable=False),
    Column("period", String(16), nullable=False),
    Column("period_start", DateTime, nullable=False),
    Column("amount", Money, nullable=False),
    Column("expires", DateTime, nullable=False),
    Index("ix_layer_budget_reservations_gate", "gate_id", "period", "period_start"),
)

#: The gateway's API keys (`layer keys`): the SHA-256 of each token, never the token.
api_keys = Table(
    "layer_keys",
    METADATA,
    Column("name", String(200), primary_key=True),
    Column("digest", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("gates", Document, nullable=False),
    Column("budget", Money),
    Column("budget_period", String(16)),
    Column("rpm", Integer),
    Column("created", DateTime, nullable=False),
    Column("revoked", DateTime),
)

#: Requests per key per UTC minute: the gateway's rate limit, counted here so every instance
#: on this database sees the same count.
key_minutes = Table(
    "layer_key_minutes",
    METADATA,
    Column("key_name", String(200), primary_key=True),
    Column("minute", DateTime, primary_key=True),
    Column("requests", Integer, nullable=False),
)

schema_version = Table(
    "layer_schema",
    METADATA,
    Column("version", Integer, nullable=False),
)


# --- the budget statements, built once (values are bound per call) --------------------------

_GATE, _PERIOD, _START, _NOW = (
    bindparam("b_gate", type_=String()),
    bindparam("b_period", type_=String()),
    bindparam("b_start", type_=DateTime()),
    bindparam("b_now", type_=DateTime()),
)
_THIS_PERIOD = and_(
    budget_periods.c.gate_id == _GATE,
    budget_periods.c.period == _PERIOD,
    budget_periods.c.period_start == _START,
)
SPENT = select(budget_periods.c.spent).where(_THIS_PERIOD)
SPENT_LOCKED = SPENT.with_for_update()
SPENT_SO_FAR = select(_GATE, _PERIOD, _START, exact_sum(requests.c.cost)).where(
    requests.c.gate_id == _GATE,
    requests.c.created >= _START,
    requests.c.created < bindparam("b_end", type_=DateTime()),
)
_EXPIRED = and_(reservations.c.gate_id == _GATE, reservations.c.expires <= _NOW)
HELD = select(
    select(exact_sum(reservations.c.amount))
    .where(
        reservations.c.gate_id == _GATE,
        reservations.c.period == _PERIOD,
        reservations.c.period_start == _START,
        reservations.c.expires > _NOW,
    )
    .scalar_subquery(),
    select(func.count()).select_from(reservations).where(_EXPIRED).scalar_subquery(),
)
DROP_EXPIRED = delete(reservations).where(_EXPIRED)
ADD_SPENT = (
    update(budget_periods)
    .where(_THIS_PERIOD)
    .values(spent=exact_add(budget_periods.c.spent, bindparam("b_cost", type_=Money())))
)
DROP_HOLD = delete(reservations).where(reservations.c.id == bindparam("b_hold"))


def _add_keys(conn: Connection) -> None:
    """2 → 3: the gateway's key tables, and the key each request came in with."""
    METADATA.create_all(conn, tables=[api_keys, key_minutes])
    conn.exec_driver_sql("ALTER TABLE layer_requests ADD COLUMN key_name VARCHAR(200)")


UPGRADES[2] = _add_keys


class LedgerSchemaError(RuntimeError):
    """The database holds a ledger schema this version of layer cannot use."""


def default_sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for in-memory)."""
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


class SqlStore:
    """The ledger's database: schema on open, then writes, reservations and queries."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.backend = parsed.get_backend_name()
        self.engine = _sqlite_engine(url) if self.backend == "sqlite" else _pg_engine(url)
        # SQLite takes one writer at a time anyway; queueing our own threads here spares them
        # the busy-wait (other processes still wait on SQLite's lock, up to its timeout)
        self._lock: Any = threading.Lock() if self.backend == "sqlite" else nullcontext()
        insert = _upsert(self.backend)
        self._add_record = insert(requests).on_conflict_do_nothing()
        self._add_period = (
            insert(budget_periods)
            .from_select(["gate_id", "period", "period_start", "spent"], SPENT_SO_FAR)
            .on_conflict_do_nothing()
        )
        try:
            self._migrate()
        except BaseException:
            self.engine.dispose()
            raise

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._lock, self.engine.connect() as conn:
            conn = conn.execution_options(layer_read=True)
            with conn.begin():
                yield conn

    # --- schema ------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._write() as conn:
            if self.backend == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
            if not inspect(conn).has_table(schema_version.name):
                METADATA.create_all(conn)
                conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
                return
            version = conn.scalar(select(schema_version.c.version))
            if version is None:
                conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
                return
            if version > SCHEMA_VERSION:
                raise LedgerSchemaError(
                    f"the ledger database has schema version {version}; this layer knows "
                    f"{SCHEMA_VERSION}: upgrade layer-core, or point `ledger` at another database"
                )
            for step in range(version, SCHEMA_VERSION):
                UPGRADES[step](conn)
            if version < SCHEMA_VERSION:
                conn.execute(update(schema_version).values(version=SCHEMA_VERSION))

    # --- writing records ---------------------------------------------------------------------

    def write(self, records: Sequence[LedgerRecord]) -> None:
        """Insert `records` (each at most once, by id) and settle the holds they carry."""
        if not records:
            return
        plain = [r.row() for r in records if r.hold is None]
        with self._write() as conn:
            if plain:
                conn.execute(self._add_record, plain)  # executemany, any batch size
            for record in records:
                hold = record.hold
                if hold is None:
                    continue
                # a hold's cost is added once: when its record goes in (a replay finds it there)
                added = conn.scalar(self._add_record.returning(requests.c.id), record.row())
                if added is not None and record.cost:
                    start = naive_utc(hold.period_start)
                    key = {"b_gate": hold.gate_id, "b_period": hold.period, "b_start": start}
                    conn.execute(ADD_SPENT, {**key, "b_cost": record.cost})
                conn.execute(DROP_HOLD, {"b_hold": hold.id})

    # --- budgets -----------------------------------------------------------------------------

    def reserve(
        self,
        gate_id: str,
        budget: Budget,
        now: datetime,
        estimate: Decimal,
        ttl: float,
        *,
        enforce: bool,
    ) -> Hold | BudgetState:
        """Reserve `estimate` against the gate's budget for the period holding `now`.

        Returns the `Hold`, or (when `enforce` and the estimate does not fit) the `BudgetState`
        that refused it; under `alert_only` (not `enforce`) the hold is made either way.
        """
        start = budget.period_start(now)
        with self._write() as conn:
            committed = self._committed(conn, gate_id, budget, now, lock=True)
            if enforce and committed + estimate > budget.amount:
                return BudgetState(budget.amount, committed, budget.resets_at(now))
            hold = Hold(
                id=uuid.uuid4().hex,
                gate_id=gate_id,
                period=budget.period,
                period_start=start,
                amount=estimate,
                expires=now + timedelta(seconds=ttl),
                limit=budget.amount,
                spent=committed,
                over=committed + estimate > budget.amount,
            )
            conn.execute(
                reservations.insert(),
                {
                    "id": hold.id,
                    "gate_id": gate_id,
                    "period": budget.period,
                    "period_start": naive_utc(start),
                    "amount": estimate,
                    "expires": naive_utc(hold.expires),
                },
            )
            return hold

    def budget_state(self, gate_id: str, budget: Budget, now: datetime) -> BudgetState:
        """Spend of the current period, settled and in flight (a read; reserves nothing)."""
        with self._write() as conn:
            committed = self._committed(conn, gate_id, budget, now, lock=False)
        return BudgetState(budget.amount, committed, budget.resets_at(now))

    def _committed(
        self, conn: Connection, gate_id: str, budget: Budget, now: datetime, *, lock: bool
    ) -> Decimal:
        """Settled spend plus live reservations, for the gate's period holding `now`.

        The period's row is created from the records already there the first time it is
        needed. With `lock`, the row stays locked (PostgreSQL) until the transaction ends, and
        the gate's expired reservations are cleared.
        """
        key = {
            "b_gate": gate_id,
            "b_period": budget.period,
            "b_start": naive_utc(budget.period_start(now)),
            "b_now": naive_utc(now),
        }
        spent = conn.scalar(SPENT_LOCKED if lock else SPENT, key)
        if spent is None:
            conn.execute(self._add_period, {**key, "b_end": naive_utc(budget.resets_at(now))})
            spent = conn.scalar(SPENT_LOCKED if lock else SPENT, key)
        # A statement of its own, after the lock is granted: under READ COMMITTED it sees every
        # reservation committed by the holder we waited for (a subquery of the locking
        # statement would read the snapshot taken before the wait).
        reserved, stale = conn.execute(HELD, key).one()
        if lock and stale:
            conn.execute(DROP_EXPIRED, key)
        return Decimal(spent or 0) + Decimal(reserved)

    # --- queries -----------------------------------------------------------------------------

    def costs(
        self, since: datetime | None, until: datetime | None, by: Sequence[str]
    ) -> list[tuple[tuple[Any, ...], int, int, Decimal]]:
        """(group values, requests, images, cost) per group of `by`, over [since, until)."""
        columns = [self._dimension(name).label(f"d{i}") for i, name in enumerate(by)]
        query = select(
            *columns,
            func.count().label("requests"),
            func.coalesce(func.sum(requests.c.delivered), 0).label("images"),
            exact_sum(requests.c.cost).label("cost"),
        ).where(*_window(since, until))
        if columns:
            query = query.group_by(*columns)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            (tuple(row[: len(columns)]), int(row.requests), int(row.images), Decimal(row.cost))
            for row in rows
            if row.requests
        ]

    def _dimension(self, name: str) -> ColumnElement[Any]:
        if name.startswith("meta."):
            value: ColumnElement[Any] = requests.c.meta[name.removeprefix("meta.")].as_string()
            return value
        if name == "day":
            return func.date(requests.c.created)
        column: ColumnElement[Any] = {
            "gate": requests.c.gate_id,
            "model": requests.c.model_used,
            "provider": requests.c.provider,
            "deployment": requests.c.deployment,
            "status": requests.c.status,
            "key": requests.c.key_name,
        }[name]
        return column

    def records(
        self, since: datetime | None = None, until: datetime | None = None, limit: int | None = None
    ) -> list[LedgerRecord]:
        """Recorded requests over [since, until), oldest first."""
        query = select(requests).where(*_window(since, until)).order_by(requests.c.created)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [LedgerRecord.from_row(row._mapping) for row in conn.execute(query)]

    def held_reservations(self) -> int:
        """How many budget reservations are held (expired or not)."""
        with self._read() as conn:
            return int(conn.scalar(select(func.count()).select_from(reservations)) or 0)

    # --- the gateway's keys ------------------------------------------------------------------

    def add_key(self, row: dict[str, Any]) -> bool:
        """Insert a key's row; False when a key of that name exists (revoked or not)."""
        insert = _upsert(self.backend)(api_keys).on_conflict_do_nothing()
        with self._write() as conn:
            added = conn.scalar(insert.returning(api_keys.c.name), row)
        return added is not None

    def all_keys(self) -> list[dict[str, Any]]:
        """Every key's row (digest included), by name."""
        with self._read() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.name))
            return [dict(row._mapping) for row in rows]

    def key_for_digest(self, digest: str) -> dict[str, Any] | None:
        """The row of the key whose token hashes to `digest`, if any."""
        with self._read() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.digest == digest)).first()
        return None if row is None else dict(row._mapping)

    def revoke_key(self, name: str, now: datetime) -> bool:
        """Mark a key revoked (from `now` on); False when no live key has that name."""
        query = (
            update(api_keys)
            .where(api_keys.c.name == name, api_keys.c.revoked.is_(None))
            .values(revoked=naive_utc(now))
        )
        with self._write() as conn:
            return conn.execute(query).rowcount > 0

    def count_request(self, key_name: str, minute: datetime) -> int:
        """Count one request of `key_name` in the UTC minute starting at `minute`, and return
        the minute's count so far (this one included); the key's older minutes are dropped."""
        start = naive_utc(minute)
        insert = _upsert(self.backend)(key_minutes).values(
            key_name=key_name, minute=start, requests=1
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[key_minutes.c.key_name, key_minutes.c.minute],
            set_={"requests": key_minutes.c.requests + 1},
        ).returning(key_minutes.c.requests)
        with self._write() as conn:
            count = int(conn.scalar(upsert) or 0)
            if count == 1:
                conn.execute(
                    delete(key_minutes).where(
                        key_minutes.c.key_name == key_name, key_minutes.c.minute < start
                    )
                )
        return count

    def settle_hold(self, hold: Hold, cost: Decimal) -> None:
        """Add `cost` to the spend of the hold's period and drop the hold, in one transaction:
        for a budget that no request record settles (a gateway key's)."""
        key = {
            "b_gate": hold.gate_id,
            "b_period": hold.period,
            "b_start": naive_utc(hold.period_start),
        }
        with self._write() as conn:
            if cost:
                conn.execute(ADD_SPENT, {**key, "b_cost": cost})
            conn.execute(DROP_HOLD, {"b_hold": hold.id})


def _window(since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    where = []
    if since is not None:
        where.append(requests.c.created >= naive_utc(since))
    if until is not None:
        where.append(requests.c.created < naive_utc(until))
    return where


def _upsert(backend: str) -> Callable[[Table], UpsertInsert]:
    """The backend's INSERT with ON CONFLICT (its dialect imported only here)."""
    if backend == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    return pg_insert


# --- engines -------------------------------------------------------------------------------


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    path = default_sqlite_path(url)
    if path is None:
        # one connection shared by every thread (serialised by SqlStore's lock)
        engine = create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {"check_same_thread": False}
        if "timeout" not in parsed.query:
            connect_args["timeout"] = 30.0  # seconds to wait for another process's write lock
        engine = create_engine(parsed, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite must not BEGIN for us: we do
        dbapi_connection.create_aggregate("layer_sum", 1, _DecimalSum)
        dbapi_connection.create_function("layer_add", 2, _decimal_add, deterministic=True)
        if path is not None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # a write transaction takes the write lock at once, so read-compare-insert is atomic
        # across processes; reads start deferred and never block a writer (WAL)
        read = conn.get_execution_options().get("layer_read", False)
        conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

    return engine


def _pg_engine(url: str) -> Engine:
    parsed = make_url(url)
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = 5
    return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
