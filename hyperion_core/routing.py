"""Routing: deployment order (strategies), circuit breakers, retries and the failover flow.

The decisions are plain objects with an injectable clock (:class:`CircuitBreaker`, :func:`order`,
:func:`backoff`), so they are unit-tested without sockets or sleeps. :meth:`Router.run` is the one
failover sequence; complete, stream (until the first chunk) and embed all go through it.

Failover rules, read from the error's class (``retryable`` / ``failover``):

* retryable errors are retried on the same deployment (``retry.attempts`` times, exponential backoff
  with full jitter, never past the total deadline) — except 429s when another deployment is left:
  a rate-limited deployment is put in cooldown (its Retry-After) and the next one is tried at once;
* errors that fail over move to the next deployment; all others (400, content policy, context
  window) end the request, since another deployment would refuse it too;
* a breaker opens after ``failure_threshold`` consecutive failures, or at once for the Retry-After of
  a 429; after ``cooldown`` a single half-open probe decides whether it closes again.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .clock import Clock, ManualClock, SystemClock, set_testing  # the shared clock (re-exported here)
from .config import BreakerConfig, RouteConfig
from .errors import (
    AllDeploymentsFailedError,
    ContextWindowExceededError,
    DeadlineExceededError,
    FirstTokenTimeoutError,
    HyperionError,
    NoHealthyDeploymentError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
)
from .providers.base import Adapter
from .types import Attempt

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover - Python 3.10 (aiohttp depends on async-timeout there)
    from async_timeout import timeout as _timeout

T = TypeVar("T")


# -- circuit breaker -------------------------------------------------------------------------

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """closed -> open -> half-open (a single probe) -> closed | open. Times come from the caller."""

    __slots__ = ("cfg", "state", "failures", "open_until", "probing", "opened_count")

    def __init__(self, cfg: BreakerConfig) -> None:
        self.cfg = cfg
        self.state = CLOSED
        self.failures = 0
        self.open_until = 0.0
        self.probing = False
        self.opened_count = 0

    def allow(self, now: float) -> bool:
        """May a request go to this deployment now? In half-open state only one probe at a time."""
        if self.state == CLOSED or not self.cfg.enabled:
            return True
        if self.state == OPEN:
            if now < self.open_until:
                return False
            self.state = HALF_OPEN
            self.probing = False
        if self.probing:
            return False
        self.probing = True
        return True

    def on_success(self) -> None:
        self.state = CLOSED
        self.failures = 0
        self.probing = False

    def on_failure(self, now: float, retry_after: float | None = None) -> None:
        self.failures += 1
        self.probing = False
        if not self.cfg.enabled:
            return
        if self.state == HALF_OPEN or self.failures >= self.cfg.failure_threshold:
            self._open(now, max(self.cfg.cooldown, retry_after or 0.0))
        elif retry_after:
            self._open(now, retry_after)  # a 429's cooldown: skip until Retry-After has passed

    def release(self) -> None:
        """A probe ended without a verdict (cancelled): let the next request probe."""
        self.probing = False

    def _open(self, now: float, seconds: float) -> None:
        if self.state != OPEN:
            self.opened_count += 1
        self.state = OPEN
        self.open_until = max(self.open_until, now + seconds)

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "state": self.state,
            "failures": self.failures,
            "open_for": max(self.open_until - now, 0.0) if self.state == OPEN else 0.0,
            "opened_count": self.opened_count,
        }


# -- deployments and strategies ---------------------------------------------------------------


@dataclass(eq=False)
class DeploymentState:
    """A deployment at run time: its adapter, breaker and observed latency."""

    name: str
    adapter: Adapter
    breaker: CircuitBreaker
    weight: float = 1.0
    timeout: float | None = None
    unit_price: float = 0.0  # input + output USD per token, for lowest_cost
    ewma_latency: float | None = None  # seconds
    ewma_ttft: float | None = None  # seconds

    def observe(self, seconds: float, alpha: float, *, ttft: bool) -> None:
        if ttft:
            self.ewma_ttft = seconds if self.ewma_ttft is None else alpha * seconds + (1 - alpha) * self.ewma_ttft
        else:
            prev = self.ewma_latency
            self.ewma_latency = seconds if prev is None else alpha * seconds + (1 - alpha) * prev


@dataclass(eq=False)
class RouteState:
    name: str
    cfg: RouteConfig
    deployments: list[DeploymentState] = field(default_factory=list)


def order(rs: RouteState, rng: random.Random, *, stream: bool = False) -> list[DeploymentState]:
    """The order in which deployments are tried for one request under the route's strategy."""
    deps = rs.deployments
    strategy = rs.cfg.strategy
    if strategy == "failover" or len(deps) == 1:
        return deps
    if strategy == "weighted":
        live = [d for d in deps if d.weight > 0]
        first = rng.choices(live, weights=[d.weight for d in live])[0] if live else deps[0]
        rest = sorted((d for d in deps if d is not first), key=lambda d: -d.weight)
        return [first, *rest]
    if strategy == "lowest_latency":
        # deployments never measured sort first (explore), then by EWMA of latency or TTFT
        def key(d: DeploymentState) -> float:
            v = d.ewma_ttft if stream else d.ewma_latency
            return -1.0 if v is None else v

        return sorted(deps, key=key)
    if strategy == "lowest_cost":
        return sorted(deps, key=lambda d: d.unit_price)
    raise ValueError(strategy)  # pragma: no cover - config validation rejects others


