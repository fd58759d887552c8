"""The cache inside the Gateway: real mock provider over HTTP, real Redis, real embedder and guards."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from hyperion_core import (
    AllDeploymentsFailedError,
    CacheControl,
    Caller,
    Gateway,
    ProviderUnavailableError,
    StreamInterruptedError,
)
from hyperion_core.mock_provider.content import answer_for
from hyperion_core.redis_server import RedisServer


def make(mock, dep: str, *, cache: dict | None = None, state: dict | None = None, wire: str = "openai") -> Gateway:
    cfg = {
        "providers": {"p": {"kind": wire, "api_key": "sk-test", "base_url": mock.base_url(dep, wire)}},
        "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini" if wire == "openai" else "p/claude-haiku-4-5"}],
                            "retry": {"attempts": 0},
                            "cache": cache if cache is not None else {}}},
    }
    if state:
        cfg["state"] = state
        cfg["cache"] = {"socket_timeout": 5.0}  # a loaded CI machine: only outage tests want a short one
    return Gateway(cfg)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def upstream(mock, dep: str) -> int:
    return mock.stats().get(dep, {}).get("requests", 0)


async def test_exact_hit_costs_nothing_and_skips_upstream(mock):
    gw = make(mock, "c-exact")
    first = await gw.acomplete("chat", user("What is a circuit breaker?"))
    assert first.cache is None and first.cost > 0
    second = await gw.acomplete("chat", user("What is a circuit breaker?"))
    assert second.cache is not None and second.cache.tier == "l1"
    assert second.content == first.content and second.cost == 0
    assert second.cache.cost_saved == pytest.approx(first.cost)
    assert second.cache.tokens_saved == first.usage.total_tokens
    assert upstream(mock, "c-exact") == 1
    different = await gw.acomplete("chat", user("What is a circuit breaker?"), temperature=0.9)
    assert different.cache is None and upstream(mock, "c-exact") == 2  # output-changing field misses
    await gw.aclose()


async def test_cache_control_per_request(mock):
    gw = make(mock, "c-ctl")
    q = user("control me")
    await gw.acomplete("chat", q, cache=CacheControl(no_store=True))
    assert (await gw.acomplete("chat", q)).cache is None  # nothing was stored
    assert (await gw.acomplete("chat", q)).cache is not None
    assert (await gw.acomplete("chat", q, cache=CacheControl(no_cache=True))).cache is None
    assert (await gw.acomplete("chat", q, cache=CacheControl(force_refresh=True))).cache is None
    assert (await gw.acomplete("chat", q, cache=CacheControl(namespace="other"))).cache is None
    assert upstream(mock, "c-ctl") == 5
    await gw.aclose()


async def test_tenants_never_see_each_others_entries(mock):
    gw = make(mock, "c-tenant")
    a, b = Caller(key_id="key-a", team="t1"), Caller(key_id="key-b", team="t1")
    await gw.acomplete("chat", user("secret plan"), caller=a)
    assert (await gw.acomplete("chat", user("secret plan"), caller=b)).cache is None
    assert (await gw.acomplete("chat", user("secret plan"), caller=a)).cache is not None
    team = make(mock, "c-team", cache={"scope": "team"})
    await team.acomplete("chat", user("team plan"), caller=a)
    assert (await team.acomplete("chat", user("team plan"), caller=b)).cache is not None  # same team
    assert (await team.acomplete("chat", user("team plan"), caller=Caller(key_id="c", team="t2"))).cache is None
    await gw.aclose()
    await team.aclose()


async def test_failures_and_length_are_not_stored(mock):
    gw = make(mock, "c-fail")
    mock.fault("c-fail", kind="unavailable", times=1)
    with pytest.raises(AllDeploymentsFailedError):
        await gw.acomplete("chat", user("flaky"))
    ok = await gw.acomplete("chat", user("flaky"))
    assert ok.cache is None and ok.content == answer_for("flaky")
    short = await gw.acomplete("chat", user("truncate"), max_tokens=3)
    assert short.finish_reason == "length"
    assert (await gw.acomplete("chat", user("truncate"), max_tokens=3)).cache is None
    await gw.aclose()


async def test_stream_replay_and_streamed_answers_are_stored(mock):
    gw = make(mock, "c-stream", wire="anthropic")
    s = gw.astream("chat", user("stream then cache"))
    live = "".join([c.content async for c in s])
    assert live == answer_for("stream then cache") and s.response.cache is None
    whole = await gw.acomplete("chat", user("stream then cache"))
    assert whole.cache is not None and whole.content == live  # the streamed answer was stored
    s2 = gw.astream("chat", user("stream then cache"))
    chunks = [c async for c in s2]
    assert "".join(c.content for c in chunks) == live and len(chunks) > 1
    assert chunks[-1].usage == s.response.usage and s2.response.cache.tier == "l1"
    assert upstream(mock, "c-stream") == 1
    await gw.aclose()


async def test_cut_stream_is_not_stored(mock):
    gw = make(mock, "c-cut")
    mock.fault("c-cut", cut_after_chunks=3, times=1)
    with pytest.raises(StreamInterruptedError):
        async for _ in gw.astream("chat", user("cut me")):
            pass
    assert (await gw.acomplete("chat", user("cut me"))).cache is None
    await gw.aclose()


async def test_coalescing_many_identical_concurrent_requests(mock):
    gw = make(mock, "c-flight")
    mock.fault("c-flight", latency_ms=100)
    results = await asyncio.gather(*(gw.acomplete("chat", user("everyone asks this")) for _ in range(20)))
    assert {r.content for r in results} == {answer_for("everyone asks this")}
    assert upstream(mock, "c-flight") == 1
    await gw.aclose()


async def test_semantic_hit_passes_guards_and_near_miss_does_not(mock):
    gw = make(mock, "c-sem", cache={"semantic": {"enabled": True, "threshold": 0.2}})
    first = await gw.acomplete("chat", user("What is the capital city of France?"))
    para = await gw.acomplete("chat", user("what is the capital city of france"))
    assert para.cache is not None and para.cache.tier in ("l1", "semantic")
    para2 = await gw.acomplete("chat", user("Tell me: what is the capital city of France"))
    assert para2.cache is not None and para2.cache.tier == "semantic" and para2.content == first.content
    assert para2.cache.similarity is not None and "numbers" in para2.cache.guards
    await gw.acomplete("chat", user("What is 15% of 80?"))
    near = await gw.acomplete("chat", user("What is 15% of 90?"))
    assert near.cache is None and near.content == answer_for("What is 15% of 90?")
    await gw.aclose()


async def test_redis_l2_shared_between_gateways(mock, redis_url):
    state = {"backend": "redis", "redis_url": redis_url, "prefix": f"t{uuid.uuid4().hex[:6]}"}
    gw1 = make(mock, "c-l2", state=state)
    gw2 = make(mock, "c-l2", state=state)  # as another process would
    await gw1.acomplete("chat", user("shared answer"))
    hit = await gw2.acomplete("chat", user("shared answer"))
    assert hit.cache is not None and hit.cache.tier == "l2"
    assert upstream(mock, "c-l2") == 1
    await gw1.aclose()
    await gw2.aclose()


async def test_redis_down_keeps_serving(mock):
    server = RedisServer().start()
    gw = make(mock, "c-down", state={"backend": "redis", "redis_url": server.url, "prefix": "down"})
    await gw.acomplete("chat", user("before"))
    server.stop()
    for i in range(3):
        r = await gw.acomplete("chat", user(f"during {i}"))
        assert r.content == answer_for(f"during {i}")
    assert gw.cache.metrics.backend_errors >= 1
    mock.fault("c-down", kind="unavailable", times=1)
    with pytest.raises(AllDeploymentsFailedError) as ei:  # provider errors still surface as themselves
        await gw.acomplete("chat", user("provider down too"))
    assert isinstance(ei.value.__cause__, ProviderUnavailableError)
    await gw.aclose()


async def test_semantic_threshold_defaults_to_the_embedders_recommendation(mock):
    # wordllama puts these two 0.098 apart: a hit at its recommended 0.22, a miss at an explicit 0.05
    q1, q2 = "What is the capital city of France?", "Tell me: what is the capital city of France"
    gw = make(mock, "c-thr-default", cache={"semantic": {"enabled": True}})
    assert gw.cache.embedder.recommended_threshold == 0.22
    await gw.acomplete("chat", user(q1))
    assert (await gw.acomplete("chat", user(q2))).cache.tier == "semantic"
    strict = make(mock, "c-thr-strict", cache={"semantic": {"enabled": True, "threshold": 0.05}})
    await strict.acomplete("chat", user(q1))
    assert (await strict.acomplete("chat", user(q2))).cache is None
    await gw.aclose()
    await strict.aclose()


async def test_every_documented_cache_setting_is_settable_and_reaches_the_backend(mock, redis_url):
    """README documented vector_index, hnsw_ef_runtime, outage_backoff and max_connections, and the
    gateway refused them as unknown keys. Every CacheBackendConfig tuning setting is settable."""
    from hyperion_core.cache import CacheBackendConfig
    from hyperion_core.cache.config import CacheTuning
    from hyperion_core.config import CacheConfig

    assert set(CacheTuning.model_fields) <= set(CacheConfig.model_fields)
    assert set(CacheBackendConfig.model_fields) - set(CacheTuning.model_fields) == {"backend", "redis_url", "key_prefix"}
    tuning = {"socket_timeout": 0.5, "max_connections": 7, "outage_backoff": 2.5, "vector_index": "flat",
              "hnsw_ef_runtime": 33}
    gw = Gateway({
        "providers": {"p": {"kind": "openai", "api_key": "sk-test", "base_url": mock.base_url("c-set", "openai")}},
        "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini"}], "cache": {"semantic": {"enabled": True}}}},
        "state": {"backend": "redis", "redis_url": redis_url, "prefix": f"set{uuid.uuid4().hex[:8]}"},
        "cache": tuning,
    })
    assert {k: getattr(gw.cache.backend_config, k) for k in tuning} == tuning
    await gw.acomplete("chat", user("what is the capital of Peru?"))
    hit = await gw.acomplete("chat", user("What is the capital of Peru?"))
    assert hit.cache is not None
    await gw.aclose()
    with pytest.raises(Exception, match="cache.vector_index"):
        Gateway({"providers": {"p": {"kind": "openai", "api_key": "k"}},
                 "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini"}]}},
                 "cache": {"vector_index": "svs"}})


async def test_a_route_of_the_same_name_served_by_other_models_never_shares_answers(mock, redis_url):
    """Two gateways on one Redis and one key prefix, each with a route "chat": the one on gpt-4o-mini
    and the one on gpt-4o must not serve each other's answers (exact or paraphrase), and a route
    whose model changes in config starts empty. The same route config in two gateways still shares."""
    prefix = f"fp{uuid.uuid4().hex[:8]}"

    def gw_on(model: str, dep: str) -> Gateway:
        return Gateway({
            "providers": {"p": {"kind": "openai", "api_key": "sk-test", "base_url": mock.base_url(dep, "openai")}},
            "routes": {"chat": {"deployments": [{"model": f"p/{model}"}], "retry": {"attempts": 0},
                                "cache": {"l1": {"enabled": False}, "semantic": {"enabled": True}}}},
            "state": {"backend": "redis", "redis_url": redis_url, "prefix": prefix},
            "cache": {"socket_timeout": 5.0},
        })

    mini, big, mini_again = gw_on("gpt-4o-mini", "fp"), gw_on("gpt-4o", "fp"), gw_on("gpt-4o-mini", "fp")
    first = await mini.acomplete("chat", user("What is the capital of Chile?"))
    assert first.cache is None and upstream(mock, "fp") == 1
    # same question, same route name, other model: a miss (before: an L2 hit naming gpt-4o-mini)
    other = await big.acomplete("chat", user("What is the capital of Chile?"))
    assert other.cache is None and other.model == "gpt-4o" and upstream(mock, "fp") == 2
    para = await big.acomplete("chat", user("what is the capital of chile"))
    assert para.cache is None or para.cache.source_deployment == "p/gpt-4o"
    # the same route config elsewhere (another process, the same Redis) still shares
    shared = await mini_again.acomplete("chat", user("What is the capital of Chile?"))
    assert shared.cache is not None and shared.cache.tier == "l2" and shared.content == first.content
    for g in (mini, big, mini_again):
        await g.aclose()
