"""Governance on a real Redis: the same ledger contract as memory, the scripts, the key layout."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from hyperion_core.errors import BudgetExceededError, InvalidRequestError, RateLimitedError
from hyperion_core.governance import CallbackSink, Governance, GovernanceStoreError
from hyperion_core.governance.anomaly import RateState, RedisAnomalyStore, alpha_for
from hyperion_core.redis_server import free_port

pytestmark = pytest.mark.redis

T0 = 1_795_478_400.0 + 12 * 3600  # 2026-11-24 12:00 UTC
_n = itertools.count()


class Wall:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def client(redis_url):
    r = aioredis.Redis.from_url(redis_url)
    yield r
    await r.aclose()


@pytest.fixture(params=["memory", "redis"])
def make(request, client):
    """Build a Governance on either backend, each test in its own key namespace."""
    made: list[Governance] = []

    def build(cfg: dict, **kw) -> Governance:
        alerts = kw.pop("alerts", [])
        base = {"backend": request.param, "key_prefix": f"t{next(_n)}-{time.time_ns()}", "alerts": []}
        gov = Governance(
            {**base, **cfg},
            redis=client if request.param == "redis" else None,
            sinks=[CallbackSink(alerts.append)],
            **kw,
        )
        made.append(gov)
        return gov

    build.backend = request.param  # type: ignore[attr-defined]
    return build


ML = {"key": "k1", "team": "ml", "user": "ann", "route": "chat"}
TEAM = {"scope": "team", "id": "ml", "period": "daily"}


async def test_reserve_settle_release_once(make):
    gov = make({"budgets": [{**TEAM, "limit_usd": 5.0}]}, now=Wall())
    led = gov.ledger
    res = await led.reserve("r1", ML, 0.04)
    assert (await led.reserve("r1", ML, 0.04)) == res  # a held id: idempotent
    (st,) = await led.status({"team": "ml"})
    assert (st.spent_usd, st.reserved_usd, st.period_id) == (0, 0.04, "d2026-11-24")
    done = await led.settle(res, 0.01, prompt_tokens=10, completion_tokens=5, deployment="d1", model="m1")
    assert done.settled and not done.late
    again = await led.settle(res, 0.01)
    assert not again and again.state == "already_settled"
    assert await led.release(res) is False
    res2 = await led.reserve("r2", ML, 1.0)
    assert await led.release(res2) is True and await led.release(res2) is False
    assert (await led.settle(res2, 1.0)).state == "released"
    (st,) = await led.status({"team": "ml"})
    assert (st.spent_usd, st.reserved_usd) == (0.01, 0)
    (row,) = await led.spend_report("deployment")
    assert (row.group, row.requests, row.prompt_tokens, row.completion_tokens, row.cost_usd) == (
        "d1",
        1,
        10,
        5,
        0.01,
    )


async def test_refusal_all_or_none_and_alerts(make):
    alerts: list = []
    gov = make(
        {
            "budgets": [
                {**TEAM, "limit_usd": 5.0},
                {"scope": "key", "id": "*", "period": "monthly", "limit_usd": 100},
            ]
        },
        now=Wall(),
        alerts=alerts,
    )
    led = gov.ledger
    a = await led.reserve("a", ML, 4.97)
    await led.reserve("b", ML, 0.03)
    s = await led.settle(a, 4.98)
    assert [x.threshold for x in s.alerts] == [0.5, 0.8]
    with pytest.raises(BudgetExceededError) as exc:
        await led.reserve("c", ML, 0.04)
    assert exc.value.message == (
        "team 'ml' daily budget $5.00: spent $4.98 + reserved $0.03 + this request $0.04 > limit "
        "(resets 2026-11-25 00:00 UTC)"
    )
    with pytest.raises(BudgetExceededError):
        await led.reserve("d", ML, 0.04)
    by = {x.budget: (x.spent_usd, x.reserved_usd) for x in await led.status(ML)}
    assert by == {
        "team 'ml' daily budget": (4.98, 0.03),
        "key 'k1' monthly budget": (4.98, 0.03),
    }  # nothing held
    assert [(x.kind, x.threshold) for x in alerts] == [
        ("threshold", 0.5),
        ("threshold", 0.8),
        ("exhausted", None),
    ]


async def test_spend_report_matches_what_was_settled(make):
    wall = Wall()
    gov = make({}, now=wall)
    expected: dict[str, list[float]] = {}
    rng = random.Random(5)
    for i in range(60):
        subj = {"key": f"k{i % 4}", "team": f"t{i % 2}", "route": "chat"}
        cost = round(rng.uniform(0.001, 0.2), 6)
        adm = await gov.admit(f"r{i}", subj, tokens_estimate=100, cost_estimate_usd=cost * 2)
        if i % 10 == 9:
            await gov.release(adm)  # failed requests are not spend
            continue
        await gov.settle(adm, cost, prompt_tokens=i, completion_tokens=1, deployment=f"d{i % 3}")
        row = expected.setdefault(subj["key"], [0, 0, 0.0])
        row[0] += 1
        row[1] += i
        row[2] += cost
    rows = await gov.spend_report("key")
    assert {r.group: [r.requests, r.prompt_tokens, round(r.cost_usd, 9)] for r in rows} == {
        k: [v[0], v[1], round(v[2], 9)] for k, v in expected.items()
    }
    assert sum(r.requests for r in await gov.spend_report("deployment")) == 54
    assert await gov.spend_report("key", since="2026-11-25") == []


async def test_rate_limits_exact_with_an_injected_clock(make):
    mono = Wall(1000.0)
    kw = {"monotonic": mono} if make.backend == "memory" else {"redis_clock": mono}
    gov = make({"rate_limits": [{"scope": "key", "id": "*", "rpm": 60, "tpm": 1000}]}, **kw)
    lim = gov.limiter
    for _ in range(60):
        await lim.acquire(ML)
    with pytest.raises(RateLimitedError) as exc:
        await lim.acquire(ML)
    assert exc.value.limit_name == "key 'k1' rpm 60" and exc.value.retry_after == pytest.approx(1.0, abs=1e-5)
    mono.t += 0.25
    with pytest.raises(RateLimitedError) as exc:
        await lim.acquire(ML)
    assert exc.value.retry_after == pytest.approx(0.75, abs=1e-5)
    mono.t += 0.75
    await lim.acquire(ML)
    # TPM: estimate consumed, then corrected
    other = {"key": "k2"}
    await lim.acquire(other, 600)
    with pytest.raises(RateLimitedError) as exc:
        await lim.acquire(other, 600)
    assert exc.value.limit_name == "key 'k2' tpm 1000" and exc.value.retry_after == pytest.approx(
        12.0, abs=1e-5
    )
    await lim.adjust(other, -300)
    await lim.acquire(other, 600)


async def test_admission_is_all_or_nothing(make):
    mono = Wall(1000.0)
    kw = {"monotonic": mono} if make.backend == "memory" else {"redis_clock": mono}
    gov = make(
        {"budgets": [{**TEAM, "limit_usd": 1.0}], "rate_limits": [{"scope": "key", "rpm": 2}]},
        now=Wall(),
        **kw,
    )
    await gov.admit("a", ML, cost_estimate_usd=0.5)
    b = await gov.admit("b", ML, cost_estimate_usd=0.2)
    with pytest.raises(RateLimitedError):  # rpm used up; the budget had room but holds nothing for it
        await gov.admit("c", ML, cost_estimate_usd=0.2)
    (st,) = await gov.status({"team": "ml"})
    assert st.reserved_usd == pytest.approx(0.7)
    await gov.release(b)
    mono.t += 30  # one rpm slot refilled
    with pytest.raises(BudgetExceededError):  # the budget refuses: the rpm slot is given back
        await gov.admit("d", ML, cost_estimate_usd=0.6)
    await gov.admit("e", ML, cost_estimate_usd=0.1)  # ... so this one gets it
    with pytest.raises(BudgetExceededError):  # both refuse: the budget error, which lasts longer, wins
        await gov.admit("f", ML, cost_estimate_usd=0.9)
    (st,) = await gov.status({"team": "ml"})
    assert st.reserved_usd == pytest.approx(0.6)


async def test_rate_limit_on_redis_time(client, redis_url):
    gov = Governance(
        {
            "backend": "redis",
            "key_prefix": f"rt{time.time_ns()}",
            "rate_limits": [{"scope": "route", "id": "chat", "rpm": 5}],
        },
        redis=client,
        sinks=[],
    )
    for _ in range(5):
        await gov.limiter.acquire({"route": "chat"})
    with pytest.raises(RateLimitedError) as exc:
        await gov.limiter.acquire({"route": "chat"})
    assert 11.5 < exc.value.retry_after <= 12.0


async def test_crashed_reservations_expire_on_redis_time(client):
    gov = Governance(
        {
            "backend": "redis",
            "key_prefix": f"ex{time.time_ns()}",
            "reservation_ttl_s": 0.3,
            "budgets": [{**TEAM, "limit_usd": 1.0}],
        },
        redis=client,
        sinks=[],
    )
    lost = await gov.ledger.reserve("lost", ML, 0.8)
    with pytest.raises(BudgetExceededError):
        await gov.ledger.reserve("b", ML, 0.3)
    await asyncio.sleep(0.35)
    (st,) = await gov.status({"team": "ml"})  # status sweeps too
    assert st.reserved_usd == 0
    await gov.ledger.reserve("c", ML, 0.3)
    late = await gov.ledger.settle(lost, 0.5)
    assert late.settled and late.late
    (st,) = await gov.status({"team": "ml"})
    assert (st.spent_usd, st.reserved_usd) == (0.5, 0.3)


async def test_key_layout_slots_and_ttls(client):
    prefix = f"lay{time.time_ns()}"
    gov = Governance(
        {
            "backend": "redis",
            "key_prefix": prefix,
            "rate_limits": [{"scope": "key", "rpm": 10}],
            "budgets": [{**TEAM, "limit_usd": 5}, {"scope": "global", "period": "total", "limit_usd": 50}],
        },
        redis=client,
        sinks=[],
    )
    adm = await gov.admit("r1", ML, tokens_estimate=10, cost_estimate_usd=0.1)
    await gov.settle(adm, 0.05, prompt_tokens=5, completion_tokens=5)
    await gov.admit("r2", ML, tokens_estimate=10, cost_estimate_usd=0.1)
    keys = sorted(k.decode() for k in await client.keys(f"*{prefix}*"))
    ledger = [k for k in keys if k.startswith(f"{{{prefix}:ledger}}")]
    assert {key_slot(k.encode()) for k in ledger} == {key_slot(f"{{{prefix}:ledger}}".encode())}
    assert {key_slot(k.encode()) for k in keys if k.startswith(f"{{{prefix}:rl}}")} == {
        key_slot(f"{{{prefix}:rl}}".encode())
    }
    ttl = {k: await client.ttl(k) for k in keys}
    daily = f"{{{prefix}:ledger}}:b:team:ml:{gov.ledger.periods.current('daily').id}"
    assert 86_400 < ttl[daily] <= 2 * 86_400  # the period's end plus a day
    assert ttl[f"{{{prefix}:ledger}}:b:global:total"] == -1  # a total budget never resets
    assert 0 < ttl[f"{{{prefix}:ledger}}:res:r1"] <= 600  # settled: remembered for the grace period
    assert 600 < ttl[f"{{{prefix}:ledger}}:res:r2"] <= 720  # held: ttl + grace
    assert 0 < ttl[f"{{{prefix}:rl}}:key:k1:rpm"] <= 61
    assert all(ttl[k] > 0 for k in keys if ":spend:2" in k or ":anom:" in k)


async def test_scripts_reload_after_a_flush_and_a_dead_store_fails_closed(client):
    gov = Governance(
        {
            "backend": "redis",
            "key_prefix": f"fl{time.time_ns()}",
            "rate_limits": [{"scope": "key", "rpm": 100}],
            "budgets": [{**TEAM, "limit_usd": 5}],
        },
        redis=client,
        sinks=[],
    )
    await client.script_flush()
    adm = await gov.admit("r1", ML, tokens_estimate=10, cost_estimate_usd=0.1)  # pipelined: NOSCRIPT -> load
    await client.script_flush()
    assert await gov.settle(adm, 0.1)
    dead = Governance(
        {
            "backend": "redis",
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            "budgets": [{**TEAM, "limit_usd": 5}],
        },
        sinks=[],
    )
    with pytest.raises(GovernanceStoreError, match="governance store"):
        await dead.admit("r1", ML, cost_estimate_usd=0.1)
    await dead.aclose()


async def test_anomaly_script_matches_the_python_algorithm(client):
    prefix = f"an{time.time_ns()}"
    clock = Wall(T0)
    store = RedisAnomalyStore(client, prefix=prefix, clock=clock)
    a = alpha_for(60, 1800)
    py = RateState()
    rng = random.Random(11)
    for _ in range(400):
        clock.t += rng.choice([0.5, 3, 20, 61, 130, 900])
        amt = rng.uniform(0, 0.3)
        (got,) = await store.add_many([("key:k", amt)], 60, a)
        want = py.add(amt, math.floor(clock.t * 1000) / 1000, 60, a)
        assert (got.n, got.cur, got.prev) == (want.n, pytest.approx(want.cur), pytest.approx(want.prev))
        assert got.ewma == pytest.approx(want.ewma) and got.frac == pytest.approx(want.frac, abs=1e-6)


async def test_anomaly_sees_the_combined_rate_of_several_processes_and_alerts_once(client):
    prefix = f"an2{time.time_ns()}"
    clock = Wall(T0)
    alerts: list = []
    cfg = {"backend": "redis", "key_prefix": prefix, "anomaly": {"warmup_s": 600}}
    govs = [
        Governance(cfg, redis=client, now=clock, redis_clock=clock, sinks=[CallbackSink(alerts.append)])
        for _ in range(2)
    ]
    rng = random.Random(2)
    for _ in range(30 * 12):  # 30 minutes at ~$0.5/min, split across two "processes"
        clock.t += 5
        await rng.choice(govs).anomaly.observe({"key": "k1"}, 0.5 / 12 * rng.uniform(0.5, 1.5))
    assert alerts == []
    # each process alone sends 6x the baseline (below 10x); together 12x
    start = clock.t
    while clock.t - start < 120:
        clock.t += 5 / 12
        await govs[int(clock.t * 12) % 2].anomaly.observe({"key": "k1"}, 0.5 / 12)
    assert len(alerts) == 1 and alerts[0].kind == "spike"  # one alert: the cooldown is shared too
    assert alerts[0].time - start <= 60


# -- one clock: the calendar and the host's clock never decide what Redis keeps --------------------


@pytest.mark.parametrize("year_start", [978_307_200.0, 1_795_478_400.0, 4_102_444_800.0])  # 2001, 2026, 2100
async def test_injected_dates_far_from_today_keep_their_counters(client, year_start):
    """Counters, reservations and spend rows live their span after the script's own clock, whatever
    date it says: a fixed test date in the past or future never makes Redis drop them at once."""
    wall = Wall(year_start + 12 * 3600)
    gov = Governance(
        {
            "backend": "redis",
            "key_prefix": f"cal{next(_n)}-{time.time_ns()}",
            "alerts": [],
            "budgets": [{**TEAM, "limit_usd": 1.0}],
        },
        redis=client,
        now=wall,
    )
    adm = await gov.admit("a", ML, cost_estimate_usd=0.6)
    with pytest.raises(BudgetExceededError):  # the hold is really there
        await gov.admit("b", ML, cost_estimate_usd=0.6)
    await gov.settle(adm, 0.25, prompt_tokens=3, completion_tokens=2, deployment="d1")
    (st,) = await gov.status({"team": "ml"})
    assert (st.spent_usd, st.reserved_usd) == (0.25, 0)
    assert [(r.group, r.requests) for r in await gov.spend_report("deployment")] == [("d1", 1)]
    # every key the governance wrote expires in a sane span from now: never already gone, never
    # kept forever (the period ends within a day + 1 day grace; spend rows within the retention)
    keys = [k async for k in client.scan_iter(match=f"{{{gov.config.key_prefix}:*")]
    ttls = [await client.pttl(k) for k in keys]
    assert keys and all(t == -1 or 0 < t for t in ttls)  # -1: the reservation queue (a zset) is never given a TTL
    counter = [k for k in keys if b":b:" in k]
    assert counter and 0 < await client.pttl(counter[0]) <= (2 * 86_400 + 60) * 1000


async def test_a_skewed_host_clock_follows_redis_time(client):
    """The Redis backend computes periods and spend days on Redis's clock, not the host's: a host
    three days ahead still charges today's period (as Redis sees it) and agrees with the scripts."""
    from hyperion_core.governance.clock import RedisClock

    gov = Governance(
        {
            "backend": "redis",
            "key_prefix": f"skew{next(_n)}-{time.time_ns()}",
            "alerts": [],
            "budgets": [{**TEAM, "limit_usd": 1.0}],
        },
        redis=client,
    )
    assert isinstance(gov.clock, RedisClock) and gov.ledger.now is gov.clock
    gov.clock.local = lambda: time.time() + 3 * 86_400  # the host is three days ahead
    adm = await gov.admit("a", ML, cost_estimate_usd=0.1)
    sec, usec = await client.time()
    server_now = int(sec) + int(usec) / 1e6
    assert abs(gov.clock() - server_now) < 5  # corrected to the server's clock
    day = time.strftime("d%Y-%m-%d", time.gmtime(server_now))
    assert adm.reservation.budgets[0].window.id == day or abs(server_now % 86_400) < 5  # (midnight race)
    await gov.settle(adm, 0.1)
    (st,) = await gov.status({"team": "ml"})
    assert st.spent_usd == pytest.approx(0.1)


