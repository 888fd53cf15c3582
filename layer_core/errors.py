"""Every error layer raises, in one hierarchy rooted at `LayerError`.

Provider errors carry a stable `kind` (the vocabulary of a gate's `fallback_on`) and whether the
router may retry the same model. Error text never contains a secret: providers build messages
from the provider's reply, and the executor redacts every known key before recording one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from layer_core.money import money, total_cost
from layer_core.schema import ERROR_KINDS as ERROR_KINDS, ErrorKind as ErrorKind

if TYPE_CHECKING:
    from layer_core.catalog import Rejection
    from layer_core.schema import Attempt, ImageOutput


class LayerError(Exception):
    """Root of every error layer raises on purpose."""


def did_you_mean(word: str, known: Iterable[str], *, n: int = 1) -> str:
    """`"did you mean 'x'?"` (or `'x' or 'y'` for n > 1) naming the known names closest to
    `word`, or "" when none is close: the one place error messages suggest a spelling."""
    import difflib  # only for an error message

    close = difflib.get_close_matches(word, list(known), n=n, cutoff=0.7)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


# --- configuration and plugins -------------------------------------------------------------


class ConfigError(LayerError, ValueError):
    """plugins.toml (or a config dict) is not valid; the message names the key and the fix."""


class PluginLoadError(LayerError):
    """A plugin could not be loaded (import error, bad hook implementation, unknown hook name)."""

    def __init__(self, plugin: str, reason: str) -> None:
        super().__init__(f"plugin {plugin!r} failed to load: {reason}")
        self.plugin = plugin
        self.reason = reason


class PluginRegistrationError(LayerError):
    """A plugin registered something the core cannot accept (not a Provider, a duplicate)."""

    def __init__(self, plugin: str, detail: str) -> None:
        super().__init__(f"plugin {plugin!r}: {detail}")
        self.plugin = plugin
        self.detail = detail


# --- the request ---------------------------------------------------------------------------


class InvalidRequest(LayerError, ValueError):
    """The request failed validation before any provider was called.

    `problems` holds one `(field, message)` pair per problem, the field in dotted wire form
    (`data.size`, `metadata`).
    """

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {field}: {message}" for field, message in self.problems)
        super().__init__(f"invalid image request:\n{lines}")


class GateNotFound(LayerError, LookupError):
    """The request names a gate that is not configured."""

    def __init__(self, gate_id: str, known: Sequence[str]) -> None:
        known_text = ", ".join(sorted(known)) or "none"
        super().__init__(
            f"gate_id: no gate named {gate_id!r} (configured gates: {known_text}); "
            f"add [gates.{gate_id}] to plugins.toml or pass one of those"
        )
        self.gate_id = gate_id


class UnknownModel(LayerError, LookupError):
    """A model id (a request's override, or a gate's pool) is not in the catalogue."""

    def __init__(
        self, model: str, known: Sequence[str], *, field: str = "model", why: str = ""
    ) -> None:
        if why:  # a model layer knows, whose plugin is not loaded
            message = f"{field}: {model!r} is not in the catalogue: {why}"
        else:
            hint = did_you_mean(model, known, n=3) or "`layer models` lists the models"
            message = f"{field}: unknown model {model!r}; {hint}"
        super().__init__(message)
        self.model = model


class LayerClosed(LayerError, RuntimeError):
    """A request was made of a `Layer` after `close()`: make a new `Layer` instead."""


class OverrideNotAllowed(LayerError, PermissionError):
    """The request overrides a field that its gate pins (`allow_overrides`)."""

    def __init__(self, gate_id: str, field: str, detail: str) -> None:
        super().__init__(
            f"{field}: gate {gate_id!r} does not allow overriding {field.split('.')[-1]} "
            f"({detail}); "
            f"drop it from the request or set allow_overrides in [gates.{gate_id}]"
        )
        self.gate_id = gate_id
        self.field = field


class NoEligibleModel(LayerError):
    """No model of the gate's pool can serve this request; `rejected` says why for each."""

    def __init__(self, gate_id: str, rejected: Sequence[Rejection]) -> None:
        self.gate_id = gate_id
        self.rejected = list(rejected)
        reasons = "\n".join(f"  {r.reason}" for r in self.rejected) or "  (the pool is empty)"
        super().__init__(f"no model of gate {gate_id!r} can serve this request:\n{reasons}")


class BudgetExceeded(LayerError):
    """This request would pass the gate's budget (enforcement `block`); nothing was called.

    `amount` is the budget, `spent` what the period has spent or holds for requests in flight,
    `estimate` the least this request would cost, `resets_at` when the period ends (ISO 8601, UTC).
    """

    def __init__(
        self, gate_id: str, amount: Decimal, spent: Decimal, estimate: Decimal, resets_at: str
    ) -> None:
        super().__init__(
            f"gate {gate_id!r}: budget {money(amount)} would be exceeded "
            f"(spent {money(spent)}, this request ~{money(estimate)}); resets {resets_at}"
        )
        self.gate_id = gate_id
        self.amount = amount
        self.spent = spent
        self.estimate = estimate
        self.resets_at = resets_at


class LedgerUnavailable(LayerError):
    """The cost ledger is off, or its database could not be reached or written.

    Raised by `Layer.costs()`, and before any provider call by a request through a gate whose
    `block` budget could not be checked. Records are never lost to it: they wait in a spool
    until the database is back.
    """


