"""Budget records: frozen values the ledger and the stores exchange, and the nano-USD helpers.

Amounts are stored as integers in nano-USD (1e-9 USD). The stores answer with typed results —
``reserve``: :class:`Reserved` | :class:`AlreadyHeld` | :class:`Refused`; ``settle``:
:class:`Settled` | :class:`NotSettled` — the same for the memory and the Redis backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from ...errors import GovernanceStoreError, InvalidRequestError
from ..alerts import BudgetAlert
from ..config import BudgetConfig, Subjects
from ..periods import Period, PeriodWindow
from ..spend import NANO

#: seconds a settled / released / expired reservation is remembered (repeat settles are no-ops)
SETTLE_GRACE_S = 600.0
#: seconds a budget counter outlives its period (late settles land; last period stays readable)
PERIOD_GRACE_S = 86_400
#: the largest amount (nano-USD) or token count a ledger stores: exact in Lua's doubles and in int64
MAX_COUNT = 2**53 - 1


def to_nano(usd: float) -> int:
    return round(usd * NANO)


def to_nano_up(usd: float) -> int:
    """Reservations round up: a worst case is never under-held."""
    return math.ceil(round(usd * NANO, 3))  # round first: 4.98 * 1e9 is 4980000000.000001


def count(n: int) -> int:
    """A token count as the ledger stores it: clamped into [0, 2^53) (upstream usage is not trusted)."""
    return 0 if n < 0 else min(int(n), MAX_COUNT)


def usd_checked(what: str, usd: float) -> None:
    """Raise :class:`InvalidRequestError` unless ``usd`` is a finite amount the ledger can store."""
    if not usd >= 0 or math.isinf(usd) or usd * NANO > MAX_COUNT:
        raise InvalidRequestError(
            f"{what} must be a finite USD amount from 0 to {MAX_COUNT / NANO:,.0f}, got {usd}"
        )


# -- budgets and reservations ------------------------------------------------------------------------


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
    #: ``(label, nano-USD)`` per soft threshold; the label is the fraction's ``repr`` (derived)
    thresholds: tuple[tuple[str, int], ...] = field(default=(), compare=False)
    #: ``thresholds`` as the settle script reads them, ``"label=nano,..."`` (derived)
    threshold_spec: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.thresholds and self.config.alert_thresholds:
            t = tuple((repr(t), round(t * self.limit_n)) for t in self.config.alert_thresholds)
            object.__setattr__(self, "thresholds", t)
        if self.thresholds and not self.threshold_spec:
            spec = ",".join(f"{label}={thr}" for label, thr in self.thresholds)
            object.__setattr__(self, "threshold_spec", spec)

    def alert(self, kind: str, threshold: float | None, spent_usd: float, t: float) -> BudgetAlert:
        c = self.config
        return BudgetAlert(
            self.label,
            c.scope,
            self.subject,
            c.period,
            self.window.id,
            kind,  # type: ignore[arg-type]
            threshold,
            spent_usd,
            c.limit_usd,
            t,
        )


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
    state: str = "settled"  # settled | already_settled | released | expired | held | unknown
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


# -- what the stores answer ----------------------------------------------------------------------------


class HoldState(str, Enum):
    """A reservation's state in a store (the values are the Redis hash's ``s`` field)."""

    HELD = "r"
    SETTLED = "s"
    RELEASED = "l"
    EXPIRED = "x"  # its hold was released by the sweep; a settle still records the spend
    MISSING = "missing"  # never reserved, or forgotten after the grace period

    @classmethod
    def parse(cls, text: str) -> HoldState:
        try:
            return cls(text)
        except ValueError:
            raise GovernanceStoreError(f"governance store: unknown reservation state {text!r}") from None

    @property
    def settlement(self) -> str:
        """The :attr:`Settlement.state` of a settle that found the reservation in this state."""
        return _SETTLEMENT[self]

    @property
    def described(self) -> str:
        """"already <this>" in the error for a reused request id."""
        return _DESCRIBED[self]


_SETTLEMENT = {
    HoldState.HELD: "held",
    HoldState.SETTLED: "already_settled",
    HoldState.RELEASED: "released",
    HoldState.EXPIRED: "expired",
    HoldState.MISSING: "unknown",
}
_DESCRIBED = {
    HoldState.HELD: "held",
    HoldState.SETTLED: "settled",
    HoldState.RELEASED: "released",
    HoldState.EXPIRED: "reserved and expired",
    HoldState.MISSING: "missing",
}


@dataclass(slots=True, frozen=True)
class Reserved:
    """``reserve``: the amount is now held on every budget."""


@dataclass(slots=True, frozen=True)
class AlreadyHeld:
    """``reserve``: the request id already has a reservation (in ``state``); nothing changed."""

    state: HoldState


@dataclass(slots=True, frozen=True)
class Refused:
    """``reserve``: ``budgets[index]`` cannot take the amount (``spent_n + reserved_n + amount >
    limit``); nothing is held. ``first``: the first refusal of this budget in its period."""

    index: int
    spent_n: int
    reserved_n: int
    first: bool


ReserveResult = Reserved | AlreadyHeld | Refused

#: the one :class:`Reserved` (it carries nothing)
RESERVED = Reserved()


@dataclass(slots=True, frozen=True)
class Settled:
    """``settle``: the actual cost is committed. ``late``: the hold had expired before.
    ``spent_n``: each budget's spent after the settle (``-1`` if its counter is gone);
    ``fired``: ``(budget index, threshold label)`` for each soft threshold crossed now."""

    late: bool
    spent_n: tuple[int, ...]
    fired: tuple[tuple[int, str], ...] = ()


@dataclass(slots=True, frozen=True)
class NotSettled:
    """``settle``: nothing happened — the reservation is in ``state`` (settled, released, missing)."""

    state: HoldState


SettleResult = Settled | NotSettled


__all__ = [
    "SETTLE_GRACE_S",
    "PERIOD_GRACE_S",
    "MAX_COUNT",
    "to_nano",
    "to_nano_up",
    "count",
    "usd_checked",
    "AppliedBudget",
    "Reservation",
    "Settlement",
    "BudgetStatus",
    "BudgetAlert",
    "HoldState",
    "Reserved",
    "RESERVED",
    "AlreadyHeld",
    "Refused",
    "ReserveResult",
    "Settled",
    "NotSettled",
    "SettleResult",
]