async def test_redis_clock_measures_offset_and_resyncs(client):
    from hyperion_core.governance.clock import RedisClock

    mono = Wall(0.0)
    clock = RedisClock(client, resync_s=30, local=lambda: time.time() - 1000, monotonic=mono)
    assert not clock.synced
    await clock.refresh()
    assert clock.synced and 999 < clock.offset < 1001
    clock.offset = 0.0
    mono.t = 29.9
    await clock.refresh()  # not due: no round trip, offset untouched
    assert clock.offset == 0.0
    mono.t = 30.0
    await clock.refresh()
    assert 999 < clock.offset < 1001
    with pytest.raises(ValueError):
        RedisClock(client, resync_s=0)


async def test_redis_clock_reports_a_dead_server_as_a_store_error():
    from hyperion_core.governance.clock import RedisClock

    dead = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    try:
        with pytest.raises(GovernanceStoreError, match="Redis TIME"):
            await RedisClock(dead).sync()
    finally:
        await dead.aclose()


# -- absurd values never leave a half-executed script behind ----------------------------------------


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -1.0, 1e12])
async def test_absurd_amounts_are_refused_before_anything_is_held(make, bad):
    gov = make({"budgets": [{**TEAM, "limit_usd": 5.0}]})
    with pytest.raises(Exception, match="must be a finite USD amount from 0 to"):
        await gov.ledger.reserve("r1", ML, bad)
    res = await gov.ledger.reserve("r2", ML, 1.0)
    with pytest.raises(Exception, match="settle: actual cost must be a finite USD amount"):
        await gov.ledger.settle(res, bad)
    (st,) = await gov.status({"team": "ml"})
    assert (st.spent_usd, st.reserved_usd) == (0, 1.0)  # the refused settle changed nothing
    assert (await gov.ledger.settle(res, 0.5)).settled
    (st,) = await gov.status({"team": "ml"})
    assert (st.spent_usd, st.reserved_usd) == (0.5, 0)


