"""Routing: deployment order (strategies), circuit breakers, retries and the failover flow.

The decisions are plain objects with an injectable clock (:class:`CircuitBreaker`, :func:`order`,
:func:`backoff`), so they are unit-tested without sockets or sleeps. :meth:`Router.run` is the one
failover sequence; complete, stream (until the first chunk) and embed all go through it.

Failover rules, read from the error's class (``retryable`` / ``failover``):

* retryable errors are retried on the same deployment (``retry.attempts`` times, exponential backoff
  with full jitter, never past the total deadline) — except 429s and timeouts when another deployment
  is left: a rate-limited deployment is put in cooldown (its Retry-After) and a slow one is left
  behind, and the next one is tried at once; a retry first asks the breaker again after its backoff;
* errors that fail over move to the next deployment; all others (400, content policy, context
  window) end the request, since another deployment would refuse it too;
* a breaker opens after ``failure_threshold`` consecutive failures, or (optional) when the share of
  failures among the calls of the last ``window`` seconds reaches ``failure_rate``; a 429 with
  Retry-After cools the deployment down for exactly that long and does not count as a failure;
  after ``cooldown`` a single half-open probe decides whether it closes again — nothing else closes
  it (a success that started before the breaker opened does not);
* a stream's outcome is decided when it ends: :meth:`Router.open_stream` hands back a :class:`Lease`
  that the stream runner settles (cut or stalled = failure), so the breaker and the latency EWMA see
  the whole stream, not just its first chunk;
* a route with ``hedge`` races the next deployment when an attempt is slow to answer (:mod:`.hedge`).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeVar

from .clock import Clock, ManualClock, SystemClock, set_testing  # the shared clock (re-exported here)
from .config import BreakerConfig, RouteConfig
from .deadline import timeout as _timeout  # the per-attempt deadline (one timer handle)
from .errors import (
    ContextWindowExceededError,
    DeadlineExceededError,
    FirstTokenTimeoutError,
    HyperionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
)
from .hedge import LatencyWindow, no_answer, run_hedged
from .providers.base import Adapter
from .types import Attempt

T = TypeVar("T")


# -- circuit breaker -------------------------------------------------------------------------

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """closed -> open -> half-open (a single probe) -> closed | open. Times come from the caller."""

    __slots__ = ("cfg", "state", "failures", "open_until", "probing", "probe_since", "opened_count", "_calls", "_failed")

    def __init__(self, cfg: BreakerConfig) -> None:
        self.cfg = cfg
        self.state = CLOSED
        self.failures = 0  # consecutive
        self.open_until = 0.0
        self.probing = False
        self.probe_since = 0.0
        self.opened_count = 0
        self._calls: deque[tuple[float, bool]] = deque()  # (time, failed) within cfg.window, for failure_rate
        self._failed = 0

    def allow(self, now: float) -> bool:
        """May a request go to this deployment now? In half-open state only one probe at a time; a
        probe that brought no verdict within one ``cooldown`` (a stream never read, say) is presumed
        lost and the next request probes."""
        if self.state == CLOSED or not self.cfg.enabled:
            return True
        if self.state == OPEN:
            if now < self.open_until:
                return False
            self.state = HALF_OPEN
            self.probing = False
        if self._probe_out(now):
            return False
        self.probing = True
        self.probe_since = now
        return True

    def _probe_out(self, now: float) -> bool:
        return self.probing and now - self.probe_since < self.cfg.cooldown

    def available(self, now: float) -> bool:
        """Would :meth:`allow` let a request through now? (Asks without taking the probe.)"""
        if self.state == CLOSED or not self.cfg.enabled:
            return True
        if self.state == OPEN:
            return now >= self.open_until
        return not self._probe_out(now)

    def on_success(self, now: float = 0.0, *, probe: bool = False) -> None:
        """A call succeeded. Only the half-open ``probe`` closes the breaker; a success that started
        before the breaker opened (it is open or half-open now) changes nothing."""
        if probe:
            self.state = CLOSED
            self.failures = 0
            self.probing = False
            self._calls.clear()
            self._failed = 0
        elif self.state == CLOSED:
            self.failures = 0
            self._record(now, False)

    def on_failure(self, now: float, retry_after: float | None = None, *, probe: bool = False) -> None:
        """A call failed. A 429's ``retry_after`` cools the deployment down for exactly that long and
        is not counted; other failures open the breaker after ``failure_threshold`` in a row, at the
        ``failure_rate`` (when set), or at once when the ``probe`` fails."""
        if probe:
            self.probing = False
        if not self.cfg.enabled:
            self.failures += 1
            return
        if retry_after is not None:
            if retry_after > 0:
                if self.state == OPEN and not probe:
                    self.open_until = max(self.open_until, now + retry_after)
                else:
                    self._open(now, retry_after)
            return
        if self.state != CLOSED and not probe:
            return  # started before the breaker opened: the probe decides, not this late failure
        self.failures += 1
        self._record(now, True)
        if probe or self.failures >= self.cfg.failure_threshold or self._rate_tripped():
            self._open(now, self.cfg.cooldown)

    def release(self, *, probe: bool = True) -> None:
        """A call ended without a verdict (cancelled): if it was the probe, let the next request probe."""
        if probe:
            self.probing = False

    def _record(self, now: float, failed: bool) -> None:
        if self.cfg.failure_rate is None:
            return
        calls = self._calls
        calls.append((now, failed))
        self._failed += failed
        horizon = now - self.cfg.window
        while calls and calls[0][0] < horizon:
            self._failed -= calls.popleft()[1]

    def _rate_tripped(self) -> bool:
        rate = self.cfg.failure_rate
        n = len(self._calls)
        return rate is not None and n >= self.cfg.min_calls and self._failed >= rate * n

    def _open(self, now: float, seconds: float) -> None:
        if self.state != OPEN:
            self.opened_count += 1
        self.state = OPEN
        self.probing = False
        self.open_until = now + seconds
        self._calls.clear()
        self._failed = 0

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "state": self.state,
            "failures": self.failures,
            "open_for": max(self.open_until - now, 0.0) if self.state == OPEN else 0.0,
            "opened_count": self.opened_count,
            "failure_rate": self._failed / len(self._calls) if self._calls else 0.0,
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
    recent: LatencyWindow = field(default_factory=LatencyWindow)  # last latencies / TTFTs, for hedge p95

    def observe(self, seconds: float, alpha: float, *, ttft: bool) -> None:
        if ttft:
            self.ewma_ttft = seconds if self.ewma_ttft is None else alpha * seconds + (1 - alpha) * self.ewma_ttft
        else:
            prev = self.ewma_latency
            self.ewma_latency = seconds if prev is None else alpha * seconds + (1 - alpha) * prev


@dataclass(eq=False)
class Lease:
    """One successful attempt whose outcome for the breaker is decided later: a stream, when it ends.
    Settle it exactly once: :meth:`succeed`, :meth:`fail` or :meth:`release` (no verdict)."""

    ds: DeploymentState
    clock: Clock
    probe: bool  # the half-open probe: its verdict opens or closes the breaker
    ttft: float  # seconds to the first chunk
    alpha: float
    settled: bool = False

    def succeed(self) -> None:
        if not self.settled:
            self.settled = True
            self.ds.breaker.on_success(self.clock.now(), probe=self.probe)
            self.ds.observe(self.ttft, self.alpha, ttft=True)

    def fail(self) -> None:
        if not self.settled:
            self.settled = True
            self.ds.breaker.on_failure(self.clock.now(), probe=self.probe)

    def release(self) -> None:
        if not self.settled:
            self.settled = True
            self.ds.breaker.release(probe=self.probe)


@dataclass(eq=False)
class RouteState:
    name: str
    cfg: RouteConfig
    deployments: list[DeploymentState] = field(default_factory=list)
    #: per-request deployment order for strategies that read the request (``policy``, ``quality``):
    #: ``await planner(ctx) -> (deployments in the order to try, RouteDecision | None)``. The Call stage
    #: asks it once per request; None: :func:`order` by the route's strategy
    planner: Callable[[Any], Awaitable[tuple[list[DeploymentState], Any]]] | None = None


def order(rs: RouteState, rng: random.Random, *, stream: bool = False) -> list[DeploymentState]:
    """The order in which deployments are tried for one request under the route's strategy. The
    strategies that read the request (``policy``, ``quality``) order through the route's ``planner``
    (the Call stage); asked here (a context-window fallback, the gateway's own calls) they give the
    failover order."""
    return arrange(rs.cfg.strategy, rs.deployments, rng, stream=stream)


def arrange(strategy: str, deps: list[DeploymentState], rng: random.Random, *, stream: bool = False) -> list[DeploymentState]:
    """``deps`` (in failover order) in the order ``strategy`` tries them (a policy rule's ``then``
    orders its deployment set with it)."""
    if strategy in _AS_LISTED or len(deps) == 1:
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


_AS_LISTED = frozenset({"failover", "policy", "quality"})


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
        ordered: list[DeploymentState] | None = None,
        ctx: Any = None,
    ) -> tuple[T, DeploymentState]:
        """:meth:`run` with a fresh deadline of ``timeout`` (default: the route's) seconds, and the
        context-window fallback: a request too long for ``rs`` moves to its ``context_window_fallback``
        route (``resolve`` names it), as often as routes chain. A route with ``hedge`` races a slow
        attempt (:mod:`.hedge`); ``ctx`` (the RequestContext) then gets the hedge's audit note and
        decision."""
        result, lease = await self._with_fallback(
            rs, op, attempts, resolve, None, timeout, stream, exclude, request_id, retries, defer=False,
            ordered=ordered, ctx=ctx,
        )
        return result, lease.ds

    async def open_stream(
        self,
        rs: RouteState,
        op: Callable[[DeploymentState], Awaitable[T]],
        attempts: list[Attempt],
        *,
        resolve: Callable[[str], RouteState],
        deadline: float | None = None,
        timeout: float | None = None,
        exclude: Iterable[str] = (),
        request_id: str | None = None,
        retries: int | None = None,
        ordered: list[DeploymentState] | None = None,
        ctx: Any = None,
        discard: Callable[[T], Awaitable[None]] | None = None,
        hedge: bool = True,
    ) -> tuple[T, Lease]:
        """:meth:`run_with_fallback` for opening a stream (``op`` returns once the first chunk is in).
        The breaker is not told yet: the caller settles the returned :class:`Lease` when the stream
        ends. ``deadline`` (a ``clock.now()`` value) wins over ``timeout``. ``discard`` closes what
        ``op`` opened when a hedge's other attempt won in the same instant; ``hedge=False``: no hedge."""
        return await self._with_fallback(
            rs, op, attempts, resolve, deadline, timeout, True, exclude, request_id, retries, defer=True,
            ordered=ordered, ctx=ctx, discard=discard, hedge=hedge,
        )

    async def _with_fallback(
        self,
        rs: RouteState,
        op: Callable[[DeploymentState], Awaitable[T]],
        attempts: list[Attempt],
        resolve: Callable[[str], RouteState],
        deadline: float | None,
        timeout: float | None,
        stream: bool,
        exclude: Iterable[str],
        request_id: str | None,
        retries: int | None,
        *,
        defer: bool,
        ordered: list[DeploymentState] | None = None,
        ctx: Any = None,
        discard: Callable[[T], Awaitable[None]] | None = None,
        hedge: bool = True,
    ) -> tuple[T, Lease]:
        while True:
            try:
                return await self._run(
                    rs, op, attempts, deadline=deadline or self.clock.now() + (timeout or rs.cfg.timeout),
                    stream=stream, exclude=exclude, request_id=request_id, retries=retries, defer=defer,
                    ordered=ordered, ctx=ctx, discard=discard, hedge=hedge,
                )
            except ContextWindowExceededError:
                if not rs.cfg.context_window_fallback:
                    raise
                rs, ordered = resolve(rs.cfg.context_window_fallback), None

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
        result, lease = await self._run(
            rs, op, attempts, deadline=deadline, stream=stream, exclude=exclude, request_id=request_id,
            retries=retries, defer=False,
        )
        return result, lease.ds

    async def _run(
        self,
        rs: RouteState,
        op: Callable[[DeploymentState], Awaitable[T]],
        attempts: list[Attempt],
        *,
        deadline: float,
        stream: bool,
        exclude: Iterable[str],
        request_id: str | None,
        retries: int | None,
        defer: bool,
        ordered: list[DeploymentState] | None = None,
        ctx: Any = None,
        discard: Callable[[T], Awaitable[None]] | None = None,
        hedge: bool = True,
    ) -> tuple[T, Lease]:
        cfg = rs.cfg
        clock = self.clock
        max_retries = cfg.retry.attempts if retries is None else retries
        plan = order(rs, self.rng, stream=stream) if ordered is None else ordered
        candidates = [d for d in plan if d.name not in exclude]
        if hedge and cfg.hedge is not None and len(candidates) > 1:
            return await run_hedged(
                self, rs, op, attempts, candidates, deadline=deadline, stream=stream, request_id=request_id,
                max_retries=max_retries, defer=defer, ctx=ctx, discard=discard,
            )
        tried = 0
        last: HyperionError | None = None
        for idx, ds in enumerate(candidates):
            if not ds.breaker.allow(clock.now()):
                continue
            tried += 1
            out = await self.try_deployment(rs, ds, op, attempts, deadline=deadline, stream=stream, request_id=request_id,
                                  max_retries=max_retries, defer=defer, rest=candidates, skip=idx + 1)
            if isinstance(out, tuple):
                return out
            last = out
        raise no_answer(rs, attempts, request_id, tried, candidates, clock.now(), last)

    async def try_deployment(
        self,
        rs: RouteState,
        ds: DeploymentState,
        op: Callable[[DeploymentState], Awaitable[T]],
        attempts: list[Attempt],
        *,
        deadline: float,
        stream: bool,
        request_id: str | None,
        max_retries: int,
        defer: bool,
        rest: Iterable[DeploymentState],
        skip: int = 0,
    ) -> tuple[T, Lease] | HyperionError:
        """One deployment (its breaker already let the call through), with its retries: the result and
        its lease, or the error that fails over to the next deployment (``rest`` past ``skip``: those left).
        Raises errors that end the request (deadline, no failover)."""
        cfg = rs.cfg
        clock = self.clock
        probe = ds.breaker.state == HALF_OPEN
        last: HyperionError | None = None
        for n in range(max_retries + 1):
            remaining = deadline - clock.now()
            if remaining <= 0:
                ds.breaker.release(probe=probe)
                raise self._deadline(rs, attempts, request_id, last)
            limit = _min(remaining, ds.timeout or cfg.attempt_timeout, cfg.first_token_timeout if stream else None)
            started = time.perf_counter()
            try:
                async with _timeout(limit):
                    result = await op(ds)
            except (TimeoutError, asyncio.TimeoutError):
                if limit >= remaining:
                    ds.breaker.release(probe=probe)
                    attempts.append(_attempt(ds.name, started, "DeadlineExceededError", None, "deadline"))
                    raise self._deadline(rs, attempts, request_id, last) from None
                cls = FirstTokenTimeoutError if stream and limit == cfg.first_token_timeout else ProviderTimeoutError
                err: HyperionError = cls(f"no answer within {limit:.3g}s", route=rs.name, deployment=ds.name)
            except ProviderError as exc:
                err = exc
            except HyperionError as exc:  # a non-provider error from op (e.g. a guard): no failover
                ds.breaker.release(probe=probe)
                exc.route = exc.route or rs.name
                raise
            except BaseException:
                ds.breaker.release(probe=probe)
                raise
            else:
                elapsed = time.perf_counter() - started
                attempts.append(Attempt(ds.name, "ok", elapsed * 1000.0))
                (ds.recent.ttft if stream else ds.recent.latency).append(elapsed)  # for the hedge's p95
                lease = Lease(ds, clock, probe, elapsed, cfg.latency_alpha)
                if not defer:
                    ds.breaker.on_success(clock.now(), probe=probe)
                    ds.observe(elapsed, cfg.latency_alpha, ttft=stream)
                    lease.settled = True
                return result, lease
            # -- the attempt failed --
            err.route = err.route or rs.name
            err.deployment = err.deployment or ds.name
            err.request_id = request_id
            attempts.append(_attempt(ds.name, started, err.error_class, getattr(err, "status", None), err.message))
            last = err
            wait_at_least = getattr(err, "retry_after", None)
            retry_after = wait_at_least if isinstance(err, RateLimitError) else None  # a 429's cooldown
            if err.failover or err.retryable:
                ds.breaker.on_failure(clock.now(), retry_after, probe=probe)
            else:
                ds.breaker.release(probe=probe)
                err.attempts = list(attempts)  # type: ignore[attr-defined]
                raise err
            probe = False
            if not err.retryable or n >= max_retries:
                break
            if isinstance(err, (RateLimitError, ProviderTimeoutError)) and any(
                d.breaker.available(clock.now()) for d in islice(rest, skip, None)
            ):
                break  # cool this one down / leave the slow one; the next deployment may answer now
            if ds.breaker.state != CLOSED and retry_after is None:
                break  # the breaker just opened: stop hammering this deployment
            wait = backoff(n, cfg.retry.backoff_base, cfg.retry.backoff_max, self.rng, wait_at_least)
            if clock.now() + wait >= deadline:
                break
            await clock.sleep(wait)
            if not ds.breaker.allow(clock.now()):
                break  # it opened during the backoff (other requests failed meanwhile)
            probe = ds.breaker.state == HALF_OPEN
        assert last is not None
        if not last.failover:
            last.attempts = list(attempts)  # type: ignore[attr-defined]
            raise last
        return last

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
    "Lease",
    "Router",
    "order",
    "arrange",
    "backoff",
    "CLOSED",
    "OPEN",
    "HALF_OPEN",
]