class AllAttemptsFailed(LayerError):
    """Execution ended without every requested image.

    `attempts` lists every attempt; `images` holds the images that were delivered (and paid for)
    before the end, so nothing is lost; `stopped_by` is set when an error that the gate does not
    fall back on ended the request early (e.g. a content rejection).

    An error that stopped the request is raised as an instance of its own class too: a refusal
    is caught by ``except ContentRejected`` as well as by ``except AllAttemptsFailed``, and
    carries the refusal's `message`, `provider`, `model` and `status` beside the attempts and
    images. (Its class derives from both; its name stays ``AllAttemptsFailed``.)
    """

    def __new__(
        cls,
        gate_id: str,
        attempts: Sequence[Attempt],
        images: Sequence[ImageOutput] = (),
        requested: int = 0,
        stopped_by: ProviderError | None = None,
    ) -> AllAttemptsFailed:
        if cls is AllAttemptsFailed and stopped_by is not None:
            cls = _stopped_by_class(type(stopped_by))
        return super().__new__(cls)

    def __init__(
        self,
        gate_id: str,
        attempts: Sequence[Attempt],
        images: Sequence[ImageOutput] = (),
        requested: int = 0,
        stopped_by: ProviderError | None = None,
    ) -> None:
        self.gate_id = gate_id
        self.attempts = list(attempts)
        self.images = list(images)
        self.requested = requested
        self.stopped_by = stopped_by
        lines = "\n".join(
            f"  {a.model}: {a.error or a.outcome}: {a.message}" for a in self.attempts if a.error
        )
        head = (
            f"gate {gate_id!r}: stopped after {stopped_by.kind} from {stopped_by.model} "
            f"(not in the gate's fallback_on)"
            if stopped_by is not None
            else f"gate {gate_id!r}: every candidate failed"
        )
        got = f"; {len(self.images)} of {requested} images were delivered" if self.images else ""
        # Exception's own __init__, not the next class in line: for a stopped request that is
        # the provider error's, whose fields are copied from `stopped_by` below instead.
        Exception.__init__(self, f"{head}{got}\n{lines}")
        if stopped_by is not None and isinstance(self, ProviderError):
            for name, value in vars(stopped_by).items():
                if not hasattr(self, name):
                    setattr(self, name, value)

    def __str__(self) -> str:
        # the summary of every attempt, not a provider error's one-line text
        return Exception.__str__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        # rebuilt from its parts (the class made for `stopped_by` is not importable by name)
        return (
            AllAttemptsFailed,
            (self.gate_id, self.attempts, self.images, self.requested, self.stopped_by),
        )

    @property
    def cost(self) -> Decimal:
        """What the delivered images cost (they were paid for)."""
        return total_cost(self.images)


# --- provider errors -----------------------------------------------------------------------


class ProviderError(LayerError):
    """An error a provider raised while generating; `kind` is the `fallback_on` vocabulary."""

    kind: ClassVar[ErrorKind]
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status: int | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status = status
        self.details = details

    def attribute(self, provider: str, model: str) -> None:
        """Fill in which provider and model raised this, where the raise left them out.

        The core does it for every error out of a provider call, so providers need not.
        """
        self.provider = self.provider or provider
        self.model = self.model or model

    def __str__(self) -> str:
        where = "/".join(p for p in (self.provider, self.model) if p)
        return f"{where}: {self.message}" if where else self.message


class RateLimited(ProviderError):
    """429 or a quota burst; `retry_after` (seconds) is the provider's hint, when it gave one."""

    kind = "rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """5xx, a refused or dropped connection, or a generation that failed on the provider's side."""

    kind = "unavailable"
    retryable = True


class ProviderTimeout(ProviderError):
    """The attempt took longer than the gate's `timeout`, or the provider timed it out."""

    kind = "timeout"
    retryable = True


class AuthenticationFailed(ProviderError):
    """401/403: the key is missing, wrong or lacks access. Never retried on the same provider."""

    kind = "authentication"


class BillingError(ProviderError):
    """402 / out of credits: the account cannot pay. Not retryable."""

    kind = "billing"


class ContentRejected(ProviderError):
    """The provider's safety system refused the prompt or filtered the image.

    Gates do not fall back on this unless `fallback_on` names `content_rejected`: sending a
    refused prompt to another provider is a decision for the app, not the router.
    """

    kind = "content_rejected"


class InvalidProviderRequest(ProviderError):
    """The provider rejected the request as invalid (400/422), carrying its message."""

    kind = "invalid_request"


PROVIDER_ERRORS: dict[ErrorKind, type[ProviderError]] = {
    cls.kind: cls
    for cls in (
        RateLimited,
        ProviderUnavailable,
        ProviderTimeout,
        AuthenticationFailed,
        BillingError,
        ContentRejected,
        InvalidProviderRequest,
    )
}


#: `AllAttemptsFailed` subclasses made for each stopping error class, so each is made once and
#: `type(error)` is the same class for every request that stops the same way.
_STOPPED_BY: dict[type[ProviderError], type[AllAttemptsFailed]] = {}


def _stopped_by_class(error: type[ProviderError]) -> type[AllAttemptsFailed]:
    """`AllAttemptsFailed` that is also an `error` (a subclass of both)."""
    made = _STOPPED_BY.get(error)
    if made is None:
        made = _STOPPED_BY[error] = type(
            "AllAttemptsFailed",
            (AllAttemptsFailed, error),
            {
                "__module__": __name__,
                "__qualname__": f"AllAttemptsFailed[{error.__qualname__}]",
                "__doc__": f"A request stopped by {error.__name__}, with every attempt and image.",
            },
        )
    return made
