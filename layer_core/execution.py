"""Running a plan: split the count into calls, retry, fall back for the missing images only.

For each candidate in plan order, the images still missing are split into calls of at most the
model's `max_images_per_call`, run concurrently. A failed call is retried on the same model per
the gate (`Gate.retries_on`: by default only when there is nothing else to try; honouring
Retry-After up to `max_retry_wait`, else a jittered backoff), then its images move to the next
candidate, unless the error's kind is not in the gate's `fallback_on`, which stops the request.
Images already delivered are kept and never paid twice. Every attempt is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from layer_core.errors import (
    AllAttemptsFailed,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from layer_core.gates import Gate
from layer_core.money import total_cost
from layer_core.policy import Candidate, Plan
from layer_core.provider import GenerationCall, Provider
from layer_core.schema import MAX_SEED, Attempt, ImageOutput, ImageRequest
from layer_core.state import DEFAULT_RULES, Grant, HealthRules, Limits, StateStore

Notify = Callable[..., None]


def redact(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret (4+ characters) replaced by `***`."""
    for secret in secrets:
        if len(secret) >= 4 and secret in text:
            text = text.replace(secret, "***")
    return text


def retry_wait(gate: Gate, retry: int, retry_after: float | None, jitter: float) -> float | None:
    """Seconds to wait before retrying a call that failed on try `retry` (0: the first), or None
    when the wait would pass the gate's `max_retry_wait` (moving on beats waiting that long).

    The provider's Retry-After is waited as given. Without one, the wait is the gate's
    `retry_backoff` doubled per retry, times 0.5 + `jitter` (a random number in [0, 1)): calls
    that failed together do not all come back at the same moment.
    """
    if retry_after is not None:
        wait = retry_after
    else:
        wait = gate.retry_backoff * 2**retry * (0.5 + jitter)
    return wait if wait <= gate.max_retry_wait else None


def _encoded(image: ImageOutput) -> str | None:
    """The image's bytes in base64 if the output holds them: `base64`, or a base64 data: URL."""
    if image.base64 is not None:
        return image.base64
    url = image.url
    if url is not None and url.startswith("data:"):
        head, _, data = url.partition(",")
        return data if head.endswith(";base64") else None
    return None


def _provider_error(exc: Exception, timeout: float) -> ProviderError:
    """What a provider's call raised, as a `ProviderError`: the gate's timeout, the provider's
    own error, or an SDK error the provider let escape."""
    if isinstance(exc, TimeoutError):
        return ProviderTimeout(f"no answer within the gate's timeout of {timeout:g}s")
    if isinstance(exc, ProviderError):
        return exc
    return ProviderUnavailable(f"unmapped {type(exc).__name__} from the provider: {exc}")


def _attempt(
    candidate: Candidate,
    call: GenerationCall,
    images: list[ImageOutput],
    latency: float,
    retry: int,
    error: ProviderError | None = None,
) -> Attempt:
    """The record of one try of `call` on `candidate`."""
    spec = candidate.model
    if error is None:
        return Attempt(
            model=spec.id,
            provider=spec.provider,
            deployment=candidate.deployment,
            outcome="ok",
            requested=call.n,
            delivered=len(images),
            latency=latency,
            retry=retry,
        )
    return Attempt(
        model=spec.id,
        provider=spec.provider,
        deployment=candidate.deployment,
        outcome="error",
        requested=call.n,
        delivered=len(images),
        error=error.kind,
        message=error.message,
        latency=latency,
        retry=retry,
        retry_after=getattr(error, "retry_after", None),
    )


def _slot(lease: str | None, call: int) -> str | None:
    """The name of a call's slot under its deployment's `max_concurrency`."""
    return None if lease is None else f"{lease}:{call}"


@dataclass
class Outcome:
    """What execution produced: images by slot, every attempt, and warnings to surface."""

    images: list[ImageOutput] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def cost(self) -> Decimal:
        return total_cost(self.images)


