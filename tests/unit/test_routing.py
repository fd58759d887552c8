"""Routing decisions without sockets: breaker transitions, strategies, backoff, the failover flow."""

from __future__ import annotations

import random

import pytest

from hyperion_core import errors as E
from hyperion_core.config import BreakerConfig, RouteConfig
from hyperion_core.routing import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    CircuitBreaker,
    DeploymentState,
    ManualClock,
    Router,
    RouteState,
    backoff,
    order,
)

# -- circuit breaker ---------------------------------------------------------------------------


def test_breaker_opens_after_threshold_and_probes_once():
    b = CircuitBreaker(BreakerConfig(failure_threshold=3, cooldown=10))
    for _ in range(2):
        b.on_failure(0.0)
    assert b.state == CLOSED and b.allow(0.0)
    b.on_failure(1.0)
    assert b.state == OPEN
    assert not b.allow(5.0)
    assert not b.allow(10.99)
    assert b.allow(11.0)  # cooldown over: the single half-open probe
    assert b.state == HALF_OPEN
    assert not b.allow(11.0)  # a second request while the probe is out is refused
    b.on_success(11.0, probe=True)
    assert b.state == CLOSED and b.allow(11.0) and b.failures == 0


def test_failed_probe_reopens_for_a_full_cooldown():
    b = CircuitBreaker(BreakerConfig(failure_threshold=1, cooldown=10))
    b.on_failure(0.0)
    assert b.allow(10.0) and b.state == HALF_OPEN
    b.on_failure(10.0, probe=True)
    assert b.state == OPEN and not b.allow(19.9) and b.allow(20.0)
    assert b.opened_count == 2


def test_cancelled_probe_is_released():
    b = CircuitBreaker(BreakerConfig(failure_threshold=1, cooldown=1))
    b.on_failure(0.0)
    assert b.allow(1.0)
    b.release()
    assert b.allow(1.0)  # the next request may probe


def test_retry_after_cools_down_even_below_threshold():
    b = CircuitBreaker(BreakerConfig(failure_threshold=5, cooldown=30))
    b.on_failure(0.0, retry_after=2.0)
    assert b.state == OPEN and not b.allow(1.9) and b.allow(2.0)


def test_retry_after_longer_than_cooldown_wins():
    b = CircuitBreaker(BreakerConfig(failure_threshold=1, cooldown=1))
    b.on_failure(0.0, retry_after=7.0)
    assert not b.allow(6.9) and b.allow(7.0)


def test_every_retry_after_cools_down_exactly_that_long_and_is_not_counted():
    b = CircuitBreaker(BreakerConfig(failure_threshold=2, cooldown=30))
    b.on_failure(0.0, retry_after=20.0)
    for t in (20.0, 40.0):
        assert b.allow(t) and b.state == HALF_OPEN
        b.on_failure(t, retry_after=20.0, probe=True)  # the probe is rate limited again: 20 s, not 30
        assert b.state == OPEN and b.open_until == t + 20.0 and b.failures == 0
    assert b.allow(60.0)
    b.on_success(60.0, probe=True)
    assert b.state == CLOSED


def test_late_outcomes_never_close_or_extend_an_open_breaker():
    b = CircuitBreaker(BreakerConfig(failure_threshold=1, cooldown=10))
    b.on_failure(0.0)
    b.on_success(1.0)  # a request that started before the breaker opened
    assert b.state == OPEN
    b.on_failure(2.0)  # a late failure does not push the probe back
    assert b.open_until == 10.0
    assert b.allow(10.0) and b.state == HALF_OPEN
    b.on_success(10.5)  # not the probe: still half-open, probe still out
    assert b.state == HALF_OPEN and not b.allow(10.5)
    b.on_success(11.0, probe=True)
    assert b.state == CLOSED


def test_failure_rate_breaker_opens_on_a_share_of_failures_within_the_window():
    b = CircuitBreaker(BreakerConfig(failure_threshold=100, cooldown=10, failure_rate=0.5, window=10, min_calls=4))
    for t, failed in ((0.0, True), (1.0, False), (2.0, True)):
        b.on_failure(t) if failed else b.on_success(t)
    assert b.state == CLOSED  # 3 calls < min_calls
    b.on_failure(3.0)  # 3 of 4 failed
    assert b.state == OPEN
    b2 = CircuitBreaker(BreakerConfig(failure_threshold=100, failure_rate=0.5, window=10, min_calls=4))
    for t in range(4):
        b2.on_failure(float(t * 20))  # each alone in its window
    assert b2.state == CLOSED


