"""The budget guard: what `Layer` asks of the ledger around one request.

Before the request, a hold of its worst-case cost against the gate's budget (`reserve`); after,
the ledger record of what it was paid for, settling the hold (`record_success`,
`record_failure`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from layer_core.errors import AllAttemptsFailed, BudgetExceeded, LedgerUnavailable
from layer_core.ledger import Hold, Ledger, LedgerRecord, Status, reservation_ttl
from layer_core.money import money, total_cost
from layer_core.policy import Plan, ProviderState, plan

if TYPE_CHECKING:
    from layer_core.catalog import Catalog
    from layer_core.execution import Executor
    from layer_core.gates import Gate
    from layer_core.schema import Attempt, ImageOutput, ImageRequest, ImageResponse

log = logging.getLogger("layer")

#: The name of the gateway key the current request came in with: `layer serve` sets it around
#: each call, and the request's ledger record carries it (`layer costs --by key`).
current_key: ContextVar[str | None] = ContextVar("layer_current_key", default=None)

#: Tries to reserve a budget when other requests keep taking what is left in between.
RESERVE_TRIES = 8


def new_id() -> str:
    """A response or record id: `img_` and 32 random hex digits (opaque, as uuid4().hex was, and
    without building a UUID object on every request)."""
    return f"img_{os.urandom(16).hex()}"


class BudgetGuard:
    """Holds budgets and records requests in one `Ledger`, for the gates of one `Layer`."""

    def __init__(
        self,
        ledger: Ledger,
        catalog: Catalog,
        notify: Callable[..., None],
        *,
        store_prompts: bool,
    ) -> None:
        self.ledger = ledger
        self._catalog = catalog
        self._notify = notify
        self._store_prompts = store_prompts

    def budget_left(self, gate: Gate, now: datetime) -> Decimal | None:
        """What is left of a gate's `block` budget now, for a plan that shows what it rules
        out; None when the gate has none, or the ledger cannot say (logged)."""
        budget = gate.budget
        if budget is None or budget.enforcement != "block":
            return None
        try:
            return self.ledger.budget_state(gate, now).left
        except LedgerUnavailable as exc:
            log.warning("%s; the plan does not account for the budget", exc)
            return None

    async def reserve(
        self,
        request: ImageRequest,
        gate: Gate,
        state: ProviderState,
        first: Plan,
        now: datetime,
    ) -> tuple[Plan, Hold | None, list[str]]:
        """Hold the plan's worst-case cost against the gate's budget, atomically.

        The policy decides what fits (`ProviderState.budget_left`); the ledger makes the hold
        only if it still fits when taken. When another request took the room in between, the
        plan is made again with what is left, until a hold is made or nothing fits.
        """
        budget = gate.budget
        assert budget is not None
        the_plan = first
        ttl = reservation_ttl(gate, first.candidates)
        least = min(c.estimated_cost for c in first.candidates)
        for _ in range(RESERVE_TRIES):
            estimate = max(c.estimated_cost for c in the_plan.candidates)
            try:
                result = await self.ledger.reserve(gate, now, estimate, ttl)
            except LedgerUnavailable as exc:
                if budget.enforcement == "block":
                    raise
                return the_plan, None, [f"gate {gate.id!r}: budget not checked: {exc}"]
            if isinstance(result, Hold):
                if not result.over:
                    return the_plan, result, []
                self._budget_alert(request, gate, result.spent, estimate, blocked=False)
                note = (
                    f"gate {gate.id!r}: over its {budget.period} budget of {money(budget.amount)}"
                    f" (spent {money(result.spent)}, this request ~{money(estimate)});"
                    " enforcement is alert_only, so it was served"
                )
                return the_plan, result, [note]
            refusal = result
            the_plan = plan(request, gate, self._catalog, replace(state, budget_left=result.left))
            if not the_plan.candidates:
                break
        self._notify("on_plan", request=request, plan=the_plan)
        self._budget_alert(request, gate, refusal.spent, least, blocked=True)
        raise BudgetExceeded(
            gate.id, budget.amount, refusal.spent, least, refusal.resets_at.isoformat()
        )

    def _budget_alert(
        self, request: ImageRequest, gate: Gate, spent: Decimal, estimate: Decimal, *, blocked: bool
    ) -> None:
        self._notify(
            "on_budget_alert",
            request=request,
            gate=gate,
            spent=spent,
            estimate=estimate,
            blocked=blocked,
        )

    async def record_success(
        self,
        response: ImageResponse,
        request: ImageRequest,
        first_plan: Plan,
        now: datetime,
        hold: Hold | None,
    ) -> None:
        """Record a served request, settling its hold."""
        record = self._record(
            response.id,
            request,
            first_plan,
            now,
            response.latency,
            "ok",
            response.images,
            response.attempts,
            hold=hold,
        )
        if hold is None:
            self.ledger.record(record)
        else:
            await self.ledger.settle(record)

    async def record_failure(
        self,
        exc: BaseException,
        request: ImageRequest,
        first_plan: Plan,
        now: datetime,
        started: float,
        hold: Hold | None,
        executor: Executor | None,
    ) -> None:
        """Record a failed request: what it was paid for (images delivered before the end), and
        why, settling its hold. A cancelled request (Ctrl-C) is recorded with the images its
        calls had delivered, and settled by the ledger's writer (nothing may await now)."""
        record = self._failure_record(exc, request, first_plan, now, started, hold, executor)
        if hold is not None and isinstance(exc, Exception):
            await self.ledger.settle(record)
        else:  # nothing held, or cancelled: the writer settles it
            self.ledger.record(record)

    def _record(
        self,
        record_id: str,
        request: ImageRequest,
        first_plan: Plan,
        now: datetime,
        latency: float,
        status: Status,
        images: Sequence[ImageOutput],
        attempts: Sequence[Attempt],
        *,
        error: str | None = None,
        hold: Hold | None = None,
    ) -> LedgerRecord:
        """The ledger's record of one request (prompt only if the config opts in)."""
        served = images[0] if images else None
        asked = request.model or (first_plan.candidates[0].id if first_plan.candidates else None)
        return LedgerRecord(
            id=record_id,
            created=now,
            gate_id=request.gate_id,
            model_requested=asked,
            model_used=served.model if served else None,
            provider=served.provider if served else None,
            deployment=(served.deployment or None) if served else None,
            requested=request.data.count,
            delivered=len(images),
            cost=total_cost(images),
            latency=latency,
            status=status,
            error=error,
            metadata=request.metadata,
            attempts=attempts,
            prompt=request.data.prompt if self._store_prompts else None,
            hold=hold,
            key=current_key.get(),
        )

    def _failure_record(
        self,
        exc: BaseException,
        request: ImageRequest,
        first_plan: Plan,
        now: datetime,
        started: float,
        hold: Hold | None,
        executor: Executor | None,
    ) -> LedgerRecord:
        images: Sequence[ImageOutput] = ()
        attempts: Sequence[Attempt] = ()
        if isinstance(exc, AllAttemptsFailed):
            images, attempts = exc.images, exc.attempts
        elif executor is not None:
            delivered = executor.delivered
            images = [delivered[slot] for slot in sorted(delivered)]
            attempts = executor.outcome.attempts
        status: Status = "rejected-by-budget" if isinstance(exc, BudgetExceeded) else "failed"
        return self._record(
            new_id(),
            request,
            first_plan,
            now,
            (time.perf_counter() - started) * 1000,
            status,
            images,
            attempts,
            error=type(exc).__name__,
            hold=hold,
        )
