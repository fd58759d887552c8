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

Modules: ``records`` (frozen values, typed store results, nano-USD helpers), ``ledger`` (the
I/O-free :class:`BudgetBook` and :class:`BudgetLedger`), ``store`` (the :class:`BudgetStore`
Protocol: operations as ``Op`` values run by the store's runner, one code path for both backends),
``memory_store`` (:class:`MemoryBudgetStore`: one process, thread-safe) and ``redis_store``
(:class:`RedisBudgetStore`: shared, one atomic Lua script per operation).
"""

from __future__ import annotations

from ..alerts import BudgetAlert
from .ledger import BudgetBook, BudgetLedger
from .memory_store import MemoryBudgetStore
from .records import (
    MAX_COUNT,
    PERIOD_GRACE_S,
    RESERVED,
    SETTLE_GRACE_S,
    AlreadyHeld,
    AppliedBudget,
    BudgetStatus,
    HoldState,
    NotSettled,
    Refused,
    Reservation,
    Reserved,
    ReserveResult,
    Settled,
    Settlement,
    SettleResult,
    to_nano,
    to_nano_up,
)
from .redis_store import RedisBudgetStore
from .store import BudgetStore

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
    "to_nano",
    "to_nano_up",
    "SETTLE_GRACE_S",
    "PERIOD_GRACE_S",
    "MAX_COUNT",
]
