"""Rate limits: requests and tokens per minute per key, team and route (GCRA).

Each limit is a token bucket kept as one number, its *theoretical arrival time* (GCRA, the
algorithm behind most production limiters): ``rpm: N`` holds N requests and refills one every
``60/N`` seconds. So a full bucket admits a burst of N at once, then one per ``60/N`` s; over any
long stretch exactly N per minute (a 60 s window just after an idle spell can see up to 2N - 1).
This is how providers themselves meter RPM/TPM ("replenished continuously"), and why GCRA over a
sliding-window log: O(1) state per limit instead of a timestamp per request, an exact
``retry_after``, and TPM corrections are a shift of one number.

TPM: admission consumes the *estimate* (prompt tokens + max output tokens); once the answer is in,
``adjust(subjects, actual - estimate)`` corrects it — a negative delta gives tokens back, a positive
one (the estimate was short) leaves the bucket in debt, delaying later requests. A request larger
than the whole bucket is admitted only into a full bucket (and leaves it in debt), so it never
waits forever.

``acquire`` checks every applicable limit (the key's, its team's, the route's; RPM and TPM) and
consumes from all of them or from none; a refusal raises :class:`RateLimitedError` naming the
binding limit (the one with the longest wait) and ``retry_after`` seconds.

Clocks: the memory store reads an injectable monotonic clock; the Redis store reads Redis ``TIME``
(one clock for every process).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Protocol

from ..errors import RateLimitedError
from .config import EACH, RateLimitConfig, Subjects
from .ops import LOCAL, Op, Runner, ScriptOp

#: seconds of slack in comparisons (float rounding of accumulated intervals)
EPS = 1e-6


@dataclass(slots=True, frozen=True)
class AppliedLimit:
    name: str  # "key 'k_abc' rpm 60"
    key: str  # store key, e.g. "key:k_abc:rpm"
    kind: Literal["rpm", "tpm"]
    per_minute: int

    @property
    def interval(self) -> float:
        """Seconds per unit (request or token)."""
        return 60.0 / self.per_minute


def gcra(tat: float, now: float, cost: float, interval: float, capacity: float) -> tuple[float, float]:
    """One GCRA decision. Returns ``(new_tat, 0.0)`` when admitted, ``(tat, wait_seconds)`` when not.

    ``tat`` is the stored theoretical arrival time (0 = none), ``cost`` units are taken from a bucket
    of ``capacity`` units that refills one unit per ``interval`` seconds."""
    new = (tat if tat > now else now) + cost * interval
    wait = min(new - capacity * interval, tat) - now  # min(.., tat): an oversized cost fits a full bucket
    if wait > EPS:
        return tat, wait
    return new, 0.0


class LimitBook:
    """Which limits apply to a request's key, team and route (a specific id replaces ``"*"``)."""

    SCOPES = ("key", "team", "route")

    def __init__(self, limits: Sequence[RateLimitConfig]) -> None:
        self.limits = tuple(limits)
        self._by = {(c.scope, c.id): c for c in self.limits}
        self._cache: dict[tuple[str | None, str | None, str | None], tuple[AppliedLimit, ...]] = {}

    def applied(self, subjects: Subjects) -> tuple[AppliedLimit, ...]:
        ck = (subjects.key, subjects.team, subjects.route)
        hit = self._cache.get(ck)
        if hit is not None:
            return hit
        out: list[AppliedLimit] = []
        for scope, sid in zip(self.SCOPES, ck):
            if sid is None:
                continue
            c = self._by.get((scope, sid)) or self._by.get((scope, EACH))
            if c is None:
                continue
            if c.rpm is not None:
                out.append(AppliedLimit(f"{scope} '{sid}' rpm {c.rpm}", f"{scope}:{sid}:rpm", "rpm", c.rpm))
            if c.tpm is not None:
                out.append(AppliedLimit(f"{scope} '{sid}' tpm {c.tpm}", f"{scope}:{sid}:tpm", "tpm", c.tpm))
        res = tuple(out)
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[ck] = res
        return res


