"""The one interface of both budget stores: operations as :class:`~..ops.Op` values and a runner.

A store builds each operation (``reserve_op``, ``settle_op``, ...) and its :attr:`runner` runs it —
alone, or batched with other stores' ops by :class:`~..facade.Governance` (one Redis round trip).
The async methods (``reserve``, ``settle``, ...) are written once here, for both backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..ops import Op, Runner
from ..spend import SpendWrite
from .records import AppliedBudget, ReserveResult, SettleResult


class BudgetStore(Protocol):
    """Where budget counters, reservations and spend live. ``amount_n`` / ``actual_n``: nano-USD;
    ``ttl_s``: seconds a reservation holds budget before the store releases it."""

    runner: Runner

    def reserve_op(
        self, request_id: str, amount_n: int, budgets: Sequence[AppliedBudget], ttl_s: float
    ) -> Op[ReserveResult]: ...

    def settle_op(
        self, request_id: str, budgets: Sequence[AppliedBudget], actual_n: int, spend: SpendWrite | None
    ) -> Op[SettleResult]: ...

    def release_op(self, request_id: str, budgets: Sequence[AppliedBudget]) -> Op[bool]: ...

    def status_op(self, budgets: Sequence[AppliedBudget]) -> Op[list[tuple[int, int]]]: ...

    def reset_op(self, budgets: Sequence[AppliedBudget]) -> Op[list[int]]:
        """Spent back to 0 in the budgets' current periods (reservations in flight stay); returns
        what each had spent."""

    def add_spend_op(self, spend: SpendWrite) -> Op[None]: ...

    async def reserve(
        self, request_id: str, amount_n: int, budgets: Sequence[AppliedBudget], ttl_s: float
    ) -> ReserveResult: ...

    async def settle(
        self, request_id: str, budgets: Sequence[AppliedBudget], actual_n: int, spend: SpendWrite | None
    ) -> SettleResult: ...

    async def release(self, request_id: str, budgets: Sequence[AppliedBudget]) -> bool: ...

    async def status(self, budgets: Sequence[AppliedBudget]) -> list[tuple[int, int]]:
        """``(spent_n, reserved_n)`` per budget."""

    async def add_spend(self, spend: SpendWrite) -> None: ...

    async def spend_totals(self, by: str, since: Any, until: Any) -> dict[str, list[int]]: ...

    async def aclose(self) -> None: ...


class StoreBase:
    """The async methods of :class:`BudgetStore`, each one op run by the store's runner."""

    runner: Runner

    def reserve_op(
        self, request_id: str, amount_n: int, budgets: Sequence[AppliedBudget], ttl_s: float
    ) -> Op[ReserveResult]:
        raise NotImplementedError

    def settle_op(
        self, request_id: str, budgets: Sequence[AppliedBudget], actual_n: int, spend: SpendWrite | None
    ) -> Op[SettleResult]:
        raise NotImplementedError

    def release_op(self, request_id: str, budgets: Sequence[AppliedBudget]) -> Op[bool]:
        raise NotImplementedError

    def status_op(self, budgets: Sequence[AppliedBudget]) -> Op[list[tuple[int, int]]]:
        raise NotImplementedError

    def add_spend_op(self, spend: SpendWrite) -> Op[None]:
        raise NotImplementedError

    async def reserve(
        self, request_id: str, amount_n: int, budgets: Sequence[AppliedBudget], ttl_s: float
    ) -> ReserveResult:
        return await self.runner.one(self.reserve_op(request_id, amount_n, budgets, ttl_s))

    async def settle(
        self, request_id: str, budgets: Sequence[AppliedBudget], actual_n: int, spend: SpendWrite | None
    ) -> SettleResult:
        return await self.runner.one(self.settle_op(request_id, budgets, actual_n, spend))

    async def release(self, request_id: str, budgets: Sequence[AppliedBudget]) -> bool:
        return await self.runner.one(self.release_op(request_id, budgets))

    async def status(self, budgets: Sequence[AppliedBudget]) -> list[tuple[int, int]]:
        return await self.runner.one(self.status_op(budgets))

    async def add_spend(self, spend: SpendWrite) -> None:
        await self.runner.one(self.add_spend_op(spend))

    async def aclose(self) -> None:
        return None


__all__ = ["BudgetStore", "StoreBase"]
