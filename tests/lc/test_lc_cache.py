"""HyperionCache under ChatOpenAI: exact and semantic tiers, tenant scoping, guards, sync and async."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_openai import ChatOpenAI

from hyperion_core import Gateway
from hyperion_lc import HyperionCache
from hyperion_lc.cache import parse_llm_string


def cached_gateway(mock, tmp_path, scope: str = "team") -> Gateway:
    from lc_support import chat_config

    return Gateway(
        chat_config(
            mock,
            "cache-gw",
            keys={"required": True, "store": "memory"},
            extra_routes={
                "lc-cache": {
                    "deployments": [{"model": "primary/gpt-4o-mini"}],
                    "cache": {"scope": scope, "semantic": {"enabled": True, "threshold": 0.2}},
                }
            },
        )
    )


def model(mock, dep: str, cache: HyperionCache, **kw: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-4o-mini",
        base_url=mock.base_url(dep, "openai"),
        api_key="sk-mock",
        max_retries=0,
        cache=cache,
        **kw,
    )


def upstream(mock, dep: str) -> int:
    return mock.stats().get(dep, {}).get("requests", 0)


async def test_tenants_share_only_within_their_scope(mock, tmp_path):
    gw = cached_gateway(mock, tmp_path)
    a1, _ = await gw.keys.create("a1", team="alpha")
    a2, _ = await gw.keys.create("a2", team="alpha")
    b1, _ = await gw.keys.create("b1", team="beta")
    dep = "cache-tenants"

    def ask(key: str, q: str, **kw: Any) -> Any:
        return model(mock, dep, HyperionCache(gateway=gw, route="lc-cache", virtual_key=key), **kw).invoke(q)

    first = ask(a1, "What is the capital of France?")
    assert upstream(mock, dep) == 1 and first.response_metadata.get("hyperion_cache") is None
    again = ask(a1, "What is the capital of France?")
    assert upstream(mock, dep) == 1 and again.content == first.content
    assert again.response_metadata["hyperion_cache"]["tier"] == "l1"
    assert again.usage_metadata["input_tokens"] == first.usage_metadata["input_tokens"]
    assert (
        ask(a2, "What is the capital of France?").response_metadata["hyperion_cache"]["tier"] == "l1"
    )  # same team
    other = ask(b1, "What is the capital of France?")  # another tenant: never served alpha's entry
    assert upstream(mock, dep) == 2 and other.response_metadata.get("hyperion_cache") is None
    # the model's parameters are part of the key: another temperature is another entry
    ask(a1, "What is the capital of France?", temperature=0.3)
    assert upstream(mock, dep) == 3
    await gw.aclose()


async def test_semantic_tier_with_guards_async(mock, tmp_path):
    gw = cached_gateway(mock, tmp_path, scope="key")
    key, _ = await gw.keys.create("sem", team="alpha")
    dep = "cache-semantic"
    llm = model(mock, dep, HyperionCache(gateway=gw, route="lc-cache", virtual_key=key))

    await llm.ainvoke("How do I reset my password?")
    hit = await llm.ainvoke("how do i reset my password")  # a near-identical phrasing
    assert hit.response_metadata["hyperion_cache"]["tier"] == "semantic"
    assert hit.response_metadata["hyperion_cache"]["similarity"] > 0.8
    assert upstream(mock, dep) == 1
    # embeddings score these pairs as near-identical; the guards tell them apart
    await llm.ainvoke("How long is the flight from Paris to Berlin?")
    swapped = await llm.ainvoke("How long is the flight from Berlin to Paris?")
    assert swapped.response_metadata.get("hyperion_cache") is None
    await llm.ainvoke("Is 12 times 7 equal to 84?")
    numbers = await llm.ainvoke("Is 13 times 7 equal to 84?")
    assert numbers.response_metadata.get("hyperion_cache") is None
    assert upstream(mock, dep) == 5
    # another key (scope "key") does not see this key's semantic entries either
    key2, _ = await gw.keys.create("sem2", team="alpha")
    other = model(mock, dep, HyperionCache(gateway=gw, route="lc-cache", virtual_key=key2))
    assert (await other.ainvoke("how do i reset my password")).response_metadata.get("hyperion_cache") is None
    # clear(): this adapter's earlier entries are no longer reachable
    llm.cache.clear()
    assert (await llm.ainvoke("How do I reset my password?")).response_metadata.get("hyperion_cache") is None
    assert llm.cache.store is gw.cache  # the gateway's own store: its tiers, embedder and metrics
    await gw.aclose()


async def test_a_refused_key_reads_and_writes_nothing(mock, tmp_path):
    gw = cached_gateway(mock, tmp_path)
    dep = "cache-refused"
    llm = model(mock, dep, HyperionCache(gateway=gw, route="lc-cache", virtual_key="hk-unknown.key"))
    await llm.ainvoke("secret question")
    await llm.ainvoke("secret question")
    assert upstream(mock, dep) == 2  # the model still answers; the cache stays out of it
    await gw.aclose()


def test_llm_string_parsing():
    llm = ChatOpenAI(model="gpt-4o", api_key="sk-secret-value", temperature=0.7, base_url="http://x/v1")
    tools = [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    ]
    info = parse_llm_string(llm._get_llm_string(stop=None, tools=tools))
    assert info == {"model": "gpt-4o", "temperature": 0.7, "tools": tools}
    assert parse_llm_string("[('model', 'm'), ('temperature', 0)]") == {"model": "m", "temperature": 0.0}
    assert parse_llm_string("not parseable") == {}
    assert "sk-secret-value" not in llm._get_llm_string()


# -- regressions (issue 10) ---------------------------------------------------------------------------


def governed_cache_gateway(mock, tmp_path, name: str) -> Gateway:
    from lc_support import chat_config

    return Gateway(
        chat_config(
            mock,
            name,
            keys={"required": True, "store": "memory"},
            governance={"budgets": [{"scope": "key", "period": "daily", "limit_usd": 1.0}]},
            audit={"sink": f"sqlite:///{tmp_path}/audit-{name}.db"},
            extra_routes={
                "lc-cache": {"deployments": [{"model": "primary/gpt-4o-mini"}], "cache": {"scope": "key"}}
            },
        )
    )


async def test_a_cache_hit_is_settled_as_a_saving_not_billed_again(mock, tmp_path):
    """DEFECT 4: HyperionCache + HyperionCallbackHandler on one ChatOpenAI: the repeated prompt is
    answered by the cache, costs $0 in the budget and is recorded as `saved`; spend does not double."""
    from hyperion_core.pricing import lookup
    from hyperion_core.types import Usage
    from hyperion_lc import AsyncHyperionCallbackHandler, HyperionCallbackHandler

    gw = governed_cache_gateway(mock, tmp_path, "cache-saving")
    key, rec = await gw.keys.create("app")
    cache = HyperionCache(gateway=gw, route="lc-cache", virtual_key=key)
    dep = "cache-saving-openai"
    llm = model(mock, dep, cache)
    for handler in (HyperionCallbackHandler(gateway=gw, virtual_key=key),
                    AsyncHyperionCallbackHandler(gateway=gw, virtual_key=key)):
        first = await llm.ainvoke("what does a cache hit cost?", config={"callbacks": [handler]})
        second = await llm.ainvoke("what does a cache hit cost?", config={"callbacks": [handler]})
        assert second.content == first.content
        assert second.response_metadata["hyperion_cache"]["tier"] == "l1"
        assert handler.open_calls == 0
    # sync too
    handler = HyperionCallbackHandler(gateway=gw, virtual_key=key)
    llm.invoke("what does a cache hit cost?", config={"callbacks": [handler]})
    assert upstream(mock, dep) == 1  # one paid call, four cache hits

    stats = mock.stats()[dep]
    one_call = lookup("openai", "gpt-4o-mini").cost(
        Usage(prompt_tokens=stats["prompt_tokens"], completion_tokens=stats["completion_tokens"])
    )
    (row,) = await gw.spend_report("key")
    assert row.group == rec.key_id and row.requests == 5
    assert row.cost_usd == pytest.approx(one_call)  # not 5x: hits cost nothing upstream
    assert row.saved_usd == pytest.approx(4 * one_call)
    (st,) = [s for s in await gw.governance.status({"key": rec.key_id}) if s.scope == "key"]
    assert st.spent_usd == pytest.approx(one_call) and st.reserved_usd == 0
    events = list(reversed(await gw.audit.query(limit=10)))
    assert [e.outcome for e in events] == ["ok"] * 5
    assert [e.cache_tier for e in events] == [None, "l1", "l1", "l1", "l1"]
    assert [e.cost for e in events][1:] == [0.0] * 4 and events[1].cost_saved == pytest.approx(one_call)
    await gw.aclose()


async def test_a_revoked_key_is_refused_by_the_next_lookup(mock, tmp_path):
    """HyperionCache authenticates through the pipeline's Authorize stage on every lookup: a revoked
    key reads nothing at once (there was a 60 s trust window)."""
    gw = cached_gateway(mock, tmp_path)
    key, rec = await gw.keys.create("soon-revoked")
    dep = "cache-revoked"
    cache = HyperionCache(gateway=gw, route="lc-cache", virtual_key=key)
    llm = model(mock, dep, cache)
    await llm.ainvoke("a question before revocation")
    await llm.ainvoke("a question before revocation")
    assert upstream(mock, dep) == 1  # the second came from the cache
    await gw.keys.revoke(rec.key_id)
    assert await cache.alookup(*_last_key(llm, "a question before revocation")) is None
    await llm.ainvoke("a question before revocation")
    assert upstream(mock, dep) == 2  # refused by the cache at once: the model answered
    await gw.aclose()


def _last_key(llm: ChatOpenAI, text: str) -> tuple[str, str]:
    """The (prompt, llm_string) LangChain's cache sees for ``text`` on ``llm``."""
    from langchain_core.load import dumps
    from langchain_core.messages import HumanMessage

    return dumps([HumanMessage(content=text)]), llm._get_llm_string()
