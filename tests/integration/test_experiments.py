"""Route-level experiments against the mock provider over real HTTP: a sticky split within binomial
bounds (the same subject on the same variant across gateways), the kill switch, shadow sampling within
binomial bounds, a shadow that never slows, fails or bills the primary, ``max_pending`` drops, records
shared through Redis, the report against hand-computed figures, and promotion (API and CLI)."""

from __future__ import annotations

import math
import subprocess
import sys
import uuid

import pytest
import yaml

from hyperion_core import Gateway
from hyperion_core.errors import InvalidRequestError
from hyperion_core.experiments.promote import promote_diff, promoted
from hyperion_core.experiments.report import build_report
from hyperion_core.experiments.stage import bucket
from hyperion_core.experiments.store import Record
from hyperion_core.types import Caller


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def config(mock, tag: str, **route) -> dict:
    prov = {d: {"kind": "openai", "api_key": "sk-t", "base_url": mock.base_url(f"{tag}-{d}", "openai")}
            for d in ("a", "b", "c")}
    return {
        "providers": prov,
        "routes": {
            "chat": {"deployments": [{"model": "a/gpt-4o-mini", "name": "current", "direct": True},
                                     {"model": "b/gpt-4o-mini", "name": "cheap",
                                      "pricing": {"input_per_mtok": 0.01, "output_per_mtok": 0.02}}],
                     "retry": {"attempts": 0}, **route},
            "cand": {"deployments": [{"model": "c/gpt-4o-mini", "name": "candidate"}], "retry": {"attempts": 0}},
        },
    }


def bound(n: int, p: float, sds: float = 4.5) -> tuple[float, float]:
    """A 4.5-standard-deviation binomial interval: a fair process falls outside it ~7 in a million."""
    sd = math.sqrt(n * p * (1 - p))
    return n * p - sds * sd, n * p + sds * sd


async def test_a_split_is_sticky_per_user_within_binomial_bounds(mock):
    cfg = config(mock, "xs", split={"target": "cheap", "share": 0.3, "sticky": "user"})
    gw1, gw2 = Gateway(cfg), Gateway(cfg)
    n = 600
    first = {}
    for i in range(n):
        r = await gw1.acomplete("chat", user("hello"), caller=Caller(user=f"u{i}"), max_tokens=8)
        first[f"u{i}"] = r.deployment
        assert r.decision.experiment == "chat-split" and r.decision.variant == ("b" if r.deployment == "cheap" else "a")
    on_b = sum(d == "cheap" for d in first.values())
    low, high = bound(n, 0.3)
    assert low <= on_b <= high, on_b
    assert on_b == sum(bucket("chat-split", f"u{i}") < 0.3 for i in range(n))  # the stable hash decides
    for i in range(0, n, 7):  # the same subject lands on the same variant, in any process
        again = await gw2.acomplete("chat", user("again"), caller=Caller(user=f"u{i}"), max_tokens=8)
        assert again.deployment == first[f"u{i}"]
    rep = await gw1.experiments.report("chat-split")
    assert (rep.a.n, rep.b.n) == (n - on_b, on_b)
    assert rep.a.labels == ("direct",) and rep.b.deployments == {"cheap": on_b}
    await gw1.aclose()
    await gw2.aclose()


async def test_the_kill_switch_sends_everyone_to_a(mock):
    cfg = config(mock, "xk", split={"target": "cheap", "share": 1.0})
    gw = Gateway(cfg)
    assert (await gw.acomplete("chat", user("x"), caller=Caller(key_id="k1"))).deployment == "cheap"
    await gw.experiments.stop("chat-split")
    r = await gw.acomplete("chat", user("x"), caller=Caller(key_id="k1"))
    assert r.deployment == "current" and r.decision is None
    await gw.experiments.start("chat-split")
    assert (await gw.acomplete("chat", user("x"), caller=Caller(key_id="k1"))).deployment == "cheap"
    with pytest.raises(InvalidRequestError, match="unknown experiment 'chat-splt'.*did you mean 'chat-split'"):
        await gw.experiments.stop("chat-splt")
    off = Gateway(config(mock, "xk", split={"target": "cheap", "share": 1.0, "enabled": False}))
    assert (await off.acomplete("chat", user("x"), caller=Caller(key_id="k1"))).deployment == "current"
    await gw.aclose()
    await off.aclose()


async def test_a_split_to_another_route_is_priced_and_served_there(mock):
    gw = Gateway(config(mock, "xr", split={"target": "cand", "share": 1.0, "name": "to-cand"}))
    req = gw.request("chat", user("x"), caller=Caller(key_id="k"))
    r = await gw.acomplete(req)
    assert r.deployment == "candidate" and r.decision.reason.startswith("experiment to-cand: variant b (route cand")
    assert req.route == "chat"  # the caller's request object is not rewritten
    await gw.aclose()


