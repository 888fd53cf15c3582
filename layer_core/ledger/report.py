"""Spend queries: what `Layer.costs()` returns, and how `since`/`until`/`by` are read."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from layer_core.money import money

DIMENSIONS = ("gate", "model", "provider", "deployment", "day", "status", "key")
"""What `by` can group on, besides `meta.<key>` (a metadata key)."""

When = datetime | date | str | None
_AGO = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def check_by(by: str | Sequence[str]) -> tuple[str, ...]:
    """The grouping, validated: each of `DIMENSIONS` or `meta.<key>`."""
    names = (by,) if isinstance(by, str) else tuple(by)
    for name in names:
        if name.startswith("meta.") and len(name) > len("meta."):
            continue
        if name not in DIMENSIONS:
            raise ValueError(
                f"by: cannot group on {name!r}; use {', '.join(DIMENSIONS)} or meta.<key>"
            )
    return names


def parse_when(value: When, *, now: datetime | None = None) -> datetime | None:
    """A moment as an aware UTC datetime.

    Takes a datetime (naive means UTC), a date (its midnight, UTC), or text: an ISO date or
    datetime, or an age such as ``30m``, ``12h``, ``7d``, ``2w`` (that long before now).
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    text = value.strip().lower()
    match = _AGO.match(text)
    if match:
        amount, unit = match.groups()
        moment = now or datetime.now(UTC)
        return moment - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        return parse_when(datetime.fromisoformat(value.strip()))
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time: use an ISO date (2026-01-31), a datetime, "
            "or an age like 30m, 12h, 7d, 2w"
        ) from None


@dataclass(frozen=True, slots=True)
class CostRow:
    """Spend of one group: `group` maps each `by` name to its value (None when absent)."""

    group: dict[str, str | None]
    requests: int
    images: int
    cost: Decimal


@dataclass(frozen=True, slots=True)
class CostReport:
    """Spend over [since, until), grouped `by`; `total` is the exact sum of the rows."""

    by: tuple[str, ...]
    since: datetime | None
    until: datetime | None
    rows: tuple[CostRow, ...]

    @property
    def total(self) -> Decimal:
        return sum((row.cost for row in self.rows), Decimal(0))

    @property
    def requests(self) -> int:
        return sum(row.requests for row in self.rows)

    @property
    def images(self) -> int:
        return sum(row.images for row in self.rows)

    def __str__(self) -> str:
        """A plain table, as `print(layer.costs(...))` shows it: a row per group, then the total."""
        window = " ".join(
            f"{word} {moment:%Y-%m-%d %H:%M} UTC"
            for word, moment in (("since", self.since), ("until", self.until))
            if moment is not None
        )
        grouped = f", by {', '.join(self.by)}" if self.by else ""
        head = [*self.by, "requests", "images", "cost"]
        lines = [
            [*("-" if v is None else v for v in row.group.values()), *_counts(row)]
            for row in self.rows
        ]
        lines = [head, *(lines if self.by else [])]
        total = ["total", *[""] * (len(self.by) - 1)] if self.by else []
        lines.append([*total, str(self.requests), str(self.images), money(self.total)])
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        text = [
            "  ".join(
                cell.ljust(width) if i < len(self.by) else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
            for line in lines
        ]
        return "\n".join([f"spend {window or 'to date'}{grouped}", *text])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: amounts as exact decimal strings, times as ISO 8601."""
        return {
            "by": list(self.by),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "rows": [
                {**row.group, "requests": row.requests, "images": row.images, "cost": str(row.cost)}
                for row in self.rows
            ],
            "requests": self.requests,
            "images": self.images,
            "total": str(self.total),
        }


def build_report(
    by: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    rows: Sequence[tuple[tuple[Any, ...], int, int, Decimal]],
) -> CostReport:
    """Rows from the store, with group values as text, ordered by group (absent values last)."""
    built = [
        CostRow(
            group={name: None if v is None else str(v) for name, v in zip(by, values, strict=True)},
            requests=requests,
            images=images,
            cost=cost,
        )
        for values, requests, images, cost in rows
    ]
    built.sort(key=lambda row: [(v is None, v or "") for v in row.group.values()])
    return CostReport(by=by, since=since, until=until, rows=tuple(built))


def _counts(row: CostRow) -> list[str]:
    return [str(row.requests), str(row.images), money(row.cost)]
