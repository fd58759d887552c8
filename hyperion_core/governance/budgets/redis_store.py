"""The Redis budget store: counters, reservations and spend shared by every process.

One atomic script per operation (layout and scripts: ``governance._lua``); each ``*_call`` builds
the script call, each ``parse_*`` turns its reply into the typed result the memory store returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from ...errors import GovernanceStoreError
from .._lua import FOLD_AT, Call, Scripts
from .._lua import s as _text
from ..ops import Op, ScriptOp, ScriptRunner
from ..periods import UTC
from ..spend import SpendWrite, day_filter
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

log = logging.getLogger("hyperion.governance")


class RedisBudgetStore(StoreBase):
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
        self.scripts = scripts if isinstance(scripts, Scripts) else Scripts(scripts)
        self.runner = ScriptRunner(self.scripts)
        self.base = f"{{{prefix}:ledger}}:"
        self.resq = self.base + "resq"
        self.res_prefix = self.base + "res:"
        self.days_key = self.base + "spend:days"
        self.spend_queue = self.base + "spendq"
        #: the background fold of the spend queue in flight, if any (one at a time per store)
        self._folding: asyncio.Task[int] | None = None
        self.clock = clock
        self.grace_ms = int(grace_s * 1000)
        self.retention_s = retention_days * 86_400

    def _now(self) -> str:
        return "" if self.clock is None else str(int(self.clock() * 1000))

    def key(self, b: AppliedBudget) -> str:
        return self.base + "b:" + b.counter

    # -- reserve ------------------------------------------------------------------------------------
    def reserve_call(self, request_id: str, amount_n: int, budgets: Sequence[AppliedBudget], ttl_s: float) -> Call:
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
    def parse_reserve(raw: list[Any]) -> ReserveResult:
        code = int(raw[0])
        if code == 1:
            return RESERVED
        if code == 2:
            return AlreadyHeld(HoldState.parse(_text(raw[1])))
        return Refused(int(raw[1]) - 1, int(raw[2]), int(raw[3]), bool(int(raw[4])))

    def reserve_op(
        self, request_id: str, amount_n: int, budgets: Sequence[AppliedBudget], ttl_s: float
    ) -> Op[ReserveResult]:
        return ScriptOp(self.reserve_call(request_id, amount_n, budgets, ttl_s), self.parse_reserve)

    # -- settle -------------------------------------------------------------------------------------
    def _spend_parts(self, w: SpendWrite) -> tuple[list[str], list[str], int]:
        keys = [f"{self.base}spend:{w.day}:{dim}" for dim, _ in w.groups] + [self.days_key, self.spend_queue]
        groups = [g for _, g in w.groups]
        day_end = datetime.fromisoformat(w.day).replace(tzinfo=UTC).timestamp() + 86_400
        return keys, groups, int(day_end + self.retention_s)

    def settle_call(
        self, request_id: str, budgets: Sequence[AppliedBudget], actual_n: int, spend: SpendWrite | None
    ) -> Call:
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
        args += [b.threshold_spec for b in budgets]
        args += groups
        return ("settle", keys, args)

    @staticmethod
    def parse_settle(raw: list[Any]) -> SettleResult:
        if int(raw[0]) != 1:
            return NotSettled(HoldState.parse(_text(raw[1])))
        fired = []
        for f in raw[3]:
            i, _, label = _text(f).partition(":")
            fired.append((int(i) - 1, label))
        return Settled(bool(int(raw[1])), tuple(int(x) for x in raw[2]), tuple(fired))

    def settle_op(
        self, request_id: str, budgets: Sequence[AppliedBudget], actual_n: int, spend: SpendWrite | None
    ) -> Op[SettleResult]:
        return ScriptOp(self.settle_call(request_id, budgets, actual_n, spend), self._settled)

    def _settled(self, raw: list[Any]) -> SettleResult:
        if int(raw[0]) == 1 and len(raw) > 4:
            self.queued(int(raw[4]))  # the spend records queued so far
        return self.parse_settle(raw)

    # -- release, status, spend ---------------------------------------------------------------------
    def release_call(self, request_id: str, budgets: Sequence[AppliedBudget]) -> Call:
        keys = [self.resq, self.res_prefix + request_id, *(self.key(b) for b in budgets)]
        return ("release", keys, [self._now(), request_id, self.grace_ms, self.res_prefix])

    def release_op(self, request_id: str, budgets: Sequence[AppliedBudget]) -> Op[bool]:
        return ScriptOp(self.release_call(request_id, budgets), _is_one)

    def status_op(self, budgets: Sequence[AppliedBudget]) -> Op[list[tuple[int, int]]]:
        keys = [self.resq, *(self.key(b) for b in budgets)]
        return ScriptOp(("status", keys, [self._now(), self.grace_ms, self.res_prefix]), _pairs)

    def reset_op(self, budgets: Sequence[AppliedBudget]) -> Op[list[int]]:
        keys = [self.resq, *(self.key(b) for b in budgets)]
        return ScriptOp(("reset", keys, [self._now(), self.grace_ms, self.res_prefix]), _ints)

    def add_spend_op(self, spend: SpendWrite) -> Op[None]:
        keys, groups, exp = self._spend_parts(spend)
        args = [self._now(), len(groups), exp, spend.day, spend.requests, spend.prompt_tokens]
        args += [spend.completion_tokens, spend.cost_n, spend.saved_n, *groups]
        return ScriptOp(("spend", keys, args), self._spend_queued)

    def _spend_queued(self, raw: Any) -> None:
        self.queued(int(raw))

    # -- the spend queue ----------------------------------------------------------------------------
    def queued(self, n: int) -> None:
        """A script left ``n`` spend records queued: at :data:`FOLD_AT`, fold them in the background
        (never on the request's path; a failed fold leaves them queued for the next one or a report)."""
        if n < FOLD_AT or (self._folding is not None and not self._folding.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # parsed outside a loop: the next settlement or report folds
        self._folding = loop.create_task(self._fold_quietly(), name="hyperion-spend-fold")

    async def _fold_quietly(self) -> int:
        try:
            return await self.fold_spend()
        except Exception as exc:  # noqa: BLE001 - the records stay queued; a report or the next fold takes them
            log.warning("governance: folding the spend queue failed (records stay queued): %s", exc)
            return 0

    async def aclose(self) -> None:
        """Wait for a fold in flight (its script runs either way; this keeps the task from being
        destroyed with its loop)."""
        task, self._folding = self._folding, None
        if task is not None and not task.done():
            await asyncio.wait([task])

    async def fold_spend(self) -> int:
        """Fold every queued spend record into the day hashes (what a report reads); the records folded."""
        total = 0
        while True:
            n = int(await self.scripts.run("fold", [self.spend_queue, self.days_key], [self._now(), _FOLD_MAX]))
            total += n
            if n < _FOLD_MAX:
                return total

    async def spend_totals(self, by: str, since: Any, until: Any) -> dict[str, list[int]]:
        from redis.exceptions import RedisError

        from ..spend import add_fields

        r = self.scripts.client
        keep = day_filter(since, until)
        totals: dict[str, list[int]] = {}
        await self.fold_spend()
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


#: queued spend records folded per script call when a report drains the queue
_FOLD_MAX = 1000


def _is_one(raw: Any) -> bool:
    return int(raw) == 1


def _pairs(raw: list[Any]) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in raw]


def _ints(raw: list[Any]) -> list[int]:
    return [int(v) for v in raw]


__all__ = ["RedisBudgetStore"]