def test_a_probe_without_verdict_is_presumed_lost_after_a_cooldown():
    b = CircuitBreaker(BreakerConfig(failure_threshold=1, cooldown=5))
    b.on_failure(0.0)
    assert b.allow(5.0) and not b.allow(9.9)  # the probe (a stream nobody read, say) never reports
    assert b.allow(10.0) and b.state == HALF_OPEN


def test_available_does_not_take_the_probe():
    b = CircuitBreaker(BreakerConfig(failure_threshold=1, cooldown=5))
    b.on_failure(0.0)
    assert not b.available(4.0) and b.available(5.0) and b.available(5.0)
    assert b.allow(5.0) and not b.available(5.0)


def test_disabled_breaker_never_opens():
    b = CircuitBreaker(BreakerConfig(enabled=False, failure_threshold=1))
    for _ in range(10):
        b.on_failure(0.0)
    assert b.allow(0.0)


# -- strategies and backoff --------------------------------------------------------------------


def _route(strategy="failover", n=3, **kw) -> RouteState:
    cfg = RouteConfig(strategy=strategy, deployments=[{"model": f"openai/m{i}", "name": f"d{i}"} for i in range(n)], **kw)
    rs = RouteState("r", cfg)
    for i in range(n):
        rs.deployments.append(DeploymentState(f"d{i}", adapter=None, breaker=CircuitBreaker(cfg.breaker)))  # type: ignore[arg-type]
    return rs


def test_failover_order_is_config_order():
    assert [d.name for d in order(_route(), random.Random(0))] == ["d0", "d1", "d2"]


def test_weighted_picks_by_weight_and_keeps_the_rest_as_fallbacks():
    rs = _route("weighted")
    for d, w in zip(rs.deployments, (1.0, 3.0, 0.0)):
        d.weight = w
    rng = random.Random(1)
    firsts = [order(rs, rng)[0].name for _ in range(4000)]
    share = firsts.count("d1") / len(firsts)
    assert 0.70 < share < 0.80
    assert "d2" not in firsts  # weight 0: fallback only
    assert len(order(rs, rng)) == 3


def test_lowest_latency_explores_unmeasured_then_prefers_fastest():
    rs = _route("lowest_latency")
    rs.deployments[0].observe(0.200, 0.3, ttft=False)
    rs.deployments[1].observe(0.050, 0.3, ttft=False)
    assert order(rs, random.Random())[0].name == "d2"  # never measured
    rs.deployments[2].observe(0.100, 0.3, ttft=False)
    assert [d.name for d in order(rs, random.Random())] == ["d1", "d2", "d0"]
    for d, t in zip(rs.deployments, (0.010, 0.020, 0.030)):
        d.observe(t, 0.3, ttft=True)
    assert [d.name for d in order(rs, random.Random(), stream=True)] == ["d0", "d1", "d2"]


def test_ewma_moves_toward_new_samples():
    d = DeploymentState("d", adapter=None, breaker=None)  # type: ignore[arg-type]
    d.observe(1.0, 0.5, ttft=False)
    d.observe(0.0, 0.5, ttft=False)
    assert d.ewma_latency == pytest.approx(0.5)


def test_lowest_cost_orders_by_unit_price():
    rs = _route("lowest_cost")
    for d, p in zip(rs.deployments, (3.0, 1.0, 2.0)):
        d.unit_price = p
    assert [d.name for d in order(rs, random.Random())] == ["d1", "d2", "d0"]


def test_backoff_is_bounded_jittered_and_honours_retry_after():
    rng = random.Random(3)
    waits = [backoff(3, 0.1, 0.5, rng) for _ in range(200)]
    assert max(waits) <= 0.5 and min(waits) >= 0 and len(set(waits)) > 150
    assert backoff(0, 0.1, 0.5, rng, retry_after=2.0) == 2.0


