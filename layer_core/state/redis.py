"""`RedisStore`: live state shared by every process using one Redis (`state = "redis://..."`).

Each deployment is a hash (breaker and cooldown) and three sorted sets (the last minute's calls
and images, the calls in flight), every key with a TTL, under a prefix. Two Lua scripts change
them atomically and mirror `MemoryStore`'s rules:

- `ADMIT` (one EVALSHA, the one round trip on a request's critical path): refuses an open or
  cooling deployment unless asked not to, takes the half-open probe, takes room under the
  limits, and returns the state of the deployment and of the others the plan named, which is
  the snapshot the next request plans with;
- `RECORD` (off the critical path, a task per outcome): counts a failure, opens or closes the
  circuit, cools after a 429, frees the call's slot.

The clock is the caller's (`clock`, seconds since the epoch), so hosts should keep NTP time.
If Redis does not answer within `timeout`, the store serves from this process's `MemoryStore`
(which also keeps every outcome recorded here), logs a warning once, and tries Redis again after
`retry_every` seconds; the state is shared again from the first command that succeeds.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from layer_core.provider import PerLoop
from layer_core.state import (
    DEFAULT_PREFIX,
    DEFAULT_REDIS_TIMEOUT,
    MINUTE,
    NO_LIMITS,
    DeploymentHealth,
    Grant,
    HealthRules,
    Limits,
)
from layer_core.state.breaker import Fields, apply, health
from layer_core.state.memory import MemoryStore

if TYPE_CHECKING:
    import asyncio

    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

log = logging.getLogger("layer")

#: Seconds a deployment's hash outlives its last change (a day-old breaker means nothing).
HASH_TTL = 2 * 86_400
_FIELDS = 11  # values per deployment in ADMIT's answer

ADMIT = """
local now = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local per_call = tonumber(ARGV[3])
local rpm, ipm, conc = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local allow_open = ARGV[7] == '1'
local lease_seconds = tonumber(ARGV[8])
local lease = ARGV[9]
local window = tonumber(ARGV[10])
local ttl = tonumber(ARGV[11])

local function oldest(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then return tonumber(first[2]) end
  return nil
end

local function read(i)
  local h, calls, images, leases = KEYS[i], KEYS[i + 1], KEYS[i + 2], KEYS[i + 3]
  redis.call('ZREMRANGEBYSCORE', calls, '-inf', now - window)
  redis.call('ZREMRANGEBYSCORE', images, '-inf', now - window)
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
  local f = redis.call('HMGET', h, 'fails', 'kind', 'opens', 'open_until', 'probe_until',
                       'cool_until', 'cool_after')
  local first = oldest(calls)
  local first_image = oldest(images)
  if first_image and (first == nil or first_image < first) then first = first_image end
  local frees = 0
  if first then frees = first + window end
  return {tonumber(f[1]) or 0, f[2] or '', tonumber(f[3]) or 0, tonumber(f[4]) or 0,
          tonumber(f[5]) or 0, tonumber(f[6]) or 0, tonumber(f[7]) or 0,
          redis.call('ZCARD', calls), redis.call('ZCARD', images), redis.call('ZCARD', leases),
          frees}
end

local t = read(1)
local granted, calls = 0, 0
local refused = false
local probe = false
if now < t[4] or now < t[6] then
  refused = not allow_open
elseif t[4] > 0 then
  if now < t[5] and not allow_open then
    refused = true
  else
    probe = true
    want = math.min(want, per_call)
  end
end
if not refused and want > 0 then
  calls = math.ceil(want / per_call)
  if rpm > 0 then calls = math.min(calls, rpm - t[8]) end
  if conc > 0 then calls = math.min(calls, conc - t[10]) end
  granted = math.min(want, math.max(0, calls) * per_call)
  if ipm > 0 then granted = math.min(granted, ipm - t[9]) end
  granted = math.max(0, granted)
  calls = math.ceil(granted / per_call)
  if granted > 0 then
    if probe then
      redis.call('HSET', KEYS[1], 'probe_until', tostring(now + lease_seconds))
      redis.call('EXPIRE', KEYS[1], ttl)
    end
    if rpm > 0 or ipm > 0 or conc > 0 then
      for k = 0, calls - 1 do redis.call('ZADD', KEYS[2], now, lease .. ':' .. k) end
      for k = 0, granted - 1 do redis.call('ZADD', KEYS[3], now, lease .. ':' .. k) end
      redis.call('EXPIRE', KEYS[2], math.ceil(window) + 1)
      redis.call('EXPIRE', KEYS[3], math.ceil(window) + 1)
      if conc > 0 then
        for k = 0, calls - 1 do
          redis.call('ZADD', KEYS[4], now + lease_seconds, lease .. ':' .. k)
        end
        redis.call('EXPIRE', KEYS[4], math.ceil(lease_seconds) + 1)
      end
    end
  end
end

local out = {tostring(granted), tostring(calls)}
for i = 1, #KEYS, 4 do
  local f = read(i)
  for j = 1, #f do out[#out + 1] = tostring(f[j]) end
end
return out
"""

RECORD = """
local now = tonumber(ARGV[1])
local err = ARGV[2]
local ttl = tonumber(ARGV[9])
if ARGV[8] ~= '' then redis.call('ZREM', KEYS[2], ARGV[8]) end
if err == '' then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], 'fails', 0, 'opens', 0, 'open_until', 0, 'probe_until', 0,
               'kind', '')
  end