async def test_shadow_sampling_spend_isolation_and_agreement(mock, tmp_path):
    cfg = config(mock, "xh", shadow={"target": "cand", "sample": 0.25})
    cfg.update(keys={"store": "memory"},
               governance={"budgets": [{"scope": "key", "id": "*", "period": "daily", "limit_usd": 5}]},
               audit={"sink": f"sqlite:///{tmp_path}/audit.db"})
    gw = Gateway(cfg)
    key, rec = await gw.keys.create("app")
    n = 400
    paid = 0.0
    for i in range(n):
        resp = await gw.acomplete("chat", user(f"question {i % 20}"), virtual_key=key, max_tokens=8)
        paid += resp.cost
    await gw.experiments.flush()
    rows = await gw.experiments.records("chat-shadow")
    shadows = [r for r in rows if r.variant == "b"]
    low, high = bound(n, 0.25)
    assert low <= len(shadows) <= high and len(rows) == 2 * len(shadows)
    assert mock.stats()["xh-c"]["requests"] == len(shadows)
    assert all(r.agreement is not None for r in rows)  # both sides of each pair carry the comparison
    (mine,) = [s for s in await gw.governance.status({"key": rec.key_id}) if s.scope == "key"]
    assert mine.spent_usd == pytest.approx(paid)  # the caller pays for its own answers only
    (shadow_budget,) = [s for s in await gw.governance.status({"key": "shadow:chat-shadow"}) if s.scope == "key"]
    assert shadow_budget.spent_usd == pytest.approx(sum(r.cost for r in shadows)) and shadow_budget.spent_usd > 0
    await gw.aclose()


async def test_a_hanging_failing_shadow_never_slows_or_fails_the_primary(mock):
    cfg = config(mock, "xf", shadow={"target": "cand", "sample": 1.0, "max_pending": 3})
    gw = Gateway(cfg)
    mock.fault("xf-c", latency_ms=3000)  # far slower than the primary's answers
    latencies = []
    for _ in range(10):
        r = await gw.acomplete("chat", user("quick"), max_tokens=8)
        latencies.append(r.latency_ms)
    assert gw.experiments.pending == 3 and gw.experiments.dropped == 7  # bounded, dropped and counted
    assert max(latencies) < 3000  # measured: no primary waited for its (3 s) shadow
    mock.clear_faults("xf-c")
    mock.fault("xf-c", status=500)
    await gw.experiments.flush()
    assert gw.experiments.pending == 0
    ok = await gw.acomplete("chat", user("still fine"), max_tokens=8)
    assert ok.content
    await gw.experiments.flush()
    rows = await gw.experiments.records("chat-shadow")
    assert {r.error_class for r in rows if r.variant == "b" and not r.ok} == {"AllDeploymentsFailedError"}
    await gw.aclose()


def test_the_report_matches_hand_computed_figures():
    recs = [Record("e", "a", 1_700_000_000 + 86_400 * (i % 7), 10.0 + i, True, cost=0.002, prompt_tokens=10,
                   completion_tokens=20, deployment="current", label="direct") for i in range(100)]
    recs += [Record("e", "b", 1_700_000_000 + 86_400 * (i % 7), 20.0 + i, True, cost=0.001, prompt_tokens=10,
                    completion_tokens=20, deployment="cheap", agreement=0.9, exact=i % 2 == 0) for i in range(100)]
    rep = build_report("e", "shadow", "chat", recs, seed=1)
    assert rep.a.latency_p50.value == pytest.approx(59.5) and rep.b.latency_p50.value == pytest.approx(69.5)
    assert rep.a.latency_p95.value == pytest.approx(104.05) and rep.b.latency_p99 == pytest.approx(118.01)
    assert rep.a.latency_p50.low < 59.5 < rep.a.latency_p50.high
    assert rep.cost_change.value == pytest.approx(-0.5) and rep.cost_change.high == pytest.approx(-0.5)
    assert rep.p95_delta_ms.value == pytest.approx(10.0)
    assert sum(rep.a.cost_by_day.values()) == pytest.approx(0.2) and len(rep.a.cost_by_day) == 7
    assert rep.b.agreement_mean == pytest.approx(0.9) and rep.b.exact_rate == pytest.approx(0.5)
    assert rep.promote and rep.verdict.startswith("B costs 50% less per request") and rep.verdict.endswith("promote B")
    assert "| latency p50 ms [95% CI] | 59.5 [" in rep.table()
    assert rep.b.error_rate == 0 and rep.a.labels == ("direct",)
    worse = build_report("e", "shadow", "chat", recs + [Record("e", "b", 1_700_000_000, 5.0, False, "RateLimitError")
                                                         for _ in range(10)], seed=1)
    assert not worse.promote and "fails more" in worse.verdict
    few = build_report("e", "split", "chat", recs[:10] + recs[100:110])
    assert not few.promote and few.verdict.startswith("not enough data yet (A 10, B 10")
    figs = rep.plot()
    assert len(figs) == 3 and "<img src=\"data:image/png;base64," in rep.html()