# -- the failover flow, with scripted operations -------------------------------------------------


def _script(outcomes: dict[str, list]):
    calls: list[str] = []

    async def op(ds):
        calls.append(ds.name)
        item = outcomes[ds.name].pop(0) if outcomes[ds.name] else "ok"
        if isinstance(item, BaseException):
            raise item
        return f"answer from {ds.name}"

    return op, calls


ERRORS = [
    (E.RateLimitError("429", status=429), True, True),
    (E.ProviderUnavailableError("503", status=503), True, True),
    (E.ProviderTimeoutError("slow"), True, True),
    (E.ProviderConnectionError("refused"), True, True),
    (E.MalformedResponseError("junk"), True, True),
    (E.StreamCutError("cut"), True, True),
    (E.AuthenticationError("401", status=401), False, True),
    (E.NotFoundError("404", status=404), False, True),
    (E.ProviderError("weird 418", status=418), True, True),
    (E.BadRequestError("400", status=400), False, False),
    (E.ContextWindowExceededError("too long", status=400), False, False),
    (E.ContentPolicyError("nope", status=400), False, False),
]


@pytest.mark.parametrize("exc,retryable,failover", ERRORS, ids=[type(e[0]).__name__ for e in ERRORS])
async def test_each_error_class_decides_retry_and_failover(exc, retryable, failover):
    assert (exc.retryable, exc.failover) == (retryable, failover)
    rs = _route(n=2, retry={"attempts": 1, "backoff_base": 0})
    op, calls = _script({"d0": [exc, exc], "d1": []})
    clock = ManualClock()
    router = Router(clock, random.Random(0))
    attempts: list = []
    if failover:
        result, ds = await router.run(rs, op, attempts, deadline=clock.now() + 60)
        assert ds.name == "d1" and result == "answer from d1"
        fails_over_first = isinstance(exc, (E.RateLimitError, E.ProviderTimeoutError))  # another is left
        expected_d0 = 1 if (not retryable or fails_over_first) else 2
        assert calls == ["d0"] * expected_d0 + ["d1"]
        assert [a.outcome for a in attempts] == ["error"] * expected_d0 + ["ok"]
        assert attempts[0].error_class == type(exc).__name__
    else:
        with pytest.raises(type(exc)) as ei:
            await router.run(rs, op, attempts, deadline=clock.now() + 60)
        assert calls == ["d0"]  # never retried, never failed over
        assert ei.value.attempts[0].deployment == "d0"
        assert ei.value.route == "r" and ei.value.deployment == "d0"


async def test_timeout_fails_over_first_and_retries_only_the_last_deployment():
    rs = _route(n=2, retry={"attempts": 1, "backoff_base": 0})
    op, calls = _script({"d0": [E.ProviderTimeoutError("t")], "d1": [E.ProviderTimeoutError("t")]})
    clock = ManualClock()
    _, ds = await Router(clock, random.Random(0)).run(rs, op, [], deadline=clock.now() + 60)
    assert calls == ["d0", "d1", "d1"] and ds.name == "d1"


async def test_retry_rechecks_the_breaker_after_its_backoff():
    rs = _route(n=2, retry={"attempts": 2, "backoff_base": 0.5}, breaker={"failure_threshold": 3})

    class Clock(ManualClock):
        async def sleep(self, seconds):
            await super().sleep(seconds)
            for _ in range(3):  # other requests open d0's breaker meanwhile
                rs.deployments[0].breaker.on_failure(self.now())

    op, calls = _script({"d0": [E.ProviderUnavailableError("503")] * 3, "d1": []})
    clock = Clock()
    _, ds = await Router(clock, random.Random(0)).run(rs, op, [], deadline=clock.now() + 60)
    assert calls == ["d0", "d1"] and ds.name == "d1"