elseif err == 'timeout' or err == 'unavailable' then
  local fails = redis.call('HINCRBY', KEYS[1], 'fails', 1)
  local f = redis.call('HMGET', KEYS[1], 'opens', 'open_until')
  local opens = tonumber(f[1]) or 0
  local open_until = tonumber(f[2]) or 0
  redis.call('HSET', KEYS[1], 'kind', err)
  if (open_until > 0 and now >= open_until) or fails >= tonumber(ARGV[4]) then
    opens = opens + 1
    local cooldown = math.min(tonumber(ARGV[5]) * 2 ^ (opens - 1), tonumber(ARGV[6]))
    redis.call('HSET', KEYS[1], 'opens', opens, 'open_until', tostring(now + cooldown),
               'probe_until', 0)
  end
elseif err == 'rate_limited' then
  local wait, after = tonumber(ARGV[7]), 0
  if ARGV[3] ~= '' then
    wait = tonumber(ARGV[3])
    after = wait
  end
  local cool = tonumber(redis.call('HGET', KEYS[1], 'cool_until')) or 0
  if now + wait > cool then
    redis.call('HSET', KEYS[1], 'cool_until', tostring(now + wait), 'cool_after', tostring(after))
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""


class _Connection:
    """One loop's client and its two scripts."""

    __slots__ = ("admit", "client", "record")

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.admit: AsyncScript = client.register_script(ADMIT)
        self.record: AsyncScript = client.register_script(RECORD)


