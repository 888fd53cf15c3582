"""Hook specifications: what a layer plugin can implement.

All hooks are synchronous. Network work happens in `Provider.generate`, which the core calls
directly, never inside a hook. Implement a hook by decorating a function of the same name with
`layer_core.hookimpl`; a misspelt name is reported when the plugin loads (pluggy's
`check_pending`) and the plugin is skipped. Hooks are called through pluggy, so `tryfirst`,
`trylast` and wrappers (`wrapper=True`) apply.

Registration hooks run once per `Layer` (when it is built). Observation hooks run on every
request, after the fact; an exception in one is logged with the plugin's name and never breaks
the request. When no plugin implements an observation hook, calling it costs nothing.

Every hook here is documented in docs/plugins/hooks.md; a test fails when one is missing there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from decimal import Decimal

    from layer_core.errors import LedgerUnavailable, ProviderError
    from layer_core.gates import Gate
    from layer_core.ledger import LedgerRecord
    from layer_core.policy import Plan
    from layer_core.provider import Provider
    from layer_core.schema import Attempt, ImageRequest, ImageResponse

PROJECT = "layer"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- registration --------------------------------------------------------------------------


@hookspec
def register_providers(register: Callable[[Provider], None]) -> None:
    """Register the providers this plugin offers, by calling ``register(provider)`` for each.

    Called once when a `Layer` is built, for each plugin on its own, so the core knows which
    plugin registered what. ``provider`` is an instance of a `layer_core.Provider` subclass; its
    `models()` must be pure data (no I/O, no SDK import), and the core rejects a registration that
    is not a Provider, repeats a provider name, or declares an invalid or duplicate model.

    :param register: call it once per provider instance.
    :returns: nothing; return values are ignored.
    """


# --- observation (per request) -------------------------------------------------------------


@hookspec
def on_request(request: ImageRequest, gate: Gate) -> None:
    """A request passed validation and its gate was found; nothing has been planned yet.

    Called once per request, before any provider is called. Use it for logging or counting.

    :param request: the validated request (immutable).
    :param gate: the gate it goes through.
    """


@hookspec
def on_plan(request: ImageRequest, plan: Plan) -> None:
    """The routing policy made its plan (candidates in order, rejected models with reasons).

    Called once per request, also for `Layer.explain`. An empty ``plan.candidates`` means the
    request is about to fail with `NoEligibleModel`.

    :param request: the validated request.
    :param plan: the plan, see `layer_core.Plan`.
    """


@hookspec
def on_attempt_failed(request: ImageRequest, attempt: Attempt, error: ProviderError) -> None:
    """One call to one model failed; the core is about to retry, fall back, or stop.

    Called once per failed attempt, as it happens (attempts of a split count run concurrently).

    :param request: the validated request.
    :param attempt: the recorded attempt (model, provider, error kind, latency).
    :param error: the provider error, its message already free of secrets.
    """


@hookspec
def on_response(request: ImageRequest, response: ImageResponse) -> None:
    """A request succeeded: every requested image was delivered.

    Called once per successful request, just before the response is returned, after its record
    was handed to the ledger: written already on a gate with a budget (it settles the budget's
    reservation), else queued for the ledger's background writer (`Layer.costs()` waits for it).

    :param request: the validated request.
    :param response: the response about to be returned to the caller.
    """


@hookspec
def on_budget_alert(
    request: ImageRequest, gate: Gate, spent: Decimal, estimate: Decimal, blocked: bool
) -> None:
    """A request would take its gate past its budget for the period.

    Called once per such request, before any provider is called. With enforcement `block`,
    ``blocked`` is true and the request is about to raise `BudgetExceeded`; with `alert_only`
    it is false and the request goes ahead, with a warning on its response.

    :param request: the validated request.
    :param gate: its gate; ``gate.budget`` holds the amount, period and enforcement.
    :param spent: USD the period has spent or holds for requests in flight, before this one.
    :param estimate: USD this request is expected to cost.
    :param blocked: whether the request is refused.
    """


@hookspec
def on_ledger_error(error: LedgerUnavailable, records: list[LedgerRecord]) -> None:
    """The cost ledger's database could not be written or read.

    Called when a batch of records could not be written (``records`` holds them: they are
    spooled to disk and written once the database is back), and when a budget could not be
    checked before a request (``records`` is empty). Runs on the ledger's writer thread for
    failed writes, so an implementation must be thread-safe. Responses are never held back.

    :param error: what went wrong, its message free of secrets.
    :param records: the records now waiting in the spool (see `layer_core.ledger.LedgerRecord`).
    """