async def test_open_stream_defers_the_breaker_verdict_to_the_lease():
    rs = _route(n=1, breaker={"failure_threshold": 1, "cooldown": 5})
    clock = ManualClock()
    router = Router(clock)
    ds = rs.deployments[0]
    ds.breaker.on_failure(clock.now())
    clock.advance(5)
    op, _ = _script({"d0": []})
    _, lease = await router.open_stream(rs, op, [], resolve=lambda name: rs)
    assert lease.probe and ds.breaker.state == HALF_OPEN  # opened, not yet judged
    lease.fail()
    assert ds.breaker.state == OPEN and ds.ewma_ttft is None
    lease.succeed()  # settled once only
    assert ds.breaker.state == OPEN
    clock.advance(5)
    _, lease = await router.open_stream(rs, op, [], resolve=lambda name: rs)
    lease.succeed()
    assert ds.breaker.state == CLOSED and ds.ewma_ttft is not None


async def test_retry_succeeds_on_same_deployment():
    rs = _route(n=2, retry={"attempts": 2, "backoff_base": 0.5})
    op, calls = _script({"d0": [E.ProviderUnavailableError("503"), E.ProviderUnavailableError("503")], "d1": []})
    clock = ManualClock()
    _, ds = await Router(clock, random.Random(0)).run(rs, op, [], deadline=clock.now() + 60)
    assert ds.name == "d0" and calls == ["d0", "d0", "d0"]
    assert clock.now() > 1000.0  # backoff slept on the injected clock


async def test_all_failed_carries_every_attempt():
    rs = _route(n=2, retry={"attempts": 0})
    op, calls = _script({"d0": [E.ProviderUnavailableError("503")], "d1": [E.ProviderTimeoutError("t")]})
    clock = ManualClock()
    with pytest.raises(E.AllDeploymentsFailedError) as ei:
        await Router(clock).run(rs, op, [], deadline=clock.now() + 60)
    assert [(a.deployment, a.error_class) for a in ei.value.attempts] == [
        ("d0", "ProviderUnavailableError"),
        ("d1", "ProviderTimeoutError"),
    ]
    assert "d0: ProviderUnavailableError" in str(ei.value)


async def test_open_breakers_are_skipped_then_no_healthy_deployment():
    rs = _route(n=2, retry={"attempts": 0}, breaker={"failure_threshold": 1, "cooldown": 30})
    clock = ManualClock()
    router = Router(clock)
    op, calls = _script({"d0": [E.ProviderUnavailableError("x")], "d1": [E.ProviderUnavailableError("x")]})
    with pytest.raises(E.AllDeploymentsFailedError):
        await router.run(rs, op, [], deadline=clock.now() + 60)
    with pytest.raises(E.NoHealthyDeploymentError, match="every circuit breaker is open"):
        await router.run(rs, op, [], deadline=clock.now() + 60)
    assert calls == ["d0", "d1"]  # nothing was called the second time
    clock.advance(30)
    _, ds = await router.run(rs, op, [], deadline=clock.now() + 60)
    assert ds.name == "d0" and rs.deployments[0].breaker.state == CLOSED


async def test_deadline_stops_retries():
    rs = _route(n=1, timeout=1.0, retry={"attempts": 10, "backoff_base": 0.4, "backoff_max": 0.4})
    clock = ManualClock()

    async def op(ds):
        clock.advance(0.3)
        raise E.ProviderUnavailableError("503")

    with pytest.raises((E.DeadlineExceededError, E.AllDeploymentsFailedError)) as ei:
        await Router(clock, random.Random(0)).run(rs, op, [], deadline=clock.now() + 1.0)
    assert clock.now() <= 1000.0 + 1.0 + 1e-9
    assert len(ei.value.attempts) < 5


async def test_attempt_timeout_fails_over_and_deadline_raises():
    import asyncio

    rs = _route(n=2, attempt_timeout=0.05, retry={"attempts": 0})

    async def op(ds):
        if ds.name == "d0":
            await asyncio.sleep(10)
        return ds.name

    router = Router()
    attempts: list = []
    result, _ = await router.run(rs, op, attempts, deadline=router.clock.now() + 5)
    assert result == "d1" and attempts[0].error_class == "ProviderTimeoutError"

    async def hang(ds):
        await asyncio.sleep(10)

    rs2 = _route(n=2, retry={"attempts": 0})
    with pytest.raises(E.DeadlineExceededError, match="deadline"):
        await router.run(rs2, hang, [], deadline=router.clock.now() + 0.1)


# -- hedged requests (issue 15): the window, the threshold, the race without sockets -------------


