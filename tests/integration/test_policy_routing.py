"""Policy and quality routing (issue 15) against the mock provider over HTTP: each request feature
picks its rule, rules are ordered, the rest of the route backs a rule up, quality picks the cheapest
deployment within the margin (scores from config, set at run time, shared through Redis), and every
decision is explained on the response and the audit event."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from hyperion_core import AllDeploymentsFailedError, Gateway
from hyperion_core.config import GatewayConfig
from hyperion_core.errors import ConfigError, InvalidRequestError, RouteNotFoundError
from hyperion_core.routing import ManualClock
from hyperion_core.types import Caller

SCHEMA = {"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}}}
TOOL = {"type": "function", "function": {"name": "lookup", "description": "look up a city",
                                         "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}
IMAGE = [{"type": "text", "text": "what is in this picture?"},
         {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]


def user(text) -> list[dict]:
    return [{"role": "user", "content": text}]


def dep(mock, name: str, price: float = 1.0, **kw) -> dict:
    return {"model": f"{name}/gpt-4o-mini", "name": name,
            "pricing": {"input_per_mtok": price, "output_per_mtok": price}, **kw}


def providers(mock, *names: str) -> dict:
    return {n: {"kind": "openai", "api_key": "k", "base_url": mock.base_url(f"pol-{n}", "openai")} for n in names}


POLICY = [
    {"name": "long_context", "when": {"prompt_tokens_gte": 1000}, "use": ["long"]},
    {"name": "tools", "when": {"has_tools": True}, "use": ["tools"]},
    {"name": "vision", "when": {"has_images": True}, "use": ["vision"]},
    {"name": "structured", "when": {"response_format": "json_schema"}, "use": ["json"]},
    {"name": "gold", "when": {"tags_any": ["tier:gold", "tier:platinum"]}, "use": ["premium"]},
    {"name": "acme", "when": {"metadata": {"tenant": "acme", "tier": 2}}, "use": ["premium"]},
    {"name": "default", "use": ["cheap"]},
]
NAMES = ("cheap", "long", "tools", "vision", "json", "premium")


def policy_gateway(mock, tmp_path, *, rules=None, clock=None, names=NAMES, **route) -> Gateway:
    cfg = {
        "providers": providers(mock, *names),
        "routes": {"chat": {"strategy": "policy", "policy": rules or POLICY, "retry": {"attempts": 0},
                            "deployments": [dep(mock, n) for n in names], **route}},
        "audit": {"sink": f"sqlite:///{tmp_path}/audit-{uuid.uuid4().hex[:6]}.db"},
    }
    return Gateway(cfg, clock=clock)


async def test_each_request_feature_picks_its_rule_and_the_reason_names_the_values(mock, tmp_path):
    gw = policy_gateway(mock, tmp_path)
    cases = [
        (dict(messages=user("hi")), "cheap", "default", "rule default: default -> cheap (failover)"),
        (dict(messages=user("word " * 1200)), "long", "long_context", "rule long_context: prompt_tokens 1512 >= 1000"),
        (dict(messages=user("find Paris"), tools=[TOOL]), "tools", "tools", "rule tools: has_tools true -> tools"),
        (dict(messages=user(IMAGE)), "vision", "vision", "rule vision: has_images true -> vision"),
        (dict(messages=user("a city"), response_format=SCHEMA), "json", "structured",
         "rule structured: response_format json_schema -> json"),
        (dict(messages=user("hi"), caller=Caller(tags=("team:x", "tier:platinum"))), "premium", "gold",
         "rule gold: tag tier:platinum -> premium"),
        (dict(messages=user("hi"), metadata={"tenant": "acme", "tier": 2}), "premium", "acme",
         "rule acme: metadata tenant=acme, metadata tier=2 -> premium"),
        # a near miss on one metadata value: the rule needs all of them
        (dict(messages=user("hi"), metadata={"tenant": "acme", "tier": 3}), "cheap", "default", "rule default"),
        (dict(messages=user("hi"), response_format={"type": "json_object"}), "cheap", "default", "rule default"),
    ]
    for params, deployment, rule, reason in cases:
        msgs = params.pop("messages")
        if "tools" in params:
            mock.script("find Paris", content="Paris it is")
        resp = await gw.acomplete("chat", msgs, **params)
        assert (resp.deployment, resp.decision.rule, resp.decision.strategy) == (deployment, rule, "policy"), params
        assert resp.decision.reason.startswith(reason), resp.decision.reason
        assert [a.deployment for a in resp.attempts] == [deployment]
    events = list(reversed(await gw.audit.query(limit=20)))
    assert [e.metadata["route_rule"] for e in events] == [c[2] for c in cases]
    assert events[1].metadata["route_reason"].startswith("rule long_context: prompt_tokens 1512 >= 1000 -> long")
    await gw.aclose()


async def test_rules_are_tried_in_order_and_the_first_match_wins(mock, tmp_path):
    gw = policy_gateway(mock, tmp_path)
    both = await gw.acomplete("chat", user("word " * 1200), tools=[TOOL])  # long and with tools: long comes first
    assert (both.deployment, both.decision.rule) == ("long", "long_context")
    swapped = [POLICY[1], POLICY[0], *POLICY[2:]]
    gw2 = policy_gateway(mock, tmp_path, rules=swapped)
    again = await gw2.acomplete("chat", user("word " * 1200), tools=[TOOL])
    assert (again.deployment, again.decision.rule) == ("tools", "tools")
    stream = gw2.astream("chat", user("word " * 1200))  # streams go through the same planner
    async for _ in stream:
        pass
    assert stream.response.deployment == "long" and stream.response.decision.rule == "long_context"
    await gw.aclose()
    await gw2.aclose()


async def test_no_rule_and_no_default_means_failover_over_every_deployment(mock, tmp_path):
    gw = policy_gateway(mock, tmp_path, rules=POLICY[:2])
    resp = await gw.acomplete("chat", user("hi"))
    assert resp.deployment == "cheap" and resp.decision.rule is None
    assert resp.decision.reason == "no rule matched: every deployment in failover order"
    await gw.aclose()


async def test_a_failing_rule_set_falls_back_to_the_rest_unless_fallback_none(mock, tmp_path):
    names = ("a", "b", "c", "d")
    rules = [{"name": "pair", "when": {"tags_any": ["pair"]}, "use": ["c", "b"]},
             {"name": "alone", "when": {"tags_any": ["alone"]}, "use": ["c"], "fallback": "none"}]
    gw = policy_gateway(mock, tmp_path, rules=rules, names=names)
    mock.fault("pol-c", status=500)
    resp = await gw.acomplete("chat", user("hi"), caller=Caller(tags=("pair",)))
    assert resp.deployment == "b" and [a.deployment for a in resp.attempts] == ["c", "b"]
    mock.fault("pol-b", status=503)
    resp = await gw.acomplete("chat", user("hi"), caller=Caller(tags=("pair",)))
    # the rule's set failed: the route's other deployments follow in failover order
    assert resp.deployment == "a" and [a.deployment for a in resp.attempts] == ["c", "b", "a"]
    with pytest.raises(AllDeploymentsFailedError) as ei:
        await gw.acomplete("chat", user("hi"), caller=Caller(tags=("alone",)))
    assert [a.deployment for a in ei.value.attempts] == ["c"]
    await gw.aclose()


async def test_then_orders_the_rule_set_with_a_strategy(mock, tmp_path):
    names = ("pricey", "mid", "bargain")
    cfg = {
        "providers": providers(mock, *names),
        "routes": {"chat": {"strategy": "policy", "retry": {"attempts": 0},
                            "policy": [{"name": "cheap_first", "use": ["pricey", "bargain"], "then": "lowest_cost"}],
                            "deployments": [dep(mock, "pricey", 9.0), dep(mock, "mid", 3.0), dep(mock, "bargain", 0.2)]}},
    }
    gw = Gateway(cfg)
    resp = await gw.acomplete("chat", user("hi"))
    assert resp.deployment == "bargain" and resp.decision.reason == "rule cheap_first: default -> bargain (lowest_cost)"
    mock.fault("pol-bargain", status=500)
    resp = await gw.acomplete("chat", user("hi"))
    assert [a.deployment for a in resp.attempts] == ["bargain", "pricey"]  # the set, then the rest ('mid')
    await gw.aclose()


async def test_hours_follow_the_gateway_clock_in_the_rule_time_zone(mock, tmp_path):
    start = datetime(2027, 3, 10, 7, 30, tzinfo=timezone.utc).timestamp()  # 08:30 in Paris (CET)
    clock = ManualClock(wall=start)
    rules = [{"name": "office", "when": {"hours": "09:00-18:00", "tz": "Europe/Paris"}, "use": ["premium"]},
             {"name": "night", "when": {"hours": "22:00-06:00"}, "use": ["long"]},
             {"name": "default", "use": ["cheap"]}]
    gw = policy_gateway(mock, tmp_path, rules=rules, clock=clock)
    picks = []
    for hours in (0, 0.5, 9, 14.5, 8, 1):  # 07:30Z, 08:00Z (09:00 Paris), 17:00Z, 07:30Z+1d, 15:30Z, 16:30Z
        clock.advance(hours * 3600)
        resp = await gw.acomplete("chat", user("hi"))
        picks.append((resp.deployment, resp.decision.reason.split(" -> ")[0]))
    assert picks == [
        ("cheap", "rule default: default"),
        ("premium", "rule office: time 09:00 Europe/Paris in 09:00-18:00"),
        ("cheap", "rule default: default"),  # 17:00Z = 18:00 Paris: the end is excluded
        ("cheap", "rule default: default"),  # 07:30Z: neither the office (08:30 Paris) nor the night
        ("premium", "rule office: time 16:30 Europe/Paris in 09:00-18:00"),
        ("premium", "rule office: time 17:30 Europe/Paris in 09:00-18:00"),
    ]
    clock.advance(6 * 3600)  # 22:30Z
    resp = await gw.acomplete("chat", user("hi"))
    assert (resp.deployment, resp.decision.reason) == ("long", "rule night: time 22:30 UTC in 22:00-06:00 -> long (failover)")
    await gw.aclose()


async def test_a_team_over_80_percent_of_its_budget_gets_the_cheaper_model(mock, tmp_path):
    clock = ManualClock()
    names = ("premium", "cheap", "bulk")
    cfg = {
        "providers": providers(mock, *names),
        "routes": {
            "chat": {"strategy": "policy", "retry": {"attempts": 0},
                     "policy": [{"name": "thrifty", "when": {"team_budget_used_gte": 0.8}, "use": ["cheap"]},
                                {"name": "default", "use": ["premium"]}],
                     "deployments": [dep(mock, "premium", 2.0), dep(mock, "cheap", 0.1)]},
            "bulk": {"deployments": [dep(mock, "bulk", 4000.0)], "retry": {"attempts": 0}},
        },
        "keys": {"store": "memory"},
        "governance": {"budgets": [{"scope": "team", "period": "total", "limit_usd": 1.0}]},
        "audit": {"sink": f"sqlite:///{tmp_path}/audit-budget.db"},
    }
    gw = Gateway(cfg, clock=clock)
    key, _ = await gw.keys.create("spender", team="ml")
    other, _ = await gw.keys.create("saver", team="ops")
    first = await gw.acomplete("chat", user("hi"), virtual_key=key, max_tokens=5)
    assert (first.deployment, first.decision.rule) == ("premium", "default")

    async def used(team: str) -> float:
        (status,) = [s for s in await gw.governance.status({"team": team}) if s.scope == "team"]
        return status.spent_usd / status.limit_usd

    for _ in range(40):  # real spend, recorded by the ledger, until the team is past 80%
        if await used("ml") >= 0.8:
            break
        await gw.acomplete("bulk", user("spend some budget"), virtual_key=key, max_tokens=5)
    share = await used("ml")
    assert 0.8 <= share < 1.0
    cached = await gw.acomplete("chat", user("hi"), virtual_key=key, max_tokens=5)
    assert cached.deployment == "premium"  # the utilisation read a moment ago is reused for a few seconds
    clock.advance(6)
    late = await gw.acomplete("chat", user("hi"), virtual_key=key, max_tokens=5)
    assert (late.deployment, late.decision.rule) == ("cheap", "thrifty")
    assert late.decision.reason == f"rule thrifty: team budget used {share:.0%} >= 80% -> cheap (failover)"
    fresh = await gw.acomplete("chat", user("hi"), virtual_key=other, max_tokens=5)
    assert fresh.deployment == "premium"  # another team, nothing spent
    event = (await gw.audit.query(limit=1))[0]
    assert event.team == "ops" and event.metadata["route_rule"] == "default"
    await gw.aclose()


# -- quality ---------------------------------------------------------------------------------------

QUALITY_DEPS = [("big", 10.0, {"default": 0.90, "code": 0.95}),
                ("mid", 3.0, {"default": 0.87, "code": 0.80}),
                ("small", 0.5, {"default": 0.70})]


def quality_cfg(mock, *, margin: float = 0.05, state: dict | None = None, audit: str | None = None) -> dict:
    cfg = {
        "providers": providers(mock, "big", "mid", "small"),
        "routes": {"chat": {"strategy": "quality", "quality_margin": margin, "retry": {"attempts": 0},
                            "deployments": [dep(mock, n, p, quality=q) for n, p, q in QUALITY_DEPS]}},
    }
    if state is not None:
        cfg["state"] = state
    if audit is not None:
        cfg["audit"] = {"sink": f"sqlite:///{audit}"}
    return cfg


async def test_quality_picks_the_cheapest_within_the_margin_of_the_best(mock, tmp_path):
    gw = Gateway(quality_cfg(mock, audit=f"{tmp_path}/audit-q.db"))
    resp = await gw.acomplete("chat", user("hi"))
    assert resp.deployment == "mid" and resp.decision.strategy == "quality"
    assert (await gw.audit.query(limit=1))[0].metadata["route_reason"] == resp.decision.reason
    assert resp.decision.scores == {"big": 0.90, "mid": 0.87, "small": 0.70}
    assert resp.decision.reason == "task default: mid scores 0.87, within 0.05 of the best 0.9, cheapest at $6/Mtok"
    code = await gw.acomplete("chat", user("hi"), metadata={"task": "code"})
    assert code.deployment == "big" and code.decision.scores == {"big": 0.95, "mid": 0.80, "small": 0.70}
    tagged = await gw.acomplete("chat", user("hi"), caller=Caller(tags=("task:code",)))
    assert tagged.deployment == "big" and tagged.decision.reason.startswith("task code: big scores 0.95")
    mock.fault("pol-mid", status=500)
    backup = await gw.acomplete("chat", user("hi"))
    assert [a.deployment for a in backup.attempts] == ["mid", "big"]  # then the others in failover order
    await gw.aclose()
    strict = Gateway(quality_cfg(mock, margin=0))
    assert (await strict.acomplete("chat", user("hi"))).deployment == "big"
    await strict.aclose()


async def test_a_runtime_score_overrides_config_and_flips_the_pick(mock, tmp_path):
    gw = Gateway(quality_cfg(mock))
    assert (await gw.acomplete("chat", user("hi"))).deployment == "mid"
    await gw.aset_quality("chat", "small", "default", 0.88)
    resp = await gw.acomplete("chat", user("hi"))
    assert resp.deployment == "small" and resp.decision.scores["small"] == 0.88
    assert await gw.aquality("chat") == {"big": 0.90, "mid": 0.87, "small": 0.88}
    assert (await gw.aquality("chat", "code"))["small"] == 0.88  # no code score of its own: its default
    await gw.aset_quality("chat", "small", "default", None)  # removed: the config's score again
    assert (await gw.acomplete("chat", user("hi"))).deployment == "mid"
    with pytest.raises(RouteNotFoundError, match="route 'chat' has no deployment 'smal' \\(did you mean 'small'\\?\\)"):
        await gw.aset_quality("chat", "smal", "default", 0.5)
    with pytest.raises(InvalidRequestError, match="score: must be a number from 0 to 1"):
        await gw.aset_quality("chat", "small", "default", 1.5)
    with pytest.raises(RouteNotFoundError, match="unknown route 'chta'"):
        await gw.aset_quality("chta", "small", "default", 0.5)
    await gw.aclose()


def test_set_quality_has_a_sync_twin(mock):
    with Gateway(quality_cfg(mock)) as gw:
        gw.set_quality("chat", "small", "default", 0.9)
        assert gw.quality("chat")["small"] == 0.9
        assert gw.complete("chat", user("hi")).deployment == "small"


async def test_runtime_scores_are_shared_through_redis(mock, tmp_path, redis_url):
    state = {"backend": "redis", "redis_url": redis_url, "prefix": f"pol{uuid.uuid4().hex[:8]}"}
    clock = ManualClock()
    writer = Gateway(quality_cfg(mock, state=state))
    reader = Gateway(quality_cfg(mock, state=state), clock=clock)
    assert (await reader.acomplete("chat", user("hi"))).deployment == "mid"
    await writer.aset_quality("chat", "small", "default", 0.89)
    assert (await writer.acomplete("chat", user("hi"))).deployment == "small"  # its own write at once
    assert (await reader.acomplete("chat", user("hi"))).deployment == "mid"  # its copy is a moment old
    clock.advance(3)
    resp = await reader.acomplete("chat", user("hi"))
    assert resp.deployment == "small" and resp.decision.scores["small"] == 0.89
    third = Gateway(quality_cfg(mock, state=state))  # a new process reads the shared scores
    assert (await third.aquality("chat"))["small"] == 0.89
    for gw in (writer, reader, third):
        await gw.aclose()


async def test_a_policy_rule_can_pick_by_quality(mock, tmp_path):
    cfg = quality_cfg(mock)
    route = cfg["routes"]["chat"]
    route["strategy"] = "policy"
    route["policy"] = [{"name": "high", "when": {"tags_any": ["quality:high"]}, "use": ["big", "mid", "small"],
                        "then": "quality"},
                       {"name": "default", "use": ["small"]}]
    route["quality_margin"] = 0
    gw = Gateway(cfg)
    high = await gw.acomplete("chat", user("hi"), caller=Caller(tags=("quality:high",)))
    assert (high.deployment, high.decision.rule) == ("big", "high")
    assert high.decision.scores == {"big": 0.90, "mid": 0.87, "small": 0.70}
    assert high.decision.reason.startswith("rule high: tag quality:high -> big (task default: big scores 0.9")
    assert (await gw.acomplete("chat", user("hi"))).deployment == "small"
    high.decision.scores["big"] = 0.0  # a caller's change to one response's scores touches no other
    await gw.aset_quality("chat", "mid", "default", 0.93)  # the rule's ranking is not reused once scores change
    again = await gw.acomplete("chat", user("hi"), caller=Caller(tags=("quality:high",)))
    assert again.deployment == "mid" and again.decision.scores == {"big": 0.90, "mid": 0.93, "small": 0.70}
    await gw.aclose()


# -- config errors ---------------------------------------------------------------------------------


def problems(mock, rules=None, **route) -> list[str]:
    cfg = {"providers": providers(mock, "long", "cheap"),
           "routes": {"chat": {"strategy": "policy", "deployments": [dep(mock, "long"), dep(mock, "cheap")],
                               **({"policy": rules} if rules is not None else {}), **route}}}
    with pytest.raises(ConfigError) as ei:
        GatewayConfig.load(cfg)
    return ei.value.problems


def test_config_errors_name_the_place_and_the_problem(mock):
    assert problems(mock, [{"name": "x", "use": ["lng"]}]) == [
        "routes.chat.policy[0].use[0]: unknown deployment 'lng' (did you mean 'long'?)"]
    assert problems(mock, [{"name": "x", "when": {"prompt_token_gte": 5}, "use": ["long"]}]) == [
        "routes.chat.policy[0].when: unknown feature 'prompt_token_gte' (did you mean 'prompt_tokens_gte'?)"]
    assert problems(mock, [{"name": "x", "when": {"prompt_tokens_gte": 8000, "prompt_tokens_lt": 100}, "use": ["long"]},
                           {"name": "d", "use": ["cheap"]}]) == [
        "routes.chat.policy[0].when.prompt_tokens_lt: 100 is not above prompt_tokens_gte 8000: no prompt could match"]
    assert problems(mock, [{"name": "d", "use": ["cheap"]}, {"name": "x", "when": {"has_tools": True}, "use": ["long"]}]) == [
        "routes.chat.policy[0].when: only the last rule may omit 'when' (the default rule); rules after it could never match"]
    assert problems(mock, [{"name": "x", "when": {"hours": "9-17"}, "use": ["long"]}]) == [
        "routes.chat.policy[0].when.hours: expected 'HH:MM-HH:MM' in 24-hour time (e.g. '09:00-17:30'), got '9-17'"]
    assert problems(mock, [{"name": "x", "when": {"hours": "09:00-17:00", "tz": "Mars/Olympus"}, "use": ["long"]}]) == [
        "routes.chat.policy[0].when.tz: unknown time zone 'Mars/Olympus' (an IANA name such as 'Europe/Berlin')"]
    assert problems(mock, [{"name": "x", "when": {"team_budget_used_gte": 1.5}, "use": ["long"]}]) == [
        "routes.chat.policy[0].when.team_budget_used_gte: Input should be less than or equal to 1"]
    assert problems(mock, [{"name": "x", "use": ["long"], "then": "cheapest"}])[0].startswith(
        "routes.chat.policy[0].then: Input should be 'failover', 'weighted', 'lowest_latency', 'lowest_cost' or 'quality'")
    assert problems(mock, [{"name": "x", "use": ["long"], "usee": 1}]) == [
        "routes.chat.policy[0]: unknown key 'usee' (did you mean 'use'?)"]
    assert problems(mock, [{"name": "x", "when": {"tags_any": ["a"]}, "use": ["long"]},
                           {"name": "x", "use": ["cheap", "cheap"]}]) == [
        "routes.chat.policy[1].name: duplicate rule 'x'", "routes.chat.policy[1].use: a deployment is listed twice"]
    assert problems(mock) == ["routes.chat.policy: strategy 'policy' needs rules (a list of name / when / use)"]
    assert problems(mock, [{"name": "d", "use": ["cheap"]}], strategy="failover") == [
        "routes.chat.policy: rules only apply with strategy 'policy' (the route's is 'failover')"]
    cfg = {"providers": providers(mock, "long"), "routes": {"chat": {"strategy": "quality", "deployments": [
        dep(mock, "long", quality={"code": 1.2})]}}}
    with pytest.raises(ConfigError, match=r"routes\.chat\.deployments\[0\]\.quality\.code: Input should be less than or equal to 1"):
        GatewayConfig.load(cfg)