def test_promotion_makes_b_primary_and_keeps_the_old_path_as_backup(mock):
    raw = config(mock, "xp", split={"target": "cheap", "share": 0.2})
    new = promoted(raw, "chat-split")
    assert [d["name"] for d in new["routes"]["chat"]["deployments"]] == ["cheap", "current"]
    assert new["routes"]["chat"]["strategy"] == "failover" and "split" not in new["routes"]["chat"]
    shadow = config(mock, "xp", shadow={"target": "cand", "name": "trial"})
    moved = promoted(shadow, "trial")
    assert [d["name"] for d in moved["routes"]["chat"]["deployments"]] == ["candidate", "current"]
    diff = promote_diff(raw, "chat-split", "hyperion.yaml")
    assert diff.startswith("--- a/hyperion.yaml") and "-    split:" in diff
    with pytest.raises(InvalidRequestError, match="experiment 'nope'"):
        promoted(raw, "nope")


@pytest.mark.redis
async def test_records_and_the_kill_switch_are_shared_through_redis_and_the_cli_reads_them(mock, redis_url, tmp_path):
    cfg = config(mock, "xd", split={"target": "cheap", "share": 0.5, "sticky": "request"})
    cfg["state"] = {"backend": "redis", "redis_url": redis_url, "prefix": f"x{uuid.uuid4().hex[:8]}"}
    gw1, gw2 = Gateway(cfg), Gateway(cfg)
    for i in range(40):
        await (gw1 if i % 2 else gw2).acomplete("chat", user("x"), max_tokens=8)
    await gw1.experiments.flush()
    await gw2.experiments.flush()
    rep = await Gateway(cfg).experiments.report("chat-split")
    assert rep.a.n + rep.b.n == 40 and rep.a.n and rep.b.n
    path = tmp_path / "hyperion.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "hyperion_core.cli", "experiments", "report", "chat-split",
                          "--config", str(path), "--html", str(tmp_path / "r.html")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"| requests | {rep.a.n} | {rep.b.n} |" in out.stdout and "verdict: " in out.stdout
    assert (tmp_path / "r.html").read_text().count("<img") == 3
    promote = subprocess.run([sys.executable, "-m", "hyperion_core.cli", "experiments", "promote", "chat-split",
                              "--config", str(path), "--force", "--write"], capture_output=True, text=True, timeout=120)
    assert promote.returncode == 0, promote.stderr
    lines = promote.stdout.splitlines()
    assert lines[0].startswith("verdict: ") and "-    split:" in lines and "+    strategy: failover" in lines
    written = yaml.safe_load(path.read_text())["routes"]["chat"]
    assert [d["name"] for d in written["deployments"]] == ["cheap", "current"] and "split" not in written
    await gw1.experiments.stop("chat-split")  # the switch reaches the other gateway at its next refresh
    assert not gw2.experiments.stopped("chat-split")
    await gw2.experiments.refresh()
    assert gw2.experiments.stopped("chat-split")
    r = await gw2.acomplete("chat", user("x"), max_tokens=8)
    assert r.deployment == "current"
    await gw1.aclose()
    await gw2.aclose()


async def test_a_judge_route_and_the_cache_embedder_score_shadow_pairs(mock):
    """``shadow.judge``: a model behind the gateway scores each pair (its reply parsed for a number in
    [0, 1], billed to the shadow's subject); with a cache embedder, the answers' cosine similarity is
    recorded too; the verdict uses the strongest measure there is (judge, then similarity, then words)."""
    cfg = config(mock, "xj", shadow={"target": "cand", "sample": 1.0, "judge": "judge"})
    cfg["providers"]["j"] = {"kind": "openai", "api_key": "sk-t", "base_url": mock.base_url("xj-j", "openai")}
    cfg["routes"]["judge"] = {"deployments": [{"model": "j/gpt-4o-mini"}], "retry": {"attempts": 0}}
    # an embedding route as the cache's embedder (a semantic cache on some route makes the gateway build it)
    cfg["routes"]["emb"] = {"kind": "embedding", "deployments": [{"model": "j/text-embedding-3-small"}]}
    cfg["routes"]["faq"] = {"deployments": [{"model": "j/gpt-4o-mini"}], "cache": {"semantic": {"enabled": True}}}
    cfg["cache"] = {"embedder": "route:emb"}
    mock.script("Two assistants answered", content="0.35", deployment="xj-j")
    gw = Gateway(cfg)
    for i in range(30):  # the verdict needs 30 pairs
        await gw.acomplete("chat", user(f"compare {i}"), max_tokens=8)
    await gw.experiments.flush()
    b = [r for r in await gw.experiments.records("chat-shadow") if r.variant == "b"]
    assert [r.judge for r in b] == [0.35] * 30
    assert all(r.exact for r in b)  # the mock answers the same prompt alike on both sides ...
    assert all(r.similarity == pytest.approx(1.0) for r in b)  # ... so their embeddings coincide
    rep = await gw.experiments.report("chat-shadow")
    assert rep.b.judge_mean == pytest.approx(0.35) and "judge score 0.35" in rep.verdict
    assert not rep.promote and "answers differ" in rep.verdict  # 0.35 < 0.8, whatever the words say
    assert "| judge score (mean) | - | 0.35 |" in rep.table()
    with pytest.raises(Exception, match="shadow.judge: unknown route 'nobody'"):
        Gateway(config(mock, "xj", shadow={"target": "cand", "judge": "nobody"}))
    await gw.aclose()