@dataclass
class Executor:
    """Executes one plan. Built per request by `Layer`; holds no state between requests."""

    request: ImageRequest
    gate: Gate
    plan: Plan
    providers: Mapping[str, Provider]
    notify: Notify
    secrets: Sequence[str] = ()
    state: StateStore | None = None
    """where each deployment's breaker, cooldown and limits live (None: not kept)."""
    rules: HealthRules = DEFAULT_RULES
    outcome: Outcome = field(default_factory=Outcome, init=False)
    """Every attempt so far (also after a cancellation)."""
    delivered: dict[int, ImageOutput] = field(default_factory=dict, init=False)
    """The images delivered so far, by slot: kept as each call returns, so what a cancelled
    request was already paid for can still be recorded."""

    async def run(self) -> Outcome:
        plan = self.plan
        slots = self.delivered
        outcome = self.outcome
        missing = list(range(plan.count))
        for place, candidate in enumerate(plan.candidates):
            if not missing:
                break
            per_call = candidate.model.max_images_per_call
            lease = None
            if self.state is not None:
                grant = await self._admit(place, candidate, len(missing))
                if not grant.images:
                    continue
                lease = grant.lease
                missing = missing[: grant.images]  # the rest moves on to the next candidate
            groups = [missing[i : i + per_call] for i in range(0, len(missing), per_call)]
            if len(groups) == 1:
                # Most requests are one call: awaited directly, it needs no task and no turn of
                # the event loop, which gather would spend on it.
                results = [await self._call(place, groups[0], outcome.attempts, _slot(lease, 0))]
            else:
                import asyncio  # here, not at the top: `Layer()` itself needs no asyncio

                results = await asyncio.gather(
                    *(
                        self._call(place, group, outcome.attempts, _slot(lease, i))
                        for i, group in enumerate(groups)
                    )
                )
            stop: ProviderError | None = None
            delivered_here = 0
            for group, (images, error) in zip(groups, results, strict=True):
                for slot, image in zip(group, images, strict=False):
                    slots[slot] = image
                    delivered_here += 1
                if error is not None and error.kind not in self.gate.fallback_on:
                    stop = stop or error
            if delivered_here:
                outcome.warnings.extend(w for w in candidate.warnings if w not in outcome.warnings)
                if candidate.skipped:  # why the models the gate prefers did not serve
                    outcome.warnings.extend(
                        w
                        for w in (r.warning for r in candidate.skipped)
                        if w not in outcome.warnings
                    )
            missing = [slot for slot in range(plan.count) if slot not in slots]
            if missing and stop is not None:
                outcome.images = [slots[s] for s in sorted(slots)]
                raise AllAttemptsFailed(
                    plan.gate_id, outcome.attempts, outcome.images, plan.count, stopped_by=stop
                )
        outcome.images = [slots[s] for s in sorted(slots)]
        if missing:
            raise AllAttemptsFailed(plan.gate_id, outcome.attempts, outcome.images, plan.count)
        return outcome

    async def _admit(self, place: int, candidate: Candidate, wanted: int) -> Grant:
        """Room on `candidate`'s deployment for `wanted` images, from the state store; what it
        refuses is recorded as a skipped attempt (no request sent) and moves on. An open or
        cooling deployment is refused only while a candidate without trouble comes after it:
        the plan put it there knowing, or learnt it since from another process."""
        assert self.state is not None
        settings = self.providers[candidate.instance].settings
        limits = Limits(settings.rpm, settings.images_per_minute, settings.max_concurrency)
        later = self.plan.candidates[place + 1 :]
        allow_open = all(
            c.model.placeholder or (c.health is not None and c.health.demoted) for c in later
        )
        gate = self.gate
        grant = await self.state.admit(
            candidate.deployment,
            images=wanted,
            per_call=candidate.model.max_images_per_call,
            limits=limits,
            allow_open=allow_open,
            lease_seconds=gate.timeout * (1 + (gate.retries or 1)) + gate.max_retry_wait,
            watch=[c.deployment for c in self.plan.candidates] if later else (),
        )
        if grant.images < wanted:
            seen = grant.refused
            if seen is not None:
                why = seen.describe()
            else:  # a part fits
                why = (
                    f"{candidate.deployment}: only {grant.images} of {wanted} image(s) fit "
                    f"under its limits ({limits.describe()})"
                )
            spec = candidate.model
            self.outcome.attempts.append(
                Attempt(
                    model=spec.id,
                    provider=spec.provider,
                    outcome="skipped",
                    requested=wanted - grant.images,
                    error="unavailable"
                    if seen is not None and seen.state in ("open", "probing")
                    else "rate_limited",
                    message=f"not sent: {why}",
                    latency=0.0,
                    retry_after=seen.retry_in if seen is not None and seen.retry_in else None,
                )
            )
        return grant

    def _nothing_else(self, place: int, error: ProviderError) -> bool:
        """Whether the images of a call that failed on candidate `place` with `error` have
        nowhere else to go: the gate stops on this error, or no real model comes after (a
        placeholder's stand-in image is no substitute for the one asked for)."""
        if error.kind not in self.gate.fallback_on:
            return True
        return all(later.model.placeholder for later in self.plan.candidates[place + 1 :])

    async def _call(
        self, place: int, slots: list[int], attempts: list[Attempt], lease: str | None = None
    ) -> tuple[list[ImageOutput], ProviderError | None]:
        """One call of `len(slots)` images on candidate `place`, with the gate's retries.

        Each try asks the provider, within the gate's timeout, and keeps what came back. A try
        that fails is recorded; it is tried again after the wait the gate allows, else the error
        goes back with any images that were delivered.
        """
        import asyncio  # here, not at the top: `Layer()` itself needs no asyncio

        candidate = self.plan.candidates[place]
        provider = self.providers[candidate.instance]
        call = self._generation_call(candidate, provider, slots)
        timeout = self.gate.timeout
        retry = 0
        while True:
            started = time.perf_counter()
            error: ProviderError | None = None
            try:
                async with asyncio.timeout(timeout):
                    images = await provider.generate(call)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a ProviderError
                images, error = [], _provider_error(exc, timeout)
            latency = (time.perf_counter() - started) * 1000
            if error is None:
                images = self._keep(candidate, call, slots, images)
                if len(images) == call.n:
                    attempts.append(_attempt(candidate, call, images, latency, retry))
                    if self.state is not None:
                        self.state.record(
                            candidate.deployment,
                            error=None,
                            retry_after=None,
                            rules=self.rules,
                            lease=lease,
                        )
                    return images, None
                error = ProviderUnavailable(f"returned {len(images)} of {call.n} images")
            error = self._failed(candidate, call, images, latency, retry, error, attempts)
            wait = None if images else self._retry_wait(place, error, retry)
            if self.state is not None:
                self.state.record(
                    candidate.deployment,
                    error=error.kind,
                    retry_after=getattr(error, "retry_after", None),
                    rules=self.rules,
                    lease=lease if wait is None else None,
                )
            if images:  # a short delivery: keep what came, let the rest move on
                return images, error
            if wait is None:
                return [], error
            await asyncio.sleep(wait)
            retry += 1

    def _generation_call(
        self, candidate: Candidate, provider: Provider, slots: list[int]
    ) -> GenerationCall:
        """What the provider is asked for the images of `slots` (the seed of the first: each
        slot of a request with a seed gets a seed of its own)."""
        spec = candidate.model
        plan = self.plan
        gate = self.gate
        seed = None
        if spec.supports_seed and plan.seed is not None:
            seed = (plan.seed + slots[0]) % (MAX_SEED + 1)
        return GenerationCall(
            model=spec,
            prompt=plan.prompt,
            size=plan.size,
            n=len(slots),
            quality=candidate.quality,
            style=candidate.style,
            seed=seed,
            timeout=gate.timeout,
            options=provider._call_options,  # deprecated, for providers that still read it
            response_format=gate.response_format,
        )

    def _keep(
        self,
        candidate: Candidate,
        call: GenerationCall,
        slots: list[int],
        images: list[ImageOutput],
    ) -> list[ImageOutput]:
        """The images a call returned (no more than asked), finished, and kept as delivered."""
        images = [self._finish(candidate, call, image) for image in images[: call.n]]
        self.delivered.update(zip(slots, images, strict=False))
        return images

    def _failed(
        self,
        candidate: Candidate,
        call: GenerationCall,
        images: list[ImageOutput],
        latency: float,
        retry: int,
        error: ProviderError,
        attempts: list[Attempt],
    ) -> ProviderError:
        """Record a try that failed (or delivered short), tell the observers, and give back the
        error attributed and without secrets."""
        spec = candidate.model
        error = self._clean(error, spec.provider, spec.id)
        attempt = _attempt(candidate, call, images, latency, retry, error)
        attempts.append(attempt)
        self.notify("on_attempt_failed", request=self.request, attempt=attempt, error=error)
        return error

    def _retry_wait(self, place: int, error: ProviderError, retry: int) -> float | None:
        """Seconds to wait before trying again on the same model after `error`; None when the
        error is not worth a retry, the gate's retries are spent, or the wait is too long."""
        if not error.retryable or retry >= self.gate.retries_on(
            nothing_else=self._nothing_else(place, error)
        ):
            return None
        import random  # only when a retry waits: a request that succeeds needs none

        return retry_wait(self.gate, retry, getattr(error, "retry_after", None), random.random())

    def _finish(
        self, candidate: Candidate, call: GenerationCall, image: ImageOutput
    ) -> ImageOutput:
        """Fill in what the core knows: model, provider, delivered size, seed, price-table cost.

        A size the provider did not report is read from the image when its bytes are here
        (base64, or a base64 data: URL), else is what the model is declared to deliver for the
        size asked, marked expected.
        """
        update: dict[str, Any] = {
            "model": candidate.model.id,
            "provider": candidate.model.provider,
            "deployment": candidate.deployment,
        }
        if image.size is None:
            encoded = _encoded(image)
            measured = None
            if encoded is not None:
                from layer_core.sizes import encoded_image_size

                measured = encoded_image_size(encoded)
            if measured is not None:
                update["size"], update["size_source"] = measured, "image"
            else:
                update["size"] = candidate.model.delivered_size(call.size)
                update["size_source"] = "expected"
        if image.seed is None and call.seed is not None:
            update["seed"] = call.seed
        if image.cost_source == "price_table":
            update["cost_exact"] = candidate.price
        return image.model_copy(update=update)

    def _clean(self, error: ProviderError, provider: str, model: str) -> ProviderError:
        """Attribute the error (the one place it is done) and strip every known secret from its
        text."""
        error.attribute(provider, model)
        clean = redact(error.message, self.secrets)
        if clean != error.message:
            error.message = clean
            error.args = (clean,)
        return error