async def test_absurd_token_counts_are_clamped_not_fatal(make):
    """2^63 tokens (or negative ones) from an upstream's usage must neither fail the settle half-way nor
    poison the spend report."""
    gov = make({"budgets": [{**TEAM, "limit_usd": 5.0}]})
    res = await gov.ledger.reserve("r1", ML, 1.0)
    done = await gov.ledger.settle(res, 0.25, prompt_tokens=2**63, completion_tokens=-7, deployment="d")
    assert done.settled
    (st,) = await gov.status({"team": "ml"})
    assert (st.spent_usd, st.reserved_usd) == (0.25, 0)
    (row,) = await gov.spend_report("deployment")
    assert (row.prompt_tokens, row.completion_tokens, row.cost_usd) == (2**53 - 1, 0, 0.25)


async def test_a_script_given_a_bad_number_writes_nothing(client):
    """The Lua scripts check every numeric argument before their first write (Redis does not roll a
    failed script back): raw calls with a non-integer or out-of-range amount change no counter."""
    gov = Governance({"backend": "redis", "key_prefix": f"bad{next(_n)}-{time.time_ns()}", "alerts": [],
                      "budgets": [{**TEAM, "limit_usd": 5.0}]}, redis=client)
    store = gov.ledger.store
    res = await gov.ledger.reserve("held", ML, 1.0)
    for bad in ("1.5", "-3", str(2**63), "abc"):
        name, keys, args = store.settle_call("held", res.budgets, 100, None)
        args[2] = bad  # the actual amount
        with pytest.raises(GovernanceStoreError, match="must be a whole number"):
            await store.scripts.run(name, keys, args)
        name, keys, args = store.reserve_call("other", 10, res.budgets, 60)
        args[2] = bad
        with pytest.raises(GovernanceStoreError, match="must be a whole number"):
            await store.scripts.run(name, keys, args)
    (st,) = await gov.status({"team": "ml"})
    assert (st.spent_usd, st.reserved_usd) == (0, 1.0)
    # a counter already driven below zero (by an older version) is never pushed further: unhold clamps
    key = store.key(res.budgets[0])
    await client.hset(key, "r", 0)
    assert await gov.ledger.release(res) is True
    assert int(await client.hget(key, "r")) == 0


