"""Cache keys: every output-changing field misses, formatting differences hit, scopes never mix."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from hyperion_core.cache.keys import (
    canonical_form,
    exact_key,
    scope_hash,
    scope_of,
    semantic_partition_key,
    semantic_text,
)
from hyperion_core.types import CacheControl, Caller, ChatRequest

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def base() -> ChatRequest:
    return ChatRequest(
        route="chat",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
                    {"id": "call_def", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_abc", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_def", "content": "21C"},
            {"role": "user", "content": "And tomorrow?"},
        ],
        temperature=0.2,
        top_p=0.9,
        max_tokens=100,
        stop=["END"],
        seed=7,
        n=1,
        tools=copy.deepcopy(TOOLS),
        tool_choice="auto",
        response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
        extra={"logprobs": False, "user": "u1"},
        caller=Caller(key_id="k1", team="t1"),
    )


def key(req: ChatRequest, scope: str = "key") -> str:
    return exact_key(req, scope_of(req.caller, scope))  # type: ignore[arg-type]


def _msg(req: ChatRequest, i: int) -> dict:
    return req.messages[i]


# each mutation changes what the model sees (or who may see the answer): the key must change
def _set(field: str, value):
    def f(r: ChatRequest) -> None:
        setattr(r, field, value)

    return f


MISSES = {
    "route": _set("route", "chat-big"),
    "user text": lambda r: _msg(r, 5).update(content="And the day after?"),
    "system prompt": lambda r: _msg(r, 0).update(content="You are verbose."),
    "role": lambda r: _msg(r, 0).update(role="developer"),
    "name": lambda r: _msg(r, 1).update(name="alice"),
    "tool call arguments": lambda r: _msg(r, 2)["tool_calls"][0]["function"].update(arguments='{"city": "Nice"}'),
    "tool call name": lambda r: _msg(r, 2)["tool_calls"][0]["function"].update(name="get_forecast"),
    "tool result": lambda r: _msg(r, 3).update(content="19C"),
    "tool result linkage": lambda r: (_msg(r, 3).update(tool_call_id="call_def"), _msg(r, 4).update(tool_call_id="call_abc")),
    "image part": lambda r: _msg(r, 5).update(
        content=[{"type": "text", "text": "And tomorrow?"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    ),
    "temperature": _set("temperature", 0.3),
    "temperature unset": _set("temperature", None),
    "top_p": _set("top_p", 1.0),
    "max_tokens": _set("max_tokens", 101),
    "stop": _set("stop", ["STOP"]),
    "seed": _set("seed", 8),
    "n": _set("n", 2),
    "tools": lambda r: r.tools[0]["function"]["parameters"]["properties"].update(unit={"type": "string"}),
    "no tools": _set("tools", None),
    "tool_choice": _set("tool_choice", "required"),
    "response_format": _set("response_format", {"type": "json_object"}),
    "extra": lambda r: r.extra.update(logprobs=True),
    "namespace": _set("cache", CacheControl(namespace="ns1")),
    "other key": _set("caller", Caller(key_id="k2", team="t1")),
    "no caller": _set("caller", None),
}


@pytest.mark.parametrize("name", sorted(MISSES))
def test_every_output_changing_field_misses(name):
    a, b = base(), base()
    MISSES[name](b)
    assert key(a) != key(b), name


# formatting-only differences: the key must not change
HITS = {
    "argument whitespace": lambda r: _msg(r, 2)["tool_calls"][0]["function"].update(arguments='{"city":"Paris"}'),
    "argument key order + spaces": lambda r: _msg(r, 2)["tool_calls"][1]["function"].update(arguments='{ "city" :\n "Lyon" }'),
    "arguments as object": lambda r: _msg(r, 2)["tool_calls"][0]["function"].update(arguments={"city": "Paris"}),
    "tool schema key order": lambda r: setattr(r, "tools", [{
        "function": {
            "parameters": {"required": ["city"], "properties": {"city": {"type": "string"}}, "type": "object"},
            "description": "Weather for a city", "name": "get_weather",
        },
        "type": "function",
    }]),
    "response_format key order": lambda r: setattr(
        r, "response_format", {"json_schema": {"schema": {"type": "object"}, "name": "w"}, "type": "json_schema"}
    ),
    "extra key order": lambda r: setattr(r, "extra", {"user": "u1", "logprobs": False}),
    "text parts": lambda r: _msg(r, 5).update(content=[{"type": "text", "text": "And tomorrow?"}]),
    "absent vs None name": lambda r: _msg(r, 1).update(name=None),
    "int vs float temperature": lambda r: (setattr(r, "temperature", 1), setattr(r, "top_p", 1)),
    "stop string vs list": lambda r: setattr(r, "stop", "END"),
    "random tool-call ids": lambda r: (
        _msg(r, 2)["tool_calls"][0].update(id="toolu_01"),
        _msg(r, 2)["tool_calls"][1].update(id="toolu_02"),
        _msg(r, 3).update(tool_call_id="toolu_01"),
        _msg(r, 4).update(tool_call_id="toolu_02"),
    ),
    "no_store control": lambda r: setattr(r, "cache", CacheControl(no_store=True, ttl=5)),
    "request id and metadata": lambda r: (setattr(r, "request_id", "req-other"), r.metadata.update(trace="x")),
    "caller user and tags": lambda r: setattr(r, "caller", Caller(key_id="k1", team="t1", user="bob", tags=("a",))),
}


@pytest.mark.parametrize("name", sorted(HITS))
def test_formatting_differences_hit(name):
    a, b = base(), base()
    if name == "int vs float temperature":
        a.temperature, a.top_p = 1.0, 1.0
    HITS[name](b)
    assert key(a) == key(b), name


def test_key_shape_and_determinism():
    k = key(base())
    assert len(k) == 32 and int(k, 16) >= 0
    assert k == key(base())


def test_scopes():
    c = Caller(key_id="k1", team="t1", virtual_key="sk-secret-value")
    assert scope_of(c, "key") == "key:k1"
    assert scope_of(c, "team") == "team:t1"
    assert scope_of(c, "shared") == "shared"
    assert scope_of(Caller(key_id="k1"), "team") == "key:k1"  # no team: the strictest scope left
    assert scope_of(None, "key") == scope_of(None, "shared") == "anonymous"
    vk = scope_of(Caller(virtual_key="sk-secret-value"), "key")
    assert vk.startswith("vk:") and "secret" not in vk
    assert scope_of(Caller(user="bob"), "key") == "user:bob"
    assert scope_of(Caller(), "key") == "anonymous"
    assert scope_hash("key:k1") != scope_hash("key:k2") and len(scope_hash("key:k1")) == 16


def test_team_and_shared_scope_keys():
    a, b = base(), base()
    b.caller = Caller(key_id="k2", team="t1")
    assert key(a, "team") == key(b, "team")
    assert key(a, "shared") == key(b, "shared")
    b.caller = Caller(key_id="k2", team="t2")
    assert key(a, "team") != key(b, "team")


def test_secrets_are_not_in_the_canonical_form():
    r = base()
    r.caller = Caller(virtual_key="sk-live-123456")
    assert b"sk-live-123456" not in canonical_form(r, scope_of(r.caller, "key"))


def test_semantic_partition_ignores_only_the_last_user_text():
    a = base()
    sa = scope_of(a.caller, "key")
    b = base()
    b.messages[-1] = {"role": "user", "content": "What about the day after tomorrow?"}
    assert semantic_partition_key(a, sa) == semantic_partition_key(b, sa)
    assert semantic_text(b) == "What about the day after tomorrow?"
    for mutate in (MISSES["system prompt"], MISSES["temperature"], MISSES["tools"], MISSES["tool result"],
                   MISSES["namespace"], MISSES["route"]):
        c = base()
        mutate(c)
        assert semantic_partition_key(c, sa) != semantic_partition_key(a, sa)
    assert semantic_partition_key(a, "key:k2") != semantic_partition_key(a, sa)
    # the partition is not the exact key
    assert semantic_partition_key(a, sa) != exact_key(a, sa)


def test_semantic_text():
    r = ChatRequest("chat", [{"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "world"}]}])
    assert semantic_text(r) == "Hello world"
    assert semantic_text(replace(r, messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}])) is None
    assert semantic_text(replace(r, messages=[{"role": "user", "content": "   "}])) is None
    img = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:x"}}]
    assert semantic_text(replace(r, messages=[{"role": "user", "content": img}])) is None
    assert semantic_text(replace(r, messages=[])) is None


def test_route_fingerprint_names_what_serves_the_route():
    from hyperion_core.cache.keys import exact_key, route_fingerprint, semantic_partition_key

    a = {"kind": "openai", "model": "gpt-4o-mini", "base_url": "http://x/v1", "params": {}}
    b = {"kind": "anthropic", "model": "claude-haiku-4-5", "base_url": "http://y", "params": {"top_k": 5}}
    fp = route_fingerprint([a, b])
    assert fp == route_fingerprint([b, a])  # deployment order does not change what may answer
    assert len(fp) == 16
    for changed in ({**a, "model": "gpt-4o"}, {**a, "base_url": "http://z/v1"}, {**a, "params": {"temperature": 0}}):
        assert route_fingerprint([changed, b]) != fp
    assert route_fingerprint([a]) != fp  # a deployment removed
    from hyperion_core.types import ChatRequest

    r = ChatRequest("chat", [{"role": "user", "content": "hi"}])
    assert exact_key(r, "s", "chat#" + fp) != exact_key(r, "s", "chat#" + route_fingerprint([a]))
    assert exact_key(r, "s") == exact_key(r, "s", None)
    assert semantic_partition_key(r, "s", "chat#1") != semantic_partition_key(r, "s", "chat#2")