class RateStore(Protocol):
    async def acquire(
        self, limits: Sequence[AppliedLimit], costs: Sequence[float]
    ) -> tuple[int, float] | None:
        """Consume ``costs`` from every bucket or none; ``None`` if admitted, else the index of the
        binding limit and its wait in seconds."""

    async def adjust(self, limits: Sequence[AppliedLimit], deltas: Sequence[float]) -> None: ...

    runner: Runner

    def acquire_op(self, limits: Sequence[AppliedLimit], costs: Sequence[float]) -> Op[tuple[int, float] | None]:
        """``acquire`` as an op (``Governance`` batches it with the budget reservation)."""

    def adjust_op(self, limits: Sequence[AppliedLimit], deltas: Sequence[float]) -> Op[None]: ...

    async def aclose(self) -> None: ...


class MemoryRateStore:
    """Buckets in this process (thread-safe). ``now``: monotonic seconds, injectable."""

    def __init__(self, *, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()
        self._next_prune = 0.0

    runner = LOCAL

    def acquire_op(self, limits: Sequence[AppliedLimit], costs: Sequence[float]) -> Op[tuple[int, float] | None]:
        return partial(self.acquire_now, limits, costs)

    def adjust_op(self, limits: Sequence[AppliedLimit], deltas: Sequence[float]) -> Op[None]:
        return partial(self.adjust_now, limits, deltas)

    async def acquire(
        self, limits: Sequence[AppliedLimit], costs: Sequence[float]
    ) -> tuple[int, float] | None:
        return self.acquire_now(limits, costs)

    async def adjust(self, limits: Sequence[AppliedLimit], deltas: Sequence[float]) -> None:
        self.adjust_now(limits, deltas)

    def acquire_now(self, limits: Sequence[AppliedLimit], costs: Sequence[float]) -> tuple[int, float] | None:
        with self._lock:
            now = self.now()
            tats = self._tat
            new: list[float] = []
            worst, worst_i = 0.0, -1
            for i, lim in enumerate(limits):
                interval = lim.interval
                nt, wait = gcra(tats.get(lim.key, 0.0), now, costs[i], interval, lim.per_minute)
                if wait > worst:
                    worst, worst_i = wait, i
                new.append(nt)
            if worst_i >= 0:
                return worst_i, worst
            for lim, nt in zip(limits, new):
                tats[lim.key] = nt
            if now >= self._next_prune:
                self._prune(now)
            return None

    def adjust_now(self, limits: Sequence[AppliedLimit], deltas: Sequence[float]) -> None:
        with self._lock:
            now = self.now()
            for lim, d in zip(limits, deltas):
                tat = self._tat.get(lim.key, 0.0)
                nt = (tat if tat > now else now) + d * lim.interval
                if nt <= now:
                    self._tat.pop(lim.key, None)
                else:
                    self._tat[lim.key] = nt

    def _prune(self, now: float) -> None:
        """Full buckets carry no information: drop them (keeps memory bounded by active subjects)."""
        self._next_prune = now + 60.0
        for k in [k for k, t in self._tat.items() if t <= now]:
            del self._tat[k]

    async def aclose(self) -> None:
        return None


class RedisRateStore:
    """Buckets in Redis (``{P:rl}:<scope>:<id>:<rpm|tpm>``), one atomic script per call; Redis ``TIME``
    unless ``clock`` (Unix seconds; tests) is given."""

    def __init__(
        self, scripts: Any, *, prefix: str = "hyperion", clock: Callable[[], float] | None = None
    ) -> None:
        from ._lua import Scripts
        from .ops import ScriptRunner

        self.scripts = scripts if isinstance(scripts, Scripts) else Scripts(scripts)
        self.runner = ScriptRunner(self.scripts)
        self.base = f"{{{prefix}:rl}}:"
        self.clock = clock

    def _now(self) -> str:
        return "" if self.clock is None else str(int(self.clock() * 1_000_000))

    def acquire_call(self, limits: Sequence[AppliedLimit], costs: Sequence[float]):
        args: list[Any] = [self._now()]
        for lim, cost in zip(limits, costs):
            args += [repr(lim.interval * 1e6), lim.per_minute, cost]
        return ("rl_acquire", [self.base + lim.key for lim in limits], args)

    @staticmethod
    def parse_acquire(raw: list[Any]) -> tuple[int, float] | None:
        if int(raw[0]) == 1:
            return None
        return int(raw[1]) - 1, float(raw[2]) / 1e6

    async def acquire(
        self, limits: Sequence[AppliedLimit], costs: Sequence[float]
    ) -> tuple[int, float] | None:
        return self.parse_acquire((await self.scripts.run_many([self.acquire_call(limits, costs)]))[0])

    def acquire_op(self, limits: Sequence[AppliedLimit], costs: Sequence[float]) -> Op[tuple[int, float] | None]:
        return ScriptOp(self.acquire_call(limits, costs), self.parse_acquire)

    def adjust_op(self, limits: Sequence[AppliedLimit], deltas: Sequence[float]) -> Op[None]:
        return ScriptOp(self.adjust_call(limits, deltas), _nothing)

    def adjust_call(self, limits: Sequence[AppliedLimit], deltas: Sequence[float]):
        args: list[Any] = [self._now()]
        for lim, d in zip(limits, deltas):
            args += [repr(lim.interval * 1e6), d]
        return ("rl_adjust", [self.base + lim.key for lim in limits], args)

    async def adjust(self, limits: Sequence[AppliedLimit], deltas: Sequence[float]) -> None:
        if limits:
            await self.scripts.run_many([self.adjust_call(limits, deltas)])

    async def aclose(self) -> None:
        return None


def _nothing(raw: Any) -> None:
    return None


class RateLimiter:
    """RPM and TPM limits per key, team and route over a :class:`RateStore` (memory by default)."""

    def __init__(
        self,
        limits: Sequence[RateLimitConfig] = (),
        *,
        store: RateStore | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.book = LimitBook(limits)
        self.store: RateStore = store if store is not None else MemoryRateStore(now=now)

    @staticmethod
    def costs(limits: Sequence[AppliedLimit], tokens: float) -> list[float]:
        return [1.0 if lim.kind == "rpm" else float(tokens) for lim in limits]

    def prepare(self, subjects: Subjects | Mapping[str, Any], tokens_estimate: int = 0):
        limits = self.book.applied(Subjects.of(subjects))
        return limits, self.costs(limits, max(tokens_estimate, 0))

    @staticmethod
    def finish(
        limits: Sequence[AppliedLimit], result: tuple[int, float] | None, tokens: int = 0, **ctx: Any
    ) -> None:
        if result is None:
            return
        i, wait = result
        lim = limits[i]
        need = f" for ~{tokens:,} tokens" if lim.kind == "tpm" else ""
        raise RateLimitedError(
            f"rate limited by {lim.name}{need}: retry after {wait:.2f} s",
            limit_name=lim.name,
            retry_after=wait,
            **ctx,
        )

    async def acquire(self, subjects: Subjects | Mapping[str, Any], tokens_estimate: int = 0) -> None:
        """Admit one request of ``tokens_estimate`` tokens (prompt + max output) against every
        applicable limit, or raise :class:`RateLimitedError` having consumed nothing."""
        limits, costs = self.prepare(subjects, tokens_estimate)
        if limits:
            self.finish(limits, await self.store.acquire(limits, costs), tokens_estimate)

    async def adjust(self, subjects: Subjects | Mapping[str, Any], delta_tokens: int) -> None:
        """Correct TPM buckets by ``actual - estimated`` tokens (negative gives tokens back)."""
        tpm = [lim for lim in self.book.applied(Subjects.of(subjects)) if lim.kind == "tpm"]
        if tpm and delta_tokens:
            await self.store.adjust(tpm, [float(delta_tokens)] * len(tpm))

    async def refund(self, subjects: Subjects | Mapping[str, Any], tokens_estimate: int = 0) -> None:
        """Undo an ``acquire`` (the request was refused later in admission and never sent)."""
        limits, costs = self.prepare(subjects, tokens_estimate)
        if limits:
            await self.store.adjust(limits, [-c for c in costs])

    async def aclose(self) -> None:
        await self.store.aclose()


__all__ = [
    "RateLimiter",
    "RateStore",
    "MemoryRateStore",
    "RedisRateStore",
    "LimitBook",
    "AppliedLimit",
    "gcra",
    "EPS",
]
