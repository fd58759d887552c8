"""Spend-rate anomalies (simulated clock), alert sinks (a local aiohttp server), the Governance facade."""

from __future__ import annotations

import logging
import math
import random

import pytest

from hyperion_core.errors import BudgetExceededError, RateLimitedError
from hyperion_core.governance import (
    AlertDispatcher,
    AnomalyAlert,
    AnomalyConfig,
    AnomalyDetector,
    BudgetAlert,
    CallbackSink,
    Governance,
    LogSink,
)
from hyperion_core.governance.anomaly import RateState, alpha_for

T0 = 1_795_478_400.0  # 2026-11-24 00:00 UTC


class Wall:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def detector(**cfg) -> tuple[AnomalyDetector, Wall, list[AnomalyAlert]]:
    wall = Wall()
    alerts: list[AnomalyAlert] = []
    return AnomalyDetector(AnomalyConfig(**cfg), now=wall, on_alert=alerts.append), wall, alerts


async def steady(
    det: AnomalyDetector,
    wall: Wall,
    minutes: float,
    rng: random.Random,
    *,
    usd_per_min: float = 0.5,
    per_min: int = 12,
    subjects=None,
) -> None:
    """Traffic at about ``usd_per_min``: requests at jittered intervals, each cost ±50% noisy."""
    subjects = subjects or {"key": "k1", "team": "ml"}
    end = wall.t + minutes * 60
    while wall.t < end:
        wall.t += rng.uniform(0.5, 1.5) * 60 / per_min
        await det.observe(subjects, usd_per_min / per_min * rng.uniform(0.5, 1.5))


async def burst(
    det: AnomalyDetector,
    wall: Wall,
    factor: float,
    alerts: list,
    *,
    usd_per_min: float = 0.5,
    per_min: int = 12,
    limit_s: float = 300,
) -> float | None:
    """Traffic at ``factor`` x the steady rate until the first alert; seconds from burst start to it."""
    start = wall.t
    while wall.t - start < limit_s:
        wall.t += 60 / per_min / factor
        if await det.observe({"key": "k1", "team": "ml"}, usd_per_min / per_min):
            return wall.t - start
    return None


def test_rate_state_baseline_math():
    a = alpha_for(60, 1800)
    assert (1 - a) ** 30 == pytest.approx(0.5)  # a bucket counts half after the half-life
    st = RateState()
    for m in range(10):
        snap = st.add(2.0, T0 + m * 60 + 1, 60, a)
    assert snap.ewma == pytest.approx(2.0) and snap.n == 8  # the current and previous bucket are excluded
    assert snap.prev == 2.0 and snap.cur == 2.0
    snap = st.add(0.0, T0 + 19 * 60 + 30, 60, a)  # buckets 8, 9 fold in; 10..17 idle decay as zeros
    assert snap.n == 18 and snap.ewma == pytest.approx(2.0 * (1 - a) ** 8)
    assert snap.window == 0 and snap.frac == pytest.approx(0.5)


@pytest.mark.parametrize("offset", [0, 17, 31, 32, 45, 59])
async def test_a_20x_burst_is_alerted_within_a_minute(offset):
    det, wall, alerts = detector(multiplier=10, min_usd_per_min=0.1, warmup_s=600)
    rng = random.Random(offset)
    await steady(det, wall, 30, rng)
    assert alerts == []
    wall.t = math.floor(wall.t / 60) * 60 + 60 + offset  # the burst starts `offset` s into a bucket
    took = await burst(det, wall, 20, alerts)
    assert took is not None and took <= 60, took
    a = alerts[0]
    assert (a.kind, a.scope, a.subject) == ("spike", "key", "key:k1") or a.subject == "team:ml"
    assert a.ratio >= 10 and a.baseline_usd_per_min == pytest.approx(0.5, rel=0.3)
    assert a.rate_usd_per_min >= 10 * a.baseline_usd_per_min and a.time == wall.t
    assert "x its baseline" in a.message


async def test_steady_noisy_traffic_raises_nothing():
    det, wall, alerts = detector(multiplier=10, min_usd_per_min=0.0, warmup_s=600)
    rng = random.Random(7)
    for _ in range(12):  # 12 hours with the hourly level itself wandering ±50%
        await steady(det, wall, 60, rng, usd_per_min=0.5 * rng.uniform(0.5, 1.5))
    assert alerts == []


async def test_one_alert_per_burst_then_cooldown():
    det, wall, alerts = detector(cooldown_s=600)
    rng = random.Random(3)
    await steady(det, wall, 30, rng, subjects={"key": "k1"})
    start = wall.t
    while wall.t - start < 300:  # a five-minute burst: hundreds of requests
        wall.t += 0.25
        await det.observe({"key": "k1"}, 0.5 / 12)
    assert len(alerts) == 1