async def test_a_budget_reset_starts_the_period_over_and_keeps_reservations_in_flight(make):
    """An admin's reset: spent back to 0 for that subject's budget only, its alerts re-armed, a
    reservation held across the reset still settles (never lost, never counted twice)."""
    alerts: list = []
    gov = make({"budgets": [{**TEAM, "limit_usd": 5.0}, {"scope": "key", "id": "*", "period": "monthly",
                                                          "limit_usd": 100}]}, now=Wall(), alerts=alerts)
    led = gov.ledger
    a = await led.reserve("a", ML, 4.9)
    await led.settle(a, 4.9)
    held = await led.reserve("held", ML, 0.05)  # in flight across the reset
    with pytest.raises(BudgetExceededError):
        await led.reserve("refused", ML, 0.5)
    before = await gov.reset("team", "ml")
    assert [(b.budget, b.spent_usd, b.reserved_usd) for b in before] == [("team 'ml' daily budget", 4.9, 0.05)]
    by = {x.budget: (x.spent_usd, x.reserved_usd) for x in await led.status(ML)}
    assert by == {"team 'ml' daily budget": (0.0, 0.05), "key 'k1' monthly budget": (4.9, 0.05)}  # key's untouched
    await led.settle(held, 0.04)
    ok = await led.reserve("after", ML, 2.6)
    await led.settle(ok, 2.6)  # 0.04 + 2.6 crosses 50% again: the threshold alert fires again
    by = {x.budget: x.spent_usd for x in await led.status(ML)}
    assert by["team 'ml' daily budget"] == pytest.approx(2.64) and by["key 'k1' monthly budget"] == pytest.approx(7.54)
    assert [(x.kind, x.threshold) for x in alerts].count(("threshold", 0.5)) == 2
    with pytest.raises(InvalidRequestError, match="no budget applies to team 'other'"):
        await gov.reset("team", "other")
    with pytest.raises(InvalidRequestError, match="scope: must be one of"):
        await gov.reset("planet", "x")
    with pytest.raises(InvalidRequestError, match="no weekly budget"):
        await gov.reset("team", "ml", "weekly")