def backoff(attempt: int, base: float, cap: float, rng: random.Random, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): full jitter over
    ``min(cap, base * 2**attempt)``, never less than the provider's Retry-After."""
    wait = rng.uniform(0, min(cap, base * (2**attempt)))
    return max(wait, retry_after or 0.0)


# -- the failover flow -----------------------------------------------------------------------


class Router:
    """Runs one operation against a route's deployments with retries, breakers and failover."""

    def __init__(self, clock: Clock | None = None, rng: random.Random | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.rng = rng or random.Random()

    async def run_with_fallback(
        self,
        rs: RouteState,
        op: Callable[[DeploymentState], Awaitable[T]],
        attempts: list[Attempt],
        *,
        resolve: Callable[[str], RouteState],
        timeout: float | None = None,
        stream: bool = False,
        exclude: Iterable[str] = (),
        request_id: str | None = None,
        retries: int | None = None,
    ) -> tuple[T, DeploymentState]:
        """:meth:`run` with a fresh deadline of ``timeout`` (default: the route's) seconds, and the
        context-window fallback: a request too long for ``rs`` moves to its ``context_window_fallback``
        route (``resolve`` names it), as often as routes chain."""
        while True:
            try:
                return await self.run(
                    rs, op, attempts, deadline=self.clock.now() + (timeout or rs.cfg.timeout), stream=stream,
                    exclude=exclude, request_id=request_id, retries=retries,
                )
            except ContextWindowExceededError:
                if not rs.cfg.context_window_fallback:
                    raise
                rs = resolve(rs.cfg.context_window_fallback)

    async def run(
        self,
        rs: RouteState,
        op: Callable[[DeploymentState], Awaitable[T]],
        attempts: list[Attempt],
        *,
        deadline: float,
        stream: bool = False,
        exclude: Iterable[str] = (),
        request_id: str | None = None,
        retries: int | None = None,
    ) -> tuple[T, DeploymentState]:
        """Call ``op`` on deployments in strategy order until one succeeds. ``deadline`` is a
        ``clock.now()`` value. Appends every attempt to ``attempts``; raises a :class:`HyperionError`
        with the attempts attached when nothing succeeds."""
        cfg = rs.cfg
        clock = self.clock
        max_retries = cfg.retry.attempts if retries is None else retries
        candidates = [d for d in order(rs, self.rng, stream=stream) if d.name not in exclude]
        tried = 0
        last: HyperionError | None = None
        for idx, ds in enumerate(candidates):
            if not ds.breaker.allow(clock.now()):
                continue
            tried += 1
            others_left = idx < len(candidates) - 1
            for n in range(max_retries + 1):
                remaining = deadline - clock.now()
                if remaining <= 0:
                    raise self._deadline(rs, attempts, request_id, last)
                limit = _min(remaining, ds.timeout or cfg.attempt_timeout, cfg.first_token_timeout if stream else None)
                started = time.perf_counter()
                try:
                    async with _timeout(limit):
                        result = await op(ds)
                except (TimeoutError, asyncio.TimeoutError):
                    if limit >= remaining:
                        ds.breaker.release()
                        attempts.append(_attempt(ds.name, started, "DeadlineExceededError", None, "deadline"))
                        raise self._deadline(rs, attempts, request_id, last) from None
                    cls = FirstTokenTimeoutError if stream and limit == cfg.first_token_timeout else ProviderTimeoutError
                    err: HyperionError = cls(f"no answer within {limit:.3g}s", route=rs.name, deployment=ds.name)
                except ProviderError as exc:
                    err = exc
                except HyperionError as exc:  # a non-provider error from op (e.g. a guard): no failover
                    ds.breaker.release()
                    exc.route = exc.route or rs.name
                    raise
                except BaseException:
                    ds.breaker.release()
                    raise
                else:
                    elapsed = time.perf_counter() - started
                    ds.breaker.on_success()
                    ds.observe(elapsed, cfg.latency_alpha, ttft=stream)
                    attempts.append(Attempt(ds.name, "ok", elapsed * 1000.0))
                    return result, ds
                # -- the attempt failed --
                err.route = err.route or rs.name
                err.deployment = err.deployment or ds.name
                err.request_id = request_id
                attempts.append(
                    _attempt(ds.name, started, err.error_class, getattr(err, "status", None), err.message)
                )
                last = err
                retry_after = getattr(err, "retry_after", None)
                if err.failover or err.retryable:
                    ds.breaker.on_failure(clock.now(), retry_after)
                else:
                    ds.breaker.release()
                    err.attempts = list(attempts)  # type: ignore[attr-defined]
                    raise err
                if not err.retryable or n >= max_retries:
                    break
                if isinstance(err, RateLimitError) and others_left:
                    break  # cooldown this one; the next deployment may answer now
                if ds.breaker.state != CLOSED:
                    break  # the breaker just opened: stop hammering this deployment
                wait = backoff(n, cfg.retry.backoff_base, cfg.retry.backoff_max, self.rng, retry_after)
                if clock.now() + wait >= deadline:
                    break
                await clock.sleep(wait)
            if last is not None and not last.failover:
                last.attempts = list(attempts)  # type: ignore[attr-defined]
                raise last
        if tried == 0:
            now = clock.now()
            waits = ", ".join(f"{d.name} open for {max(d.breaker.open_until - now, 0):.1f}s" for d in candidates)
            raise NoHealthyDeploymentError(
                f"no healthy deployment: every circuit breaker is open ({waits})",
                attempts=attempts,
                route=rs.name,
                request_id=request_id,
            )
        summary = "; ".join(f"{a.deployment}: {a.error_class}" for a in attempts if a.outcome == "error")
        exc = AllDeploymentsFailedError(
            f"all deployments of route '{rs.name}' failed ({summary})",
            attempts=attempts,
            route=rs.name,
            request_id=request_id,
        )
        raise exc from last

    def _deadline(
        self, rs: RouteState, attempts: list[Attempt], request_id: str | None, last: HyperionError | None
    ) -> DeadlineExceededError:
        exc = DeadlineExceededError(
            f"route '{rs.name}' deadline of {rs.cfg.timeout:g}s exceeded after {len(attempts)} attempt(s)",
            attempts=attempts,
            route=rs.name,
            request_id=request_id,
        )
        exc.__cause__ = last
        return exc


def _min(*values: float | None) -> float:
    return min((v for v in values if v is not None), default=math.inf)


def _attempt(name: str, started: float, error_class: str, status: int | None, message: str | None) -> Attempt:
    return Attempt(
        name,
        "error",
        (time.perf_counter() - started) * 1000.0,
        error_class=error_class,
        status=status,
        message=(message or "")[:300],
    )


__all__ = [
    "Clock",
    "SystemClock",
    "ManualClock",
    "set_testing",
    "CircuitBreaker",
    "DeploymentState",
    "RouteState",
    "Router",
    "order",
    "backoff",
    "CLOSED",
    "OPEN",
    "HALF_OPEN",
]
