"""The cache on a real Redis (RediSearch + JSON, from the ``redis_url`` fixture): L2, the redisvl
semantic tier, tenant isolation, Redis-side TTLs, single-flight, and Redis failing at run time."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import uuid

import pytest
import redis.asyncio as aredis
from cache_support import BagOfWords, Table, allow_all, at_distance, req, resp

from hyperion_core.cache import CacheBackendConfig, CacheSettings, ResponseCache
from hyperion_core.redis_server import RedisServer
from hyperion_core.types import CacheControl

pytestmark = pytest.mark.redis


NO_L1 = {"enabled": False}


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def raw(redis_url):
    client = aredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def make(redis_url, prefix):
    """Build caches on the shared test Redis (each one a separate process's view: a cold L1)."""
    made: list[ResponseCache] = []

    def build(**kw) -> ResponseCache:
        cfg = CacheBackendConfig(backend="redis", redis_url=redis_url, key_prefix=prefix,
                                 vector_index=kw.pop("vector_index", "hnsw"))
        c = ResponseCache(cfg, guard_check=kw.pop("guard_check", allow_all), **kw)
        made.append(c)
        return c

    yield build
    for c in made:
        assert c.metrics.backend_errors == 0, c.metrics.as_dict()
        await c.aclose()


# -- L2 ----------------------------------------------------------------------------------------


async def test_l2_roundtrip_key_layout_and_l1_backfill(make, raw, prefix):
    a, b = make(), make()
    s = CacheSettings()
    assert await a.store(req(), resp(), s)
    keys = [k.decode() async for k in raw.scan_iter(f"{prefix}:*")]
    assert len(keys) == 1 and re.fullmatch(rf"{prefix}:cache:\{{[0-9a-f]{{16}}\}}:[0-9a-f]{{32}}", keys[0]), keys
    assert 3_590_000 < await raw.pttl(keys[0]) <= 3_600_000  # Redis owns the TTL
    hit = await b.lookup(req(), s)
    assert hit.info.tier == "l2" and hit.answer.content == "Paris." and hit.info.cost_saved == 0.002
    assert (await b.lookup(req(), s)).info.tier == "l1"  # back-filled
    assert b.metrics.hits == {"l2": 1, "l1": 1}


async def test_l2_ttl_expires_in_redis(make, raw, prefix):
    a, b = make(), make()
    s = CacheSettings(l1=NO_L1, l2={"ttl": 0.3})
    await a.store(req(), resp(), s)
    assert (await b.lookup(req(), s)).info.tier == "l2"
    await asyncio.sleep(0.45)
    assert await b.lookup(req(), s) is None
    assert [k async for k in raw.scan_iter(f"{prefix}:cache:*")] == []


async def test_request_ttl_and_l1_backfill_never_outlive_l2(make, raw, prefix):
    a, b = make(), make()
    s = CacheSettings()  # L1 300 s, L2 3600 s
    await a.store(req(cache=CacheControl(ttl=0.3)), resp(), s)
    [key] = [k async for k in raw.scan_iter(f"{prefix}:cache:*")]
    assert 0 < await raw.pttl(key) <= 300
    assert (await b.lookup(req(), s)).info.tier == "l2"  # back-fills b's L1 for the remaining ~0.3 s only
    await asyncio.sleep(0.45)
    assert await b.lookup(req(), s) is None
    assert await a.lookup(req(), s) is None  # a's own L1 honoured the request's ttl too


async def test_l2_tenant_isolation_and_shared_scope(make):
    a, b = make(), make()
    s = CacheSettings(l1=NO_L1)
    await a.store(req(key="k1", team="t1"), resp("k1 only"), s)
    assert await b.lookup(req(key="k2", team="t1"), s) is None
    assert await b.lookup(req(key=None), s) is None
    assert (await b.lookup(req(key="k1", team="t1"), s)).answer.content == "k1 only"
    team = CacheSettings(scope="team", l1=NO_L1)
    await a.store(req(key="k1", team="t1", route="team-route"), resp("team t1"), team)
    assert (await b.lookup(req(key="k2", team="t1", route="team-route"), team)).answer.content == "team t1"
    assert await b.lookup(req(key="k3", team="t2", route="team-route"), team) is None
    shared = CacheSettings(scope="shared", l1=NO_L1)
    await a.store(req(key="k1", route="pub"), resp("public"), shared)
    assert (await b.lookup(req(key="k9", route="pub"), shared)).answer.content == "public"


# -- semantic (redisvl) ------------------------------------------------------------------------

SEM = CacheSettings(l1=NO_L1, l2={"enabled": False}, semantic={"enabled": True})


async def test_semantic_hit_index_and_entry_layout(make, raw, prefix):
    a, b = make(embedder=BagOfWords()), make(embedder=BagOfWords())
    assert await a.store(req("What is the capital of France?"), resp(), SEM)
    hit = await b.lookup(req("what is the capital of france"), SEM)
    assert hit is not None and hit.info.tier == "semantic" and hit.info.similarity == pytest.approx(1, abs=1e-4)
    assert hit.info.guards == ("fake",) and hit.answer.content == "Paris."
    assert f"{prefix}:semhnsw:64".encode() in await raw.execute_command("FT._LIST")
    info = await raw.execute_command("FT.INFO", f"{prefix}:semhnsw:64")
    assert b"HNSW" in repr(info).encode()  # the default index kind (FLAT: exact but ~4.5 ms at 100k)
    [key] = [k.decode() async for k in raw.scan_iter(f"{prefix}:semhnsw:*")]
    assert re.fullmatch(rf"{prefix}:semhnsw:64:\{{[0-9a-f]{{16}}\}}:[0-9a-f]{{32}}", key)
    assert 86_390_000 < await raw.pttl(key) <= 86_400_000
    assert await b.lookup(req("How tall is the Eiffel tower?"), SEM) is None


async def test_flat_index_is_still_available(make, raw, prefix):
    a = make(embedder=BagOfWords(), vector_index="flat")
    assert await a.store(req("What is the capital of Spain?"), resp(), SEM)
    hit = await make(embedder=BagOfWords(), vector_index="flat").lookup(req("what is the capital of spain"), SEM)
    assert hit is not None and hit.info.tier == "semantic"
    info = await raw.execute_command("FT.INFO", f"{prefix}:sem:64")
    assert b"FLAT" in repr(info).encode()


async def test_semantic_tenant_and_partition_filters_are_always_applied(make):
    wide = CacheSettings(l1=NO_L1, l2={"enabled": False}, semantic={"enabled": True, "threshold": 2.0})
    a, b = make(embedder=BagOfWords()), make(embedder=BagOfWords())
    await a.store(req("hello world", key="k1"), resp("k1 answer"), wide)
    assert await b.lookup(req("hello world", key="k2"), wide) is None
    assert await b.lookup(req("hello world", key=None), wide) is None
    assert await b.lookup(req("hello world", key="k1", system="Be verbose."), wide) is None
    assert await b.lookup(req("hello world", key="k1", temperature=0.1), wide) is None
    assert await b.lookup(req("hello world", key="k1", cache=CacheControl(namespace="x")), wide) is None
    assert (await b.lookup(req("hello world", key="k1"), wide)).answer.content == "k1 answer"
    shared = CacheSettings(scope="shared", l1=NO_L1, l2={"enabled": False},
                           semantic={"enabled": True, "threshold": 2.0})
    await a.store(req("hello world", key="k1", route="pub"), resp("public"), shared)
    assert (await b.lookup(req("Hello, world!", key="k2", route="pub"), shared)).answer.content == "public"


@pytest.mark.parametrize(
    "threshold, distance, hit",
    [(0.0, 0.0, True), (0.0, 0.001, False), (0.1, 0.0999, True), (0.1, 0.1001, False), (2.0, 1.9, True)],
)
async def test_semantic_threshold_edges_on_redis(make, threshold, distance, hit):
    emb = Table({"cached": at_distance(0.0), "query": at_distance(distance)})
    s = CacheSettings(l1=NO_L1, l2={"enabled": False}, semantic={"enabled": True, "threshold": threshold})
    a = make(embedder=emb)
    await a.store(req("cached"), resp(), s)
    got = await a.lookup(req("query"), s)
    assert (got is not None) is hit
    if hit:
        assert got.info.similarity == pytest.approx(1 - distance, abs=1e-4)


async def test_semantic_ttl_expires_in_redis(make, raw, prefix):
    s = CacheSettings(l1=NO_L1, l2={"enabled": False}, semantic={"enabled": True, "ttl": 0.3})
    a = make(embedder=BagOfWords())
    await a.store(req("hello world"), resp(), s)
    assert (await a.lookup(req("Hello world!"), s)).info.tier == "semantic"
    await asyncio.sleep(0.45)
    assert await a.lookup(req("Hello world!"), s) is None
    assert [k async for k in raw.scan_iter(f"{prefix}:sem:*")] == []


async def test_semantic_on_redis_with_the_real_guards(redis_url, prefix):
    cfg = CacheBackendConfig(backend="redis", redis_url=redis_url, key_prefix=prefix)
    cache = ResponseCache(cfg, embedder=BagOfWords())  # default guards: guards.check_guards
    s = CacheSettings(l1=NO_L1, l2={"enabled": False}, semantic={"enabled": True, "threshold": 0.6})
    await cache.store(req("What is 15% of 80?"), resp("12"), s)
    assert await cache.lookup(req("What is 15% of 90?"), s) is None
    assert cache.metrics.semantic_rejected["numbers"] == 1
    hit = await cache.lookup(req("what is 15% of 80"), s)
    assert hit.answer.content == "12" and "numbers" in hit.info.guards
    await cache.aclose()


async def test_semantic_with_the_default_embedder_and_guards(redis_url, prefix):
    from hyperion_core.cache.embedders import make_embedder

    cfg = CacheBackendConfig(backend="redis", redis_url=redis_url, key_prefix=prefix)
    cache = ResponseCache(cfg, embedder=make_embedder("wordllama"))  # offline default, real guards
    s = CacheSettings(l1=NO_L1, l2={"enabled": False}, semantic={"enabled": True})
    for text, answer in [("How do I reverse a list in Python?", "lst[::-1]"), ("What is 15% of 80?", "12"),
                         ("Cheapest flights from Paris to Rome", "Ryanair")]:
        assert await cache.store(req(text), resp(answer), s)
    hit = await cache.lookup(req("How can I reverse a Python list?"), s)  # a paraphrase
    assert hit is not None and hit.answer.content == "lst[::-1]" and hit.info.similarity > 0.9
    assert set(hit.info.guards) >= {"numbers", "dates", "quoted", "negation", "role_swap", "opposites"}
    assert await cache.lookup(req("What is 15% of 90?"), s) is None  # near in vector space
    assert await cache.lookup(req("Cheapest flights from Rome to Paris"), s) is None  # distance 0 for wordllama
    assert await cache.lookup(req("How tall is Mount Everest?"), s) is None
    rejected = cache.metrics.semantic_rejected
    assert rejected["numbers"] == 1 and rejected["role_swap"] == 1, rejected
    await cache.aclose()


# -- single-flight with the Redis lock, one process ---------------------------------------------


async def test_twenty_concurrent_misses_one_call_with_redis(make, raw, prefix):
    cache = make()
    s = CacheSettings()
    calls = 0

    async def compute():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        return resp("shared answer")

    results = await asyncio.gather(*(cache.complete(req(), s, compute) for _ in range(20)))
    assert calls == 1 and {r.content for r in results} == {"shared answer"}
    [lock] = [k.decode() async for k in raw.scan_iter(f"{prefix}:flight:*")]
    assert await raw.get(lock) == b"done"  # released with the done marker, which expires by itself
    assert 0 < await raw.pttl(lock) <= 1000


# -- Redis failing at run time ------------------------------------------------------------------


async def test_redis_down_at_run_time_never_fails_a_request(prefix, caplog):
    caplog.set_level("WARNING", logger="hyperion.cache")
    server = RedisServer().start()
    port = server.port
    try:
        cfg = CacheBackendConfig(backend="redis", redis_url=server.url, key_prefix=prefix,
                                 socket_timeout=0.2, outage_backoff=0.0)
        s = CacheSettings(l1=NO_L1, semantic={"enabled": True})
        cache = ResponseCache(cfg, embedder=BagOfWords(), guard_check=allow_all)
        assert await cache.store(req(), resp("before"), s)
        assert (await cache.lookup(req(), s)).info.tier == "l2"
        assert (await cache.lookup(req("what is the capital of FRANCE"), s)).info.tier == "semantic"

        server.stop()
        started = time.perf_counter()
        assert await cache.lookup(req(), s) is None
        assert await cache.lookup(req("what is the capital of FRANCE"), s) is None
        assert not await cache.store(req("new"), resp(), s)
        async with cache.flight(req("new"), s) as f:
            assert f.leader
        served = await cache.complete(req("new"), s, lambda: asyncio.sleep(0, resp("from upstream")))
        assert served.content == "from upstream"
        assert time.perf_counter() - started < 2.0
        m = cache.metrics
        assert m.backend_errors >= 5
        assert {"l2.get", "l2.set", "semantic.search", "semantic.store", "flight.acquire"} <= set(m.backend_errors_by_op)
        assert m.skipped_stores["no_tier"] >= 1 and m.misses >= 2
        outage_logs = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
        assert len(outage_logs) == 1  # once per outage, not once per failed command
        assert "127.0.0.1" in outage_logs[0].getMessage()

        server = RedisServer(port=port).start()  # back on the same port: the shared tiers resume
        assert await cache.store(req("again"), resp("after"), s)
        assert (await cache.lookup(req("again"), s)).answer.content == "after"
        assert any("Redis is back" in r.getMessage() for r in caplog.records)
        await cache.aclose()
    finally:
        server.stop()


async def test_a_hung_redis_is_bounded_by_timeouts_and_backoff(prefix):
    server = RedisServer().start()
    try:
        cfg = CacheBackendConfig(backend="redis", redis_url=server.url, key_prefix=prefix,
                                 socket_timeout=0.1, outage_backoff=30.0)
        s = CacheSettings(l1=NO_L1)
        cache = ResponseCache(cfg)
        assert await cache.store(req(), resp(), s)
        os.kill(server._proc.pid, signal.SIGSTOP)  # alive but silent
        try:
            started = time.perf_counter()
            assert await cache.lookup(req(), s) is None
            first = time.perf_counter() - started
            started = time.perf_counter()
            for _ in range(20):
                assert await cache.lookup(req(), s) is None
                assert not await cache.store(req(), resp(), s)
            rest = time.perf_counter() - started
        finally:
            os.kill(server._proc.pid, signal.SIGCONT)
        # one bounded wait (not a hang) ... then Redis is left alone during the backoff: 40 operations that
        # each waited out the 0.1 s socket timeout would take >= 4 s (the metrics below say it exactly)
        assert first < 3.0
        assert rest < 2.0
        m = cache.metrics
        assert m.backend_errors == 1 and m.backend_skipped == 40
        await cache.aclose()
    finally:
        server.stop()


async def test_a_redis_restart_costs_no_backend_error_on_stale_pooled_connections(prefix):
    """After a restart every pooled connection is stale: each used to fail once and switch the shared
    tiers off for outage_backoff. A command that meets a connection the server closed is retried
    once on a fresh one; a semantic index lost with the restart is created again."""
    server = RedisServer().start()
    port = server.port
    try:
        cfg = CacheBackendConfig(backend="redis", redis_url=server.url, key_prefix=prefix, outage_backoff=30.0,
                                 socket_timeout=5.0)  # generous: only stale connections are under test
        s = CacheSettings(l1=NO_L1, semantic={"enabled": True})
        cache = ResponseCache(cfg, embedder=BagOfWords(), guard_check=allow_all)
        texts = [f"question number {i} about the capital of France" for i in range(8)]
        await asyncio.gather(*(cache.store(req(t), resp(t), s) for t in texts))  # several pooled connections
        assert all(await asyncio.gather(*(cache.lookup(req(t), s) for t in texts)))

        server.stop()
        server = RedisServer(port=port).start()  # restarted empty, on the same port

        for t in texts:  # the stale connections are met one after another
            assert await cache.lookup(req(t), s) is None  # empty: a miss, not an error
        assert await cache.store(req("after"), resp("fresh"), s)
        assert (await cache.lookup(req("after"), s)).answer.content == "fresh"
        assert (await cache.lookup(req("AFTER"), s)).info.tier == "semantic"  # the index is back
        assert cache.metrics.backend_errors == 0, cache.metrics.as_dict()
        await cache.aclose()
    finally:
        server.stop()
