"""Budget periods, the budget ledger (memory store, injected wall clock), spend records, config."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from hyperion_core.errors import BudgetExceededError, InvalidRequestError, RequestError
from hyperion_core.governance import (
    BudgetConfig,
    BudgetLedger,
    GovernanceConfig,
    RateLimitConfig,
    format_table,
)
from hyperion_core.governance.periods import PeriodClock, get_tz, period_id, resets_at, window


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


class Wall:
    """An injectable wall clock (Unix seconds)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


# -- periods -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "period, at, pid, reset",
    [
        ("daily", ts(2026, 11, 24, 23, 59, 59), "d2026-11-24", ts(2026, 11, 25)),
        ("daily", ts(2026, 11, 25), "d2026-11-25", ts(2026, 11, 26)),  # the reset instant is the new period
        ("daily", ts(2026, 12, 31, 12), "d2026-12-31", ts(2027, 1, 1)),
        ("monthly", ts(2026, 1, 31, 23, 59, 59), "m2026-01", ts(2026, 2, 1)),
        ("monthly", ts(2026, 2, 28, 23), "m2026-02", ts(2026, 3, 1)),
        ("monthly", ts(2028, 2, 29, 12), "m2028-02", ts(2028, 3, 1)),  # leap day
        ("monthly", ts(2026, 4, 30, 23, 59), "m2026-04", ts(2026, 5, 1)),
        ("monthly", ts(2026, 12, 31, 23, 59, 59), "m2026-12", ts(2027, 1, 1)),
        ("monthly", ts(2027, 1, 1), "m2027-01", ts(2027, 2, 1)),
        ("weekly", ts(2026, 11, 24, 10), "w2026-W48", ts(2026, 11, 30)),  # Tuesday -> next Monday
        ("weekly", ts(2026, 11, 29, 23, 59, 59), "w2026-W48", ts(2026, 11, 30)),  # Sunday night
        ("weekly", ts(2026, 11, 30), "w2026-W49", ts(2026, 12, 7)),  # Monday 00:00 starts a week
        ("weekly", ts(2024, 12, 30, 9), "w2025-W01", ts(2025, 1, 6)),  # ISO year differs from the calendar
        ("weekly", ts(2021, 1, 3, 9), "w2020-W53", ts(2021, 1, 4)),  # week 53
        ("weekly", ts(2027, 1, 1, 9), "w2026-W53", ts(2027, 1, 4)),
        ("total", ts(2026, 11, 24), "total", None),
    ],
)
def test_period_ids_and_resets(period, at, pid, reset):
    assert period_id(period, at) == pid
    assert resets_at(period, at) == reset
    w = window(period, at)
    assert w.contains(at)
    if reset is not None:
        assert not w.contains(reset) and window(period, reset).id != pid


def test_periods_in_a_time_zone_with_daylight_saving():
    berlin = get_tz("Europe/Berlin")
    # 2026-03-29: clocks go forward at 02:00 -> the local day is 23 hours long
    at = ts(2026, 3, 29, 12)
    w = window("daily", at, berlin)
    assert w.id == "d2026-03-29" and w.end - w.start == 23 * 3600
    assert w.start == ts(2026, 3, 28, 23)  # local midnight = 23:00 UTC (CET)
    # 23:30 UTC on the 31st is already April in Berlin (CEST, UTC+2)
    assert period_id("monthly", ts(2026, 3, 31, 23, 30), berlin) == "m2026-04"
    assert period_id("monthly", ts(2026, 3, 31, 23, 30)) == "m2026-03"


def test_period_clock_caches_until_the_reset():
    wall = Wall(ts(2026, 11, 24, 23, 59, 59))
    pc = PeriodClock(wall)
    first = pc.current("daily")
    assert pc.current("daily") is first  # cached
    wall.advance(1)
    assert pc.current("daily").id == "d2026-11-25"
    assert pc.day() == "2026-11-25"


# -- ledger -------------------------------------------------------------------------------------------

ML = {"key": "k1", "team": "ml", "user": "ann", "route": "chat"}


