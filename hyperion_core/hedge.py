"""Hedged requests: when the first attempt is slow, race one more on the next deployment.

A route's ``hedge`` (:class:`HedgeConfig`) starts another attempt on the next deployment of the plan
when the current one has not produced its response (chat, embeddings) or its first chunk (streams)
after ``after_ms`` — a fixed delay, or ``p95``: the deployment's observed p95 latency (TTFT for
streams) from the small rolling window on its ``DeploymentState`` (:class:`LatencyWindow`). The first
attempt that succeeds wins; the others are cancelled (their HTTP requests closed) and recorded in
``attempts`` as ``cancelled``. Each lane pulls deployments from one shared queue (the plan order,
``ordered`` included), so a failing lane fails over to deployments no other lane is using, with the
usual retries and breaker checks (:meth:`routing.Router.try_deployment`). A lane that fails while another still
runs is not the request's failure; when every lane failed the usual typed error carries all attempts.

Breakers: a cancelled loser gets no verdict (``release``), the winner its success. Billing: only the
winner's answer is billed; a loser whose request had been sent may have been charged for its prompt
by the provider, so its estimated cost (prompt tokens estimate x the deployment's input price) goes on
the audit event (``ctx.note("hedge", ...)``), never into the caller's budget.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from .errors import AllDeploymentsFailedError, HyperionError, NoHealthyDeploymentError
from .tokens import estimate_prompt_tokens
from .types import Attempt, Outcome, RouteDecision, Usage

if TYPE_CHECKING:
    from .routing import DeploymentState, Lease, Router, RouteState

T = TypeVar("T")

#: the outcome of an attempt a hedge cancelled (``Attempt.outcome``)
CANCELLED: Outcome = "cancelled"
#: latencies (and TTFTs) kept per deployment for ``after_ms: p95``: the last 200
WINDOW = 200


class HedgeConfig(BaseModel):
    """Hedged requests: race one more deployment when the first is slow to answer."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: milliseconds without a response (streams: without a first chunk) before the next deployment is
    #: tried too (> 0), or ``p95``: the deployment's observed p95 latency (TTFT for streams)
    after_ms: float | Literal["p95"] = Field(default="p95")
    #: extra attempts one request may race at most (1..3), each ``after_ms`` after the previous one
    max_extra: int = Field(default=1, ge=1, le=3)
    #: ``p95``: observed samples needed before the percentile is used; fewer: ``default_ms``
    min_samples: int = Field(default=20, ge=1)
    #: ``p95``: milliseconds to hedge after until ``min_samples`` latencies were observed (> 0)
    default_ms: float = Field(default=1000.0, gt=0)
    #: ``p95``: the threshold never goes below this many milliseconds (>= 0), so a fast deployment's
    #: ordinary jitter does not double its traffic
    floor_ms: float = Field(default=50.0, ge=0)

    def model_post_init(self, _: Any) -> None:
        if isinstance(self.after_ms, float) and self.after_ms <= 0:
            raise ValueError(f"hedge.after_ms must be > 0 milliseconds or 'p95', got {self.after_ms:g}")


