"""Live provider state: what layer has learned about each deployment, kept where every process
that routes through it can read it.

- `HealthRules`: when a deployment's circuit opens and for how long (`[health]`, or a gate's
  `health`);
- `Limits`: what a deployment may take (`rpm`, `images_per_minute`, `max_concurrency`, from its
  provider instance's settings);
- `DeploymentHealth`: a deployment that is not plainly healthy, as the policy sees it (a
  snapshot, in `ProviderState.health`), with a reason a person can read;
- `StateStore`: where the state lives; `MemoryStore` (this process, the default) or
  `RedisStore` (shared by every process using one Redis), made by
  `layer_core.state.stores.open_store`.

Nothing here is imported by `import layer_core` or `Layer()` beyond these small types; the Redis
client is imported when a Redis store is first used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: One minute: the window `rpm` and `images_per_minute` count over.
MINUTE = 60.0
#: How long a Redis command may take before the store serves from this process's state.
DEFAULT_REDIS_TIMEOUT = 0.1
DEFAULT_PREFIX = "layer:"


class HealthRules(BaseModel):
    """When a deployment's circuit opens, and for how long (`[health]` or a gate's `health`).

    Defaults follow LiteLLM's Router (3 failures, a 5 s cooldown); the cooldown doubles each
    time the circuit opens again without a success between, up to `max_cooldown`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    failures: int = Field(
        3, ge=1, le=1000, description="consecutive retryable failures that open the circuit"
    )
    cooldown: float = Field(
        5.0, gt=0, le=86_400, description="seconds the circuit stays open the first time"
    )
    max_cooldown: float = Field(
        300.0, gt=0, le=86_400, description="longest cooldown, however often it opens again"
    )
    rate_limit_cooldown: float = Field(
        5.0,
        ge=0,
        le=86_400,
        description="seconds a 429 without Retry-After cools the deployment",
    )

    @model_validator(mode="after")
    def _ordered(self) -> HealthRules:
        if self.max_cooldown < self.cooldown:
            raise ValueError(
                f"max_cooldown ({self.max_cooldown:g}) is below cooldown ({self.cooldown:g}); "
                "raise max_cooldown or lower cooldown"
            )
        return self

    def cooldown_after(self, opens: int) -> float:
        """Seconds the circuit stays open the `opens`-th time in a row (1: the first)."""
        return float(min(self.cooldown * 2 ** max(0, opens - 1), self.max_cooldown))


DEFAULT_RULES = HealthRules()


@dataclass(frozen=True, slots=True)
class Limits:
    """What one deployment may take; None: no limit."""

    rpm: int | None = None
    images_per_minute: int | None = None
    max_concurrency: int | None = None

    def __bool__(self) -> bool:
        return not (
            self.rpm is None and self.images_per_minute is None and self.max_concurrency is None
        )

    def describe(self) -> str:
        parts = []
        if self.rpm is not None:
            parts.append(f"{self.rpm} rpm")
        if self.images_per_minute is not None:
            parts.append(f"{self.images_per_minute} images/min")
        if self.max_concurrency is not None:
            parts.append(f"{self.max_concurrency} in flight")
        return ", ".join(parts) or "none"


NO_LIMITS = Limits()

HealthState = Literal["ok", "open", "half_open", "probing", "cooling", "limited"]
#: States a deployment is demoted for: tried only after every deployment without one.
DEMOTED: frozenset[str] = frozenset({"open", "probing", "cooling", "limited"})


@dataclass(frozen=True, slots=True)
class DeploymentHealth:
    """A deployment as the store last saw it: only those not plainly healthy are in a snapshot.

    - ``open``: its circuit is open (`retry_in` seconds more); ``half_open``: the cooldown is
      over and the next call is its probe; ``probing``: a probe is in flight;
    - ``cooling``: it answered 429 and asked to wait `retry_in` seconds;
    - ``limited``: its configured limits leave `headroom` images now (0: none, for `retry_in`);
      ``ok`` with a `headroom`: it has limits and room under them.
    """

    deployment: str
    state: HealthState
    retry_in: float = 0.0
    reason: str = ""
    headroom: int | None = None
    """images it may take now under its configured limits; None when it has none."""

    @property
    def demoted(self) -> bool:
        """Whether the policy ranks it after every deployment without trouble."""
        return self.state in DEMOTED

    def describe(self) -> str:
        """ "dall-e-3@openai: circuit open for 8 s more after 3 timeouts"."""
        return f"{self.deployment}: {self.reason}" if self.reason else self.deployment


@dataclass(frozen=True, slots=True)
class Grant:
    """What the store lets a request send to a deployment now: `images` in `calls` calls (0: none,
    and `refused` says why). `lease` names the calls' slots under `max_concurrency`."""

    images: int
    calls: int
    lease: str | None = None
    refused: DeploymentHealth | None = None


class StateStore(Protocol):
    """Where the live state lives. The hot path is `snapshot` (no I/O: what the store last
    knew), `admit` (at most one round trip to a shared store) and `record` (off the request's
    critical path)."""

    url: str

    def snapshot(self) -> Mapping[str, DeploymentHealth]:
        """Every deployment the store knows to be in trouble or limited, without I/O."""
        ...

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
        """Take room for up to `images` (in calls of `per_call`) on `deployment`, or refuse
        (circuit open or cooling, unless `allow_open`; no headroom under `limits`). `watch`:
        more deployments whose state to refresh in the snapshot while at it."""
        ...

    def record(
        self,
        deployment: str,
        *,
        error: str | None,
        retry_after: float | None,
        rules: HealthRules,
        lease: str | None = None,
    ) -> None:
        """A call's outcome (`error`: the error kind, None on success), and its slot freed."""
        ...

    async def read(
        self, deployments: Mapping[str, Limits]
    ) -> tuple[dict[str, DeploymentHealth], str | None]:
        """The state of `deployments` from the store itself, and a note when it could not be
        reached (then this process's own state)."""
        ...

    async def aclose(self) -> None:
        """Finish what is in flight (outcomes not yet written) and close connections."""
        ...


def state_url(configured: str | None, environ: Mapping[str, str] | None = None) -> str:
    """Where the state lives: `LAYER_STATE_URL`, else the config's `state`, else memory."""
    env = os.environ if environ is None else environ
    return env.get("LAYER_STATE_URL") or configured or "memory"


def check_state_url(value: object) -> str:
    """A config's `state` value, checked; ValueError naming the fix."""
    if not isinstance(value, str) or not (
        value == "memory" or value.startswith(("redis://", "rediss://", "unix://"))
    ):
        raise ValueError(
            f'state = {value!r}: use "memory" (this process) or a Redis URL such as '
            '"redis://127.0.0.1:6379/0"'
        )
    return value