async def test_new_subjects_warm_up_before_ratio_alerts_but_hard_limits_always_apply():
    det, wall, alerts = detector(warmup_s=900, hard=[{"scope": "team", "usd_per_min": 5.0}])
    for _ in range(600):  # a brand-new key spending $2/min straight away: no history, no spike
        wall.t += 0.5
        await det.observe({"key": "new", "team": "ml"}, 1 / 60)
    assert alerts == []
    for _ in range(120):  # the team crosses its hard $5/min
        wall.t += 0.25
        await det.observe({"key": "new", "team": "ml"}, 0.05)
    assert [(a.kind, a.subject) for a in alerts] == [("hard_limit", "team:ml")]
    assert alerts[0].threshold == 5.0 and alerts[0].rate_usd_per_min >= 5.0
    assert "above the hard limit $5.00/min" in alerts[0].message


async def test_disabled_or_free_requests_are_ignored():
    det, wall, alerts = detector(enabled=False)
    assert await det.observe({"key": "k"}, 100.0) == []
    det2, _, _ = detector()
    assert det2.items({"key": "k", "team": "t"}, 0.0) == []


# -- sinks ------------------------------------------------------------------------------------------------

BUDGET_ALERT = BudgetAlert(
    "team 'ml' daily budget", "team", "ml", "daily", "d2026-11-24", "threshold", 0.8, 8.0, 10.0, T0
)


async def test_log_and_callback_sinks_and_a_failing_sink_does_not_stop_the_others(caplog):
    got: list = []
    got_async: list = []

    async def acb(alert):
        got_async.append(alert)

    def broken(alert):
        raise RuntimeError("sink bug")

    d = AlertDispatcher([CallbackSink(broken), LogSink(), CallbackSink(got.append), CallbackSink(acb)])
    with caplog.at_level(logging.WARNING, logger="hyperion.alerts"):
        d.emit(BUDGET_ALERT)
    await d.aclose()
    assert got == [BUDGET_ALERT] and got_async == [BUDGET_ALERT]
    assert any(r.getMessage() == BUDGET_ALERT.message and r.alert["type"] == "budget" for r in caplog.records)
    assert any("sink" in r.getMessage() and r.exc_info for r in caplog.records)


def test_dispatcher_from_config():
    d = AlertDispatcher.from_config(
        Governance(
            {
                "alerts": [
                    {"type": "log"},
                    {"type": "webhook", "url": "http://x/y"},
                    {"type": "callback", "callback": print},
                ]
            }
        ).config.alerts
    )
    assert [type(s).__name__ for s in d.sinks] == ["LogSink", "WebhookSink", "CallbackSink"]


# -- the facade (memory) ----------------------------------------------------------------------------------


async def test_governance_admit_settle_release_in_memory():
    from hyperion_core.routing import ManualClock

    wall, mono, alerts = Wall(), ManualClock(), []
    gov = Governance(
        {
            "budgets": [{"scope": "team", "id": "ml", "period": "daily", "limit_usd": 1.0}],
            "rate_limits": [{"scope": "key", "rpm": 3, "tpm": 1000}],
        },
        now=wall,
        monotonic=mono.now,
        sinks=[CallbackSink(alerts.append)],
    )
    subj = {"key": "k1", "team": "ml", "user": "u", "route": "chat"}
    a = await gov.admit("r1", subj, tokens_estimate=500, cost_estimate_usd=0.6)
    done = await gov.settle(a, 0.55, prompt_tokens=100, completion_tokens=50, deployment="d1", model="m1")
    assert done and [x.threshold for x in done.alerts] == [0.5]
    assert not await gov.settle(a, 0.55)  # once
    # the budget refuses: the rate limit taken for this request is given back
    with pytest.raises(BudgetExceededError):
        await gov.admit("r2", subj, tokens_estimate=500, cost_estimate_usd=0.6)
    b = await gov.admit("r3", subj, tokens_estimate=800, cost_estimate_usd=0.1)  # TPM: 150 + 800 of 1000
    assert await gov.release(b) is True and await gov.release(b) is False
    c = await gov.admit("r4", subj, tokens_estimate=800, cost_estimate_usd=0.1)  # 800 came back
    await gov.settle(c, 0.0, saved_usd=0.2)  # a cache hit
    with pytest.raises(RateLimitedError, match="rpm 3"):  # r1, r3, r4 (r2 was refunded)
        await gov.admit("r5", subj, tokens_estimate=1, cost_estimate_usd=0.01)
    (row,) = await gov.spend_report("team")
    assert (row.requests, row.cost_usd, row.saved_usd, row.prompt_tokens) == (2, 0.55, 0.2, 100)
    assert [x.kind for x in alerts] == ["threshold", "exhausted"]
    (st,) = await gov.status({"team": "ml"})
    assert (st.spent_usd, st.reserved_usd) == (0.55, 0)
    await gov.aclose()