# -- the spend queue (Redis): records folded in batches, each exactly once --------------------------


def _redis_gov(client, prefix: str, **kw) -> Governance:
    return Governance({"backend": "redis", "key_prefix": prefix, "alerts": []}, redis=client, sinks=[], **kw)


async def _settle_many(gov: Governance, n: int, tag: str, day_of=lambda i: 0) -> None:  # noqa: ANN001
    for i in range(n):
        subj = {"key": f"k{i % 7}", "team": f"t{i % 3}", "user": "u", "route": "chat"}
        adm = await gov.admit(f"{tag}{i}", subj, tokens_estimate=10, cost_estimate_usd=0.02)
        await gov.settle(adm, 0.001 * (1 + i % 5), prompt_tokens=i, completion_tokens=2, deployment=f"d{i % 2}",
                         model="m")


async def test_spend_records_fold_in_batches_and_count_exactly_once_across_processes(client, redis_url):
    """Two processes (two clients) settle 150 requests into one namespace: the settling scripts queue
    the report records and a fold runs per FOLD_AT of them, in the background; whatever is still
    queued is folded by the report. Every request is counted once — never twice when folds of the two
    processes overlap, never lost when the report runs between folds."""
    from hyperion_core.governance._lua import FOLD_AT

    prefix = f"fq{time.time_ns()}"
    other = aioredis.Redis.from_url(redis_url)
    a, b = _redis_gov(client, prefix), _redis_gov(other, prefix)
    try:
        await asyncio.gather(_settle_many(a, 75, "a"), _settle_many(b, 75, "b"))
        queue = f"{{{prefix}:ledger}}:spendq"
        for gov in (a, b):  # the background folds have run (or are running) by now
            task = gov.ledger.store._folding  # noqa: SLF001
            if task is not None:
                await task
        left = await client.llen(queue)
        assert left < 150  # folded along the way, not only by the report
        assert left < FOLD_AT * 2
        rows = {r.group: r for r in await a.spend_report("key")}
        assert await client.llen(queue) == 0  # the report folded the rest
        assert sum(r.requests for r in rows.values()) == 150
        expected_cost = sum(0.001 * (1 + i % 5) for i in range(75)) * 2
        assert math.isclose(sum(r.cost_usd for r in rows.values()), expected_cost, rel_tol=0, abs_tol=1e-9)
        assert sum(r.prompt_tokens for r in rows.values()) == sum(range(75)) * 2
        assert sum(r.completion_tokens for r in rows.values()) == 300
        again = {r.group: r for r in await b.spend_report("key")}  # a second fold adds nothing
        assert again == rows
        for by in ("team", "user", "route", "deployment", "model"):
            assert sum(r.requests for r in await b.spend_report(by)) == 150
    finally:
        await a.aclose()
        await b.aclose()
        await other.aclose()


