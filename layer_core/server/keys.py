"""The gateway's API keys: made, listed and revoked by `layer keys`, checked on every request.

A token is `lyr_` and 43 characters of `secrets.token_urlsafe(32)` (256 random bits), shown once
when made. The ledger database keeps its SHA-256, never the token. A fast unsalted hash is
enough here, unlike for passwords: a slow hash (bcrypt, argon2) exists to make guessing a
low-entropy secret costly, and no amount of hashing speed makes 2^256 guesses feasible; a salt
defends against precomputed tables, which cannot cover a space of random 256-bit tokens either.
A fast hash also lets the gateway look a key up by its digest on every request (an index probe),
where a salted slow hash would cost milliseconds of CPU per request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal

from layer_core.gates import Budget

if TYPE_CHECKING:
    from layer_core.ledger.store import SqlStore

PREFIX = "lyr_"
#: characters of a token kept in the clear to tell keys apart in lists (`lyr_` and 4 more)
SHOWN = 8
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: a key that may use every gate, present and future
ALL_GATES = "*"


def digest(token: str) -> str:
    """The SHA-256 (hex) of a token: what the database keeps and requests are looked up by."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as stored: its name, which gates it may use, its limits. Never the token."""

    name: str
    prefix: str
    gates: tuple[str, ...]
    budget: Budget | None
    rpm: int | None
    created: datetime
    revoked: datetime | None = None

    def allows(self, gate_id: str) -> bool:
        return ALL_GATES in self.gates or gate_id in self.gates

    @property
    def budget_id(self) -> str:
        """The id its budget is held under in the ledger's budget tables (beside gate ids)."""
        return f"key:{self.name}"

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ApiKey:
        budget = None
        if row["budget"] is not None:
            budget = Budget(amount=row["budget"], period=row["budget_period"] or "monthly")
        revoked = row["revoked"]
        return cls(
            name=row["name"],
            prefix=row["prefix"],
            gates=tuple(row["gates"]),
            budget=budget,
            rpm=row["rpm"],
            created=row["created"].replace(tzinfo=UTC),
            revoked=revoked.replace(tzinfo=UTC) if revoked is not None else None,
        )


def parse_budget(text: str) -> Budget:
    """`AMOUNT/PERIOD` (`25/monthly`, `5.50/daily`, `$10/month`) as a `block` budget."""
    amount, _, period = text.partition("/")
    periods: dict[str, Literal["daily", "monthly"]] = {
        "daily": "daily",
        "day": "daily",
        "monthly": "monthly",
        "month": "monthly",
    }
    try:
        value = Decimal(amount.strip().lstrip("$"))
    except InvalidOperation:
        value = Decimal(0)
    if not value.is_finite() or value <= 0 or period.strip().lower() not in periods:
        raise ValueError(f"{text!r} is not AMOUNT/PERIOD, e.g. 25/monthly or 5.50/daily")
    return Budget(amount=value, period=periods[period.strip().lower()])


def create_key(
    store: SqlStore,
    name: str,
    gates: list[str],
    *,
    budget: Budget | None = None,
    rpm: int | None = None,
    now: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Make a key and store its digest; returns it and the token (which is not kept)."""
    if not NAME.match(name):
        raise ValueError(
            f"{name!r}: a key name is 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    if not gates or any(not g.strip() for g in gates):
        raise ValueError("give the gates the key may use: --gates a,b (or '*' for every gate)")
    if rpm is not None and rpm < 1:
        raise ValueError("--rpm must be at least 1")
    token = PREFIX + secrets.token_urlsafe(32)
    made = now or datetime.now(UTC)
    key = ApiKey(
        name=name,
        prefix=token[:SHOWN],
        gates=tuple(g.strip() for g in gates),
        budget=budget,
        rpm=rpm,
        created=made,
    )
    row = {
        "name": key.name,
        "digest": digest(token),
        "prefix": key.prefix,
        "gates": list(key.gates),
        "budget": budget.amount if budget else None,
        "budget_period": budget.period if budget else None,
        "rpm": rpm,
        "created": made.astimezone(UTC).replace(tzinfo=None),
    }
    if not store.add_key(row):
        raise ValueError(f"a key named {name!r} exists; revoked keys keep their name too")
    return key, token


def list_keys(store: SqlStore) -> list[ApiKey]:
    return [ApiKey.from_row(row) for row in store.all_keys()]


def find_key(store: SqlStore, token: str) -> ApiKey | None:
    """The live key a bearer token belongs to, or None (unknown, or revoked)."""
    if not token.startswith(PREFIX) or len(token) > 100:
        return None
    row = store.key_for_digest(digest(token))
    if row is None or row["revoked"] is not None:
        return None
    return ApiKey.from_row(row)