def ledger(*budgets: BudgetConfig, wall: Wall | None = None, **kw) -> tuple[BudgetLedger, Wall, list]:
    wall = wall or Wall(ts(2026, 11, 24, 12))
    alerts: list = []
    return BudgetLedger(budgets, now=wall, on_alert=alerts.append, **kw), wall, alerts


def team_daily(limit: float = 5.0, **kw) -> BudgetConfig:
    return BudgetConfig(scope="team", id="ml", period="daily", limit_usd=limit, **kw)


async def test_reserve_settle_release_each_take_effect_once():
    led, _, _ = ledger(team_daily())
    res = await led.reserve("r1", ML, 0.04)
    (st,) = await led.status({"team": "ml"})
    assert (st.spent_usd, st.reserved_usd) == (0, 0.04)
    done = await led.settle(res, 0.01, prompt_tokens=10, completion_tokens=5, deployment="d1")
    assert done and done.settled and not done.late
    again = await led.settle(res, 0.01)
    assert not again and again.state == "already_settled"
    assert await led.release(res) is False
    (st,) = await led.status({"team": "ml"})
    assert (st.spent_usd, st.reserved_usd) == (0.01, 0)
    (row,) = await led.spend_report("team")
    assert (row.requests, row.cost_usd) == (1, 0.01)  # the repeat settle recorded nothing

    res2 = await led.reserve("r2", ML, 0.5)
    assert await led.release(res2) is True
    assert await led.release(res2) is False
    after = await led.settle(res2, 0.3)
    assert not after and after.state == "released"
    (st,) = await led.status({"team": "ml"})
    assert (st.spent_usd, st.reserved_usd) == (0.01, 0)


async def test_reserving_a_held_id_again_is_idempotent_and_a_finished_id_is_refused():
    led, _, _ = ledger(team_daily())
    await led.reserve("r1", ML, 1.0)
    res = await led.reserve("r1", ML, 1.0)  # e.g. a retry after a timeout: no second hold
    (st,) = await led.status({"team": "ml"})
    assert st.reserved_usd == 1.0
    await led.settle(res, 0.5)
    with pytest.raises(InvalidRequestError, match="already settled"):
        await led.reserve("r1", ML, 1.0)


async def test_refusal_names_the_budget_and_its_numbers():
    led, _, alerts = ledger(team_daily(5.0))
    r = await led.reserve("a", ML, 4.97)
    await led.reserve("b", ML, 0.03)
    await led.settle(r, 4.98)  # the provider billed more than the worst case: recorded as billed
    with pytest.raises(BudgetExceededError) as exc:
        await led.reserve("c", ML, 0.04)
    e = exc.value
    assert e.message == (
        "team 'ml' daily budget $5.00: spent $4.98 + reserved $0.03 + this request $0.04 > limit "
        "(resets 2026-11-25 00:00 UTC)"
    )
    assert (e.budget, e.limit, e.spent, e.reserved, e.period) == (
        "team 'ml' daily budget",
        5.0,
        4.98,
        0.03,
        "daily",
    )
    assert e.resets_at == ts(2026, 11, 25) and e.request_id == "c" and e.route == "chat"
    assert isinstance(e, RequestError) and not e.retryable and not e.failover
    # the first refusal of the period fires one "exhausted" alert; later refusals do not
    with pytest.raises(BudgetExceededError):
        await led.reserve("d", ML, 0.04)
    exhausted = [a for a in alerts if a.kind == "exhausted"]
    assert len(exhausted) == 1 and exhausted[0].budget == "team 'ml' daily budget"
    assert exhausted[0].period_id == "d2026-11-24"


async def test_tiny_amounts_are_readable_and_total_budgets_never_reset():
    led, _, _ = ledger(BudgetConfig(scope="key", id="k1", period="total", limit_usd=0.001))
    await led.reserve("a", ML, 0.0009)
    with pytest.raises(BudgetExceededError) as exc:
        await led.reserve("b", ML, 0.00042)
    assert exc.value.message == (
        "key 'k1' total budget $0.001: spent $0.00 + reserved $0.0009 + this request $0.00042 > limit "
        "(a total budget never resets)"
    )
    assert exc.value.resets_at is None


