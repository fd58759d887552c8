"""The cache without sockets: L1 bounds and TTL, store rules, scoping, the memory semantic tier,
stream replay and single-flight in one process."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest
from cache_support import BagOfWords, Table, allow_all, at_distance, req, resp
from pydantic import ValidationError

from hyperion_core.cache import (
    CacheBackendConfig,
    CacheSettings,
    L1Cache,
    ResponseCache,
    replay_chunks,
)
from hyperion_core.cache.exact import CachedAnswer
from hyperion_core.cache.semantic import MemorySemantic
from hyperion_core.routing import ManualClock
from hyperion_core.streaming import Accumulator
from hyperion_core.types import CacheControl, ToolCall, Usage

S = CacheSettings()
SEM = CacheSettings(semantic={"enabled": True})


# -- config ----------------------------------------------------------------------------------


def test_settings_defaults_and_validation():
    s = CacheSettings()
    assert (s.scope, s.l1.ttl, s.l2.ttl, s.semantic.ttl) == ("key", 300, 3600, 86400)
    assert (s.semantic.enabled, s.semantic.threshold, s.semantic.max_temperature) == (False, None, 0.5)  # None: the embedder's
    assert (s.store_length_finish, s.store_tool_calls) == (False, False)
    with pytest.raises(ValidationError):
        CacheSettings(l1={"ttl": -1})
    with pytest.raises(ValidationError):
        CacheSettings(semantic={"threshold": 2.5})
    with pytest.raises(ValidationError):
        CacheSettings(scope="global")
    with pytest.raises(ValidationError):
        CacheSettings(unknown=1)
    with pytest.raises(ValidationError):
        CacheSettings(semantic={"grey_zone": {"low": 0.2, "high": 0.1, "route": "verify"}})
    with pytest.raises(ValidationError):
        CacheBackendConfig(backend="redis")
    with pytest.raises(ValidationError):
        CacheBackendConfig(key_prefix="a{b}")
    with pytest.raises(ValidationError):
        CacheSettings(semantic={"guards": {"numbrs": False}})
    assert CacheSettings(semantic={"guards": {"numbers": False}}).semantic.guards == {"numbers": False}
    with pytest.raises(ValidationError):
        s.enabled = False  # frozen


# -- L1 ----------------------------------------------------------------------------------------


def test_l1_ttl_uses_the_injected_clock():
    clock = ManualClock()
    l1 = L1Cache(10, 10_000, clock)
    assert l1.set("a", "A", 10, ttl=5)
    clock.advance(4.99)
    assert l1.get("a") == "A"
    clock.advance(0.02)
    assert l1.get("a") is None and len(l1) == 0 and l1.bytes == 0


def test_l1_evicts_least_recently_used_by_entries():
    l1 = L1Cache(3, 10_000, ManualClock())
    for k in "abc":
        l1.set(k, k, 10, 60)
    assert l1.get("a") == "a"  # a is now the most recent
    l1.set("d", "d", 10, 60)
    assert [k for k in "abcd" if l1.get(k)] == ["a", "c", "d"]
    assert l1.evictions == 1 and len(l1) == 3


def test_l1_evicts_by_bytes_and_refuses_oversized_entries():
    l1 = L1Cache(100, 100, ManualClock())
    for k in "abcde":
        l1.set(k, k, 30, 60)
    assert l1.bytes <= 100 and len(l1) == 3 and [k for k in "abcde" if l1.get(k)] == ["c", "d", "e"]
    assert not l1.set("big", "x", 101, 60) and l1.get("big") is None
    assert l1.set("fits", "x", 100, 60) and len(l1) == 1 and l1.bytes == 100
    l1.set("fits", "y", 40, 60)  # replacing an entry frees its bytes
    assert l1.bytes == 40
    l1.resize(0, 100)
    assert len(l1) == 0 and not l1.set("z", "z", 1, 60)


async def test_layer_l1_bounds_by_entries_and_bytes():
    cache = ResponseCache(clock=ManualClock())
    small = CacheSettings(l1={"max_entries": 2})
    for i in range(3):
        assert await cache.store(req(f"q{i}"), resp(f"a{i}"), small)
    assert await cache.lookup(req("q0"), small) is None
    assert (await cache.lookup(req("q2"), small)).answer.content == "a2"
    tiny = CacheSettings(l1={"max_bytes": 300})
    assert not await cache.store(req("big", route="r2"), resp("x" * 400), tiny)
    assert cache.metrics.skipped_stores["l1_too_large"] == 1
    assert await cache.store(req("small", route="r2"), resp("ok"), tiny)
    assert cache.l1("r2").bytes <= 300


# -- exact tier through the layer -------------------------------------------------------------


async def test_hit_metadata_and_response():
    cache = ResponseCache(clock=ManualClock())
    assert await cache.lookup(req(), S) is None
    assert await cache.store(req(), resp(), S)
    hit = await cache.lookup(req(), S)
    assert hit is not None and hit.info.tier == "l1"
    assert (hit.info.tokens_saved, hit.info.cost_saved, hit.info.source_deployment) == (15, 0.002, "dep-a")
    r = hit.response(req())
    assert (r.content, r.cost, r.cache, r.usage) == ("Paris.", 0.0, hit.info, Usage(12, 3))
    m = cache.metrics
    assert (m.hits["l1"], m.misses, m.stores["l1"]) == (1, 1, 1)


async def test_l1_ttl_through_the_layer_and_request_ttl_override():
    clock = ManualClock()
    cache = ResponseCache(clock=clock)
    await cache.store(req("a"), resp(), S)
    await cache.store(req("b", cache=CacheControl(ttl=10)), resp(), S)
    clock.advance(11)
    assert await cache.lookup(req("a"), S) is not None
    assert await cache.lookup(req("b"), S) is None  # the request's ttl overrode the tier's 300 s
    clock.advance(300)
    assert await cache.lookup(req("a"), S) is None


@pytest.mark.parametrize(
    "other, shared_in",
    [
        (dict(key="k2"), ("shared",)),
        (dict(key=None), ()),  # anonymous
        (dict(key="k2", team="t1"), ("team", "shared")),
        (dict(key="k2", team="t2"), ("shared",)),
    ],
)
async def test_l1_tenant_isolation(other, shared_in):
    for scope in ("key", "team", "shared"):
        cache = ResponseCache(clock=ManualClock())
        settings = CacheSettings(scope=scope)
        await cache.store(req(key="k1", team="t1"), resp("secret of k1"), settings)
        assert (await cache.lookup(req(key="k1", team="t1"), settings)) is not None
        hit = await cache.lookup(req(**other), settings)
        if scope in shared_in:
            assert hit is not None and hit.answer.content == "secret of k1", scope
        else:
            assert hit is None, (scope, other)


async def test_anonymous_callers_share_only_among_themselves():
    cache = ResponseCache()
    await cache.store(req(key=None), resp("anon"), S)
    assert (await cache.lookup(req(key=None), S)).answer.content == "anon"
    assert await cache.lookup(req(key="k1"), CacheSettings(scope="shared")) is None


async def test_namespace_partitions_the_cache():
    cache = ResponseCache()
    await cache.store(req(cache=CacheControl(namespace="a")), resp("in a"), S)
    assert await cache.lookup(req(), S) is None
    assert await cache.lookup(req(cache=CacheControl(namespace="b")), S) is None
    assert (await cache.lookup(req(cache=CacheControl(namespace="a")), S)).answer.content == "in a"


async def test_cache_control():
    cache = ResponseCache()
    assert not await cache.store(req(cache=CacheControl(no_store=True)), resp(), S)
    assert not await cache.store(req(cache=CacheControl(no_cache=True)), resp(), S)
    assert not await cache.store(req(cache=CacheControl(ttl=0)), resp(), S)
    assert await cache.lookup(req(), S) is None
    assert await cache.store(req(), resp("v1"), S)
    assert await cache.lookup(req(cache=CacheControl(no_cache=True)), S) is None
    assert await cache.lookup(req(cache=CacheControl(force_refresh=True)), S) is None
    assert (await cache.lookup(req(cache=CacheControl(no_store=True)), S)).answer.content == "v1"
    assert await cache.store(req(cache=CacheControl(force_refresh=True)), resp("v2"), S)
    assert (await cache.lookup(req(), S)).answer.content == "v2"
    assert not await cache.store(req(), resp(), CacheSettings(enabled=False))
    assert await cache.lookup(req(), CacheSettings(enabled=False)) is None
    m = cache.metrics
    assert (m.skipped_stores["no_store"], m.skipped_stores["no_cache"], m.skipped_stores["ttl_zero"]) == (1, 1, 1)
    assert m.bypassed == 2


CALL = ToolCall("call_1", "get_weather", '{"city": "Paris"}')


@pytest.mark.parametrize(
    "response, kwargs, settings, reason",
    [
        (None, {}, S, "error"),
        (RuntimeError("boom"), {}, S, "error"),
        (resp(finish=None), {}, S, "partial"),
        (resp(), {"complete": False}, S, "partial"),
        (resp(finish="length"), {}, S, "length"),
        (resp(None, finish="tool_calls", tool_calls=[CALL]), {}, S, "tool_calls"),
        (resp(finish="content_filter"), {}, S, "finish_reason"),
        (resp(resumed_by=["dep-b"]), {}, S, "resumed"),
        (resp(""), {}, S, "empty"),
        (resp(finish="length"), {}, CacheSettings(store_length_finish=True), None),
        (resp(None, finish="tool_calls", tool_calls=[CALL]), {}, CacheSettings(store_tool_calls=True), None),
        (resp(), {}, S, None),
    ],
)
async def test_store_rules(response, kwargs, settings, reason):
    cache = ResponseCache()
    stored = await cache.store(req(), response, settings, **kwargs)
    assert stored is (reason is None)
    if reason:
        assert cache.metrics.skipped_stores[reason] == 1
        assert await cache.lookup(req(), settings) is None
    else:
        hit = await cache.lookup(req(), settings)
        assert hit.answer.finish_reason == response.finish_reason
        assert hit.answer.tool_calls == response.tool_calls


async def test_a_cache_hit_is_not_stored_again():
    cache = ResponseCache()
    await cache.store(req(), resp(), S)
    hit = await cache.lookup(req(), S)
    assert not await cache.store(req(), hit.response(req()), S)
    assert cache.metrics.skipped_stores["from_cache"] == 1


def test_payload_roundtrip():
    a = CachedAnswer("hi", (CALL,), "tool_calls", Usage(1, 2, 3, 4, 5), "m", "d", 0.5, 100.0, 200.0)
    assert CachedAnswer.from_bytes(a.to_bytes()) == a
    with pytest.raises(ValueError):
        CachedAnswer.from_bytes(b"{not json")
    with pytest.raises(ValueError):
        CachedAnswer.from_bytes(b'{"v": 99}')


def test_stream_replay_chunks():
    a = CachedAnswer("The capital of France is Paris.", (CALL,), "stop", Usage(12, 7), "m", "dep-a", 0.1, 0.0)
    chunks = replay_chunks(a, chunk_chars=8)
    assert len(chunks) == 6 and all(c.deployment == "dep-a" for c in chunks)
    acc = Accumulator()
    for c in chunks:
        acc.add(c)
    assert acc.text == a.content and acc.finish_reason == "stop" and acc.usage == Usage(12, 7)
    assert acc.tool_calls() == (CALL,)
    assert chunks[-1].usage is not None and all(c.usage is None for c in chunks[:-1])


# -- semantic (memory) ----------------------------------------------------------------------


async def test_semantic_hit_and_metadata():
    emb = BagOfWords()
    cache = ResponseCache(embedder=emb, guard_check=allow_all)
    await cache.store(req("What is the capital of France?"), resp(), SEM)
    hit = await cache.lookup(req("what is the capital of france"), SEM)  # exact key differs
    assert hit is not None and hit.info.tier == "semantic"
    assert hit.info.similarity == pytest.approx(1.0, abs=1e-5) and hit.info.guards == ("fake",)
    assert await cache.lookup(req("How tall is the Eiffel tower?"), SEM) is None
    assert emb.calls == 3  # one embedding per distinct text


@pytest.mark.parametrize(
    "threshold, distance, hit",
    [
        (0.0, 0.0, True),  # 0 = an identical vector only
        (0.0, 0.001, False),
        (0.1, 0.0999, True),
        (0.1, 0.1001, False),
        (2.0, 1.9, True),
    ],
)
async def test_semantic_threshold_edges(threshold, distance, hit):
    emb = Table({"cached": at_distance(0.0), "query": at_distance(distance)})
    settings = CacheSettings(semantic={"enabled": True, "threshold": threshold})
    cache = ResponseCache(embedder=emb, guard_check=allow_all)
    await cache.store(req("cached"), resp(), settings)
    got = await cache.lookup(req("query"), settings)
    assert (got is not None) is hit
    if hit:
        assert got.info.similarity == pytest.approx(1 - distance, abs=1e-4)


async def test_semantic_serves_the_nearest_candidate_that_passes_the_guards():
    emb = Table({"q": at_distance(0.0), "near": at_distance(0.01), "mid": at_distance(0.02),
                 "far": at_distance(0.03), "farther": at_distance(0.04)})
    seen = []

    def only_far(query, cached, enabled=None):
        seen.append(cached)
        ok = cached == "far"
        return SimpleNamespace(passed=ok, passed_guards=("numbers",) if ok else (), failed=() if ok else ("numbers",))

    settings = CacheSettings(semantic={"enabled": True, "threshold": 0.5, "top_k": 3})
    cache = ResponseCache(embedder=emb, guard_check=only_far)
    for t in ("near", "mid", "far", "farther"):
        await cache.store(req(t), resp(f"answer to {t}"), settings)
    hit = await cache.lookup(req("q"), settings)
    assert hit.answer.content == "answer to far" and seen == ["near", "mid", "far"]
    assert cache.metrics.semantic_rejected["numbers"] == 2
    seen.clear()
    narrow = CacheSettings(semantic={"enabled": True, "threshold": 0.5, "top_k": 2})
    assert await cache.lookup(req("q"), narrow) is None and seen == ["near", "mid"]


async def test_semantic_rejects_when_the_guards_fail_or_break():
    emb = Table({"a": at_distance(0.0), "b": at_distance(0.0)})

    def reject(query, cached, enabled=None):
        return SimpleNamespace(passed=False, passed_guards=(), failed=("negation",))

    def broken(query, cached, enabled=None):
        raise RuntimeError("guard bug")

    for check, reason in ((reject, "negation"), (broken, "guard_error")):
        cache = ResponseCache(embedder=emb, guard_check=check)
        await cache.store(req("a"), resp(), SEM)
        assert await cache.lookup(req("b"), SEM) is None
        assert cache.metrics.semantic_rejected[reason] == 1


async def test_semantic_passes_route_guard_switches():
    got = {}

    def record(query, cached, enabled=None):
        got["enabled"] = enabled
        return allow_all(query, cached)

    emb = Table({"a": at_distance(0.0), "b": at_distance(0.0)})
    cache = ResponseCache(embedder=emb, guard_check=record)
    settings = CacheSettings(semantic={"enabled": True, "guards": {"numbers": False}})
    await cache.store(req("a"), resp(), settings)
    assert await cache.lookup(req("b"), settings) is not None
    assert got["enabled"] == {"numbers": False}


@pytest.mark.parametrize(
    "cached, query, hit, failed",
    [
        ("What is 15% of 80?", "What is 15% of 90?", False, "numbers"),
        ("Cheapest flights from Paris to Rome", "cheapest flights from Rome to Paris", False, "role_swap"),
        ("Is smoking allowed on the train?", "Is smoking not allowed on the train?", False, "negation"),
        ("Translate 'good morning' to French", "translate 'good night' to French", False, "quoted"),
        ("What is 15% of 80?", "what is 15% of 80", True, None),
    ],
)
async def test_semantic_with_the_real_guards(cached, query, hit, failed):
    settings = CacheSettings(semantic={"enabled": True, "threshold": 0.6})
    cache = ResponseCache(embedder=BagOfWords())  # default guards: guards.check_guards
    await cache.store(req(cached), resp("cached answer"), settings)
    got = await cache.lookup(req(query), settings)
    assert (got is not None) is hit
    if hit:
        assert got.info.tier == "semantic" and "numbers" in got.info.guards
    else:
        assert cache.metrics.semantic_rejected[failed] >= 1, cache.metrics.semantic_rejected
    off = CacheSettings(semantic={"enabled": True, "threshold": 0.6, "guards": {failed: False}}) if failed else None
    if off is not None and failed in ("role_swap",):  # same bag of words: only the guard stood in the way
        assert await cache.lookup(req(query), off) is not None


async def test_semantic_grey_zone_asks_the_verifier():
    emb = Table({"q": at_distance(0.0), "close": at_distance(0.02), "grey": at_distance(0.08)})
    asked = []

    async def verifier(route, query, cached):
        asked.append((route, query, cached))
        return cached == "grey-ok"

    gz = {"enabled": True, "threshold": 0.1, "grey_zone": {"low": 0.05, "high": 0.1, "route": "verify"}}
    settings = CacheSettings(semantic=gz)
    cache = ResponseCache(embedder=emb, guard_check=allow_all, verifier=verifier)
    await cache.store(req("grey"), resp("grey answer"), settings)
    assert await cache.lookup(req("q"), settings) is None
    assert asked == [("verify", "q", "grey")] and cache.metrics.semantic_rejected["verifier"] == 1
    await cache.store(req("close"), resp("close answer"), settings)
    hit = await cache.lookup(req("q"), settings)
    assert hit.answer.content == "close answer" and "verifier" not in hit.info.guards and len(asked) == 1
    # no verifier wired: grey-zone candidates are turned down, never served unverified
    cache2 = ResponseCache(embedder=emb, guard_check=allow_all)
    await cache2.store(req("grey"), resp(), settings)
    assert await cache2.lookup(req("q"), settings) is None
    assert cache2.metrics.semantic_rejected["verifier_missing"] == 1


async def test_semantic_tenant_and_partition_isolation():
    emb = Table({"a": at_distance(0.0)})
    wide = CacheSettings(semantic={"enabled": True, "threshold": 2.0})
    cache = ResponseCache(embedder=emb, guard_check=allow_all)
    await cache.store(req("a", key="k1"), resp("k1 answer"), wide)
    cache._l1.clear()  # only the semantic tier is left
    assert await cache.lookup(req("a", key="k2"), wide) is None
    assert await cache.lookup(req("a", key=None), wide) is None
    other_system = req("a", key="k1")
    other_system.messages[0]["content"] = "Be verbose."
    assert await cache.lookup(other_system, wide) is None
    assert (await cache.lookup(req("a", key="k1"), wide)).info.tier == "semantic"
    shared = CacheSettings(scope="shared", semantic={"enabled": True, "threshold": 2.0})
    await cache.store(req("a", key="k1", route="pub"), resp("public"), shared)
    cache._l1.clear()
    assert (await cache.lookup(req("a", key="k2", route="pub"), shared)).answer.content == "public"


async def test_semantic_skipped_for_hot_temperature_and_tools():
    emb = BagOfWords()
    cache = ResponseCache(embedder=emb, guard_check=allow_all)
    await cache.store(req("hello there", temperature=0.9), resp(), SEM)
    await cache.store(req("hello there", tools=[{"type": "function", "function": {"name": "f"}}]), resp(), SEM)
    assert emb.calls == 0
    await cache.store(req("hello there", temperature=0.5), resp(), SEM)
    assert emb.calls == 1
    assert (await cache.lookup(req("Hello there!", temperature=0.5), SEM)).info.tier == "semantic"
    assert await cache.lookup(req("Hello there!", temperature=0.7), SEM) is None


async def test_embedder_failure_degrades_to_exact_tiers():
    class Broken:
        dim = 4

        async def embed(self, texts):
            raise RuntimeError("model gone")

    cache = ResponseCache(embedder=Broken(), guard_check=allow_all)
    assert await cache.store(req(), resp(), SEM)  # L1 still took it
    assert (await cache.lookup(req(), SEM)).info.tier == "l1"
    assert await cache.lookup(req("other"), SEM) is None
    assert cache.metrics.embed_errors >= 1


async def test_memory_semantic_bounds_and_ttl():
    clock = ManualClock()
    mem = MemorySemantic(max_entries=3, clock=clock)
    a = CachedAnswer("x", (), "stop", Usage(), "m", "d", 0.0, 0.0)
    v = np.asarray([1, 0, 0, 0], dtype=np.float32)
    for i in range(5):
        await mem.store(v, scope="s", partition="p", prompt=f"p{i}", answer=a, ttl=10)
    assert len(mem) == 3 and mem.evictions == 2
    found = await mem.search(v, scope="s", partition="p", threshold=0.0, k=10)
    assert sorted(c.prompt for c in found) == ["p2", "p3", "p4"]
    assert await mem.search(v, scope="other", partition="p", threshold=2.0, k=10) == []
    clock.advance(10.01)
    assert await mem.search(v, scope="s", partition="p", threshold=2.0, k=10) == []
    assert len(mem) == 0


# -- single-flight in one process ----------------------------------------------------------------


async def test_twenty_concurrent_identical_misses_make_one_call():
    cache = ResponseCache()
    calls = 0
    gate = asyncio.Event()

    async def compute():
        nonlocal calls
        calls += 1
        await gate.wait()
        return resp("the one answer")

    tasks = [asyncio.create_task(cache.complete(req(), S, compute)) for _ in range(20)]
    while cache.waiting(req(), S) < 19:
        await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert {r.content for r in results} == {"the one answer"}
    assert sum(r.cache is not None and r.cache.tier == "coalesced" for r in results) == 19
    assert cache.metrics.hits["coalesced"] == 19


async def test_different_tenants_do_not_share_a_flight():
    cache = ResponseCache()
    calls = []

    async def compute(who):
        calls.append(who)
        await asyncio.sleep(0.01)
        return resp(f"for {who}")

    r1, r2 = await asyncio.gather(
        cache.complete(req(key="k1"), S, lambda: compute("k1")),
        cache.complete(req(key="k2"), S, lambda: compute("k2")),
    )
    assert sorted(calls) == ["k1", "k2"] and (r1.content, r2.content) == ("for k1", "for k2")


async def test_a_failed_leader_lets_followers_call_themselves():
    cache = ResponseCache()
    calls = 0

    async def compute():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if calls == 1:
            raise RuntimeError("upstream failed")
        return resp("recovered")

    results = await asyncio.gather(*(cache.complete(req(), S, compute) for _ in range(5)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and all(r.content == "recovered" for r in results if not isinstance(r, Exception))
    assert calls == 5


async def test_partial_answers_are_not_handed_to_followers():
    cache = ResponseCache()
    calls = 0

    async def compute():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return resp("cut", finish=None)

    results = await asyncio.gather(*(cache.complete(req(), S, compute) for _ in range(4)))
    assert calls == 4 and all(r.cache is None for r in results)


async def test_follower_wait_is_bounded():
    cache = ResponseCache()
    settings = CacheSettings(coalesce={"wait_timeout": 0.05})
    release = asyncio.Event()

    async def slow():
        await release.wait()
        return resp("slow")

    leader = asyncio.create_task(cache.complete(req(), settings, slow))
    await asyncio.sleep(0)
    r = await cache.complete(req(), settings, lambda: asyncio.sleep(0, resp("own")))
    assert r.content == "own"
    release.set()
    assert (await leader).content == "slow"


async def test_no_cache_requests_do_not_coalesce():
    cache = ResponseCache()
    calls = 0

    async def compute():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return resp()

    await asyncio.gather(*(cache.complete(req(cache=CacheControl(no_cache=True)), S, compute) for _ in range(3)))
    assert calls == 3
