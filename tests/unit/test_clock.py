"""The one clock module: system and manual clocks, test mode, and routing / cache / governance on it."""

from __future__ import annotations

import time

import pytest

from hyperion_core import clock as clock_mod
from hyperion_core.clock import SYSTEM, ManualClock, SystemClock, is_testing, set_testing
from hyperion_core.errors import RateLimitedError
from hyperion_core.governance import Governance


def test_old_names_are_the_shared_clock():
    from hyperion_core import ManualClock as top_manual
    from hyperion_core import routing
    from hyperion_core.cache import exact

    assert routing.ManualClock is clock_mod.ManualClock is top_manual
    assert routing.SystemClock is clock_mod.SystemClock and routing.Clock is clock_mod.Clock
    assert routing.set_testing is clock_mod.set_testing
    assert exact._Monotonic is SystemClock and exact.MonotonicClock is clock_mod.MonotonicClock


def test_manual_clock_moves_monotonic_and_wall_time_together():
    c = ManualClock(start=5.0, wall=1_000_000.0)
    assert (c.now(), c.time()) == (5.0, 1_000_000.0)
    c.advance(2.5)
    assert (c.now(), c.time()) == (7.5, 1_000_002.5)


async def test_manual_clock_sleep_advances_instantly():
    c = ManualClock()
    t = time.perf_counter()
    await c.sleep(3600)
    await c.sleep(-1)  # never backwards
    assert c.now() == 4600.0 and time.perf_counter() - t < 0.5


async def test_system_clock_reads_the_host_and_skips_sleeps_in_test_mode():
    assert abs(SYSTEM.time() - time.time()) < 1 and abs(SYSTEM.now() - time.monotonic()) < 1
    assert is_testing()  # the suite's conftest switches it on
    t = time.perf_counter()
    await SYSTEM.sleep(30)
    assert time.perf_counter() - t < 0.5
    set_testing(False)
    try:
        assert not is_testing()
        t = time.perf_counter()
        await SYSTEM.sleep(0.02)
        assert time.perf_counter() - t >= 0.015
    finally:
        set_testing(True)


async def test_governance_runs_on_an_injected_clock():
    c = ManualClock()
    gov = Governance(
        {"rate_limits": [{"scope": "key", "id": "*", "rpm": 1}], "reservation_ttl_s": 10, "alerts": [],
         "budgets": [{"scope": "key", "id": "*", "period": "daily", "limit_usd": 1.0}]},
        clock=c,
    )
    await gov.admit("r1", {"key": "k"}, cost_estimate_usd=0.9)
    with pytest.raises(RateLimitedError):
        await gov.admit("r2", {"key": "k"}, cost_estimate_usd=0.1)
    c.advance(61)  # the RPM bucket refills and the unsettled reservation expires on the same clock
    await gov.admit("r3", {"key": "k"}, cost_estimate_usd=0.9)
    (st,) = await gov.status({"key": "k"})
    assert st.reserved_usd == pytest.approx(0.9) and st.period_id == "d2027-01-15"
