"""The pure part of policy and quality routing: features, rule matching, quality pick (no sockets)."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from hyperion_core.config import BreakerConfig
from hyperion_core.policy.config import PolicyRule, PolicyWhen, parse_hours
from hyperion_core.policy.features import Features, first_match, match, needs_budget
from hyperion_core.policy.quality import pick, score_of, task_of
from hyperion_core.routing import CircuitBreaker, DeploymentState, arrange
from hyperion_core.types import Caller, ChatRequest

NOON = datetime(2027, 1, 15, 12, 0, tzinfo=timezone.utc).timestamp()


def req(text="hi", **kw) -> ChatRequest:
    return ChatRequest("chat", [{"role": "user", "content": text}], **kw)


def when(**kw) -> PolicyWhen:
    return PolicyWhen(**kw)


def test_prompt_token_bounds_are_half_open():
    f = Features(req("x" * 400), NOON)  # 400 // 4 + 4 + 8 = 112 estimated tokens
    assert match(when(prompt_tokens_gte=112), f) == ["prompt_tokens 112 >= 112"]
    assert match(when(prompt_tokens_gte=113), f) is None
    assert match(when(prompt_tokens_lt=112), f) is None
    assert match(when(prompt_tokens_gte=100, prompt_tokens_lt=113), f) == ["prompt_tokens 112 >= 100", "prompt_tokens 112 < 113"]


def test_tools_images_and_response_format():
    tools = Features(req(tools=[{"type": "function", "function": {"name": "f"}}]), NOON)
    assert match(when(has_tools=True), tools) == ["has_tools true"]
    assert match(when(has_tools=False), tools) is None
    assert match(when(has_tools=False), Features(req(), NOON)) == ["has_tools false"]
    img = ChatRequest("chat", [{"role": "user", "content": [{"type": "text", "text": "x"},
                                                           {"type": "image_url", "image_url": {"url": "u"}}]}])
    assert match(when(has_images=True), Features(img, NOON)) == ["has_images true"]
    assert match(when(has_images=True), Features(req(), NOON)) is None
    schema = Features(req(response_format={"type": "json_schema", "json_schema": {}}), NOON)
    obj = Features(req(response_format={"type": "json_object"}), NOON)
    text = Features(req(response_format={"type": "text"}), NOON)
    assert match(when(response_format="json_schema"), schema) == ["response_format json_schema"]
    assert match(when(response_format="json_schema"), obj) is None
    assert [match(when(response_format="any"), f) is not None for f in (schema, obj, text)] == [True, True, False]


def test_tags_and_metadata_equality():
    f = Features(req(caller=Caller(tags=("a", "tier:gold"), metadata={"tier": "gold", "n": 1}),
                     metadata={"tenant": "acme", "tier": "free"}), NOON)
    assert match(when(tags_any=["x", "tier:gold"]), f) == ["tag tier:gold"]
    assert match(when(tags_any=["x"]), f) is None
    assert match(when(metadata={"tenant": "acme", "tier": "gold"}), f) == ["metadata tenant=acme", "metadata tier=gold"]
    assert match(when(metadata={"tier": "free"}), f) is None  # the caller's (its key's) metadata wins
    assert match(when(metadata={"n": True}), f) is None  # 1 is not true
    assert match(when(metadata={"missing": "x"}), f) is None


def test_hours_window_wraps_past_midnight_and_reads_the_zone():
    assert parse_hours("22:00-06:00") == (1320, 360) and parse_hours("18:00-24:00") == (1080, 1440)
    for bad in ("9-17", "25:00-26:00", "10:00-10:00", "10:00-24:30", "00:00-24:00"):
        with pytest.raises(ValueError):
            parse_hours(bad)
    at = lambda h, m=0: Features(req(), datetime(2027, 1, 15, h, m, tzinfo=timezone.utc).timestamp())  # noqa: E731
    night = when(hours="22:00-06:00")
    assert [match(night, at(h)) is not None for h in (21, 22, 23, 0, 5, 6)] == [False, True, True, True, True, False]
    assert match(when(hours="09:00-17:00", tz="Asia/Tokyo"), at(0, 30)) == ["time 09:30 Asia/Tokyo in 09:00-17:00"]
    assert match(when(hours="09:00-17:00", tz="Asia/Tokyo"), at(8)) is None  # 17:00 in Tokyo: end excluded


def test_budget_condition_needs_a_known_utilisation():
    w = when(team_budget_used_gte=0.8)
    assert match(w, Features(req(), NOON)) is None  # no team / no budget
    assert match(w, Features(req(), NOON, budget_used=0.79)) is None
    assert match(w, Features(req(), NOON, budget_used=0.85)) == ["team budget used 85% >= 80%"]


def test_first_match_is_in_order_and_the_default_matches_everything():
    rules = [PolicyRule(name="tools", when=when(has_tools=True), use=["a"]),
             PolicyRule(name="budget", when=when(team_budget_used_gte=0.5), use=["b"]),
             PolicyRule(name="default", use=["c"])]
    assert needs_budget(rules) and not needs_budget(rules[:1])
    assert first_match(rules, Features(req(), NOON)) == (rules[2], [])
    assert first_match(rules, Features(req(), NOON, budget_used=0.6))[0].name == "budget"
    assert first_match(rules[:1], Features(req(), NOON)) is None


def ds(name: str, price: float, weight: float = 1.0) -> DeploymentState:
    return DeploymentState(name, adapter=None, breaker=CircuitBreaker(BreakerConfig()), weight=weight,  # type: ignore[arg-type]
                           unit_price=price)


def test_quality_pick_cheapest_within_margin_then_failover_order():
    a, b, c = ds("a", 10), ds("b", 3), ds("c", 1)
    order, chosen, best = pick([a, b, c], {"a": 0.9, "b": 0.86, "c": 0.5}, 0.05)
    assert (chosen, best, order) == (b, 0.9, [b, a, c])
    assert pick([a, b, c], {"a": 0.9, "b": 0.86, "c": 0.5}, 0.0)[0] == [a, b, c]
    assert pick([a, b, c], {"a": 0.9, "b": 0.9}, 0.0)[1] is b  # a tie on score: the cheaper
    assert pick([a, b, c], {"c": 0.1}, 0.0)[0] == [c, a, b]  # unscored ones are never preferred
    assert pick([a, b, c], {}, 0.05) == ([a, b, c], None, None)
    assert pick([a, b, c], {"a": 0.9, "b": 0.85}, 0.05)[1] is b  # exactly at the margin counts


def test_scores_runtime_over_config_task_over_default():
    conf, runtime = {"default": 0.8, "code": 0.9}, {"default": 0.7}
    assert score_of(conf, runtime, "code") == 0.9
    assert score_of(conf, runtime, "chat") == 0.7
    assert score_of(conf, {"code": 0.5}, "code") == 0.5
    assert score_of(None, None, "code") is None


def test_task_from_metadata_then_tag_prefix():
    assert task_of(req(metadata={"task": "code"}), "task:") == "code"
    assert task_of(req(caller=Caller(tags=("x", "task:sql"))), "task:") == "sql"
    assert task_of(req(caller=Caller(metadata={"task": "chat"}, tags=("task:sql",))), "task:") == "chat"
    assert task_of(req(caller=Caller(tags=("task:",))), "task:") == "default"


def test_arrange_orders_a_subset_by_strategy():
    a, b, c = ds("a", 5, weight=0), ds("b", 1), ds("c", 3)
    rng = random.Random(1)
    assert arrange("lowest_cost", [a, b, c], rng) == [b, c, a]
    assert arrange("failover", [a, b, c], rng) == [a, b, c]
    assert arrange("policy", [c, a], rng) == [c, a]
    assert arrange("weighted", [a, b], rng)[0] is b  # weight 0: a backup only