async def test_records_left_by_a_process_that_stopped_are_counted_by_another(client):
    """A process that settled fewer than FOLD_AT requests and died left its records queued in Redis
    (nothing in its memory): another process's report counts them."""
    prefix = f"fd{time.time_ns()}"
    dead = _redis_gov(client, prefix)
    await _settle_many(dead, 5, "d")
    del dead  # no aclose: it just stopped
    assert await client.llen(f"{{{prefix}:ledger}}:spendq") == 5
    alive = _redis_gov(client, prefix)
    try:
        assert sum(r.requests for r in await alive.spend_report("team")) == 5
    finally:
        await alive.aclose()


async def test_a_record_the_fold_cannot_read_is_set_aside_and_the_rest_still_count(client):
    """A queued value that is not a record of this layout (another version, a hand-made entry, a key
    outside the namespace) neither stops the fold nor is lost: it moves to ``spendq:bad`` untouched."""
    prefix = f"fb{time.time_ns()}"
    gov = _redis_gov(client, prefix)
    queue = f"{{{prefix}:ledger}}:spendq"
    try:
        await _settle_many(gov, 3, "x")
        outside = await client.eval(  # well-formed, but naming a hash outside the namespace
            "return cmsgpack.pack('2026-11-24', 0, 1, 1, 1, 1, 0, 'elsewhere:spend:x', 'g')", 0)
        short = await client.eval("return cmsgpack.pack('2026-11-24', 0, 1)", 0)  # too few fields
        foreign = [b"not msgpack at all \xc1", outside, short]
        await client.rpush(queue, *foreign)
        await _settle_many(gov, 2, "y")
        assert sum(r.requests for r in await gov.spend_report("route")) == 5
        assert await client.llen(queue) == 0
        assert await client.lrange(queue + ":bad", 0, -1) == foreign
        assert await client.exists("elsewhere:spend:x") == 0
    finally:
        await gov.aclose()
