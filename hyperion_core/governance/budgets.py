"""Budgets: hard spending limits per key, team, user and globally, held by reservations.

Admission **reserves** the request's worst-case cost on every budget that applies — the key's, its
team's, its user's and the global ones, each in its current period — all or none; settlement
replaces the reservation with the actual cost, exactly once::

    res = await ledger.reserve(request_id, {"key": "k1", "team": "ml", "route": "chat"}, 0.04)
    ...                                      # raises BudgetExceededError naming the budget
    done = await ledger.settle(res, actual_usd=0.012, prompt_tokens=900, completion_tokens=40)
    done.settled, done.alerts                # (True, (BudgetAlert(...), ...)); a second call: falsy
    await ledger.release(res)                # failure path: nothing was billed

Contract:

* a budget admits a request only if ``spent + reserved + amount <= limit``: the hard limit is never
  passed by reservations, also across processes (Redis: one atomic script per call);
* a reservation that is neither settled nor released within ``reservation_ttl_s`` (its process
  crashed) is released by the next ledger call; a settle that arrives later still records its
  spend (``Settlement.late``);
* ``settle`` and ``release`` take effect once per request id; a repeated call returns a falsy
  :class:`Settlement` / ``False``. A repeated ``reserve`` of a held id returns the held reservation;
* spend is charged to the period in which the request was admitted;
* soft thresholds fire once per threshold per period when settled spend reaches them; the first
  refusal in a period fires one ``exhausted`` alert. Alerts go to ``on_alert`` and are returned;
* if the provider bills more than the reserved worst case, the ledger records what was billed.

The ledger itself is I/O-free: :class:`MemoryBudgetStore` (one process, thread-safe) and
:class:`RedisBudgetStore` (shared) do the atomic part behind :class:`BudgetStore`.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ..errors import BudgetExceededError, GovernanceStoreError, InvalidRequestError
from ._lua import s as _text
from .alerts import BudgetAlert, fmt_usd
from .config import EACH, BudgetConfig, Subjects
from .periods import UTC, Period, PeriodClock, PeriodWindow, day_id
from .spend import NANO, MemorySpend, SpendRow, SpendWrite, check_by, day_filter, rows_from, spend_write

#: seconds a settled / released / expired reservation is remembered (repeat settles are no-ops)
SETTLE_GRACE_S = 600.0
#: seconds a budget counter outlives its period (late settles land; last period stays readable)
PERIOD_GRACE_S = 86_400


#: the largest amount (nano-USD) or token count a ledger stores: exact in Lua's doubles and in int64
MAX_COUNT = 2**53 - 1


def to_nano(usd: float) -> int:
    return round(usd * NANO)


def _count(n: int) -> int:
    """A token count as the ledger stores it: clamped into [0, 2^53) (upstream usage is not trusted)."""
    return 0 if n < 0 else min(int(n), MAX_COUNT)


def _usd_checked(what: str, usd: float) -> None:
    if not usd >= 0 or math.isinf(usd) or usd * NANO > MAX_COUNT:
        raise InvalidRequestError(
            f"{what} must be a finite USD amount from 0 to {MAX_COUNT / NANO:,.0f}, got {usd}"
        )


def to_nano_up(usd: float) -> int:
    """Reservations round up: a worst case is never under-held."""
    return math.ceil(round(usd * NANO, 3))  # round first: 4.98 * 1e9 is 4980000000.000001


@dataclass(slots=True, frozen=True)
class AppliedBudget:
    """One budget as it applies to one request now: the subject it counts and its current period."""

    config: BudgetConfig
    subject: str | None  # the key / team / user id; None for global
    label: str  # "team 'ml' daily budget"
    window: PeriodWindow
    counter: str  # store key of this budget in this period, e.g. "team:ml:d2026-11-24"
    limit_n: int  # nano-USD
    expire_at: int  # Unix seconds when the store may drop the counter; 0 = never

    def alert(self, kind: str, threshold: float | None, spent_usd: float, t: float) -> BudgetAlert:
        c = self.config
        return BudgetAlert(
            self.label,
            c.scope,
            self.subject,
            c.period,
            self.window.id,
            kind,
            threshold,
            spent_usd,
            c.limit_usd,
            t,  # type: ignore[arg-type]
        )

    @property
    def thresholds(self) -> tuple[tuple[str, int], ...]:
        return tuple((repr(t), round(t * self.limit_n)) for t in self.config.alert_thresholds)


@dataclass(slots=True, frozen=True)
class Reservation:
    """Budget held for one request. Pass it back to ``settle`` or ``release``."""

    request_id: str
    amount_usd: float
    subjects: Subjects
    budgets: tuple[AppliedBudget, ...]
    created_at: float  # Unix seconds

    @property
    def amount_n(self) -> int:
        return to_nano_up(self.amount_usd)


@dataclass(slots=True, frozen=True)
class Settlement:
    """The result of ``settle``; falsy when nothing happened (already settled or released)."""

    settled: bool
    state: str = "settled"  # settled | already_settled | released | unknown
    late: bool = False  # the reservation had expired (its hold was released) before this settle
    alerts: tuple[BudgetAlert, ...] = ()

    def __bool__(self) -> bool:
        return self.settled


@dataclass(slots=True, frozen=True)
class BudgetStatus:
    budget: str
    scope: str
    id: str | None
    period: Period
    period_id: str
    limit_usd: float
    spent_usd: float
    reserved_usd: float
    resets_at: float | None  # Unix seconds; None for "total"

    @property
    def remaining_usd(self) -> float:
        return max(self.limit_usd - self.spent_usd - self.reserved_usd, 0.0)


_STATE_NAMES = {"s": "already_settled", "l": "released", "missing": "unknown", "x": "expired", "r": "held"}


# -- which budgets apply ------------------------------------------------------------------------------


class BudgetBook:
    """Budgets by scope and id; which ones apply to a request (a specific id replaces ``"*"`` for
    the same scope and period). Results are cached per subjects and period."""

    SCOPES = ("key", "team", "user", "global")

    def __init__(self, budgets: Sequence[BudgetConfig], periods: PeriodClock) -> None:
        self.budgets = tuple(budgets)
        self.periods = periods
        self._by: dict[tuple[str, str], list[BudgetConfig]] = {}
        for b in self.budgets:
            self._by.setdefault((b.scope, b.id), []).append(b)
        self._static: dict[Subjects, tuple[tuple[BudgetConfig, str | None, str, str], ...]] = {}
        self._applied: dict[Subjects, tuple[tuple[PeriodWindow, ...], tuple[AppliedBudget, ...]]] = {}

    def configs_for(self, subjects: Subjects) -> tuple[tuple[BudgetConfig, str | None, str, str], ...]:
        hit = self._static.get(subjects)
        if hit is not None:
            return hit
        out: list[tuple[BudgetConfig, str | None, str, str]] = []
        for scope in self.SCOPES:
            sid = subjects.get(scope)
            if scope != "global" and sid is None:
                continue
            specific = self._by.get((scope, sid), []) if scope != "global" else []
            periods = {b.period for b in specific}
            chosen = specific + [b for b in self._by.get((scope, EACH), []) if b.period not in periods]
            for b in chosen:
                label = b.name or (
                    f"{scope} '{sid}' {b.period} budget" if sid is not None else f"global {b.period} budget"
                )
                base = f"{scope}:{sid}" if sid is not None else "global"
                out.append((b, sid, label, base))
        res = tuple(out)
        if len(self._static) > 50_000:
            self._static.clear()
            self._applied.clear()
        self._static[subjects] = res
        return res

    def applied(self, subjects: Subjects, t: float) -> tuple[AppliedBudget, ...]:
        configs = self.configs_for(subjects)
        if not configs:
            return ()
        windows = tuple(self.periods.current(c[0].period, t) for c in configs)
        hit = self._applied.get(subjects)
        if hit is not None and hit[0] == windows:
            return hit[1]
        out = tuple(
            AppliedBudget(
                config=b,
                subject=sid,
                label=label,
                window=w,
                counter=f"{base}:{w.id}",
                limit_n=to_nano(b.limit_usd),
                expire_at=0 if w.end is None else int(w.end) + PERIOD_GRACE_S,
            )
            for (b, sid, label, base), w in zip(configs, windows)
        )
        self._applied[subjects] = (windows, out)
        return out

    def concrete(self, t: float) -> tuple[AppliedBudget, ...]:
        """Budgets that name their subject (and global ones): what ``status()`` shows by default."""
        out: list[AppliedBudget] = []
        for b in self.budgets:
            if b.id == EACH and b.scope != "global":
                continue
            subj = Subjects() if b.scope == "global" else Subjects(**{b.scope: b.id})
            out.extend(a for a in self.applied(subj, t) if a.config is b)
        return tuple(out)


# -- stores -------------------------------------------------------------------------------------------

# Results shared by both stores (the Redis scripts return the same shapes):
#   reserve -> ("ok",) | ("exists", state) | ("refused", index, spent_n, reserved_n, first_refusal)
#   settle  -> ("ok", late, [spent_n per budget, -1 if gone], [(index, threshold label)])
#              | ("no", state)


class BudgetStore(Protocol):
    async def reserve(
        self, request_id: str, amount_n: int, budgets: Sequence[AppliedBudget], ttl_s: float
    ) -> tuple: ...

    async def settle(
        self, request_id: str, budgets: Sequence[AppliedBudget], actual_n: int, spend: SpendWrite | None
    ) -> tuple: ...

    async def release(self, request_id: str, budgets: Sequence[AppliedBudget]) -> bool: ...

    async def status(self, budgets: Sequence[AppliedBudget]) -> list[tuple[int, int]]: ...

    async def add_spend(self, spend: SpendWrite) -> None: ...

    async def spend_totals(self, by: str, since: Any, until: Any) -> dict[str, list[int]]: ...

    async def aclose(self) -> None: ...


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
        self.state = "r"


class MemoryBudgetStore:
    """Budgets and spend in this process (thread-safe: one lock, no awaits while holding it).
    ``now`` is the wall clock (Unix seconds) that expires reservations."""

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

    def _sweep(self, now: float) -> None:
        exp = self._expiry
        while exp and exp[0][0] <= now:
            _, rid = heapq.heappop(exp)
            h = self._held.get(rid)
            if h is not None and h.state == "r" and h.expires <= now:
                self._unhold(h)
                h.state = "x"
                self._forget.append((now + self.grace_s, rid))
        fq = self._forget
        while fq and fq[0][0] <= now:
            _, rid = fq.popleft()
            h = self._held.get(rid)
            if h is not None and h.state != "r":
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

    async def reserve(
        self, request_id: str, amount_n: int, budgets: Sequence[AppliedBudget], ttl_s: float
    ) -> tuple:
        with self._lock:
            now = self.now()
            self._sweep(now)
            h = self._held.get(request_id)
            if h is not None:
                return ("exists", h.state)
            counters = self._counters
            for i, b in enumerate(budgets):
                c = counters.get(b.counter)
                spent, held = (c.spent, c.reserved) if c is not None else (0, 0)
                if spent + held + amount_n > b.limit_n:
                    if c is None:
                        c = counters[b.counter] = _Counter(b.expire_at)
                    first = not c.exhausted
                    c.exhausted = True
                    return ("refused", i, spent, held, first)
            for b in budgets:
                c = counters.get(b.counter)
                if c is None:
                    c = counters[b.counter] = _Counter(b.expire_at)
                c.reserved += amount_n
            expires = now + ttl_s
            self._held[request_id] = _Held(amount_n, tuple(b.counter for b in budgets), expires)
            heapq.heappush(self._expiry, (expires, request_id))
            return ("ok",)

    async def settle(
        self, request_id: str, budgets: Sequence[AppliedBudget], actual_n: int, spend: SpendWrite | None
    ) -> tuple:
        with self._lock:
            now = self.now()
            self._sweep(now)
            h = self._held.get(request_id)
            if h is None:
                return ("no", "missing")
            if h.state not in ("r", "x"):
                return ("no", h.state)
            late = h.state == "x"
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
            h.state = "s"
            self._forget.append((now + self.grace_s, request_id))
            return ("ok", late, spent_out, fired)

    async def release(self, request_id: str, budgets: Sequence[AppliedBudget]) -> bool:
        with self._lock:
            self._sweep(self.now())
            h = self._held.get(request_id)
            if h is None or h.state != "r":
                return False
            self._unhold(h)
            h.state = "l"
            self._forget.append((self.now() + self.grace_s, request_id))
            return True

    async def status(self, budgets: Sequence[AppliedBudget]) -> list[tuple[int, int]]:
        with self._lock:
            self._sweep(self.now())
            out = []
            for b in budgets:
                c = self._counters.get(b.counter)
                out.append((c.spent, c.reserved) if c is not None else (0, 0))
            return out

    async def add_spend(self, spend: SpendWrite) -> None:
        self.spend.add(spend)

    async def spend_totals(self, by: str, since: Any, until: Any) -> dict[str, list[int]]:
        return self.spend.totals(by, since=since, until=until)

    async def aclose(self) -> None:
        return None


class RedisBudgetStore:
    """Budgets and spend in Redis, shared by every process; one atomic script per call (layout and
    scripts: ``governance._lua``). ``clock`` replaces Redis ``TIME`` (tests only)."""

    def __init__(
        self,
        scripts: Any,
        *,
        prefix: str = "hyperion",
        clock: Callable[[], float] | None = None,
        grace_s: float = SETTLE_GRACE_S,
        retention_days: int = 400,
    ) -> None:
        from ._lua import Scripts

        self.scripts = scripts if isinstance(scripts, Scripts) else Scripts(scripts)
        self.base = f"{{{prefix}:ledger}}:"
        self.resq = self.base + "resq"
        self.res_prefix = self.base + "res:"
        self.days_key = self.base + "spend:days"
        self.clock = clock
        self.grace_ms = int(grace_s * 1000)
        self.retention_s = retention_days * 86_400

    def _now(self) -> str:
        return "" if self.clock is None else str(int(self.clock() * 1000))

    def key(self, b: AppliedBudget) -> str:
        return self.base + "b:" + b.counter

    # calls (also pipelined by Governance.admit)
    def reserve_call(self, request_id: str, amount_n: int, budgets: Sequence[AppliedBudget], ttl_s: float):
        keys = [self.resq, self.res_prefix + request_id, *(self.key(b) for b in budgets)]
        args: list[Any] = [
            self._now(),
            request_id,
            amount_n,
            int(ttl_s * 1000),
            self.grace_ms,
            self.res_prefix,
        ]
        for b in budgets:
            args += [b.limit_n, b.expire_at]
        return ("reserve", keys, args)

    @staticmethod
    def parse_reserve(raw: list[Any]) -> tuple:
        code = int(raw[0])
        if code == 1:
            return ("ok",)
        if code == 2:
            return ("exists", _text(raw[1]))
        return ("refused", int(raw[1]) - 1, int(raw[2]), int(raw[3]), bool(int(raw[4])))

    async def reserve(
        self, request_id: str, amount_n: int, budgets: Sequence[AppliedBudget], ttl_s: float
    ) -> tuple:
        return self.parse_reserve(
            await self.scripts.run(*self.reserve_call(request_id, amount_n, budgets, ttl_s))
        )

    def _spend_parts(self, w: SpendWrite) -> tuple[list[str], list[str], int]:
        keys = [f"{self.base}spend:{w.day}:{dim}" for dim, _ in w.groups] + [self.days_key]
        groups = [g for _, g in w.groups]
        day_end = datetime.fromisoformat(w.day).replace(tzinfo=UTC).timestamp() + 86_400
        return keys, groups, int(day_end + self.retention_s)

    def settle_call(
        self, request_id: str, budgets: Sequence[AppliedBudget], actual_n: int, spend: SpendWrite | None
    ):
        keys = [self.resq, self.res_prefix + request_id, *(self.key(b) for b in budgets)]
        if spend is not None:
            skeys, groups, exp = self._spend_parts(spend)
            keys += skeys
            head = [len(groups), exp, spend.day, spend.saved_n, spend.prompt_tokens, spend.completion_tokens]
        else:
            groups, head = [], [0, 0, "", 0, 0, 0]
        args: list[Any] = [
            self._now(),
            request_id,
            actual_n,
            self.grace_ms,
            self.res_prefix,
            len(budgets),
            *head,
        ]
        args += [",".join(f"{label}={thr}" for label, thr in b.thresholds) for b in budgets]
        args += groups
        return ("settle", keys, args)

    @staticmethod
    def parse_settle(raw: list[Any]) -> tuple:
        if int(raw[0]) != 1:
            return ("no", _text(raw[1]))
        fired = []
        for f in raw[3]:
            i, _, label = _text(f).partition(":")
            fired.append((int(i) - 1, label))
        return ("ok", bool(int(raw[1])), [int(x) for x in raw[2]], fired)

    async def settle(
        self, request_id: str, budgets: Sequence[AppliedBudget], actual_n: int, spend: SpendWrite | None
    ) -> tuple:
        return self.parse_settle(
            await self.scripts.run(*self.settle_call(request_id, budgets, actual_n, spend))
        )

    def release_call(self, request_id: str, budgets: Sequence[AppliedBudget]):
        keys = [self.resq, self.res_prefix + request_id, *(self.key(b) for b in budgets)]
        return ("release", keys, [self._now(), request_id, self.grace_ms, self.res_prefix])

    async def release(self, request_id: str, budgets: Sequence[AppliedBudget]) -> bool:
        return int(await self.scripts.run(*self.release_call(request_id, budgets))) == 1

    async def status(self, budgets: Sequence[AppliedBudget]) -> list[tuple[int, int]]:
        keys = [self.resq, *(self.key(b) for b in budgets)]
        raw = await self.scripts.run("status", keys, [self._now(), self.grace_ms, self.res_prefix])
        return [(int(a), int(b)) for a, b in raw]

    async def add_spend(self, spend: SpendWrite) -> None:
        keys, groups, exp = self._spend_parts(spend)
        args = [self._now(), len(groups), exp, spend.day, spend.requests, spend.prompt_tokens]
        args += [spend.completion_tokens, spend.cost_n, spend.saved_n, *groups]
        await self.scripts.run("spend", keys, args)

    async def spend_totals(self, by: str, since: Any, until: Any) -> dict[str, list[int]]:
        from redis.exceptions import RedisError

        from .spend import add_fields

        r = self.scripts.client
        keep = day_filter(since, until)
        totals: dict[str, list[int]] = {}
        try:
            days = sorted(d for d in (_text(x) for x in await r.smembers(self.days_key)) if keep(d))
            if not days:
                return totals
            pipe = r.pipeline(transaction=False)
            for d in days:
                pipe.hgetall(f"{self.base}spend:{d}:{by}")
            hashes = await pipe.execute()
        except RedisError as exc:
            raise GovernanceStoreError(f"governance store: spend report failed: {exc}") from exc
        for h in hashes:
            add_fields(totals, ((_text(k), int(v)) for k, v in h.items()))
        return totals

    async def aclose(self) -> None:
        return None


# -- the ledger -----------------------------------------------------------------------------------------


class BudgetLedger:
    """Reserve, settle and release request costs against every budget that applies; spend reports.

    ``now`` is the wall clock (Unix seconds) for periods and spend days; ``tz`` the zone of both.
    ``reservation_ttl_s`` (> 0, seconds) bounds how long a reservation holds budget.
    """

    def __init__(
        self,
        budgets: Sequence[BudgetConfig] = (),
        *,
        store: BudgetStore | None = None,
        now: Callable[[], float] = time.time,
        tz: str | None = "UTC",
        reservation_ttl_s: float = 120.0,
        on_alert: Callable[[BudgetAlert], None] | None = None,
        spend_retention_days: int = 400,
    ) -> None:
        if reservation_ttl_s <= 0:
            raise InvalidRequestError(f"reservation_ttl_s must be > 0 seconds, got {reservation_ttl_s}")
        self.now = now
        #: a clock that must be re-synchronised before use (``RedisClock.refresh``), else None
        self._refresh = getattr(now, "refresh", None)
        self.periods = PeriodClock(now, tz)
        self.book = BudgetBook(budgets, self.periods)
        self.store: BudgetStore = (
            store if store is not None else MemoryBudgetStore(now=now, retention_days=spend_retention_days)
        )
        self.ttl_s = reservation_ttl_s
        self.on_alert = on_alert
        self.retention_days = spend_retention_days

    # -- reserve ---------------------------------------------------------------------------------
    def prepare(
        self, request_id: str, subjects: Subjects | Mapping[str, Any], amount_usd: float
    ) -> Reservation:
        """The reservation to ask the store for (pure; ``reserve`` = prepare + store + ``finish``)."""
        _usd_checked("budget reservation: amount", amount_usd)
        subj = Subjects.of(subjects)
        t = self.now()
        return Reservation(request_id, amount_usd, subj, self.book.applied(subj, t), t)

    def finish(self, res: Reservation, result: tuple) -> Reservation:
        """Turn the store's answer into the reservation, or raise :class:`BudgetExceededError`."""
        kind = result[0]
        if kind == "ok":
            return res
        if kind == "exists":
            if result[1] == "r":
                return res
            state = {"s": "settled", "l": "released", "x": "reserved and expired"}.get(result[1], result[1])
            raise InvalidRequestError(
                f"request id '{res.request_id}' was already {state}; every request needs a new id",
                request_id=res.request_id,
            )
        _, i, spent_n, held_n, first = result
        b = res.budgets[i]
        spent, held, limit = spent_n / NANO, held_n / NANO, b.limit_n / NANO
        when = self._when(b.window.end)
        if first:
            self._alert(b.alert("exhausted", None, spent, self.now()))
        raise BudgetExceededError(
            f"{b.label} {fmt_usd(limit)}: spent {fmt_usd(spent)} + reserved {fmt_usd(held)} + this request "
            f"{fmt_usd(res.amount_usd)} > limit ({when})",
            budget=b.label,
            limit=limit,
            spent=spent,
            reserved=held,
            period=b.config.period,
            resets_at=b.window.end,
            request_id=res.request_id,
            route=res.subjects.route,
        )

    async def _sync_clock(self) -> None:
        if self._refresh is not None:
            await self._refresh()

    def _when(self, end: float | None) -> str:
        if end is None:
            return "a total budget never resets"
        return "resets " + datetime.fromtimestamp(end, self.periods.tz).strftime("%Y-%m-%d %H:%M %Z")

    async def reserve(
        self, request_id: str, subjects: Subjects | Mapping[str, Any], amount_usd: float
    ) -> Reservation:
        """Hold ``amount_usd`` (the worst case) on every budget that applies, or on none."""
        await self._sync_clock()
        res = self.prepare(request_id, subjects, amount_usd)
        return self.finish(res, await self.store.reserve(request_id, res.amount_n, res.budgets, self.ttl_s))

    # -- settle / release ---------------------------------------------------------------------------
    def settle_parts(
        self,
        res: Reservation,
        actual_usd: float,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        deployment: str | None = None,
        model: str | None = None,
        saved_usd: float = 0.0,
    ) -> tuple[int, SpendWrite]:
        _usd_checked("settle: actual cost", actual_usd)
        _usd_checked("settle: saved", saved_usd)
        actual_n = to_nano(actual_usd)
        w = spend_write(
            self.periods.day(),
            res.subjects,
            deployment=deployment,
            model=model,
            prompt_tokens=_count(prompt_tokens),
            completion_tokens=_count(completion_tokens),
            cost_n=actual_n,
            saved_n=to_nano(saved_usd),
        )
        return actual_n, w

    def settled(self, res: Reservation, result: tuple) -> Settlement:
        if result[0] != "ok":
            return Settlement(False, _STATE_NAMES.get(result[1], result[1]))
        _, late, spent, fired = result
        alerts = []
        t = self.now()
        for i, label in fired:
            b = res.budgets[i]
            alerts.append(b.alert("threshold", float(label), spent[i] / NANO, t))
        for a in alerts:
            self._alert(a)
        return Settlement(True, "settled", bool(late), tuple(alerts))

    async def settle(
        self,
        reservation: Reservation,
        actual_usd: float,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        deployment: str | None = None,
        model: str | None = None,
        saved_usd: float = 0.0,
    ) -> Settlement:
        """Replace the hold with the actual cost and record the spend — once per request id.
        ``saved_usd``: what a cache hit saved (its ``actual_usd`` is then 0)."""
        await self._sync_clock()
        actual_n, w = self.settle_parts(
            reservation,
            actual_usd,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            deployment=deployment,
            model=model,
            saved_usd=saved_usd,
        )
        result = await self.store.settle(reservation.request_id, reservation.budgets, actual_n, w)
        return self.settled(reservation, result)

    async def release(self, reservation: Reservation) -> bool:
        """Give the hold back (the request failed before anything was billed). Once per id."""
        return await self.store.release(reservation.request_id, reservation.budgets)

    # -- reads --------------------------------------------------------------------------------------
    async def status(self, subjects: Subjects | Mapping[str, Any] | None = None) -> list[BudgetStatus]:
        """The budgets that apply to ``subjects`` (e.g. ``{"team": "ml"}``) in their current period;
        without subjects, every budget that names its subject, and the global ones."""
        await self._sync_clock()
        t = self.now()
        applied = (
            self.book.applied(Subjects.of(subjects), t) if subjects is not None else self.book.concrete(t)
        )
        values = await self.store.status(applied) if applied else []
        return [
            BudgetStatus(
                b.label,
                b.config.scope,
                b.subject,
                b.config.period,
                b.window.id,
                b.limit_n / NANO,
                spent / NANO,
                held / NANO,
                b.window.end,
            )
            for b, (spent, held) in zip(applied, values)
        ]

    async def record_saving(
        self,
        subjects: Subjects | Mapping[str, Any],
        saved_usd: float,
        *,
        deployment: str | None = None,
        model: str | None = None,
    ) -> None:
        """Record a request served from the cache outside a reservation: one request, no cost,
        ``saved_usd`` saved. (A cache hit after admission settles with ``actual_usd=0, saved_usd=x``.)"""
        await self._sync_clock()
        w = spend_write(
            self.periods.day(),
            Subjects.of(subjects),
            deployment=deployment,
            model=model,
            saved_n=to_nano(saved_usd),
        )
        await self.store.add_spend(w)

    async def spend_report(self, by: str = "key", since: Any = None, until: Any = None) -> list[SpendRow]:
        """Spend per ``by`` group over the inclusive day range ``since``..``until`` (dates,
        ``YYYY-MM-DD``, datetimes or Unix seconds; either open), most expensive first."""
        return rows_from(await self.store.spend_totals(check_by(by), since, until))

    def _alert(self, alert: BudgetAlert) -> None:
        if self.on_alert is not None:
            try:
                self.on_alert(alert)
            except Exception:  # never fail a request for an alert
                import logging

                logging.getLogger("hyperion.alerts").exception("budget alert hook failed")

    async def aclose(self) -> None:
        await self.store.aclose()


__all__ = [
    "BudgetLedger",
    "BudgetBook",
    "BudgetStore",
    "MemoryBudgetStore",
    "RedisBudgetStore",
    "AppliedBudget",
    "Reservation",
    "Settlement",
    "BudgetStatus",
    "to_nano",
]
