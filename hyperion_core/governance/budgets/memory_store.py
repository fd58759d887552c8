"""The memory budget store: counters, reservations and spend in this process."""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from ..ops import LOCAL, Op
from ..periods import day_id
from ..spend import MemorySpend, SpendWrite
from .records import (
    RESERVED,
    SETTLE_GRACE_S,
    AlreadyHeld,
    AppliedBudget,
    HoldState,
    NotSettled,
    Refused,
    ReserveResult,
    Settled,
    SettleResult,
)
from .store import StoreBase

_HELD, _EXPIRED = HoldState.HELD, HoldState.EXPIRED


class _Counter:
    __slots__ = ("spent", "reserved", "fired", "exhausted", "expire_at")

    def __init__(self, expire_at: int) -> None:
        self.spent = 0
        self.reserved = 0
        self.fired: set[str] = set()
        self.exhausted = False
        self.expire_at = expire_at


class _Held:
    __slots__ = ("amount", "counters", "expires", "state")

    def __init__(self, amount: int, counters: tuple[str, ...], expires: float) -> None:
        self.amount = amount
        self.counters = counters
        self.expires = expires
        self.state = _HELD


class MemoryBudgetStore(StoreBase):
    """Budgets and spend in this process (thread-safe: one lock, no awaits while holding it).
    ``now`` is the wall clock (Unix seconds) that expires reservations."""

    runner = LOCAL

    def __init__(
        self,
        *,
        now: Callable[[], float] = time.time,
        grace_s: float = SETTLE_GRACE_S,
        retention_days: int = 400,
    ) -> None:
        self.now = now
        self.grace_s = grace_s
        self.retention_s = retention_days * 86_400
        self._lock = threading.Lock()
        self._counters: dict[str, _Counter] = {}
        self._held: dict[str, _Held] = {}
        self._expiry: list[tuple[float, str]] = []  # heap of held reservations by expiry
        self._forget: deque[tuple[float, str]] = deque()  # finished ids, dropped after grace
        self._next_prune = 0.0
        self.spend = MemorySpend()

    # -- ops ------------------------------------------------------------------------------------------
    def reserve_op(
        self, request_id: str, amount_n: int, budgets: Sequence[AppliedBudget], ttl_s: float
    ) -> Op[ReserveResult]:
        return partial(self._reserve, request_id, amount_n, budgets, ttl_s)

    def settle_op(
        self, request_id: str, budgets: Sequence[AppliedBudget], actual_n: int, spend: SpendWrite | None
    ) -> Op[SettleResult]:
        return partial(self._settle, request_id, budgets, actual_n, spend)

    def release_op(self, request_id: str, budgets: Sequence[AppliedBudget]) -> Op[bool]:
        return partial(self._release, request_id)

    def status_op(self, budgets: Sequence[AppliedBudget]) -> Op[list[tuple[int, int]]]:
        return partial(self._status, budgets)

    def reset_op(self, budgets: Sequence[AppliedBudget]) -> Op[list[int]]:
        return partial(self._reset, budgets)

    def add_spend_op(self, spend: SpendWrite) -> Op[None]:
        return partial(self.spend.add, spend)

    async def spend_totals(self, by: str, since: Any, until: Any) -> dict[str, list[int]]:
        return self.spend.totals(by, since=since, until=until)

    # -- the work, under the lock ---------------------------------------------------------------------
    def _sweep(self, now: float) -> None:
        exp = self._expiry
        while exp and exp[0][0] <= now:
            _, rid = heapq.heappop(exp)
            h = self._held.get(rid)
            if h is not None and h.state is _HELD and h.expires <= now:
                self._unhold(h)
                h.state = _EXPIRED
                self._forget.append((now + self.grace_s, rid))
        fq = self._forget
        while fq and fq[0][0] <= now:
            _, rid = fq.popleft()
            h = self._held.get(rid)
            if h is not None and h.state is not _HELD:
                del self._held[rid]
        if now >= self._next_prune:
            self._next_prune = now + 60
            for k in [k for k, c in self._counters.items() if c.expire_at and c.expire_at < now]:
                del self._counters[k]
            self.spend.prune(day_id(now - self.retention_s))

    def _unhold(self, h: _Held) -> None:
        for k in h.counters:
            c = self._counters.get(k)
            if c is not None:
                c.reserved -= h.amount

    def _reserve(
        self, request_id: str, amount_n: int, budgets: Sequence[AppliedBudget], ttl_s: float
    ) -> ReserveResult:
        with self._lock:
            now = self.now()
            self._sweep(now)
            h = self._held.get(request_id)
            if h is not None:
                return AlreadyHeld(h.state)
            counters = self._counters
            for i, b in enumerate(budgets):
                c = counters.get(b.counter)
                spent, held = (c.spent, c.reserved) if c is not None else (0, 0)
                if spent + held + amount_n > b.limit_n:
                    if c is None:
                        c = counters[b.counter] = _Counter(b.expire_at)
                    first = not c.exhausted
                    c.exhausted = True
                    return Refused(i, spent, held, first)
            for b in budgets:
                c = counters.get(b.counter)
                if c is None:
                    c = counters[b.counter] = _Counter(b.expire_at)
                c.reserved += amount_n
            expires = now + ttl_s
            self._held[request_id] = _Held(amount_n, tuple(b.counter for b in budgets), expires)
            heapq.heappush(self._expiry, (expires, request_id))
            return RESERVED

    def _settle(
        self, request_id: str, budgets: Sequence[AppliedBudget], actual_n: int, spend: SpendWrite | None
    ) -> SettleResult:
        with self._lock:
            now = self.now()
            self._sweep(now)
            h = self._held.get(request_id)
            if h is None:
                return NotSettled(HoldState.MISSING)
            if h.state is not _HELD and h.state is not _EXPIRED:
                return NotSettled(h.state)
            late = h.state is _EXPIRED
            if not late:
                self._unhold(h)
            spent_out: list[int] = []
            fired: list[tuple[int, str]] = []
            for i, b in enumerate(budgets):
                c = self._counters.get(b.counter)
                if c is None:
                    spent_out.append(-1)
                    continue
                c.spent += actual_n
                spent_out.append(c.spent)
                for label, thr in b.thresholds:
                    if c.spent >= thr and label not in c.fired:
                        c.fired.add(label)
                        fired.append((i, label))
            if spend is not None:
                self.spend.add(spend)
            h.state = HoldState.SETTLED
            self._forget.append((now + self.grace_s, request_id))
            return Settled(late, tuple(spent_out), tuple(fired))

    def _release(self, request_id: str) -> bool:
        with self._lock:
            self._sweep(self.now())
            h = self._held.get(request_id)
            if h is None or h.state is not _HELD:
                return False
            self._unhold(h)
            h.state = HoldState.RELEASED
            self._forget.append((self.now() + self.grace_s, request_id))
            return True

    def _status(self, budgets: Sequence[AppliedBudget]) -> list[tuple[int, int]]:
        with self._lock:
            self._sweep(self.now())
            out = []
            for b in budgets:
                c = self._counters.get(b.counter)
                out.append((c.spent, c.reserved) if c is not None else (0, 0))
            return out

    def _reset(self, budgets: Sequence[AppliedBudget]) -> list[int]:
        with self._lock:
            self._sweep(self.now())
            out = []
            for b in budgets:
                c = self._counters.get(b.counter)
                out.append(c.spent if c is not None else 0)
                if c is not None:
                    c.spent, c.exhausted = 0, False
                    c.fired.clear()
            return out


__all__ = ["MemoryBudgetStore"]
