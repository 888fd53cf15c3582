"""Every error the gateway answers with, as one `HttpError`: its status, a stable code, a message
and details; rendered in the seed's shape (`/v3`) or OpenAI's (`/v1`). `classify` is the one
place layer's errors are mapped onto HTTP statuses."""

from __future__ import annotations

import logging
from typing import Any

from layer_core.errors import (
    AllAttemptsFailed,
    BudgetExceeded,
    ContentRejected,
    GateNotFound,
    InvalidRequest,
    LedgerUnavailable,
    NoEligibleModel,
    OverrideNotAllowed,
    UnknownModel,
)
from layer_core.money import money

log = logging.getLogger("layer.server")

#: the OpenAI error `type` for each status (what its SDKs and clients read)
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}
#: a seed field name (data.count) as OpenAI's parameter (n)
_OPENAI_PARAMS = {"data.count": "n", "data.prompt": "prompt", "gate_id": "model", "model": "model"}


class HttpError(Exception):
    """An answer other than success: status, code, message, details, extra headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        *,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}
        self.param = param

    def seed_body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "details": self.details}

    def openai_body(self) -> dict[str, Any]:
        kind = _OPENAI_TYPES.get(self.status, "server_error" if self.status >= 500 else "error")
        return {
            "error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        }


def _attempts(exc: AllAttemptsFailed) -> list[dict[str, Any]]:
    return [a.model_dump(mode="json", by_alias=True, exclude_none=True) for a in exc.attempts]


def classify(exc: BaseException, request_id: str) -> HttpError:
    """The `HttpError` for what a request raised (unexpected errors logged, never shown)."""
    if isinstance(exc, HttpError):
        return exc
    if isinstance(exc, InvalidRequest):
        field = exc.problems[0][0] if exc.problems else None
        problems = [{"field": f, "message": m} for f, m in exc.problems]
        return HttpError(
            400,
            "invalid_request",
            str(exc),
            {"problems": problems},
            param=_OPENAI_PARAMS.get(field or "", (field or "").removeprefix("data.") or None),
        )
    if isinstance(exc, GateNotFound):
        # not the list of configured gates the core's message names: a key may not see them
        return HttpError(404, "gate_not_found", f"no gate named {exc.gate_id!r}", param="model")
    if isinstance(exc, UnknownModel):
        return HttpError(400, "unknown_model", str(exc), param="model")
    if isinstance(exc, OverrideNotAllowed):
        return HttpError(400, "override_not_allowed", str(exc), param=exc.field)
    if isinstance(exc, NoEligibleModel):
        rejected = [{"model": r.model, "reason": r.reason} for r in exc.rejected]
        return HttpError(400, "no_eligible_model", str(exc), {"rejected": rejected})
    if isinstance(exc, BudgetExceeded):
        details: dict[str, Any] = {
            "gateId": exc.gate_id,
            "amount": str(exc.amount),
            "spent": str(exc.spent),
            "estimate": str(exc.estimate),
            "resetsAt": exc.resets_at,
        }
        return HttpError(402, "budget_exceeded", str(exc), details)
    if isinstance(exc, LedgerUnavailable):
        log.warning("request %s: %s", request_id, exc)
        return HttpError(503, "ledger_unavailable", "the ledger database cannot be reached")
    if isinstance(exc, AllAttemptsFailed):
        details = {"attempts": _attempts(exc), "delivered": len(exc.images)}
        if isinstance(exc, ContentRejected):
            return HttpError(400, "content_rejected", str(exc), details)
        last = next((a.error for a in reversed(exc.attempts) if a.error), None)
        status = {"timeout": 504, "rate_limited": 503, "unavailable": 503}.get(last or "", 502)
        return HttpError(status, "providers_failed", str(exc), details)
    if isinstance(exc, TimeoutError):
        return HttpError(504, "timeout", "the request took longer than the gateway's timeout")
    log.error("request %s failed", request_id, exc_info=exc)
    return HttpError(500, "internal_error", f"internal error (request {request_id})")


def budget_of_key(name: str, amount: Any, spent: Any, resets_at: str) -> HttpError:
    """402 for a key whose own budget the request would pass."""
    return HttpError(
        402,
        "budget_exceeded",
        f"key {name!r}: budget {money(amount)} would be exceeded (spent {money(spent)}); "
        f"resets {resets_at}",
        {"key": name, "amount": str(amount), "spent": str(spent), "resetsAt": resets_at},
    )
