"""Budget periods: which period a wall-clock instant falls in, and when that period resets. Pure.

=========  ==================  =====================================================================
period     id                  window (local midnight in the configured time zone, UTC by default)
=========  ==================  =====================================================================
daily      ``d2026-11-24``     that day, 00:00 to the next day's 00:00
weekly     ``w2026-W48``       the ISO week, Monday 00:00 to the next Monday (ISO week-numbering year:
                               Monday 2024-12-30 is in ``w2025-W01``)
monthly    ``m2026-11``        the 1st 00:00 to the next month's 1st 00:00
total      ``total``           forever: it never resets (``end`` and ``resets_at`` are ``None``)
=========  ==================  =====================================================================

Times are Unix seconds (float). A window is half-open: ``start <= t < end``, so the reset instant
itself belongs to the new period. In a time zone with daylight saving a local day is 23 or 25 hours.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Literal

Period = Literal["daily", "weekly", "monthly", "total"]
PERIODS: tuple[Period, ...] = ("daily", "weekly", "monthly", "total")

UTC = timezone.utc


@dataclass(slots=True, frozen=True)
class PeriodWindow:
    """One period instance: its id and its half-open window ``[start, end)`` in Unix seconds."""

    period: Period
    id: str
    start: float | None  # None for "total"
    end: float | None  # None for "total": never resets

    @property
    def resets_at(self) -> float | None:
        return self.end

    def contains(self, t: float) -> bool:
        return (self.start is None or self.start <= t) and (self.end is None or t < self.end)


_TOTAL = PeriodWindow("total", "total", None, None)


def get_tz(name: str | tzinfo | None) -> tzinfo:
    """``None``/``"UTC"`` -> UTC; an IANA name (``"Europe/Berlin"``) -> its ``ZoneInfo``."""
    if name is None or name == "UTC":
        return UTC
    if isinstance(name, tzinfo):
        return name
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def _midnight(d: date, tz: tzinfo) -> float:
    return datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()


def window(period: Period, t: float, tz: tzinfo = UTC) -> PeriodWindow:
    """The period instance that contains instant ``t`` (Unix seconds)."""
    if period == "total":
        return _TOTAL
    d = datetime.fromtimestamp(t, tz).date()
    if period == "daily":
        return PeriodWindow(
            period, f"d{d.isoformat()}", _midnight(d, tz), _midnight(d + timedelta(days=1), tz)
        )
    if period == "weekly":
        monday = d - timedelta(days=d.weekday())
        iso = monday.isocalendar()
        return PeriodWindow(
            period,
            f"w{iso[0]}-W{iso[1]:02d}",
            _midnight(monday, tz),
            _midnight(monday + timedelta(days=7), tz),
        )
    if period == "monthly":
        first = d.replace(day=1)
        nxt = date(first.year + 1, 1, 1) if first.month == 12 else date(first.year, first.month + 1, 1)
        return PeriodWindow(
            period, f"m{first.year}-{first.month:02d}", _midnight(first, tz), _midnight(nxt, tz)
        )
    raise KeyError(f"unknown budget period {period!r} (known: {', '.join(PERIODS)})")


def period_id(period: Period, t: float, tz: tzinfo = UTC) -> str:
    """``window(period, t, tz).id``, e.g. ``d2026-11-24``."""
    return window(period, t, tz).id


def resets_at(period: Period, t: float, tz: tzinfo = UTC) -> float | None:
    """When the period containing ``t`` ends (Unix seconds); ``None`` for ``total``."""
    return window(period, t, tz).end


def day_id(t: float, tz: tzinfo = UTC) -> str:
    """The calendar day of ``t`` as ``YYYY-MM-DD`` (spend reports group by it)."""
    return datetime.fromtimestamp(t, tz).date().isoformat()


class PeriodClock:
    """The current window of each period for a wall clock ``now`` (injectable), cached until it ends:
    the hot path pays one comparison, not a date computation."""

    __slots__ = ("now", "tz", "_cache")

    def __init__(self, now: Callable[[], float] = time.time, tz: str | tzinfo | None = None) -> None:
        self.now = now
        self.tz = get_tz(tz)
        self._cache: dict[str, PeriodWindow] = {}

    def current(self, period: Period, t: float | None = None) -> PeriodWindow:
        if t is None:
            t = self.now()
        w = self._cache.get(period)
        if w is None or not w.contains(t):
            w = window(period, t, self.tz)
            self._cache[period] = w
        return w

    def day(self, t: float | None = None) -> str:
        return self.current("daily", t).id[1:]


__all__ = [
    "Period",
    "PERIODS",
    "PeriodWindow",
    "PeriodClock",
    "window",
    "period_id",
    "resets_at",
    "day_id",
    "get_tz",
    "UTC",
]
