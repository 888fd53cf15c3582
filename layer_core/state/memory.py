"""`MemoryStore`: the live state of this process only (the default, `state = "memory"`).

The rules here are the ones the Redis store's scripts follow (`layer_core.state.redis`); the
tests run the same cases on both. Windows are a log of the last minute's calls and images (a
deque per deployment), so "at most N per minute" holds for every minute window, not per
calendar minute.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from layer_core.state import (
    MINUTE,
    NO_LIMITS,
    DeploymentHealth,
    Grant,
    HealthRules,
    Limits,
)
from layer_core.state.breaker import RETRYABLE_FAILURES, Fields, apply, grantable, health


class _Deployment:
    __slots__ = ("calls", "fields", "images", "leases", "limits")

    def __init__(self) -> None:
        self.fields = Fields()
        self.limits = NO_LIMITS
        self.calls: deque[float] = deque()
        self.images: deque[tuple[float, int]] = deque()
        self.leases: dict[str, float] = {}
        """a slot under max_concurrency → when it lapses (a call that never reported back)."""

    def count(self, now: float, window: float) -> Fields:
        """The fields, with the window and slots counted at `now`."""
        since = now - window
        calls, images, leases = self.calls, self.images, self.leases
        while calls and calls[0] <= since:
            calls.popleft()
        while images and images[0][0] <= since:
            images.popleft()
        for lease in [k for k, until in leases.items() if until <= now]:
            del leases[lease]
        fields = self.fields
        fields.requests = len(calls)
        fields.images = sum(n for _, n in images)
        fields.in_flight = len(leases)
        oldest = min(calls[0] if calls else now, images[0][0] if images else now)
        fields.frees_at = oldest + window if (calls or images) else 0.0
        return fields

    @property
    def idle(self) -> bool:
        f = self.fields
        return not (
            f.fails or f.open_until or f.cool_until or self.limits or self.calls or self.leases
        )


class MemoryStore:
    """Breakers, cooldowns and limits of this process. `clock` (seconds) can be a test's."""

    url = "memory"

    def __init__(self, *, clock: Callable[[], float] = time.time, window: float = MINUTE) -> None:
        self.clock = clock
        self.window = window
        self._deployments: dict[str, _Deployment] = {}
        self._leases = itertools.count()

    def _get(self, deployment: str) -> _Deployment:
        found = self._deployments.get(deployment)
        if found is None:
            found = self._deployments[deployment] = _Deployment()
        return found

    def snapshot(self) -> Mapping[str, DeploymentHealth]:
        deployments = self._deployments
        if not deployments:
            return {}
        now = self.clock()
        found: dict[str, DeploymentHealth] = {}
        for name, dep in list(deployments.items()):
            seen = health(name, dep.count(now, self.window), dep.limits, now)
            if seen is not None:
                found[name] = seen
            elif dep.idle:
                del deployments[name]
        return found

    async def admit(
        self,
        deployment: str,
        *,
        images: int,
        per_call: int,
        limits: Limits,
        allow_open: bool,
        lease_seconds: float,
        watch: Sequence[str] = (),
    ) -> Grant:
        return self.admit_now(
            deployment,
            images=images,
            per_call=per_call,
            limits=limits,
            allow_open=allow_open,
            lease_seconds=lease_seconds,
        )

    def admit_now(
        self,
        deployment: str,
        *,
        images: int,
        per_call: int,
        limits: Limits,
        allow_open: bool,
        lease_seconds: float,
    ) -> Grant:
        """`admit`, without the coroutine (the Redis store serves from here while Redis is down)."""
        dep = self._deployments.get(deployment)
        if dep is None:
            if not limits:
                return Grant(images, -(-images // per_call))
            dep = self._get(deployment)
        now = self.clock()
        dep.limits = limits
        fields = dep.count(now, self.window)
        probe = False
        if now < fields.open_until or now < fields.cool_until:
            if not allow_open:
                return _refused(deployment, fields, limits, now)
        elif fields.open_until > 0:  # half-open: one probe, of one call
            if now < fields.probe_until and not allow_open:
                return _refused(deployment, fields, limits, now)
            probe = True
            images = min(images, per_call)
        granted, calls = grantable(fields, limits, images, per_call)
        if granted == 0:
            return _refused(deployment, fields, limits, now)
        if probe:
            fields.probe_until = now + lease_seconds
        lease = None
        if limits:
            dep.calls.extend([now] * calls)
            dep.images.append((now, granted))
            if limits.max_concurrency is not None:
                lease = f"m{next(self._leases)}"
                for i in range(calls):
                    dep.leases[f"{lease}:{i}"] = now + lease_seconds
        return Grant(granted, calls, lease)

    def record(
        self,
        deployment: str,
        *,
        error: str | None,
        retry_after: float | None,
        rules: HealthRules,
        lease: str | None = None,
    ) -> None:
        dep = self._deployments.get(deployment)
        if dep is None:
            if error is None or (error not in RETRYABLE_FAILURES and error != "rate_limited"):
                return
            dep = self._get(deployment)
        now = self.clock()
        if lease is not None:
            dep.leases.pop(lease, None)
        apply(dep.fields, now, error, retry_after, rules)

    async def read(
        self, deployments: Mapping[str, Limits]
    ) -> tuple[dict[str, DeploymentHealth], str | None]:
        return self.read_now(deployments), None

    def read_now(self, deployments: Mapping[str, Limits]) -> dict[str, DeploymentHealth]:
        now = self.clock()
        found: dict[str, DeploymentHealth] = {}
        for name, limits in deployments.items():
            dep = self._deployments.get(name)
            fields = dep.count(now, self.window) if dep is not None else Fields()
            found[name] = health(name, fields, limits, now) or DeploymentHealth(name, "ok")
        return found

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<MemoryStore deployments={len(self._deployments)}>"


def _refused(deployment: str, fields: Fields, limits: Limits, now: float) -> Grant:
    seen = health(deployment, fields, limits, now)
    return Grant(0, 0, None, seen or DeploymentHealth(deployment, "limited", 0.0, "no headroom", 0))