class RedisStore:
    """Breakers, cooldowns and limits shared through Redis, served locally while it is down."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_REDIS_TIMEOUT,
        clock: Callable[[], float] = time.time,
        window: float = MINUTE,
        retry_every: float = 1.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.clock = clock
        self.window = window
        self.retry_every = retry_every
        self.local = MemoryStore(clock=clock, window=window)
        """this process's state: kept with every outcome, served from while Redis is down."""
        self.down: str | None = None
        """why Redis is unreachable, while it is."""
        self._retry_at = 0.0
        self._seen: dict[str, Fields] = {}
        """each deployment's fields as the last script answer gave them."""
        self._seen_at: dict[str, float] = {}
        self._limits: dict[str, Limits] = {}
        self._connections: PerLoop[_Connection] = PerLoop(self._connect)
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def safe_url(self) -> str:
        """The URL without its password, for logs and tables."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}:***@" if parts.username else "***@"
        return parts._replace(netloc=f"{user}{host}{port}").geturl()

    def _connect(self) -> _Connection:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        client = Redis.from_url(
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        return _Connection(client)

    def _keys(self, deployment: str) -> list[str]:
        base = f"{self.prefix}{deployment}"
        return [base, f"{base}:calls", f"{base}:images", f"{base}:leases"]

    def _shared(self) -> bool:
        """Whether to ask Redis (it is up, or it is time to try it again)."""
        return self.down is None or self.clock() >= self._retry_at

    def _lost(self, exc: BaseException) -> None:
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.down is None:
            log.warning(
                "layer: the state store %s is unreachable (%s); serving on this process's state "
                "until it answers again",
                self.safe_url,
                why,
            )
        self.down = why
        self._retry_at = self.clock() + self.retry_every

    def _back(self) -> None:
        if self.down is not None:
            log.warning("layer: the state store %s answers again; state is shared", self.safe_url)
            self.down = None

    # --- the hot path --------------------------------------------------------------------

    def snapshot(self) -> Mapping[str, DeploymentHealth]:
        if self.down is not None:
            return self.local.snapshot()
        if not self._seen:
            return {}
        now = self.clock()
        found: dict[str, DeploymentHealth] = {}
        for name, fields in self._seen.items():
            seen = health(name, fields, self._limits.get(name, NO_LIMITS), now)
            if seen is not None:
                found[name] = seen
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
        if limits:
            self._limits[deployment] = limits
        if self._shared():
            import asyncio

            names = [deployment, *(w for w in watch if w != deployment)]
            lease = secrets.token_hex(6)
            try:
                connection = self._connections.get()
                async with asyncio.timeout(self.timeout):
                    answer = await connection.admit(
                        keys=[key for name in names for key in self._keys(name)],
                        args=[
                            repr(self.clock()),
                            images,
                            per_call,
                            limits.rpm or 0,
                            limits.images_per_minute or 0,
                            limits.max_concurrency or 0,
                            1 if allow_open else 0,
                            repr(lease_seconds),
                            lease,
                            repr(self.window),
                            HASH_TTL,
                        ],
                    )
            except Exception as exc:  # noqa: BLE001 - any failure of Redis: serve locally
                self._lost(exc)
            else:
                self._back()
                granted, calls = int(answer[0]), int(answer[1])
                self._remember(names, answer[2:])
                if granted:
                    return Grant(granted, calls, lease if limits.max_concurrency else None)
                now = self.clock()
                fields = self._seen.get(deployment, Fields())
                return Grant(
                    0,
                    0,
                    None,
                    health(deployment, fields, limits, now)
                    or DeploymentHealth(deployment, "limited", 0.0, "no headroom", 0),
                )
        return self.local.admit_now(
            deployment,
            images=images,
            per_call=per_call,
            limits=limits,
            allow_open=allow_open,
            lease_seconds=lease_seconds,
        )

    def _remember(self, names: Sequence[str], values: Sequence[str]) -> None:
        now = self.clock()
        for i, name in enumerate(names):
            v = values[i * _FIELDS : (i + 1) * _FIELDS]
            fields = Fields(
                fails=int(float(v[0])),
                kind=v[1],
                opens=int(float(v[2])),
                open_until=float(v[3]),
                probe_until=float(v[4]),
                cool_until=float(v[5]),
                cool_after=float(v[6]),
                requests=int(v[7]),
                images=int(v[8]),
                in_flight=int(v[9]),
                frees_at=float(v[10]),
            )
            if fields.fails or fields.open_until or fields.cool_until or name in self._limits:
                self._seen[name] = fields
                self._seen_at[name] = now
            else:
                self._seen.pop(name, None)

    def record(
        self,
        deployment: str,
        *,
        error: str | None,
        retry_after: float | None,
        rules: HealthRules,
        lease: str | None = None,
    ) -> None:
        self.local.record(deployment, error=error, retry_after=retry_after, rules=rules)
        seen = self._seen.get(deployment)
        if seen is not None:  # what this process saw, until the next answer from Redis
            apply(seen, self.clock(), error, retry_after, rules)
        if not self._shared():
            return
        import asyncio

        task = asyncio.get_running_loop().create_task(
            self._record(deployment, error, retry_after, rules, lease)
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _record(
        self,
        deployment: str,
        error: str | None,
        retry_after: float | None,
        rules: HealthRules,
        lease: str | None,
    ) -> None:
        import asyncio

        keys = self._keys(deployment)
        try:
            connection = self._connections.get()
            async with asyncio.timeout(self.timeout):
                await connection.record(
                    keys=[keys[0], keys[3]],
                    args=[
                        repr(self.clock()),
                        error or "",
                        "" if retry_after is None else repr(retry_after),
                        rules.failures,
                        repr(rules.cooldown),
                        repr(rules.max_cooldown),
                        repr(rules.rate_limit_cooldown),
                        lease or "",
                        HASH_TTL,
                    ],
                )
        except Exception as exc:  # noqa: BLE001 - kept locally; said once per outage
            self._lost(exc)
        else:
            self._back()

    # --- reading and closing -------------------------------------------------------------

    async def read(
        self, deployments: Mapping[str, Limits]
    ) -> tuple[dict[str, DeploymentHealth], str | None]:
        names = list(deployments)
        if not names:
            return {}, None
        self._limits.update({n: lim for n, lim in deployments.items() if lim})
        self.down, self._retry_at = None, 0.0  # an explicit read always asks Redis
        first = names[0]
        await self.admit(
            first,
            images=0,
            per_call=1,
            limits=deployments[first],
            allow_open=True,
            lease_seconds=1.0,
            watch=names[1:],
        )
        if self.down is not None:
            return self.local.read_now(deployments), (
                f"the state store {self.safe_url} is unreachable ({self.down}); "
                "showing this process's state"
            )
        now = self.clock()
        found = {}
        for name, limits in deployments.items():
            fields = self._seen.get(name, Fields())
            found[name] = health(name, fields, limits, now) or DeploymentHealth(name, "ok")
        return found, None

    async def flush(self) -> None:
        """Wait for the outcomes still being written."""
        import asyncio

        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def aclose(self) -> None:
        await self.flush()
        connection = self._connections.pop()
        if connection is not None:
            await connection.client.aclose()

    def __repr__(self) -> str:
        return f"<RedisStore {self.safe_url} prefix={self.prefix!r}{' down' if self.down else ''}>"