async def test_all_budgets_or_none():
    key = BudgetConfig(scope="key", id="k1", period="daily", limit_usd=1.0)
    glob = BudgetConfig(scope="global", period="monthly", limit_usd=100.0)
    led, _, _ = ledger(key, team_daily(5.0), glob)
    await led.reserve("a", ML, 0.9)
    with pytest.raises(BudgetExceededError, match="key 'k1' daily budget"):
        await led.reserve("b", ML, 0.2)  # the key refuses: team and global must not hold anything
    by = {s.budget: s.reserved_usd for s in await led.status(ML)}
    assert by == {"key 'k1' daily budget": 0.9, "team 'ml' daily budget": 0.9, "global monthly budget": 0.9}
    # another key of the same team: the team refuses, this key's budget holds nothing
    other = {**ML, "key": "k2"}
    key2 = BudgetConfig(scope="key", id="k2", period="daily", limit_usd=10.0)
    led2, _, _ = ledger(key2, team_daily(1.0))
    await led2.reserve("a", ML, 0.9)
    with pytest.raises(BudgetExceededError, match="team 'ml'"):
        await led2.reserve("b", other, 0.2)
    assert {s.budget: s.reserved_usd for s in await led2.status(other)} == {
        "key 'k2' daily budget": 0.0,
        "team 'ml' daily budget": 0.9,
    }


async def test_each_subject_has_its_own_wildcard_budget_and_a_specific_one_replaces_it():
    every = BudgetConfig(scope="key", id="*", period="daily", limit_usd=1.0)
    vip = BudgetConfig(scope="key", id="vip", period="daily", limit_usd=10.0)
    monthly = BudgetConfig(scope="key", id="*", period="monthly", limit_usd=50.0)
    led, _, _ = ledger(every, vip, monthly)
    await led.reserve("a", {"key": "k1"}, 1.0)
    await led.reserve("b", {"key": "k2"}, 1.0)  # separate $1 each
    with pytest.raises(BudgetExceededError, match="key 'k1' daily budget \\$1.00"):
        await led.reserve("c", {"key": "k1"}, 0.01)
    await led.reserve("d", {"key": "vip"}, 5.0)  # the specific daily budget, not the wildcard one
    names = sorted(s.budget for s in await led.status({"key": "vip"}))
    assert names == ["key 'vip' daily budget", "key 'vip' monthly budget"]  # other periods still apply
    assert [s.budget for s in await led.status()] == ["key 'vip' daily budget"]  # named budgets only


async def test_expired_reservations_are_released_and_a_late_settle_still_counts():
    led, wall, _ = ledger(team_daily(1.0), reservation_ttl_s=30)
    crashed = await led.reserve("crashed", ML, 0.8)
    with pytest.raises(BudgetExceededError):
        await led.reserve("b", ML, 0.3)
    wall.advance(29.9)
    with pytest.raises(BudgetExceededError):
        await led.reserve("b", ML, 0.3)  # still held
    wall.advance(0.2)
    ok = await led.reserve("c", ML, 0.3)  # the crashed process's hold was released
    (st,) = await led.status({"team": "ml"})
    assert st.reserved_usd == pytest.approx(0.3)
    late = await led.settle(crashed, 0.5)  # the request did finish after all: its spend is recorded
    assert late.settled and late.late
    assert not await led.settle(crashed, 0.5)
    await led.settle(ok, 0.3)
    (st,) = await led.status({"team": "ml"})
    assert (st.spent_usd, st.reserved_usd) == (pytest.approx(0.8), 0)


