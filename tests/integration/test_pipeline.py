"""The pipeline end to end (real mock provider over HTTP, real Redis where it matters): the four
defects the one-pipeline refactor fixed, each reproduced as it was found."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from hyperion_core import Gateway
from hyperion_core.redis_server import RedisServer
from hyperion_core.stages import STAGES


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def config(mock, dep: str, tmp_path, **extra) -> dict:
    cfg = {
        "providers": {"p": {"kind": "openai", "api_key": "sk-test", "base_url": mock.base_url(dep, "openai")}},
        "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini"}], "retry": {"attempts": 0}}},
        "audit": {"sink": f"sqlite:///{tmp_path}/audit-{dep}.db"},
    }
    for k, v in extra.items():
        if k == "route":
            cfg["routes"]["chat"].update(v)
        else:
            cfg[k] = v
    return cfg


def test_one_list_names_every_stage_in_order():
    assert [s.name for s in STAGES] == [
        "validate", "authorize", "guard_in", "experiment", "admit", "cache", "call", "guard_out", "settle", "audit",
    ]


async def test_a_route_runs_only_the_stages_that_apply(mock, tmp_path):
    gw = Gateway(config(mock, "pl-plan", tmp_path, governance={"budgets": []}))
    assert [s.name for s in gw.pipeline.plan("chat", "chat")] == [
        "validate", "authorize", "admit", "call", "settle", "audit",
    ]
    plain = Gateway({"providers": {"p": {"kind": "openai", "api_key": "k", "base_url": mock.base_url("x", "openai")}},
                     "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini"}], "cache": {}}}})
    assert [s.name for s in plain.pipeline.plan("chat", "stream")] == ["validate", "authorize", "cache", "call"]
    assert [s.name for s in plain.pipeline.plan("chat", "embed")] == ["validate", "authorize", "call"]
    assert [s.name for s in gw.pipeline.plan("nope", "chat")] == ["validate", "authorize", "admit", "call", "settle", "audit"]
    await gw.aclose()
    await plain.aclose()


async def test_defect_1_a_coalesced_follower_gets_its_answer_and_one_audit_event(mock, tmp_path):
    """Cache + audit, two identical concurrent requests: the follower raised AuditError ("coalesced" was
    no audit cache tier)."""
    mock.fault("pl-coal", latency_ms=300, times=1)  # the leader's call is slow: the follower waits for it
    gw = Gateway(config(mock, "pl-coal", tmp_path, route={"cache": {}}))
    a, b = await asyncio.gather(gw.acomplete("chat", user("same question")), gw.acomplete("chat", user("same question")))
    assert a.content == b.content
    tiers = sorted((r.cache.tier if r.cache else "fresh") for r in (a, b))
    assert tiers == ["coalesced", "fresh"]
    await gw.audit.aflush()
    events = await gw.audit.query(limit=10)
    assert sorted(e.cache_tier or "fresh" for e in events) == ["coalesced", "fresh"]
    assert gw.pipeline.failures == {}
    await gw.aclose()


async def test_defect_1_through_llamaindex(mock, tmp_path):
    """The same case through HyperionLLM raised a pydantic ValidationError (its event's tier Literal)."""
    from llama_index.core.llms import ChatMessage

    from hyperion_li import HyperionLLM

    mock.fault("pl-coal-li", latency_ms=300, times=1)
    gw = Gateway(config(mock, "pl-coal-li", tmp_path, route={"cache": {}}))
    llm = HyperionLLM(model="chat", gateway=gw)
    msgs = [ChatMessage(role="user", content="same question for llamaindex")]
    a, b = await asyncio.gather(llm.achat(msgs), llm.achat(msgs))
    assert a.message.content == b.message.content
    await gw.aclose()


async def test_defect_2_the_grey_zone_verifier_works_when_keys_are_required(mock, tmp_path):
    """keys.required + a grey zone: the verifier's own call was refused for lack of a key and the
    refusal swallowed as a "no" — the verifier never worked."""
    mock.script("Do these two requests ask", content="yes", deployment="pl-verify")
    cfg = config(mock, "pl-grey", tmp_path, keys={"required": True, "store": "memory"},
                 route={"cache": {"semantic": {"enabled": True, "threshold": 0.2,
                                                "grey_zone": {"low": 0.0, "high": 0.2, "route": "verify"}}}})
    cfg["providers"]["v"] = {"kind": "openai", "api_key": "sk-test", "base_url": mock.base_url("pl-verify", "openai")}
    cfg["routes"]["verify"] = {"deployments": [{"model": "v/gpt-4o-mini"}]}
    gw = Gateway(cfg)
    key, _ = await gw.keys.create("grey")
    first = await gw.acomplete("chat", user("What is the capital city of France?"), virtual_key=key)
    second = await gw.acomplete("chat", user("Tell me: what is the capital city of France"), virtual_key=key)
    assert second.cache is not None and second.cache.tier == "semantic" and second.content == first.content
    assert mock.stats()["pl-verify"]["requests"] == 1  # the verifier was asked, and said yes
    await gw.aclose()


async def test_defect_3_a_settle_that_fails_after_a_paid_call_keeps_the_answer_and_its_audit_row(mock, tmp_path):
    """Redis dies while the upstream call is in flight: settle fails. The caller used to get an error for
    an answer that was produced and paid for, and no audit row was written."""
    server = RedisServer().start()
    try:
        state = {"backend": "redis", "redis_url": server.url, "prefix": f"st{uuid.uuid4().hex[:6]}",
                 "path": str(tmp_path / "state")}
        gov = {"budgets": [{"scope": "global", "period": "daily", "limit_usd": 5}]}
        gw = Gateway(config(mock, "pl-settle", tmp_path, state=state, governance=gov))
        mock.fault("pl-settle", latency_ms=500, times=1)
        call = asyncio.ensure_future(gw.acomplete("chat", user("a paid answer"), max_tokens=20))
        while mock.stats().get("pl-settle", {}).get("requests", 0) == 0:  # admitted, now upstream
            await asyncio.sleep(0.01)
        server.stop()
        resp = await call  # the answer arrives; settling it fails
        assert resp.content and resp.cost > 0
        await gw.audit.aflush()
        (event,) = await gw.audit.query(limit=5)
        assert event.outcome == "ok" and event.cost == pytest.approx(resp.cost)
        assert "settle_error" in event.metadata and "Error" in event.metadata["settle_error"]
        await gw.aclose()
    finally:
        server.stop()


async def test_a_settle_that_fails_is_written_once_the_store_is_back(mock, tmp_path):
    """Issue 11 #9: Redis hangs while a paid call is in flight. The answer is delivered, the settlement
    is queued (memory + this process's file), and the next settle after Redis is back writes it: spend
    recorded exactly once, nothing left reserved. A queue left by a dead process is adopted."""
    import os
    import signal

    server = RedisServer().start()
    try:
        state = {"backend": "redis", "redis_url": server.url, "prefix": f"ls{uuid.uuid4().hex[:6]}",
                 "socket_timeout": 0.5, "path": str(tmp_path / "state")}
        gov = {"budgets": [{"scope": "global", "period": "daily", "limit_usd": 5}]}
        gw = Gateway(config(mock, "pl-late", tmp_path, state=state, governance=gov))
        mock.fault("pl-late", latency_ms=800, times=1)
        call = asyncio.ensure_future(gw.acomplete("chat", user("paid while redis hangs"), max_tokens=20))
        while mock.stats().get("pl-late", {}).get("requests", 0) == 0:
            await asyncio.sleep(0.01)
        os.kill(server._proc.pid, signal.SIGSTOP)  # alive but silent: the settle times out
        try:
            first = await call
        finally:
            os.kill(server._proc.pid, signal.SIGCONT)
        assert first.content and len(gw.services.pending) == 1
        (queued,) = list((tmp_path / "state").glob("pending-settlements-*.jsonl"))
        assert queued.read_text().count("\n") == 1
        second = await gw.acomplete("chat", user("after redis is back"), max_tokens=20)
        assert len(gw.services.pending) == 0 and gw.services.pending.replayed == 1
        (st,) = await gw.governance.status({})
        assert st.reserved_usd == 0 and st.spent_usd == pytest.approx(first.cost + second.cost, rel=1e-9)
        (row,) = await gw.governance.spend_report("route")
        assert row.requests == 2
        await gw.audit.aflush()
        events = sorted(await gw.audit.query(limit=5), key=lambda e: e.time)
        assert "settle_error" in events[0].metadata and "settle_error" not in (events[1].metadata or {})

        # a queue left behind by a process that died is adopted by the next one to start
        mock.fault("pl-late", latency_ms=800, times=1)
        call = asyncio.ensure_future(gw.acomplete("chat", user("paid, then the process dies"), max_tokens=20))
        while mock.stats().get("pl-late", {}).get("requests", 0) < 3:
            await asyncio.sleep(0.01)
        os.kill(server._proc.pid, signal.SIGSTOP)
        try:
            third = await call
        finally:
            os.kill(server._proc.pid, signal.SIGCONT)
        assert len(gw.services.pending) == 1
        gw.services.pending.close()  # as a dead process leaves it: its file, unlocked
        stranger = Gateway(config(mock, "pl-late", tmp_path, state={**state, "prefix": "another-ledger"},
                                  governance=gov))
        assert len(stranger.services.pending) == 0  # another ledger's queue in the same folder is not its own
        await stranger.aclose()
        heir = Gateway(config(mock, "pl-late", tmp_path, state=state, governance=gov))
        assert len(heir.services.pending) == 1
        await heir.acomplete("chat", user("the heir's own call"), max_tokens=20)
        (st,) = await heir.governance.status({})
        assert st.reserved_usd == 0 and st.spent_usd > first.cost + second.cost + third.cost * 0.999
        (left,) = list((tmp_path / "state").glob("pending-settlements-*.jsonl"))  # the dead one's was adopted
        assert left == heir.services.pending.path and left.read_text() == ""
        await heir.aclose()
        await gw.aclose()
    finally:
        server.stop()


async def test_a_route_planner_orders_deployments_per_request_and_explains_the_pick(mock, tmp_path):
    """The hook strategies that read the request use (policy, quality): the planner's order wins over
    the route's strategy for chat, stream and failover alike, and its decision reaches the response."""
    from hyperion_core.types import RouteDecision

    cfg = {
        "providers": {
            "a": {"kind": "openai", "api_key": "k", "base_url": mock.base_url("plan-a", "openai")},
            "b": {"kind": "openai", "api_key": "k", "base_url": mock.base_url("plan-b", "openai")},
        },
        "routes": {"chat": {"deployments": [{"model": "a/gpt-4o-mini", "name": "first"},
                                            {"model": "b/gpt-4o-mini", "name": "second"}],
                            "retry": {"attempts": 0}}},
    }
    gw = Gateway(cfg)
    rs = gw.parts.routes["chat"]
    seen: list[str] = []

    async def planner(ctx):
        seen.append(ctx.req.messages[-1]["content"])
        wanted = "second" if "long" in ctx.req.messages[-1]["content"] else "first"
        deps = sorted(rs.deployments, key=lambda d: d.name != wanted)
        return deps, RouteDecision(strategy="policy", reason=f"picked {wanted}", rule=wanted)

    rs.planner = planner
    short = await gw.acomplete("chat", user("short"))
    assert (short.deployment, short.decision.rule) == ("first", "first")
    long = await gw.acomplete("chat", user("long one"))
    assert (long.deployment, long.decision.reason) == ("second", "picked second")
    stream = gw.astream("chat", user("long stream"))
    async for _ in stream:
        pass
    assert stream.response.deployment == "second" and stream.response.decision.rule == "second"
    mock.fault("plan-b", status=500, times=1)  # the planned pick fails: failover follows the plan's order
    failed_over = await gw.acomplete("chat", user("long again"))
    assert failed_over.deployment == "first" and [a.deployment for a in failed_over.attempts] == ["second", "first"]
    assert seen == ["short", "long one", "long stream", "long again"]
    await gw.aclose()
