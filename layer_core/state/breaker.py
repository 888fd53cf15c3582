"""A deployment's state as fields, and what they mean: the one description both stores share.

The memory store keeps these fields in a `Fields` per deployment; the Redis store keeps them in
a hash per deployment and gets them back from its scripts. Either way `health()` turns them into
the `DeploymentHealth` the policy, `layer explain` and `layer health` read.
"""

from __future__ import annotations

from dataclasses import dataclass

from layer_core.state import DeploymentHealth, HealthRules, HealthState, Limits

#: The error kinds that count toward opening a circuit (a 429 cools instead).
RETRYABLE_FAILURES = frozenset({"timeout", "unavailable"})

_FAILURES = {"timeout": "timeout", "unavailable": "failure (unavailable)"}
_PLURAL = {"timeout": "timeouts", "unavailable": "failures (unavailable)"}


@dataclass(slots=True)
class Fields:
    """A deployment's breaker, cooldown and the use of its limits now."""

    fails: int = 0
    """consecutive retryable failures (reset by a success)."""
    kind: str = ""
    """the kind of the last of them (timeout, unavailable)."""
    opens: int = 0
    """times the circuit opened without a success between (the cooldown doubles each)."""
    open_until: float = 0.0
    """when the open circuit's cooldown ends; 0: closed."""
    probe_until: float = 0.0
    """until when the half-open circuit's probe is in flight."""
    cool_until: float = 0.0
    """when a 429's cooldown ends."""
    cool_after: float = 0.0
    """the Retry-After that set it (0: none given)."""
    requests: int = 0
    """calls sent in the last minute."""
    images: int = 0
    """images asked for in the last minute."""
    in_flight: int = 0
    frees_at: float = 0.0
    """when the oldest request or image of the window leaves it (0: empty)."""


def seconds(value: float) -> str:
    """A duration as people say it: "8 s", "2.5 s", "0.3 s", "4 min"."""
    if value >= 120:
        return f"{value / 60:.0f} min"
    if value >= 10:
        return f"{value:.0f} s"
    return f"{value:.1f} s".replace(".0 s", " s")


def failures(count: int, kind: str) -> str:
    """ "3 timeouts", "1 failure (unavailable)"."""
    words = (_FAILURES if count == 1 else _PLURAL).get(kind, "failures")
    return f"{count} {words}"


def headroom(fields: Fields, limits: Limits) -> int | None:
    """Images the deployment may take now under `limits` (None: it has none)."""
    if not limits:
        return None
    room: int | None = None
    if limits.images_per_minute is not None:
        room = max(0, limits.images_per_minute - fields.images)
    if (limits.rpm is not None and fields.requests >= limits.rpm) or (
        limits.max_concurrency is not None and fields.in_flight >= limits.max_concurrency
    ):
        room = 0
    return room


def health(deployment: str, fields: Fields, limits: Limits, now: float) -> DeploymentHealth | None:
    """What `fields` mean at `now`; None for a deployment with no trouble and no limits."""
    room = headroom(fields, limits)
    state: HealthState = "ok"
    retry_in = 0.0
    reason = ""
    if now < fields.open_until:
        state, retry_in = "open", fields.open_until - now
        reason = (
            f"circuit open for {seconds(retry_in)} more after {failures(fields.fails, fields.kind)}"
        )
    elif fields.open_until > 0:
        after = failures(fields.fails, fields.kind)
        if now < fields.probe_until:
            state, retry_in = "probing", fields.probe_until - now
            reason = f"circuit half-open after {after}: a probe is in flight"
        else:
            state = "half_open"
            reason = f"circuit half-open after {after}: the next call probes it"
    elif now < fields.cool_until:
        state, retry_in = "cooling", fields.cool_until - now
        asked = f" (Retry-After {seconds(fields.cool_after)})" if fields.cool_after else ""
        reason = f"rate limited: cooling for {seconds(retry_in)} more{asked}"
    if room == 0:
        frees = max(0.0, fields.frees_at - now) if fields.frees_at else 0.0
        used = _used(fields, limits)
        if state == "ok":
            state, retry_in = "limited", frees
            reason = f"no headroom: {used}" + (f"; room again in {seconds(frees)}" if frees else "")
        else:
            reason += f"; no headroom: {used}"
    elif room is not None and state == "ok":
        reason = f"{room} image(s) of headroom ({limits.describe()})"
    if state == "ok" and room is None:
        return None
    return DeploymentHealth(deployment, state, retry_in, reason, room)


def _used(fields: Fields, limits: Limits) -> str:
    """Which limits are used up, e.g. "60 of 60 images/min used"."""
    parts = []
    if limits.images_per_minute is not None and fields.images >= limits.images_per_minute:
        parts.append(f"{fields.images} of {limits.images_per_minute} images/min used")
    if limits.rpm is not None and fields.requests >= limits.rpm:
        parts.append(f"{fields.requests} of {limits.rpm} requests/min used")
    if limits.max_concurrency is not None and fields.in_flight >= limits.max_concurrency:
        parts.append(f"{fields.in_flight} of {limits.max_concurrency} calls in flight")
    return ", ".join(parts)


def grantable(fields: Fields, limits: Limits, images: int, per_call: int) -> tuple[int, int]:
    """(images, calls) of `images` asked in calls of `per_call` that `limits` leave room for."""
    calls = -(-images // per_call)
    if limits.rpm is not None:
        calls = min(calls, limits.rpm - fields.requests)
    if limits.max_concurrency is not None:
        calls = min(calls, limits.max_concurrency - fields.in_flight)
    granted = min(images, max(0, calls) * per_call)
    if limits.images_per_minute is not None:
        granted = min(granted, limits.images_per_minute - fields.images)
    granted = max(0, granted)
    return granted, -(-granted // per_call)


def apply(
    fields: Fields,
    now: float,
    error: str | None,
    retry_after: float | None,
    rules: HealthRules,
) -> None:
    """A call's outcome: a success closes the circuit; a timeout or unavailable error counts,
    and the `rules.failures`-th in a row (or a failed probe) opens it for a cooldown that
    doubles each time; a 429 cools the deployment for its Retry-After. (`RECORD` in
    `layer_core.state.redis` is the same, in Lua.)"""
    if error is None:
        fields.fails = fields.opens = 0
        fields.open_until = fields.probe_until = 0.0
        fields.kind = ""
    elif error in RETRYABLE_FAILURES:
        fields.fails += 1
        fields.kind = error
        probing = fields.open_until > 0 and now >= fields.open_until
        if probing or fields.fails >= rules.failures:
            fields.opens += 1
            fields.open_until = now + rules.cooldown_after(fields.opens)
            fields.probe_until = 0.0
    elif error == "rate_limited":
        wait = retry_after if retry_after is not None else rules.rate_limit_cooldown
        if now + wait > fields.cool_until:
            fields.cool_until = now + wait
            fields.cool_after = retry_after or 0.0