async def test_thresholds_fire_once_per_threshold_per_period():
    led, wall, alerts = ledger(team_daily(10.0))

    async def spend(rid: str, usd: float):
        return (await led.settle(await led.reserve(rid, ML, usd), usd)).alerts

    assert await spend("a", 4.0) == ()
    (a,) = await spend("b", 1.5)
    assert (a.kind, a.threshold, a.spent_usd, a.limit_usd) == ("threshold", 0.5, 5.5, 10.0)
    assert a.message == "team 'ml' daily budget (d2026-11-24) reached 50%: spent $5.50 of $10.00"
    assert await spend("c", 0.1) == ()
    fired = await spend("d", 4.4)  # 10.0: passes 80% and 100% at once
    assert [x.threshold for x in fired] == [0.8, 1.0]
    assert [x.threshold for x in alerts] == [0.5, 0.8, 1.0]  # the hook saw each once
    wall.advance(86_400)  # next day: a new period, thresholds armed again, budget available again
    (a,) = await spend("e", 6.0)
    assert (a.threshold, a.period_id) == (0.5, "d2026-11-25")


async def test_periods_reset_on_schedule():
    led, wall, _ = ledger(team_daily(1.0))
    wall.t = ts(2026, 11, 24, 23, 59, 59)
    await led.settle(await led.reserve("a", ML, 1.0), 1.0)
    with pytest.raises(BudgetExceededError):
        await led.reserve("b", ML, 0.01)
    wall.advance(1)
    await led.reserve("c", ML, 1.0)
    (st,) = await led.status({"team": "ml"})
    assert (st.period_id, st.spent_usd, st.reserved_usd) == ("d2026-11-25", 0, 1.0)


async def test_spend_is_charged_to_the_admission_period():
    led, wall, _ = ledger(team_daily(1.0))
    wall.t = ts(2026, 11, 24, 23, 59, 50)
    res = await led.reserve("a", ML, 0.5)
    wall.advance(20)  # the answer arrives after midnight
    await led.settle(res, 0.4)
    wall.advance(-20)
    (st,) = await led.status({"team": "ml"})
    assert (st.period_id, st.spent_usd, st.reserved_usd) == ("d2026-11-24", 0.4, 0)


def test_concurrent_threads_never_pass_the_limit():
    """Sync twins call the memory store from other threads: the lock keeps reservations exact."""
    led, _, _ = ledger(team_daily(1.0))
    admitted: list[str] = []
    refused: list[str] = []

    def worker(n: int) -> None:
        async def run() -> None:
            for i in range(50):
                try:
                    await led.reserve(f"t{n}-{i}", ML, 0.1)
                    admitted.append("x")
                except BudgetExceededError:
                    refused.append("x")

        asyncio.run(run())

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 10 and len(refused) == 190
    (st,) = asyncio.run(led.status({"team": "ml"}))
    assert st.reserved_usd == pytest.approx(1.0)


async def test_bad_amounts_are_refused():
    led, _, _ = ledger(team_daily())
    with pytest.raises(InvalidRequestError):
        await led.reserve("a", ML, -1)
    with pytest.raises(InvalidRequestError):
        await led.reserve("a", ML, float("nan"))
    res = await led.reserve("a", ML, 1)
    with pytest.raises(InvalidRequestError):
        await led.settle(res, float("inf"))


# -- spend ----------------------------------------------------------------------------------------------


