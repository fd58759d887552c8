"""Hedged requests (issue 15) against the mock provider over real HTTP: the hedge fires only after
``after_ms`` (mock latencies far above / far below it), the fast deployment wins, the slow one's
request is closed upstream, only the winner is billed, streams hedge on their first chunk, ``max_extra``
caps the race, breakers see the winner's success and nothing from the loser, both failing is the
usual typed error, ``p95`` follows the observed latencies, and a cancelled caller cancels both.

Nothing here asserts wall time: what happened is read from ``attempts`` and the mock's counters.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from hyperion_core import Gateway
from hyperion_core.errors import AllDeploymentsFailedError
from hyperion_core.pipeline import RequestContext
from hyperion_core.types import ChatRequest, RouteDecision

SLOW_MS = 1500.0  # far beyond after_ms
AFTER_MS = 100.0
PRICES = {"a": (10.0, 30.0), "b": (1.0, 2.0), "c": (0.5, 1.0)}  # USD per million tokens: a loser is dearer


def make(mock, tag: str, tmp_path, *, deps: str = "ab", hedge: dict | None = None, governed: bool = False,
         **route: object) -> Gateway:
    providers = {d: {"kind": "openai", "api_key": "sk-test", "base_url": mock.base_url(f"{tag}-{d}", "openai")}
                 for d in deps}
    deployments = [{"model": f"{d}/gpt-4o-mini", "name": d,
                    "pricing": {"input_per_mtok": PRICES[d][0], "output_per_mtok": PRICES[d][1]}} for d in deps]
    cfg: dict = {
        "providers": providers,
        "routes": {
            "chat": {"deployments": deployments, "retry": {"attempts": 0},
                     "hedge": hedge if hedge is not None else {"after_ms": AFTER_MS}, **route},
            # no hedge: a probe of one deployment
            **{f"direct-{d['name']}": {"deployments": [d], "retry": {"attempts": 0}} for d in deployments},
        },
    }
    if governed:
        cfg.update(keys={"required": True, "store": "memory"},
                   governance={"budgets": [{"scope": "team", "period": "daily", "limit_usd": 10.0}]},
                   audit={"sink": f"sqlite:///{tmp_path}/audit-{tag}.db"})
    return Gateway(cfg)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def requests(mock, dep: str) -> int:
    return mock.stats().get(dep, {}).get("requests", 0)


def answered(mock, dep: str) -> int:
    return mock.stats().get(dep, {}).get("by_status", {}).get("200", 0)


async def until(check, what: str) -> None:
    for _ in range(2000):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def test_the_hedge_fires_only_after_after_ms_and_the_fast_deployment_wins(mock, tmp_path):
    gw = make(mock, "hf", tmp_path)
    mock.fault("hf-a", latency_ms=SLOW_MS, times=1)  # far beyond after_ms: hedged
    resp = await gw.acomplete("chat", user("hedge me"), max_tokens=10)
    assert resp.deployment == "b"
    assert [(a.deployment, a.outcome) for a in resp.attempts] == [("b", "ok"), ("a", "cancelled")]
    assert resp.attempts[1].error_class == "HedgeLost" and "b answered first" in (resp.attempts[1].message or "")
    assert resp.decision is not None and resp.decision.hedged  # the Call stage hands its context to the hedge
    assert requests(mock, "hf-a") == 1 and requests(mock, "hf-b") == 1

    await gw.aclose()

    # an answer well within after_ms (a 2 s margin, so a stalled loop cannot fire the hedge): no hedge
    gw = make(mock, "hf2", tmp_path, hedge={"after_ms": 2000.0})
    mock.fault("hf2-a", latency_ms=5, times=1)
    resp = await gw.acomplete("chat", user("do not hedge me"), max_tokens=10)
    assert resp.deployment == "a"
    assert [(a.deployment, a.outcome) for a in resp.attempts] == [("a", "ok")]
    assert requests(mock, "hf2-a") == 1 and requests(mock, "hf2-b") == 0
    await gw.aclose()


async def test_the_losers_upstream_request_is_closed(mock, tmp_path):
    """The mock answers a request only after its latency; a request whose connection dropped is never
    answered (its handler is cancelled). A probe sent to the same deployment after the hedge, with the
    same latency, is answered later than the loser would have been — so once the probe is back, a
    still-open loser would show as a second 200 there."""
    gw = make(mock, "hc", tmp_path)
    mock.fault("hc-a", latency_ms=600)
    resp = await gw.acomplete("chat", user("close the loser"), max_tokens=10)
    assert resp.deployment == "b" and requests(mock, "hc-a") == 1
    probe = await gw.acomplete("direct-a", user("probe"), max_tokens=10)
    assert probe.deployment == "a"
    assert requests(mock, "hc-a") == 2 and answered(mock, "hc-a") == 1  # the probe only: the loser was dropped
    await gw.aclose()


async def test_only_the_winner_is_billed_and_the_losers_estimate_is_recorded(mock, tmp_path):
    gw = make(mock, "hb", tmp_path, governed=True)
    key, _ = await gw.keys.create("k", team="hedgers")
    mock.fault("hb-a", latency_ms=SLOW_MS, times=1)
    chunks = [c.content async for c in gw.astream("chat", user("bill the winner"), virtual_key=key, max_tokens=12)]
    (st,) = await gw.governance.status({"team": "hedgers"})
    (event,) = await gw.audit.query(limit=5)
    assert event.deployment == "b" and event.outcome == "ok"
    assert st.spent_usd == pytest.approx(event.cost) and st.reserved_usd == 0
    b_price = gw.route("chat").deployments[1].adapter.target.price
    assert event.cost == pytest.approx(b_price.input * event.prompt_tokens + b_price.output * event.completion_tokens)
    assert event.completion_tokens == len([c for c in chunks if c])  # one stream's tokens, not two
    meta = dict(event.metadata)
    assert meta["hedge"] == "2 attempts raced, b won"
    lost, tokens = meta["hedge_cancelled"].split("~")
    assert lost == "a" and int(tokens) > 0
    a_price = gw.route("chat").deployments[0].adapter.target.price
    assert float(meta["hedge_cancelled_cost_usd"]) == pytest.approx(int(tokens) * a_price.input, rel=1e-6)
    await gw.aclose()


async def test_a_stream_hedges_on_its_first_chunk_and_delivers_one_stream(mock, tmp_path):
    gw = make(mock, "hs", tmp_path)
    plain = await gw.acomplete("direct-b", user("stream race"), max_tokens=15)  # the mock's answer to this prompt
    mock.fault("hs-a", latency_ms=SLOW_MS, times=1)  # before the first byte
    chunks = []
    stream = await gw.open_stream("chat", user("stream race"), max_tokens=15)
    async for chunk in stream:
        chunks.append(chunk)
    resp = stream.response
    assert "".join(c.content or "" for c in chunks) == plain.content
    assert resp.deployment == "b" and resp.decision is not None and resp.decision.hedged
    assert [(a.deployment, a.outcome) for a in resp.attempts] == [("b", "ok"), ("a", "cancelled")]
    assert mock.stats()["hs-b"]["streams"] == 1 and mock.stats()["hs-a"].get("streams", 0) == 0
    await gw.aclose()


async def test_max_extra_caps_how_many_deployments_race(mock, tmp_path):
    gw = make(mock, "hm", tmp_path, deps="abc")
    # a is slow, the one extra (b) never answers: a wins and b is cancelled whatever the machine's load
    # (two equal latencies let a stalled loop see both answer); c is never asked
    mock.fault("hm-a", latency_ms=600, times=1)
    mock.fault("hm-b", hang=True, times=1)
    resp = await gw.acomplete("chat", user("one extra only"), max_tokens=10)
    assert resp.deployment == "a" and requests(mock, "hm-c") == 0
    assert sorted((a.deployment, a.outcome) for a in resp.attempts) == [("a", "ok"), ("b", "cancelled")]
    await gw.aclose()

    gw = make(mock, "hm2", tmp_path, deps="abc", hedge={"after_ms": AFTER_MS, "max_extra": 2})
    mock.fault("hm2-a", hang=True, times=1)
    mock.fault("hm2-b", hang=True, times=1)
    resp = await gw.acomplete("chat", user("two extras"), max_tokens=10)
    assert resp.deployment == "c"
    assert (resp.attempts[0].deployment, resp.attempts[0].outcome) == ("c", "ok")
    assert sorted((a.deployment, a.outcome) for a in resp.attempts[1:]) == [("a", "cancelled"), ("b", "cancelled")]
    await gw.aclose()


async def test_breakers_see_the_winners_success_and_nothing_from_the_loser(mock, tmp_path):
    gw = make(mock, "hk", tmp_path, breaker={"failure_threshold": 2})
    a, b = gw.route("chat").deployments
    b.breaker.failures = 1  # one failure each: a success resets it, another failure would open a breaker
    mock.fault("hk-a", status=500, times=1)
    resp = await gw.acomplete("chat", user("a fails fast"), max_tokens=10)  # before after_ms: plain failover
    assert [x.outcome for x in resp.attempts] == ["error", "ok"] and resp.deployment == "b"
    assert a.breaker.failures == 1 and b.breaker.failures == 0
    b.breaker.failures = 1
    mock.fault("hk-a", latency_ms=SLOW_MS, times=1)
    resp = await gw.acomplete("chat", user("a is slow"), max_tokens=10)
    assert resp.deployment == "b" and resp.attempts[1].outcome == "cancelled"
    assert (a.breaker.state, a.breaker.failures) == ("closed", 1)  # cancelled: neither success nor failure
    assert (b.breaker.state, b.breaker.failures) == ("closed", 0)  # the winner's success
    await gw.aclose()


async def test_when_both_hedged_attempts_fail_the_usual_error_carries_both(mock, tmp_path):
    gw = make(mock, "he", tmp_path)
    mock.fault("he-a", latency_ms=600, status=500, times=1)  # slow, then fails: outlives b's failure
    mock.fault("he-b", status=503, times=1)
    with pytest.raises(AllDeploymentsFailedError) as info:
        await gw.acomplete("chat", user("both fail"), max_tokens=10)
    attempts = info.value.attempts
    # b failed first, yet the request waited for a: one hedged attempt failing is not the request failing
    assert [(x.deployment, x.outcome, x.status) for x in attempts] == [("b", "error", 503), ("a", "error", 500)]
    assert requests(mock, "he-a") == 1 and requests(mock, "he-b") == 1
    await gw.aclose()


async def test_one_failing_while_the_other_runs_is_not_a_failure(mock, tmp_path):
    gw = make(mock, "ho", tmp_path)
    mock.fault("ho-a", latency_ms=600, times=1)  # slow but fine
    mock.fault("ho-b", status=500, times=1)  # the hedge fails at once
    resp = await gw.acomplete("chat", user("a still answers"), max_tokens=10)
    assert resp.deployment == "a"
    assert [(x.deployment, x.outcome) for x in resp.attempts] == [("b", "error"), ("a", "ok")]
    await gw.aclose()


async def test_p95_mode_hedges_after_the_observed_p95(mock, tmp_path):
    gw = make(mock, "hp", tmp_path, hedge={"after_ms": "p95", "min_samples": 20, "floor_ms": 50})
    a = gw.route("chat").deployments[0]
    for i in range(100):  # controlled samples: p95 = 0.095 s
        a.recent.add((i + 1) / 1000.0, ttft=False)
    mock.fault("hp-a", latency_ms=SLOW_MS, times=1)
    resp = await gw.acomplete("chat", user("p95 is short"), max_tokens=10)
    assert resp.deployment == "b" and requests(mock, "hp-b") == 1

    for _ in range(200):  # a deployment that always took 10 s: its p95 is far beyond this 300 ms answer
        a.recent.add(10.0, ttft=False)
    mock.fault("hp-a", latency_ms=300, times=1)
    resp = await gw.acomplete("chat", user("p95 is long"), max_tokens=10)
    assert resp.deployment == "a" and [x.outcome for x in resp.attempts] == ["ok"]
    assert requests(mock, "hp-b") == 1  # no hedge was sent
    await gw.aclose()


async def test_cancelling_the_caller_cancels_both_attempts(mock, tmp_path):
    gw = make(mock, "hx", tmp_path)
    mock.fault("hx-a", latency_ms=600)
    mock.fault("hx-b", latency_ms=600)
    task = asyncio.ensure_future(gw.acomplete("chat", user("never mind"), max_tokens=10))
    await until(lambda: requests(mock, "hx-b") == 1, "the hedge reached b")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    a, b = gw.route("chat").deployments
    assert a.breaker.failures == b.breaker.failures == 0
    # probes sent now, with the same latency, are answered after the cancelled requests would have been
    await asyncio.gather(gw.acomplete("direct-a", user("probe a"), max_tokens=5),
                         gw.acomplete("direct-b", user("probe b"), max_tokens=5))
    assert answered(mock, "hx-a") == answered(mock, "hx-b") == 1  # the probes only: both were dropped
    await gw.aclose()


async def test_the_router_reports_the_hedge_on_the_request_context(mock, tmp_path):
    """What the Call stage passes on (``ctx=``): the decision keeps its fields and gets ``hedged``, and
    the loser's estimated cost is a note for the audit event; ``ordered`` sets who goes first."""
    gw = make(mock, "hr", tmp_path)
    rs = gw.route("chat")
    a, b = rs.deployments
    req = ChatRequest(route="chat", messages=user("reported"), max_tokens=10)
    ctx = RequestContext(req, "chat")
    ctx.decision = RouteDecision(strategy="policy", reason="rule fast", rule="fast")
    mock.fault("hr-b", latency_ms=SLOW_MS, times=1)
    attempts: list = []
    resp, ds = await gw.router.run_with_fallback(rs, lambda d: d.adapter.chat(req), attempts, resolve=gw.route,
                                                 ordered=[b, a], ctx=ctx)
    assert ds is a and [(x.deployment, x.outcome) for x in attempts] == [("a", "ok"), ("b", "cancelled")]
    assert ctx.decision == replace(RouteDecision(strategy="policy", reason="rule fast", rule="fast"), hedged=True)
    assert ctx.notes is not None and ctx.notes["hedge_cancelled"].startswith("b~")
    assert float(ctx.notes["hedge_cancelled_cost_usd"]) > 0
    await gw.aclose()


