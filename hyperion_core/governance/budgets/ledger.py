"""The budget ledger: which budgets apply (:class:`BudgetBook`) and the reserve / settle / release
logic over a :class:`~.store.BudgetStore` — pure arithmetic and decisions, no backend branches."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

from ...errors import BudgetExceededError, InvalidRequestError
from ..alerts import BudgetAlert, fmt_usd
from ..config import EACH, BudgetConfig, Subjects
from ..periods import PeriodClock, PeriodWindow
from ..spend import NANO, SpendRow, SpendWrite, check_by, rows_from, spend_write
from .memory_store import MemoryBudgetStore
from .records import (
    PERIOD_GRACE_S,
    RESERVED,
    AlreadyHeld,
    AppliedBudget,
    BudgetStatus,
    HoldState,
    NotSettled,
    Refused,
    Reservation,
    ReserveResult,
    Settlement,
    SettleResult,
    count,
    to_nano,
    usd_checked,
)
from .store import BudgetStore

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
        usd_checked("budget reservation: amount", amount_usd)
        subj = Subjects.of(subjects)
        t = self.now()
        return Reservation(request_id, amount_usd, subj, self.book.applied(subj, t), t)

    def finish(self, res: Reservation, result: ReserveResult) -> Reservation:
        """Turn the store's answer into the reservation, or raise :class:`BudgetExceededError`."""
        if result is RESERVED:
            return res
        if isinstance(result, Refused):
            self.refuse(res, result)
        if isinstance(result, AlreadyHeld) and result.state is not HoldState.HELD:
            raise InvalidRequestError(
                f"request id '{res.request_id}' was already {result.state.described}; "
                "every request needs a new id",
                request_id=res.request_id,
            )
        return res

    def refuse(self, res: Reservation, refused: Refused) -> NoReturn:
        """Raise the :class:`BudgetExceededError` for a refusal (and fire its first ``exhausted`` alert)."""
        i, spent_n, held_n, first = refused.index, refused.spent_n, refused.reserved_n, refused.first
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
        usd_checked("settle: actual cost", actual_usd)
        usd_checked("settle: saved", saved_usd)
        actual_n = to_nano(actual_usd)
        w = spend_write(
            self.periods.day(),
            res.subjects,
            deployment=deployment,
            model=model,
            prompt_tokens=count(prompt_tokens),
            completion_tokens=count(completion_tokens),
            cost_n=actual_n,
            saved_n=to_nano(saved_usd),
        )
        return actual_n, w

    def settled(self, res: Reservation, result: SettleResult) -> Settlement:
        """Turn the store's answer into the :class:`Settlement` (firing its threshold alerts)."""
        if isinstance(result, NotSettled):
            return Settlement(False, result.state.settlement)
        late, spent, fired = result.late, result.spent_n, result.fired
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

    async def reset(self, scope: str, subject: str | None = None, period: str | None = None) -> list[BudgetStatus]:
        """Start the current period of ``scope``'s budgets for ``subject`` (``period``: only that one)
        over: spent back to 0 and their alerts re-armed; reservations in flight stay held and settle
        as usual. Returns the budgets as they were just before."""
        if scope not in BudgetBook.SCOPES:
            raise InvalidRequestError(f"scope: must be one of {', '.join(BudgetBook.SCOPES)}, got {scope!r}")
        if (scope == "global") != (subject is None):
            raise InvalidRequestError("id: a global budget has none; every other scope needs one")
        before = [s for s in await self.status(Subjects.of({scope: subject}) if subject else None)
                  if s.scope == scope and s.id == subject and (period is None or s.period == period)]
        if not before:
            raise InvalidRequestError(
                f"no {period + ' ' if period else ''}budget applies to {scope}" + (f" '{subject}'" if subject else "")
            )
        t = self.now()
        applied = self.book.applied(Subjects.of({scope: subject}), t) if subject else self.book.concrete(t)
        chosen = [b for b in applied if b.config.scope == scope and (period is None or b.config.period == period)]
        await self.store.runner.one(self.store.reset_op(chosen))
        return before

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


__all__ = ["BudgetBook", "BudgetLedger"]