async def test_spend_report_groups_and_day_ranges():
    led, wall, _ = ledger()
    calls = [
        ({"key": "k1", "team": "ml", "route": "chat"}, 0.10, "gpt", 100, 10),
        ({"key": "k1", "team": "ml", "route": "chat"}, 0.20, "claude", 200, 20),
        ({"key": "k2", "team": "web", "route": "embed"}, 0.05, "gpt", 50, 0),
        ({"key": "k3", "route": "chat"}, 0.01, "gpt", 1, 1),
    ]
    for i, (subj, cost, dep, pt, ct) in enumerate(calls):
        res = await led.reserve(f"r{i}", subj, cost * 2)
        await led.settle(res, cost, prompt_tokens=pt, completion_tokens=ct, deployment=dep, model=f"m-{dep}")
    wall.advance(86_400)
    await led.settle(await led.reserve("next-day", calls[0][0], 1), 1.0, prompt_tokens=7, deployment="gpt")
    await led.record_saving({"key": "k2", "team": "web", "route": "chat"}, 0.25, deployment="gpt")

    by_key = {r.group: r for r in await led.spend_report("key")}
    assert by_key["k1"].requests == 3 and by_key["k1"].cost_usd == pytest.approx(1.3)
    assert (by_key["k1"].prompt_tokens, by_key["k1"].completion_tokens) == (307, 30)
    assert by_key["k2"].saved_usd == 0.25 and by_key["k2"].requests == 2
    assert [r.group for r in await led.spend_report("key")] == ["k1", "k2", "k3"]  # most expensive first
    by_team = {
        r.group: r.cost_usd for r in await led.spend_report("team", since="2026-11-24", until="2026-11-24")
    }
    assert by_team == {"ml": pytest.approx(0.3), "web": 0.05, "(none)": 0.01}
    days = {r.group: r.requests for r in await led.spend_report("day")}
    assert days == {"2026-11-24": 4, "2026-11-25": 2}
    assert [r.group for r in await led.spend_report("deployment", since=ts(2026, 11, 25, 8))] == ["gpt"]
    assert {r.group for r in await led.spend_report("model")} == {"m-gpt", "m-claude", "(none)"}
    assert {r.group for r in await led.spend_report("route")} == {"chat", "embed"}
    with pytest.raises(InvalidRequestError, match="unknown grouping 'colour'"):
        await led.spend_report("colour")

    table = format_table(await led.spend_report("team"), by="team")
    lines = table.splitlines()
    assert lines[0].split() == [
        "team",
        "requests",
        "prompt",
        "tok",
        "completion",
        "tok",
        "cost",
        "USD",
        "saved",
        "USD",
    ]
    assert lines[-1].split()[:2] == ["total", "6"] and "1.3600" in lines[-1] and "0.2500" in lines[-1]


# -- config ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, problem",
    [
        ({"budgets": [{"scope": "team", "id": "ml", "period": "daily", "limit_usd": 0}]}, "greater than 0"),
        ({"budgets": [{"scope": "team", "period": "hourly", "limit_usd": 1}]}, "period"),
        (
            {"budgets": [{"scope": "team", "period": "daily", "limit_usd": 1, "alert_thresholds": [1.5]}]},
            "(0, 1]",
        ),
        ({"budgets": [{"scope": "global", "id": "x", "period": "daily", "limit_usd": 1}]}, "no id"),
        ({"budgets": [{"scope": "team", "id": "", "period": "daily", "limit_usd": 1}]}, "must not be empty"),
        ({"budgets": [{"scope": "team", "period": "daily", "limit_usd": 1}] * 2}, "a second daily budget"),
        ({"rate_limits": [{"scope": "key"}]}, "set rpm, tpm or both"),
        ({"rate_limits": [{"scope": "key", "rpm": 0}]}, "greater than or equal to 1"),
        ({"key_prefix": "a{b}"}, "no '{'"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"alerts": [{"type": "webhook"}]}, "needs url"),
        ({"reservation_ttl_s": 0}, "greater than 0"),
        ({"budget": []}, "Extra inputs"),
    ],
)
def test_config_is_validated(data, problem):
    with pytest.raises(
        ValidationError, match=problem.replace("(", "\\(").replace("[", "\\[").replace("]", "\\]")
    ):
        GovernanceConfig.model_validate(data)


def test_config_defaults():
    cfg = GovernanceConfig.model_validate(
        {
            "budgets": [{"scope": "key", "period": "monthly", "limit_usd": 20}],
            "rate_limits": [{"scope": "route", "id": "chat", "tpm": 1000}],
        }
    )
    b = cfg.budgets[0]
    assert (b.id, b.alert_thresholds, cfg.reservation_ttl_s, cfg.backend) == (
        "*",
        (0.5, 0.8, 1.0),
        120.0,
        "memory",
    )
    assert cfg.rate_limits[0] == RateLimitConfig(scope="route", id="chat", tpm=1000)
    assert [a.type for a in cfg.alerts] == ["log"]