async def test_the_route_deadline_still_holds_while_hedging(mock, tmp_path):
    from hyperion_core.errors import DeadlineExceededError

    gw = make(mock, "hd", tmp_path, timeout=0.4)
    mock.fault("hd-a", latency_ms=SLOW_MS, times=1)
    mock.fault("hd-b", latency_ms=SLOW_MS, times=1)
    with pytest.raises(DeadlineExceededError) as info:
        await gw.acomplete("chat", user("too slow for both"), max_tokens=10)
    assert sorted(x.deployment for x in info.value.attempts) == ["a", "b"]  # both raced, both ran out of time
    await gw.aclose()


async def test_embeddings_are_hedged_too(mock, tmp_path):
    gw = Gateway({
        "providers": {d: {"kind": "openai", "api_key": "sk-test", "base_url": mock.base_url(f"he-emb-{d}", "openai")}
                      for d in "ab"},
        "routes": {"emb": {"kind": "embedding", "retry": {"attempts": 0}, "hedge": {"after_ms": AFTER_MS},
                           "deployments": [{"model": f"{d}/text-embedding-3-small", "name": d} for d in "ab"]}},
    })
    mock.fault("he-emb-a", latency_ms=SLOW_MS, times=1)
    r = await gw.aembed("emb", ["red apple"])
    assert r.deployment == "b" and [(x.deployment, x.outcome) for x in r.attempts] == [("b", "ok"), ("a", "cancelled")]
    assert requests(mock, "he-emb-a") == 1 and answered(mock, "he-emb-a") == 0
    await gw.aclose()
