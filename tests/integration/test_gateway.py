"""The Gateway end to end: real HTTP to the mock provider through the native adapters and litellm."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from hyperion_core import (
    AllDeploymentsFailedError,
    BadRequestError,
    ContentPolicyError,
    DeadlineExceededError,
    Gateway,
    InvalidRequestError,
    ManualClock,
    RouteNotFoundError,
    StreamInterruptedError,
)
from hyperion_core.mock_provider.content import answer_for

WIRES = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}


def _provider(mock, dep: str, wire: str) -> dict:
    return {"kind": wire, "api_key": "sk-test", "base_url": mock.base_url(dep, wire)}


def make_gateway(mock, deployments: list[tuple[str, str]], clock=None, **route) -> Gateway:
    """deployments: (mock deployment name, wire) in priority order."""
    providers = {dep: _provider(mock, dep, wire) for dep, wire in deployments}
    route.setdefault("retry", {"attempts": 1, "backoff_base": 0.0})
    cfg = {
        "providers": providers,
        "routes": {"chat": {"deployments": [{"model": f"{d}/{WIRES[w]}", "name": d} for d, w in deployments], **route}},
    }
    return Gateway(cfg, clock=clock)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# -- wire formats ------------------------------------------------------------------------------


@pytest.mark.parametrize("wire", list(WIRES))
async def test_each_wire_format_whole_and_streamed(mock, wire):
    gw = make_gateway(mock, [(f"solo-{wire}", wire)])
    prompt = f"Tell me about {wire}"
    resp = await gw.acomplete("chat", user(prompt))
    assert resp.content == answer_for(prompt)
    assert resp.deployment == f"solo-{wire}" and resp.finish_reason == "stop"
    assert resp.usage.completion_tokens == len(answer_for(prompt).split())
    assert resp.usage.prompt_tokens > 0 and resp.cost > 0
    assert [a.outcome for a in resp.attempts] == ["ok"]

    stream = gw.astream("chat", user(prompt))
    chunks = [c async for c in stream]
    assert "".join(c.content for c in chunks) == answer_for(prompt)
    assert len(chunks) > 5  # really streamed
    final = stream.response
    assert final.usage == resp.usage and final.cost == pytest.approx(resp.cost)
    assert final.finish_reason == "stop" and final.ttft_ms is not None and final.ttft_ms <= final.latency_ms
    await gw.aclose()


@pytest.mark.parametrize("wire", list(WIRES))
async def test_tool_calls_each_wire(mock, wire):
    gw = make_gateway(mock, [(f"tools-{wire}", wire)])
    tools = [{
        "type": "function",
        "function": {
            "name": "magic_function",
            "description": "Applies a magic function to an input.",
            "parameters": {"type": "object", "properties": {"input": {"type": "integer"}}, "required": ["input"]},
        },
    }]
    q = user("What is the value of magic_function(3)? Use the tool.")
    resp = await gw.acomplete("chat", q, tools=tools)
    assert [(t.name, t.arguments.replace(" ", "")) for t in resp.tool_calls] == [("magic_function", '{"input":3}')]
    assert resp.finish_reason == "tool_calls"
    stream = gw.astream("chat", q, tools=tools)
    async for _ in stream:
        pass
    assert [(t.name, t.arguments.replace(" ", "")) for t in stream.response.tool_calls] == [("magic_function", '{"input":3}')]
    await gw.aclose()


async def test_litellm_adapter_for_forced_deployment(mock):
    cfg = {
        "providers": {"p": {"kind": "openai", "api_key": "sk-x", "base_url": mock.base_url("viallm", "openai")}},
        "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini", "adapter": "litellm"}]}},
    }
    gw = Gateway(cfg)
    assert gw.route("chat").deployments[0].adapter.wire == "litellm"
    resp = await gw.acomplete("chat", user("via litellm"))
    assert resp.content == answer_for("via litellm")
    assert mock.stats()["viallm"]["requests"] >= 1
    await gw.aclose()


# -- failover per error class ------------------------------------------------------------------

FAILOVER_KINDS = ["rate_limit", "server_error", "overloaded", "unavailable", "auth", "not_found"]


@pytest.mark.parametrize("kind", FAILOVER_KINDS)
@pytest.mark.parametrize("primary_wire", ["openai", "anthropic", "gemini"])
async def test_failover_errors_move_to_the_next_deployment(mock, kind, primary_wire):
    gw = make_gateway(mock, [("p1", primary_wire), ("s1", "openai")])
    mock.fault("p1", kind=kind)
    resp = await gw.acomplete("chat", user("hello"))
    assert resp.deployment == "s1" and resp.content == answer_for("hello")
    assert resp.attempts[0].deployment == "p1" and resp.attempts[0].outcome == "error"
    assert resp.attempts[-1].deployment == "s1" and resp.attempts[-1].outcome == "ok"
    await gw.aclose()


@pytest.mark.parametrize("kind,exc", [("bad_request", BadRequestError), ("content_policy", ContentPolicyError)])
async def test_caller_errors_do_not_fail_over(mock, kind, exc):
    gw = make_gateway(mock, [("p2", "openai"), ("s2", "anthropic")])
    mock.fault("p2", kind=kind)
    with pytest.raises(exc) as ei:
        await gw.acomplete("chat", user("hello"))
    assert ei.value.deployment == "p2" and ei.value.route == "chat"
    assert mock.stats().get("s2", {}).get("requests", 0) == 0
    assert len(ei.value.attempts) == 1
    await gw.aclose()


async def test_context_window_uses_the_fallback_route(mock):
    cfg = {
        "providers": {"small": _provider(mock, "small", "openai"), "big": _provider(mock, "big", "anthropic")},
        "routes": {
            "chat": {"deployments": [{"model": "small/gpt-4o-mini"}], "context_window_fallback": "long"},
            "long": {"deployments": [{"model": "big/claude-haiku-4-5"}]},
        },
    }
    gw = Gateway(cfg)
    mock.fault("small", kind="context_window")
    resp = await gw.acomplete("chat", user("a very long prompt"))
    assert resp.deployment == "big/claude-haiku-4-5"
    assert [a.error_class for a in resp.attempts] == ["ContextWindowExceededError", None]
    await gw.aclose()


async def test_retry_after_puts_the_deployment_in_cooldown(mock):
    gw = make_gateway(mock, [("rl", "openai"), ("ok", "gemini")])
    mock.fault("rl", kind="rate_limit", retry_after=30, times=1)
    first = await gw.acomplete("chat", user("one"))
    assert first.deployment == "ok" and first.attempts[0].status == 429
    before = mock.stats()["rl"]["requests"]
    second = await gw.acomplete("chat", user("two"))
    assert second.deployment == "ok" and len(second.attempts) == 1  # rl skipped, no call made
    assert mock.stats()["rl"]["requests"] == before
    assert gw.health()["chat"]["rl"]["open_for"] > 25
    await gw.aclose()


async def test_single_deployment_waits_out_retry_after_within_deadline(mock):
    gw = make_gateway(mock, [("rl1", "anthropic")], retry={"attempts": 1, "backoff_base": 0}, breaker={"enabled": False})
    mock.fault("rl1", kind="rate_limit", retry_after=0.3, times=1)
    from hyperion_core.routing import set_testing

    set_testing(False)  # real sleep: the wait itself is under test
    t0 = time.perf_counter()
    resp = await gw.acomplete("chat", user("patience"))
    assert time.perf_counter() - t0 >= 0.3
    assert resp.deployment == "rl1" and [a.status for a in resp.attempts] == [429, None]
    await gw.aclose()


async def test_hang_hits_attempt_timeout_then_fails_over(mock):
    gw = make_gateway(mock, [("hang", "openai"), ("fine", "anthropic")], attempt_timeout=0.2, retry={"attempts": 0})
    mock.fault("hang", hang=True)
    t0 = time.perf_counter()
    resp = await gw.acomplete("chat", user("are you there"))
    assert resp.deployment == "fine"
    assert resp.attempts[0].error_class == "ProviderTimeoutError"
    assert 0.2 <= time.perf_counter() - t0 < 1.5
    await gw.aclose()


async def test_deadline_respected_under_retries(mock):
    gw = make_gateway(mock, [("h1", "openai"), ("h2", "gemini")], timeout=0.5, attempt_timeout=0.2,
                      retry={"attempts": 3, "backoff_base": 0.05})
    mock.fault("h1", hang=True)
    mock.fault("h2", hang=True)
    t0 = time.perf_counter()
    with pytest.raises(DeadlineExceededError) as ei:
        await gw.acomplete("chat", user("slow"))
    elapsed = time.perf_counter() - t0
    assert 0.45 <= elapsed < 1.2  # without the 0.5 s deadline: >= 1.35 s (a timeout fails over, then 4 x 0.2 s + backoff)
    assert len(ei.value.attempts) >= 2
    await gw.aclose()


async def test_malformed_body_fails_over(mock):
    gw = make_gateway(mock, [("junk", "openai"), ("good", "openai")])
    mock.fault("junk", malformed=True)
    resp = await gw.acomplete("chat", user("parse me"))
    assert resp.deployment == "good" and resp.attempts[0].error_class == "MalformedResponseError"
    await gw.aclose()


async def test_all_deployments_failed(mock):
    gw = make_gateway(mock, [("x1", "openai"), ("x2", "anthropic")], retry={"attempts": 0})
    mock.fault("x1", kind="server_error")
    mock.fault("x2", kind="overloaded")
    with pytest.raises(AllDeploymentsFailedError) as ei:
        await gw.acomplete("chat", user("doomed"))
    assert [(a.deployment, a.status) for a in ei.value.attempts] == [("x1", 500), ("x2", 529)]
    await gw.aclose()


# -- breaker against the real mock, with an injected clock -------------------------------------


async def test_breaker_opens_skips_and_half_open_probe_restores(mock):
    clock = ManualClock()
    gw = make_gateway(mock, [("brk", "openai"), ("alt", "anthropic")], clock=clock,
                      retry={"attempts": 0}, breaker={"failure_threshold": 2, "cooldown": 10})
    mock.fault("brk", kind="unavailable")
    for _ in range(2):
        assert (await gw.acomplete("chat", user("q"))).deployment == "alt"
    assert gw.health()["chat"]["brk"]["state"] == "open"
    calls = mock.stats()["brk"]["requests"]
    assert (await gw.acomplete("chat", user("q"))).deployment == "alt"
    assert mock.stats()["brk"]["requests"] == calls  # open: not called
    mock.clear_faults("brk")
    clock.advance(10)
    probe = await gw.acomplete("chat", user("q"))
    assert probe.deployment == "brk" and gw.health()["chat"]["brk"]["state"] == "closed"
    await gw.aclose()


async def test_failed_probe_reopens(mock):
    clock = ManualClock()
    gw = make_gateway(mock, [("brk2", "gemini"), ("alt2", "openai")], clock=clock,
                      retry={"attempts": 0}, breaker={"failure_threshold": 1, "cooldown": 5})
    mock.fault("brk2", kind="server_error")
    await gw.acomplete("chat", user("q"))
    clock.advance(5)
    resp = await gw.acomplete("chat", user("q"))  # the probe fails, the alternative answers
    assert [a.deployment for a in resp.attempts] == ["brk2", "alt2"]
    assert gw.health()["chat"]["brk2"]["state"] == "open"
    await gw.aclose()


# -- streams -----------------------------------------------------------------------------------


async def test_stream_cut_before_first_chunk_fails_over_invisibly(mock):
    gw = make_gateway(mock, [("cut0", "openai"), ("whole", "anthropic")], retry={"attempts": 0})
    mock.fault("cut0", cut_after_chunks=0)
    stream = gw.astream("chat", user("tell a story"))
    text = "".join([c.content async for c in stream])
    assert text == answer_for("tell a story")
    assert stream.response.deployment == "whole"
    assert stream.response.attempts[0].error_class == "StreamCutError"


@pytest.mark.parametrize("wire", list(WIRES))
async def test_stream_cut_after_first_chunk_without_resume_raises(mock, wire):
    gw = make_gateway(mock, [(f"cut-{wire}", wire), ("spare", "openai")])
    mock.fault(f"cut-{wire}", cut_after_chunks=4)
    got = []
    with pytest.raises(StreamInterruptedError) as ei:
        async for c in gw.astream("chat", user("tell a story")):
            got.append(c.content)
    assert ei.value.delivered_chunks == len(got) >= 3
    assert "".join(got) == answer_for("tell a story")[: len("".join(got))]
    assert ei.value.attempts[-1].error_class == "StreamCutError"
    assert mock.stats().get("spare", {}).get("requests", 0) == 0  # no silent restart after chunks were sent


@pytest.mark.parametrize("wire", list(WIRES))
async def test_stream_resume_splices_one_uninterrupted_answer(mock, wire):
    gw = make_gateway(mock, [(f"rs-{wire}", wire), ("rs-next", "anthropic")], stream_resume=True)
    mock.fault(f"rs-{wire}", cut_after_chunks=6)
    stream = gw.astream("chat", user("resume me please"))
    text = "".join([c.content async for c in stream])
    assert text == answer_for("resume me please")
    r = stream.response
    assert r.resumed_by == ("rs-next",) and r.deployment == "rs-next"
    assert [a.outcome for a in r.attempts] == ["ok", "error", "ok"]
    assert r.usage.completion_tokens >= len(text.split())  # the cut segment is counted too


async def test_stream_resume_with_nowhere_to_go_raises_interrupted(mock):
    gw = make_gateway(mock, [("only", "openai")], stream_resume=True)
    mock.fault("only", cut_after_chunks=3)
    with pytest.raises(StreamInterruptedError, match="could not be resumed"):
        async for _ in gw.astream("chat", user("x")):
            pass


async def test_first_token_timeout_fails_over(mock):
    gw = make_gateway(mock, [("slowstart", "anthropic"), ("quick", "gemini")], first_token_timeout=0.2,
                      retry={"attempts": 0})
    mock.fault("slowstart", hang=True)
    stream = gw.astream("chat", user("fast please"))
    text = "".join([c.content async for c in stream])
    assert text == answer_for("fast please")
    assert stream.response.attempts[0].error_class == "FirstTokenTimeoutError"


async def test_stream_idle_timeout_mid_stream(mock):
    gw = make_gateway(mock, [("drip", "openai"), ("steady", "openai")], stream_idle_timeout=0.15, stream_resume=True)
    mock.fault("drip", chunk_delay_ms=400, times=1)
    stream = gw.astream("chat", user("drip"))
    text = "".join([c.content async for c in stream])
    assert text == answer_for("drip") and stream.response.resumed_by == ("steady",)


async def test_abandoned_stream_releases_the_connection(mock):
    gw = make_gateway(mock, [("aband", "openai")])
    stream = gw.astream("chat", user("long story"))
    async for _ in stream:
        break
    await stream.aclose()
    resp = await gw.acomplete("chat", user("next"))  # the pool still works
    assert resp.content == answer_for("next")
    await gw.aclose()


# -- cost ----------------------------------------------------------------------------------------


async def test_cost_prices_cached_and_reasoning_tokens(mock):
    gw = make_gateway(mock, [("cost", "openai")])
    mock.fault("cost", cached_tokens=4, reasoning_tokens=3)
    resp = await gw.acomplete("chat", user("price me"))
    u = resp.usage
    assert u.cached_prompt_tokens == 4 and u.reasoning_tokens == 3
    price = gw.route("chat").deployments[0].adapter.target.price
    expected = (u.prompt_tokens - 4) * 1.5e-7 + 4 * 7.5e-8 + u.completion_tokens * 6e-7
    assert price.input == 1.5e-7 and price.cached_input == 7.5e-8
    assert resp.cost == pytest.approx(expected)
    await gw.aclose()


async def test_pricing_override_per_deployment(mock):
    cfg = {
        "providers": {"p": _provider(mock, "po", "openai")},
        "routes": {"chat": {"deployments": [{"model": "p/my-finetune", "pricing": {"input_per_mtok": 1, "output_per_mtok": 2}}]}},
    }
    gw = Gateway(cfg)
    resp = await gw.acomplete("chat", user("custom"))
    assert resp.cost == pytest.approx(resp.usage.prompt_tokens * 1e-6 + resp.usage.completion_tokens * 2e-6)
    await gw.aclose()


# -- bad input -----------------------------------------------------------------------------------


async def test_bad_requests_get_clear_errors(mock):
    gw = make_gateway(mock, [("v", "openai")])
    with pytest.raises(RouteNotFoundError, match=r"unknown route 'chta' \(did you mean 'chat'\?\)"):
        await gw.acomplete("chta", user("x"))
    with pytest.raises(InvalidRequestError, match=r"messages: must be a non-empty list"):
        await gw.acomplete("chat", [])
    with pytest.raises(InvalidRequestError, match=r"messages\[1\].role: unknown role 'usr' \(did you mean 'user'\?\)"):
        await gw.acomplete("chat", [{"role": "system", "content": "s"}, {"role": "usr", "content": "x"}])
    with pytest.raises(InvalidRequestError, match="max_tokens"):
        await gw.acomplete("chat", user("x"), max_tokens=0)
    with pytest.raises(InvalidRequestError, match="not a chat route"):
        cfg = {"providers": {"p": _provider(mock, "e", "openai")},
               "routes": {"emb": {"kind": "embedding", "deployments": [{"model": "p/text-embedding-3-small"}]}}}
        await Gateway(cfg).acomplete("emb", user("x"))
    assert mock.stats().get("v", {}).get("requests", 0) == 0  # nothing reached the provider


async def test_max_tokens_and_stop_pass_through(mock):
    gw = make_gateway(mock, [("mt", "anthropic")])
    resp = await gw.acomplete("chat", user("count words"), max_tokens=5)
    assert resp.finish_reason == "length" and resp.usage.completion_tokens == 5
    assert resp.content == " ".join(answer_for("count words").split()[:5])
    await gw.aclose()


# -- embeddings, sync twins, pooling ---------------------------------------------------------------


async def test_embeddings_route(mock):
    cfg = {"providers": {"p": _provider(mock, "emb", "openai")},
           "routes": {"emb": {"kind": "embedding", "deployments": [{"model": "p/text-embedding-3-small"}]}}}
    gw = Gateway(cfg)
    r = await gw.aembed("emb", ["red apple", "red apple pie", "quantum physics"])
    assert len(r.vectors) == 3 and len(r.vectors[0]) > 0
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    assert dot(r.vectors[0], r.vectors[1]) > dot(r.vectors[0], r.vectors[2])
    assert r.cost == pytest.approx(r.usage.prompt_tokens * 2e-8)
    await gw.aclose()


def test_sync_twins_match_async(mock):
    gw = make_gateway(mock, [("sync", "gemini")])
    resp = gw.complete("chat", user("sync hello"))
    assert resp.content == answer_for("sync hello")
    s = gw.stream("chat", user("sync hello"))
    assert "".join(c.content for c in s) == answer_for("sync hello")
    assert s.response.usage == resp.usage
    sessions = list(gw.http._sessions.values())
    for _ in range(5):
        gw.complete("chat", user("again"))
    assert list(gw.http._sessions.values()) == sessions  # one pool, reused
    gw.close()


async def test_one_pool_for_all_requests(mock):
    gw = make_gateway(mock, [("pool", "openai")])
    await gw.acomplete("chat", user("a"))
    session = gw.http.session()
    await asyncio.gather(*(gw.acomplete("chat", user(f"q{i}")) for i in range(50)))
    assert gw.http.session() is session and len(gw.http._sessions) == 1
    await gw.aclose()


# -- soak ------------------------------------------------------------------------------------------


async def test_soak_1000_requests_random_faults_zero_failures(mock):
    """1,000 requests, the primary failing ~40% of the time in every way it can; a healthy secondary."""
    gw = make_gateway(mock, [("flaky", "openai"), ("steady2", "anthropic")], attempt_timeout=0.3, stream_resume=True,
                      retry={"attempts": 1, "backoff_base": 0.0}, breaker={"failure_threshold": 1000})
    for kind, p in [("rate_limit", 0.1), ("server_error", 0.1), ("unavailable", 0.05)]:
        mock.fault("flaky", kind=kind, probability=p, seed=7)
    mock.fault("flaky", malformed=True, probability=0.05, seed=8)
    mock.fault("flaky", hang=True, probability=0.02, seed=9)
    mock.fault("flaky", cut_after_chunks=2, probability=0.1, seed=10)
    rng = random.Random(42)
    failures = 0
    served = {"flaky": 0, "steady2": 0}

    async def one(i: int) -> None:
        nonlocal failures
        prompt = f"soak {i}"
        try:
            if rng.random() < 0.3:
                s = gw.astream("chat", user(prompt))
                text = "".join([c.content async for c in s])
                resp = s.response
            else:
                resp = await gw.acomplete("chat", user(prompt))
                text = resp.content
            assert text == answer_for(prompt)
            served[resp.deployment] += 1
        except Exception:
            failures += 1
            raise

    for start in range(0, 1000, 50):
        await asyncio.gather(*(one(i) for i in range(start, start + 50)))
    assert failures == 0
    assert served["flaky"] > 300 and served["steady2"] > 100  # faults really happened, both served
    assert sum(served.values()) == 1000
    await gw.aclose()


async def test_lowest_latency_routes_to_the_fastest_deployment(mock):
    gw = make_gateway(mock, [("slow-ll", "openai"), ("fast-ll", "gemini")], strategy="lowest_latency")
    mock.fault("slow-ll", latency_ms=40)
    for i in range(4):  # explore both, then learn
        await gw.acomplete("chat", user(f"warm {i}"))
    served = [(await gw.acomplete("chat", user(f"q{i}"))).deployment for i in range(10)]
    assert served == ["fast-ll"] * 10
    h = gw.health()["chat"]
    assert h["slow-ll"]["ewma_latency_ms"] > 30 > h["fast-ll"]["ewma_latency_ms"]
    await gw.aclose()


async def test_lowest_cost_prefers_the_cheaper_model(mock):
    cfg = {
        "providers": {"a": _provider(mock, "pricey", "openai"), "b": _provider(mock, "cheap", "openai")},
        "routes": {"chat": {"strategy": "lowest_cost",
                            "deployments": [{"model": "a/gpt-4o"}, {"model": "b/gpt-4o-mini"}]}},
    }
    gw = Gateway(cfg)
    assert (await gw.acomplete("chat", user("x"))).deployment == "b/gpt-4o-mini"
    mock.fault("cheap", kind="unavailable")
    assert (await gw.acomplete("chat", user("y"))).deployment == "a/gpt-4o"  # still a fallback
    await gw.aclose()


async def test_per_request_max_retries_overrides_the_route(mock):
    gw = make_gateway(mock, [("mr", "openai")], retry={"attempts": 3, "backoff_base": 0})
    mock.fault("mr", kind="server_error", times=2)
    ok = await gw.acomplete("chat", user("retry me"))
    assert [a.outcome for a in ok.attempts] == ["error", "error", "ok"]
    mock.fault("mr", kind="server_error", times=1)
    with pytest.raises(AllDeploymentsFailedError) as ei:
        await gw.acomplete("chat", user("no retries"), max_retries=0)
    assert len(ei.value.attempts) == 1
    with pytest.raises(InvalidRequestError, match="max_retries"):
        await gw.acomplete("chat", user("x"), max_retries=-1)
    await gw.aclose()
