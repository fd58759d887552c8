"""GCRA rate limits on the memory store with a manual monotonic clock."""

from __future__ import annotations

import pytest

from hyperion_core.errors import RateLimitedError, RequestError
from hyperion_core.governance import RateLimitConfig, RateLimiter
from hyperion_core.governance.ratelimit import gcra
from hyperion_core.routing import ManualClock

K1 = {"key": "k1", "team": "ml", "route": "chat"}


def limiter(*limits: RateLimitConfig) -> tuple[RateLimiter, ManualClock]:
    clock = ManualClock(1000.0)
    return RateLimiter(limits, now=clock.now), clock


async def admitted(lim: RateLimiter, subjects=K1, n: int = 1000, tokens: int = 0) -> int:
    count = 0
    for _ in range(n):
        try:
            await lim.acquire(subjects, tokens)
        except RateLimitedError:
            break
        count += 1
    return count


def test_gcra_decision():
    # 60/min bucket, empty state: admitted, TAT moves one interval past now
    assert gcra(0.0, 100.0, 1, 1.0, 60) == (101.0, 0.0)
    # TAT 60 s ahead = bucket empty: wait exactly one interval
    assert gcra(160.0, 100.0, 1, 1.0, 60) == (160.0, pytest.approx(1.0))
    # oversized cost (120 > capacity 60) fits a full bucket only
    assert gcra(0.0, 100.0, 120, 1.0, 60) == (220.0, 0.0)
    assert gcra(100.5, 100.0, 120, 1.0, 60)[1] == pytest.approx(0.5)


async def test_burst_then_steady_rate_and_exact_retry_after():
    lim, clock = limiter(RateLimitConfig(scope="key", id="*", rpm=60))
    assert await admitted(lim) == 60  # a full bucket admits its whole burst at once
    with pytest.raises(RateLimitedError) as exc:
        await lim.acquire(K1)
    e = exc.value
    assert e.retry_after == pytest.approx(1.0)
    assert e.limit_name == "key 'k1' rpm 60"
    assert e.message == "rate limited by key 'k1' rpm 60: retry after 1.00 s"
    assert isinstance(e, RequestError) and not e.retryable and not e.failover
    clock.advance(0.25)
    with pytest.raises(RateLimitedError) as exc:
        await lim.acquire(K1)
    assert exc.value.retry_after == pytest.approx(0.75)
    clock.advance(0.75)
    assert await admitted(lim) == 1
    # steady: 10 minutes of attempts every 0.1 s -> exactly one per second gets in
    got = 0
    for _ in range(6000):
        clock.advance(0.1)
        got += await admitted(lim, n=2)
    assert got == 600


async def test_odd_rates_are_exact_over_time():
    lim, clock = limiter(RateLimitConfig(scope="key", id="*", rpm=7))
    assert await admitted(lim) == 7
    got = 0
    for _ in range(60 * 60):  # one hour, probing every second
        clock.advance(1.0)
        got += await admitted(lim, n=3)
    assert got == 7 * 60


async def test_all_limits_or_none_and_the_binding_limit_is_named():
    lim, clock = limiter(
        RateLimitConfig(scope="key", id="*", rpm=10),
        RateLimitConfig(scope="route", id="chat", rpm=5),
        RateLimitConfig(scope="team", id="ml", rpm=100),
    )
    assert await admitted(lim) == 5
    with pytest.raises(RateLimitedError) as exc:
        await lim.acquire(K1)
    assert exc.value.limit_name == "route 'chat' rpm 5" and exc.value.retry_after == pytest.approx(12.0)
    # refused attempts consumed nothing from the key's bucket: 5 more on another route
    assert await admitted(lim, {**K1, "route": "embed"}) == 5
    with pytest.raises(RateLimitedError) as exc:
        await lim.acquire({**K1, "route": "embed"})
    assert exc.value.limit_name == "key 'k1' rpm 10"
    # a subject without limits of its own, on an unlimited route, is never limited
    assert await admitted(lim, {"key": None, "route": "other"}, n=500) == 500


async def test_specific_limit_replaces_the_wildcard():
    lim, _ = limiter(
        RateLimitConfig(scope="key", id="*", rpm=2), RateLimitConfig(scope="key", id="vip", rpm=50)
    )
    assert await admitted(lim, {"key": "vip"}) == 50
    assert await admitted(lim, {"key": "k9"}) == 2


async def test_tpm_consumes_the_estimate_and_adjust_corrects_it():
    lim, clock = limiter(RateLimitConfig(scope="key", id="*", tpm=1000))
    await lim.acquire(K1, 600)  # prompt + max output
    with pytest.raises(RateLimitedError) as exc:
        await lim.acquire(K1, 600)
    assert exc.value.retry_after == pytest.approx(12.0)  # 200 tokens short at 1000/min
    assert exc.value.message.startswith("rate limited by key 'k1' tpm 1000 for ~600 tokens")
    await lim.adjust(K1, 300 - 600)  # the answer used 300 tokens: 300 come back
    await lim.acquire(K1, 600)
    # positive delta (the estimate was short): debt, later requests wait for it
    await lim.adjust(K1, +1000)
    with pytest.raises(RateLimitedError) as exc:
        await lim.acquire(K1, 1)
    # bucket: 300 + 600 + 1000 = 1900 used of 1000 -> 901 tokens' worth of refill needed
    assert exc.value.retry_after == pytest.approx(901 * 0.06)
    clock.advance(901 * 0.06)
    await lim.acquire(K1, 1)


async def test_a_request_larger_than_the_bucket_waits_for_a_full_bucket():
    lim, clock = limiter(RateLimitConfig(scope="key", id="*", tpm=1000))
    await lim.acquire(K1, 100)
    with pytest.raises(RateLimitedError) as exc:
        await lim.acquire(K1, 5000)
    assert exc.value.retry_after == pytest.approx(6.0)  # until the bucket is full again
    clock.advance(6.0)
    await lim.acquire(K1, 5000)  # admitted into the full bucket, leaving it in debt
    with pytest.raises(RateLimitedError) as exc:
        await lim.acquire(K1, 1)
    assert exc.value.retry_after == pytest.approx(4001 * 0.06)


async def test_refund_undoes_an_acquire():
    lim, _ = limiter(RateLimitConfig(scope="key", id="*", rpm=3, tpm=300))
    for _ in range(3):
        await lim.acquire(K1, 100)
    with pytest.raises(RateLimitedError):
        await lim.acquire(K1, 100)
    await lim.refund(K1, 100)
    await lim.acquire(K1, 100)
    with pytest.raises(RateLimitedError):
        await lim.acquire(K1, 100)
