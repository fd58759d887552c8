"""Spend records: what each key, team, user, route, deployment and model cost, per day.

Every settled request adds to one counter row per dimension of its day — ``requests``,
``prompt_tokens``, ``completion_tokens``, ``cost`` and ``saved`` (what cache hits saved) — in the same
atomic step that settles its budgets (so spend is counted exactly once, like the budgets). Amounts
are kept as integer nano-USD. A report sums the rows of a day range::

    rows = await ledger.spend_report(by="team", since="2026-11-01")
    print(format_table(rows, by="team"))

A subject the request did not have (no team, say) is grouped as ``(none)``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from .config import Subjects
from .periods import UTC, day_id

SpendBy = Literal["key", "team", "user", "route", "deployment", "model", "day"]
DIMS: tuple[SpendBy, ...] = ("key", "team", "user", "route", "deployment", "model", "day")
NONE = "(none)"
NANO = 1_000_000_000

#: counter codes, in ``SpendRow`` order: requests, prompt tokens, output tokens, cost, saved
CODES = "rpocs"


@dataclass(slots=True, frozen=True)
class SpendWrite:
    """One settled request (or cache saving) as counter increments: the group it falls in per
    dimension and the amounts (cost and saved in nano-USD)."""

    day: str
    groups: tuple[tuple[str, str], ...]  # (dimension, group)
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_n: int
    saved_n: int


def spend_write(
    day: str,
    subjects: Subjects,
    *,
    deployment: str | None = None,
    model: str | None = None,
    requests: int = 1,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cost_n: int = 0,
    saved_n: int = 0,
) -> SpendWrite:
    groups = (
        ("key", subjects.key or NONE),
        ("team", subjects.team or NONE),
        ("user", subjects.user or NONE),
        ("route", subjects.route or NONE),
        ("deployment", deployment or NONE),
        ("model", model or NONE),
        ("day", day),
    )
    return SpendWrite(day, groups, requests, prompt_tokens, completion_tokens, cost_n, saved_n)


@dataclass(slots=True, frozen=True)
class SpendRow:
    group: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    saved_usd: float


DayLike = str | date | datetime | float | int | None


def _day(d: DayLike) -> str | None:
    if d is None:
        return None
    if isinstance(d, datetime):
        return (d if d.tzinfo else d.replace(tzinfo=UTC)).astimezone(UTC).date().isoformat()
    if isinstance(d, date):
        return d.isoformat()
    if isinstance(d, (int, float)):
        return day_id(float(d))
    return date.fromisoformat(str(d)).isoformat()


def day_filter(since: DayLike = None, until: DayLike = None):
    """A predicate on ``YYYY-MM-DD`` strings: ``since <= day <= until`` (both inclusive, either open).
    Accepts dates, datetimes (their UTC day), Unix seconds or ISO strings."""
    lo, hi = _day(since), _day(until)
    return lambda day: (lo is None or day >= lo) and (hi is None or day <= hi)


def rows_from(totals: dict[str, list[int]]) -> list[SpendRow]:
    """Counter totals per group -> rows, most expensive first (then by group)."""
    rows = [SpendRow(g, v[0], v[1], v[2], v[3] / NANO, v[4] / NANO) for g, v in totals.items()]
    rows.sort(key=lambda r: (-r.cost_usd, r.group))
    return rows


def add_fields(totals: dict[str, list[int]], fields: Iterable[tuple[str, int]]) -> None:
    """Fold ``(code + group, value)`` counter fields into per-group totals."""
    for field, value in fields:
        i = CODES.find(field[:1])
        if i < 0:
            continue
        row = totals.get(field[1:])
        if row is None:
            row = totals[field[1:]] = [0, 0, 0, 0, 0]
        row[i] += int(value)


class MemorySpend:
    """Spend counters in process memory: ``{day: {dimension: {group: [r, p, o, c, s]}}}``."""

    def __init__(self) -> None:
        self._days: dict[str, dict[str, dict[str, list[int]]]] = {}
        self._lock = threading.Lock()

    def add(self, w: SpendWrite) -> None:
        with self._lock:
            self.add_locked(w)

    def add_locked(self, w: SpendWrite) -> None:
        dims = self._days.get(w.day)
        if dims is None:
            dims = self._days[w.day] = {}
        inc = (w.requests, w.prompt_tokens, w.completion_tokens, w.cost_n, w.saved_n)
        for dim, group in w.groups:
            groups = dims.get(dim)
            if groups is None:
                groups = dims[dim] = {}
            row = groups.get(group)
            if row is None:
                groups[group] = list(inc)
            else:
                row[0] += inc[0]
                row[1] += inc[1]
                row[2] += inc[2]
                row[3] += inc[3]
                row[4] += inc[4]

    def totals(self, by: str, since: DayLike = None, until: DayLike = None) -> dict[str, list[int]]:
        keep = day_filter(since, until)
        out: dict[str, list[int]] = {}
        with self._lock:
            for day, dims in self._days.items():
                if not keep(day):
                    continue
                for group, v in dims.get(by, {}).items():
                    row = out.setdefault(group, [0, 0, 0, 0, 0])
                    for i in range(5):
                        row[i] += v[i]
        return out

    def prune(self, oldest_day: str) -> None:
        """Forget days before ``oldest_day`` (called with the store's lock held or not: own lock)."""
        with self._lock:
            for day in [d for d in self._days if d < oldest_day]:
                del self._days[day]


def check_by(by: str) -> SpendBy:
    if by not in DIMS:
        from ..errors import InvalidRequestError

        raise InvalidRequestError(f"spend report: unknown grouping {by!r} (one of: {', '.join(DIMS)})")
    return by  # type: ignore[return-value]


def format_table(rows: Sequence[SpendRow], by: str = "group") -> str:
    """A plain-text table for ``hyperion spend --by ...``, with a total line."""
    head = (by, "requests", "prompt tok", "completion tok", "cost USD", "saved USD")
    body = [
        (
            r.group,
            f"{r.requests:,}",
            f"{r.prompt_tokens:,}",
            f"{r.completion_tokens:,}",
            f"{r.cost_usd:,.4f}",
            f"{r.saved_usd:,.4f}",
        )
        for r in rows
    ]
    total = (
        "total",
        f"{sum(r.requests for r in rows):,}",
        f"{sum(r.prompt_tokens for r in rows):,}",
        f"{sum(r.completion_tokens for r in rows):,}",
        f"{sum(r.cost_usd for r in rows):,.4f}",
        f"{sum(r.saved_usd for r in rows):,.4f}",
    )
    widths = [max(len(str(x[i])) for x in (head, total, *body)) for i in range(6)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), rule, *(line(b) for b in body), rule, line(total)])


__all__ = [
    "SpendBy",
    "DIMS",
    "NONE",
    "SpendRow",
    "SpendWrite",
    "spend_write",
    "MemorySpend",
    "format_table",
    "rows_from",
    "add_fields",
    "day_filter",
    "check_by",
]