class LatencyWindow:
    """The last ``size`` latencies and TTFTs (seconds) of one deployment, for ``p95`` hedging."""

    __slots__ = ("latency", "ttft")

    def __init__(self, size: int = WINDOW) -> None:
        self.latency: deque[float] = deque(maxlen=size)
        self.ttft: deque[float] = deque(maxlen=size)

    def add(self, seconds: float, *, ttft: bool) -> None:
        (self.ttft if ttft else self.latency).append(seconds)

    def p95(self, *, ttft: bool, min_samples: int) -> float | None:
        """The 95th percentile (nearest rank) in seconds, None below ``min_samples`` samples."""
        samples = self.ttft if ttft else self.latency
        n = len(samples)
        if n < min_samples or n == 0:
            return None
        rank = max(-(-95 * n // 100), 1)  # ceil(0.95 n)
        return sorted(samples)[rank - 1]


def threshold(cfg: HedgeConfig, ds: DeploymentState, *, stream: bool) -> float:
    """Seconds after which ``ds``'s attempt is hedged."""
    if cfg.after_ms != "p95":
        return float(cfg.after_ms) / 1000.0
    p95 = ds.recent.p95(ttft=stream, min_samples=cfg.min_samples)
    if p95 is None:
        return cfg.default_ms / 1000.0
    return max(p95, cfg.floor_ms / 1000.0)


@dataclass(eq=False)
class _Lane:
    index: int  # 0: the first attempt; 1..: hedges
    ds: DeploymentState | None = None  # the deployment it is calling now
    since: float = 0.0  # perf_counter when the call to ``ds`` started
    lost_to: str | None = None  # set before a hedge cancels this lane
    sent: list[str] = field(default_factory=list)  # deployments whose request it cancelled in flight


async def run_hedged(
    router: Router,
    rs: RouteState,
    op: Callable[[DeploymentState], Awaitable[T]],
    attempts: list[Attempt],
    candidates: list[DeploymentState],
    *,
    deadline: float,
    stream: bool,
    request_id: str | None,
    max_retries: int,
    defer: bool,
    ctx: Any = None,
    discard: Callable[[T], Awaitable[None]] | None = None,
) -> tuple[T, Lease]:
    """:meth:`Router._run` with hedging (the route has ``hedge`` set and more than one candidate)."""
    cfg = rs.cfg.hedge
    assert cfg is not None
    clock = router.clock
    queue: deque[DeploymentState] = deque(candidates)
    tried = [0]

    async def lane_run(lane: _Lane) -> tuple[T, Lease]:
        async def lane_op(ds: DeploymentState) -> T:
            lane.ds, lane.since = ds, time.perf_counter()
            try:
                return await op(ds)
            except asyncio.CancelledError:
                if lane.lost_to is not None:  # cancelled by the hedge, not by the caller
                    ms = (time.perf_counter() - lane.since) * 1000.0
                    attempts.append(Attempt(ds.name, CANCELLED, ms, "HedgeLost",
                                            message=f"hedge: cancelled, {lane.lost_to} answered first"))
                    lane.sent.append(ds.name)
                raise
            finally:
                lane.ds = None

        last: HyperionError | None = None
        while queue:
            ds = queue.popleft()
            if not ds.breaker.allow(clock.now()):
                continue
            tried[0] += 1
            out = await router.try_deployment(rs, ds, lane_op, attempts, deadline=deadline, stream=stream,
                                    request_id=request_id, max_retries=max_retries, defer=defer, rest=queue)
            if isinstance(out, tuple):
                return out
            last = out
        raise _Exhausted(last)

    lanes = [_Lane(0)]
    tasks: dict[asyncio.Task[tuple[T, Lease]], _Lane] = {asyncio.ensure_future(lane_run(lanes[0])): lanes[0]}
    failures: list[BaseException] = []
    winner: tuple[T, Lease] | None = None
    win_lane: _Lane | None = None
    next_at = time.perf_counter() + threshold(cfg, candidates[0], stream=stream)
    try:
        while tasks:
            wait: float | None = None
            now = clock.now()
            if len(lanes) <= cfg.max_extra and deadline > now and any(d.breaker.available(now) for d in queue):
                wait = max(next_at - time.perf_counter(), 0.0)
            done, _ = await asyncio.wait(tasks, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if not done:  # the hedge fires: no answer yet, another deployment is left
                busy = next((ln.ds for ln in tasks.values() if ln.ds is not None), None)
                lane = _Lane(len(lanes))
                lanes.append(lane)
                tasks[asyncio.ensure_future(lane_run(lane))] = lane
                next_at = time.perf_counter() + threshold(cfg, busy or candidates[0], stream=stream)
                continue
            for task in done:
                lane = tasks.pop(task)
                exc = _Exhausted(None) if task.cancelled() else task.exception()
                if exc is not None:
                    failures.append(exc)
                elif winner is None:
                    winner, win_lane = task.result(), lane
                else:  # answered in the same instant as the winner: not used
                    await _drop(task.result(), discard, defer)
            if winner is not None:
                break
    finally:
        await _cancel(tasks, winner[1].ds.name if winner is not None else None)
    if winner is not None:
        assert win_lane is not None
        _report(ctx, rs, lanes, win_lane, winner[1].ds, attempts)
        return winner
    _report(ctx, rs, lanes, None, None, attempts)
    raise _failure(rs, failures, attempts, request_id, tried[0], candidates, clock.now())


class _Exhausted(Exception):
    """A lane found no deployment left; ``last`` is its last (failover) error."""

    def __init__(self, last: HyperionError | None) -> None:
        super().__init__("no deployment left")
        self.last = last


async def _cancel(tasks: dict[asyncio.Task[Any], _Lane], winner: str | None) -> None:
    """Cancel the lanes still running and wait until their requests are closed. ``winner`` None: the
    caller was cancelled (or an error ended the request), which no attempt records as a hedge loss."""
    if not tasks:
        return
    for task, lane in tasks.items():
        lane.lost_to = winner
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tasks.clear()


async def _drop(result: tuple[Any, Lease], discard: Callable[[Any], Awaitable[None]] | None, defer: bool) -> None:
    if defer:
        result[1].release()
    if discard is not None:
        await discard(result[0])


def _report(
    ctx: Any, rs: RouteState, lanes: list[_Lane], win: _Lane | None, ds: DeploymentState | None,
    attempts: list[Attempt],
) -> None:
    """The hedge on the audit event (``metadata``: ``hedge``, and for cancelled requests that had been
    sent ``hedge_cancelled`` = ``deployment~prompt tokens`` and ``hedge_cancelled_cost_usd`` = the
    estimate the caller is not billed) and, when a hedge won, on the route decision."""
    if ctx is None or len(lanes) < 2:
        return
    winner = ds.name if ds is not None else "none"
    ctx.note("hedge", f"{len(lanes)} attempts raced, {winner} won")
    lost = [name for lane in lanes for name in lane.sent]
    if lost:
        tokens = _prompt_tokens(ctx)
        by_name = {d.name: d for d in rs.deployments}
        cost = sum(by_name[n].adapter.target.price.cost(Usage(prompt_tokens=tokens)) for n in lost if n in by_name)
        ctx.note("hedge_cancelled", ",".join(f"{n}~{tokens}" for n in lost))
        ctx.note("hedge_cancelled_cost_usd", f"{cost:.10f}")
    if win is not None and win.index > 0 and ds is not None:
        reason = f"hedge: {ds.name} answered first (attempt {win.index + 1} of {len(lanes)})"
        dec = ctx.decision
        ctx.decision = (replace(dec, hedged=True) if dec is not None
                        else RouteDecision(strategy=rs.cfg.strategy, reason=reason, hedged=True))


def _prompt_tokens(ctx: Any) -> int:
    if getattr(ctx, "inputs", None):
        return sum(len(t) for t in ctx.inputs) // 4 + 1
    return estimate_prompt_tokens(ctx.req)


def _failure(
    rs: RouteState, failures: list[BaseException], attempts: list[Attempt], request_id: str | None, tried: int,
    candidates: list[DeploymentState], now: float,
) -> BaseException:
    """The error of a request whose every lane failed: a lane's own typed error (deadline, a 400) when
    one ended that way, else all deployments failed (or none was healthy)."""
    last: HyperionError | None = None
    for exc in failures:
        if isinstance(exc, _Exhausted):
            last = exc.last or last
            continue
        if isinstance(exc, HyperionError):
            exc.attempts = list(attempts)  # type: ignore[attr-defined]
        return exc
    return no_answer(rs, attempts, request_id, tried, candidates, now, last)


def no_answer(
    rs: RouteState, attempts: list[Attempt], request_id: str | None, tried: int, candidates: list[DeploymentState],
    now: float, last: HyperionError | None,
) -> HyperionError:
    """The error when no deployment answered: none was healthy (``tried`` 0), or all failed."""
    if tried == 0:
        waits = ", ".join(f"{d.name} open for {max(d.breaker.open_until - now, 0):.1f}s" for d in candidates)
        return NoHealthyDeploymentError(
            f"no healthy deployment: every circuit breaker is open ({waits})", attempts=attempts, route=rs.name,
            request_id=request_id,
        )
    summary = "; ".join(f"{a.deployment}: {a.error_class}" for a in attempts if a.outcome == "error")
    failed = AllDeploymentsFailedError(
        f"all deployments of route '{rs.name}' failed ({summary})", attempts=attempts, route=rs.name,
        request_id=request_id,
    )
    failed.__cause__ = last
    return failed


__all__ = ["HedgeConfig", "LatencyWindow", "run_hedged", "threshold", "no_answer", "CANCELLED", "WINDOW"]
