"""What the ledger keeps: one `LedgerRecord` per request, and the budget `Hold` it settles.

Plain data, no database code: records are built on the request's path (cheaply), written by the
ledger's background writer, and spooled as JSON lines (see `spool`) when the database cannot take
them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, get_args

from layer_core.schema import Attempt

Status = Literal["ok", "failed", "rejected-by-budget"]
STATUSES: tuple[Status, ...] = get_args(Status)


@dataclass(frozen=True, slots=True)
class Hold:
    """A budget reservation made before a request's first provider call.

    The request's record settles it: the reservation is dropped and the real cost added to the
    period's spend, in one transaction. A hold that is never settled (the process died) stops
    counting at `expires`.
    """

    id: str
    gate_id: str
    period: str
    period_start: datetime
    amount: Decimal
    expires: datetime
    limit: Decimal
    spent: Decimal
    """spend of the period (settled and in flight) before this hold."""
    over: bool = False
    """the hold passed the limit (only under `alert_only`, which lets the request through)."""


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A gate's budget now: its limit, what is spent or held in flight, when it resets."""

    limit: Decimal
    spent: Decimal
    resets_at: datetime

    @property
    def left(self) -> Decimal:
        return max(self.limit - self.spent, Decimal(0))


@dataclass(slots=True)
class LedgerRecord:
    """One request, as the ledger stores it. `cost` is exact; `latency` is milliseconds."""

    id: str
    created: datetime
    gate_id: str
    model_requested: str | None
    model_used: str | None
    provider: str | None
    requested: int
    delivered: int
    cost: Decimal
    latency: float
    status: Status
    error: str | None = None
    deployment: str | None = None
    """model@instance of the first image served."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    attempts: Sequence[Attempt] = ()
    prompt: str | None = None
    hold: Hold | None = None
    key: str | None = None
    """the name of the gateway key the request came in with (`layer serve`), if any."""

    def row(self) -> dict[str, Any]:
        """Column values (created as naive UTC, as the tables store it)."""
        return {
            "id": self.id,
            "created": naive_utc(self.created),
            "gate_id": self.gate_id,
            "model_requested": self.model_requested,
            "model_used": self.model_used,
            "provider": self.provider,
            "deployment": self.deployment,
            "requested": self.requested,
            "delivered": self.delivered,
            "cost": self.cost,
            "latency_ms": self.latency,
            "status": self.status,
            "error": self.error,
            "meta": dict(self.metadata),
            "attempts": [a.model_dump(mode="json", exclude_none=True) for a in self.attempts],
            "prompt": self.prompt,
            "key_name": self.key,
        }

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> LedgerRecord:
        return cls(
            id=row["id"],
            created=row["created"].replace(tzinfo=UTC),
            gate_id=row["gate_id"],
            model_requested=row["model_requested"],
            model_used=row["model_used"],
            provider=row["provider"],
            deployment=row.get("deployment"),
            requested=row["requested"],
            delivered=row["delivered"],
            cost=Decimal(row["cost"]),
            latency=row["latency_ms"],
            status=row["status"],
            error=row["error"],
            metadata=row["meta"] or {},
            attempts=tuple(Attempt.model_validate(a) for a in row["attempts"] or ()),
            prompt=row["prompt"],
            key=row.get("key_name"),
        )


def naive_utc(moment: datetime) -> datetime:
    """`moment` in UTC without tzinfo: how every timestamp is stored, on every backend."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