def test_latency_window_p95_is_the_nearest_rank_of_the_last_samples():
    from hyperion_core.hedge import WINDOW, LatencyWindow

    w = LatencyWindow()
    for i in range(1, 101):
        w.add(i / 100, ttft=False)
    assert w.p95(ttft=False, min_samples=20) == 0.95
    assert w.p95(ttft=True, min_samples=1) is None  # TTFTs are kept apart
    assert w.p95(ttft=False, min_samples=101) is None
    for _ in range(WINDOW):
        w.add(7.0, ttft=False)
    assert w.p95(ttft=False, min_samples=20) == 7.0  # older samples left the window


def test_hedge_threshold_fixed_p95_default_and_floor():
    from hyperion_core.hedge import HedgeConfig, threshold

    ds = _route(n=2).deployments[0]
    assert threshold(HedgeConfig(after_ms=250), ds, stream=False) == 0.25
    p95 = HedgeConfig(after_ms="p95", min_samples=5, default_ms=900, floor_ms=40)
    assert threshold(p95, ds, stream=False) == 0.9  # too few samples: the default
    for _ in range(5):
        ds.recent.add(0.001, ttft=False)
        ds.recent.add(0.3, ttft=True)
    assert threshold(p95, ds, stream=False) == 0.04  # never below the floor
    assert threshold(p95, ds, stream=True) == 0.3  # streams: the TTFT window


@pytest.mark.parametrize(("hedge", "needle"), [
    ({"after_ms": -5}, "hedge.after_ms must be > 0"),
    ({"after_ms": "p99"}, "after_ms"),
    ({"max_extra": 0}, "max_extra"),
    ({"after_ms": 100, "delay": 1}, "delay"),
])
def test_bad_hedge_settings_are_refused_by_name(hedge, needle):
    from hyperion_core.config import GatewayConfig

    with pytest.raises(E.ConfigError, match=needle):
        GatewayConfig.load({"routes": {"r": {"deployments": [{"model": "openai/m"}], "hedge": hedge}}})


async def test_a_hedge_races_the_next_deployment_and_cancels_the_loser():
    import asyncio

    rs = _route(n=3, hedge={"after_ms": 10}, retry={"attempts": 0})
    cancelled: list[str] = []

    async def op(ds):
        if ds.name == "d0":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(ds.name)
                raise
        return ds.name

    attempts: list = []
    router = Router()
    result, ds = await router.run(rs, op, attempts, deadline=router.clock.now() + 60)
    assert result == "d1" and cancelled == ["d0"]
    assert [(a.deployment, a.outcome) for a in attempts] == [("d1", "ok"), ("d0", "cancelled")]
    assert rs.deployments[0].breaker.failures == 0 and rs.deployments[1].breaker.state == CLOSED


async def test_a_hedge_skips_a_deployment_behind_an_open_breaker():
    import asyncio

    rs = _route(n=3, hedge={"after_ms": 5}, retry={"attempts": 0})
    router = Router()
    d1 = rs.deployments[1]
    d1.breaker.state, d1.breaker.open_until = "open", router.clock.now() + 1000
    calls: list[str] = []

    async def op(ds):
        calls.append(ds.name)
        if ds.name == "d0":
            await asyncio.sleep(30)
        return ds.name

    result, _ = await router.run(rs, op, [], deadline=router.clock.now() + 60)
    assert result == "d2" and calls == ["d0", "d2"]


async def test_two_attempts_answering_at_once_one_is_used_and_the_other_discarded():
    import asyncio

    rs = _route(n=2, hedge={"after_ms": 5}, retry={"attempts": 0})
    router = Router()
    go = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, go.set)  # both are waiting by then: they answer together
    discarded: list[str] = []

    async def op(ds):
        await go.wait()
        return ds.name

    async def discard(result):
        discarded.append(result)

    attempts: list = []
    result, lease = await router.open_stream(rs, op, attempts, resolve=lambda name: rs, discard=discard)
    assert discarded and {result, *discarded} == {"d0", "d1"} and result not in discarded
    assert [a.outcome for a in attempts] == ["ok", "ok"]  # both answered; the other's stream was closed
    lease.succeed()
    assert all(d.breaker.probing is False and d.breaker.state == CLOSED for d in rs.deployments)
