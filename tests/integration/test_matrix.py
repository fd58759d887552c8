"""The pipeline matrix: {no cache, exact, coalesced, semantic, grey zone} x {governance on memory, on
Redis} x {complete, stream} x {core, LangChain, LlamaIndex}, audit always on — against the mock provider
over HTTP and a real Redis. Every cell checks the same contract: both requests are answered with the
same content, the second one from the cache tier the cell expects, exactly one audit event each with
that tier, nothing left reserved, spend recorded once (a hit costs nothing and records its saving),
and no stage failed after the fact."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest

from hyperion_core import Gateway

CACHES = ["none", "exact", "coalesced", "semantic", "grey"]
GOVS = ["memory", "redis"]
MODES = ["complete", "stream"]
DOORS = ["core", "langchain", "llamaindex"]

Q1 = "What is the capital city of France?"
Q2 = {  # the second question per cache mode
    "none": Q1, "exact": Q1, "coalesced": Q1,
    "semantic": "what is the capital city of France",  # a near-identical paraphrase: semantic hit
    "grey": "Tell me: what is the capital city of France",  # wordllama distance ~0.1: in the grey zone
}
EXPECTED_TIER = {"none": None, "exact": "l1", "coalesced": "coalesced", "semantic": "semantic", "grey": "semantic"}


def build(mock, tmp_path, redis_url, cache: str, gov: str) -> Gateway:
    dep = f"mx-{uuid.uuid4().hex[:8]}"
    route: dict = {"deployments": [{"model": "p/gpt-4o-mini"}], "retry": {"attempts": 0}}
    if cache in ("exact", "coalesced"):
        route["cache"] = {}
    elif cache == "semantic":
        route["cache"] = {"l1": {"enabled": False}, "semantic": {"enabled": True}}
    elif cache == "grey":
        route["cache"] = {"semantic": {"enabled": True, "threshold": 0.2,
                                       "grey_zone": {"low": 0.0, "high": 0.2, "route": "verify"}}}
    cfg = {
        "providers": {"p": {"kind": "openai", "api_key": "sk-test", "base_url": mock.base_url(dep, "openai")},
                      "v": {"kind": "openai", "api_key": "sk-test", "base_url": mock.base_url(dep + "-v", "openai")}},
        "routes": {"chat": route, "verify": {"deployments": [{"model": "v/gpt-4o-mini"}]}},
        "keys": {"required": True, "store": "memory"},
        "audit": {"sink": f"sqlite:///{tmp_path}/audit-{dep}.db"},
        "governance": {"budgets": [{"scope": "team", "period": "daily", "limit_usd": 5}]},
    }
    if gov == "redis":
        cfg["state"] = {"backend": "redis", "redis_url": redis_url, "prefix": dep}
        cfg["cache"] = {"socket_timeout": 5.0}
    mock.script("Do these two requests ask", content="yes", deployment=dep + "-v")
    gw = Gateway(cfg)
    gw._matrix_dep = dep  # type: ignore[attr-defined]
    return gw


async def ask(gw: Gateway, door: str, mode: str, key: str, text: str) -> tuple[str, str | None]:
    """One question through ``door``; returns (content, cache tier the pipeline reported)."""
    if door == "core":
        if mode == "complete":
            r = await gw.acomplete("chat", [{"role": "user", "content": text}], virtual_key=key)
            return r.content, r.cache.tier if r.cache else None
        s = gw.astream("chat", [{"role": "user", "content": text}], virtual_key=key)
        text_out = "".join([c.content async for c in s])
        return text_out, s.response.cache.tier if s.response.cache else None
    if door == "langchain":
        from hyperion_lc import HyperionChat

        llm = HyperionChat(model="chat", gateway=gw, virtual_key=key)
        if mode == "complete":
            msg = await llm.ainvoke(text)
        else:
            msg = None
            async for chunk in llm.astream(text):
                msg = chunk if msg is None else msg + chunk
        meta = msg.response_metadata or {}
        return msg.content, (meta.get("hyperion") or {}).get("cache_tier", meta.get("cache_tier"))
    from llama_index.core.llms import ChatMessage

    from hyperion_li import HyperionLLM

    llm = HyperionLLM(model="chat", gateway=gw, virtual_key=key)
    msgs = [ChatMessage(role="user", content=text)]
    if mode == "complete":
        r = await llm.achat(msgs)
    else:
        r = None
        async for part in await llm.astream_chat(msgs):
            r = part
    return r.message.content, None


CELLS = list(itertools.product(CACHES, GOVS, MODES, DOORS))


@pytest.mark.parametrize(("cache", "gov", "mode", "door"), CELLS, ids=["-".join(c) for c in CELLS])
async def test_matrix(mock, tmp_path, redis_url, cache, gov, mode, door):
    gw = build(mock, tmp_path, redis_url, cache, gov)
    key, rec = await gw.keys.create("matrix", team="mx")
    try:
        if cache == "coalesced":  # the leader's call is slow: the identical request waits for it
            mock.fault(gw._matrix_dep, latency_ms=400, times=1)
            (c1, t1), (c2, t2) = await asyncio.gather(ask(gw, door, mode, key, Q1), ask(gw, door, mode, key, Q2[cache]))
        else:
            c1, t1 = await ask(gw, door, mode, key, Q1)
            c2, t2 = await ask(gw, door, mode, key, Q2[cache])
        assert c1 and c2 and c1 == c2 if cache != "none" else c1 and c2
        await gw.audit.aflush()
        events = sorted(await gw.audit.query(limit=20), key=lambda e: e.time)
        chat_events = [e for e in events if e.route == "chat"]
        assert len(chat_events) == 2 and all(e.outcome == "ok" for e in chat_events)
        assert all(e.key_id == rec.key_id and e.stream == (mode == "stream") for e in chat_events)
        tiers = sorted((e.cache_tier or "fresh") for e in chat_events)
        want = EXPECTED_TIER[cache]
        assert tiers == (["fresh", "fresh"] if want is None else sorted(["fresh", want]))
        if door == "core" and want is not None:
            assert {t1, t2} == {None, want}
        (st,) = await gw.governance.status({"team": "mx"})
        assert st.reserved_usd == 0
        fresh = [e for e in chat_events if e.cache_tier is None]
        assert st.spent_usd == pytest.approx(sum(e.cost for e in fresh), abs=1e-12) and st.spent_usd > 0
        rows = await gw.governance.spend_report("route")
        chat_row = next(r for r in rows if r.group == "chat")
        assert chat_row.requests == 2
        if want is not None:
            assert chat_row.saved_usd > 0
        if cache == "grey":
            assert mock.stats()[gw._matrix_dep + "-v"]["requests"] == 1  # the verifier was asked
        assert gw.pipeline.failures == {}
    finally:
        await gw.aclose()
