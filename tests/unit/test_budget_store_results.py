"""Typed budget-store results: the memory store and the Redis reply parsers answer with the same
frozen records, and the op runners (one code path for both backends)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest

from hyperion_core.errors import GovernanceStoreError, InvalidRequestError
from hyperion_core.governance import (
    BudgetConfig,
    BudgetLedger,
    Governance,
    MemoryBudgetStore,
    RedisBudgetStore,
)
from hyperion_core.governance.budgets import (
    RESERVED,
    AlreadyHeld,
    HoldState,
    NotSettled,
    Refused,
    Reserved,
    Settled,
)
from hyperion_core.governance.ops import LOCAL, ScriptOp, ScriptRunner

T0 = datetime(2026, 11, 24, 12, tzinfo=timezone.utc).timestamp()
TEAM = BudgetConfig(scope="team", id="ml", period="daily", limit_usd=1.0, alert_thresholds=[0.5])


def ledger() -> tuple[BudgetLedger, MemoryBudgetStore]:
    store = MemoryBudgetStore(now=lambda: T0)
    return BudgetLedger([TEAM], store=store, now=lambda: T0), store


async def test_memory_reserve_answers_with_typed_results():
    led, store = ledger()
    res = led.prepare("r1", {"team": "ml"}, 0.6)
    assert await store.reserve("r1", res.amount_n, res.budgets, 60) is RESERVED
    assert await store.reserve("r1", res.amount_n, res.budgets, 60) == AlreadyHeld(HoldState.HELD)
    other = led.prepare("r2", {"team": "ml"}, 0.6)
    refused = await store.reserve("r2", other.amount_n, other.budgets, 60)
    assert refused == Refused(index=0, spent_n=0, reserved_n=600_000_000, first=True)
    again = await store.reserve("r3", other.amount_n, other.budgets, 60)
    assert isinstance(again, Refused) and again.first is False  # one "exhausted" per period


async def test_memory_settle_answers_with_typed_results():
    led, store = ledger()
    res = await led.reserve("r1", {"team": "ml"}, 0.6)
    done = await store.settle("r1", res.budgets, 550_000_000, None)
    assert done == Settled(late=False, spent_n=(550_000_000,), fired=((0, "0.5"),))
    assert await store.settle("r1", res.budgets, 1, None) == NotSettled(HoldState.SETTLED)
    assert await store.settle("nope", res.budgets, 1, None) == NotSettled(HoldState.MISSING)
    assert await store.reserve("r1", 1, res.budgets, 60) == AlreadyHeld(HoldState.SETTLED)


def test_redis_replies_parse_into_the_same_records():
    parse_r, parse_s = RedisBudgetStore.parse_reserve, RedisBudgetStore.parse_settle
    assert parse_r([1]) is RESERVED
    assert parse_r([2, b"s"]) == AlreadyHeld(HoldState.SETTLED)
    assert parse_r([0, 2, 10, 20, 1]) == Refused(index=1, spent_n=10, reserved_n=20, first=True)
    assert parse_s([1, 1, [5, -1], [b"2:0.8"]]) == Settled(late=True, spent_n=(5, -1), fired=((1, "0.8"),))
    assert parse_s([1, 0, [5], [], 12]) == Settled(late=False, spent_n=(5,), fired=())  # + spend records queued
    assert parse_s([0, b"missing"]) == NotSettled(HoldState.MISSING)
    assert parse_s([0, "l"]) == NotSettled(HoldState.RELEASED)
    with pytest.raises(GovernanceStoreError, match="unknown reservation state"):
        parse_s([0, b"?"])


def test_results_are_frozen_and_name_their_settlement_state():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Refused(0, 1, 2, True).index = 3  # type: ignore[misc]
    assert isinstance(RESERVED, Reserved)
    assert {s.settlement for s in HoldState} == {"held", "already_settled", "released", "expired", "unknown"}
    assert HoldState.EXPIRED.described == "reserved and expired"


async def test_ledger_turns_results_into_settlements_and_errors():
    led, _ = ledger()
    res = led.prepare("r1", {"team": "ml"}, 0.1)
    assert led.finish(res, RESERVED) is res
    assert led.finish(res, AlreadyHeld(HoldState.HELD)) is res  # a repeated reserve of a held id
    with pytest.raises(InvalidRequestError, match="already released"):
        led.finish(res, AlreadyHeld(HoldState.RELEASED))
    assert led.settled(res, NotSettled(HoldState.RELEASED)).state == "released"
    done = led.settled(res, Settled(True, (600_000_000,), ((0, "0.5"),)))
    assert done and done.late and done.alerts[0].threshold == 0.5


async def test_local_runner_runs_ops_in_order_and_has_no_reads():
    seen: list[int] = []
    ops = [lambda i=i: seen.append(i) or i for i in range(3)]  # memory ops are plain functions
    assert await LOCAL.run(ops) == [0, 1, 2] and seen == [0, 1, 2]
    assert await LOCAL.one(lambda: "x") == "x"
    with pytest.raises(ValueError, match="reads= needs the Redis backend"):
        await LOCAL.run(ops, reads=["k"])


async def test_script_runner_pipelines_and_parses():
    class FakeScripts:
        def __init__(self) -> None:
            self.batches: list[tuple[list, tuple]] = []

        async def run_many(self, calls, *, reads=()):
            self.batches.append((list(calls), tuple(reads)))
            return ["read"] * len(reads) + [i for i, _ in enumerate(calls)]

    fake = FakeScripts()
    runner = ScriptRunner(fake)  # type: ignore[arg-type]
    ops = [ScriptOp(("a", [], []), lambda r: r + 10), ScriptOp(("b", [], []), str)]
    assert await runner.run(ops, reads=["k"]) == ["read", 10, "1"]
    assert len(fake.batches) == 1  # one round trip
    # one op alone rides the same (auto-pipelined) path: it can share a round trip with other requests'
    assert await runner.one(ScriptOp(("c", [], []), lambda r: r + 7)) == 7
    assert fake.batches[-1] == ([("c", [], [])], ())


async def test_governance_uses_one_runner_for_every_store():
    gov = Governance({"budgets": [TEAM.model_dump()], "alerts": []}, now=lambda: T0)
    assert gov.runner is gov.ledger.store.runner is gov.limiter.store.runner is gov.anomaly.store.runner
    adm = await gov.admit("r1", {"team": "ml"}, cost_estimate_usd=0.2)
    done = await gov.settle(adm, 0.1)
    assert done and not done.late
