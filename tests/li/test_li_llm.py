"""HyperionLLM against the mock provider over real HTTP: the LlamaIndex LLM contract, tools, events."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import BaseModel
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool

from hyperion_core import (
    AllDeploymentsFailedError,
    BudgetExceededError,
    CacheControl,
    Gateway,
    HyperionError,
    InvalidRequestError,
    RouteNotFoundError,
)
from hyperion_core.mock_provider import answer_for
from hyperion_core.pricing import lookup
from hyperion_core.registry import registry as _SHARED
from hyperion_li import (
    HyperionBudgetEvent,
    HyperionCacheHitEvent,
    HyperionEmbedding,
    HyperionLLM,
    HyperionRoutingEvent,
    ToolCallMissingError,
)


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def magic_function(input: int) -> int:
    """Applies a magic function to an input."""
    return input + 2


MAGIC = FunctionTool.from_defaults(fn=magic_function)


def test_metadata_comes_from_the_route(li_config):
    setup = li_config()
    llm = HyperionLLM(model="chat", config=setup.config)
    mini, haiku = lookup("openai", "gpt-4o-mini"), lookup("anthropic", "claude-haiku-4-5")
    md = llm.metadata
    # the smallest window and output limit among the deployments: a prompt that fits fits them all
    assert md.context_window == min(mini.max_input_tokens, haiku.max_input_tokens) == 128000
    assert md.num_output == min(mini.max_output_tokens, haiku.max_output_tokens)
    assert md.is_chat_model and md.is_function_calling_model and md.model_name == "chat"
    assert HyperionLLM(model="chat", config=setup.config, max_tokens=300).metadata.num_output == 300

    cfg = setup.config
    cfg["routes"]["small"] = {"deployments": [
        {"model": "primary/gpt-4o-mini", "max_input_tokens": 4000, "name": "a"},
        {"model": "primary/some-local-model", "name": "b"},  # unknown to the model map: the OpenAI wire's defaults
    ]}
    md = HyperionLLM(model="small", config=cfg).metadata
    assert md.context_window == 4000 and md.is_function_calling_model is True
    with pytest.raises(InvalidRequestError, match="embedding route, not a chat route"):
        HyperionLLM(model="embeddings", config=cfg).metadata  # noqa: B018


async def test_every_door_answers_through_the_gateway(li_config, mock):
    setup = li_config()
    llm = HyperionLLM(model="chat", config=setup.config, temperature=0.1)
    q = user("What is a circuit breaker?")
    want = answer_for("What is a circuit breaker?")

    results = {
        "chat": llm.chat(q),
        "achat": await llm.achat(q),
        "complete": llm.complete("What is a circuit breaker?"),
        "acomplete": await llm.acomplete("What is a circuit breaker?"),
    }
    stream = list(llm.stream_chat(q))
    astream = [r async for r in await llm.astream_chat(q)]
    cstream = list(llm.stream_complete("What is a circuit breaker?"))
    acstream = [r async for r in await llm.astream_complete("What is a circuit breaker?")]

    for name, r in results.items():
        text = r.message.content if hasattr(r, "message") else r.text
        assert text == want, name
        assert r.raw["deployment"] == "primary" and r.raw["usage"]["prompt_tokens"] > 0, name
        assert r.additional_kwargs["cost"] > 0 and r.additional_kwargs["total_tokens"] > 0, name
    for name, chunks in {"stream_chat": stream, "astream_chat": astream, "stream_complete": cstream,
                         "astream_complete": acstream}.items():
        assert len(chunks) > 10, name  # one word a chunk, live
        assert "".join(c.delta for c in chunks) == want, name
        final = chunks[-1]
        assert final.delta == "" and final.raw["deployment"] == "primary" and final.raw["ttft_ms"] is not None, name
        assert (final.message.content if hasattr(final, "message") else final.text) == want, name
    assert mock.stats()[setup.deps["primary"]]["requests"] == 8


async def test_errors_are_hyperions_own(li_config, mock):
    setup = li_config()
    llm = HyperionLLM(model="chat", config=setup.config)
    mock.fault(setup.deps["primary"], kind="server_error")
    mock.fault(setup.deps["backup"], kind="overloaded")
    with pytest.raises(AllDeploymentsFailedError) as ei:
        await llm.achat(user("anyone there?"))
    assert [a.deployment for a in ei.value.attempts] == ["primary", "backup"]
    with pytest.raises(AllDeploymentsFailedError):
        list(llm.stream_chat(user("anyone there?")))
    with pytest.raises(RouteNotFoundError, match="did you mean 'chat'"):
        HyperionLLM(model="chta", config=setup.config).chat(user("hi"))
    with pytest.raises(InvalidRequestError, match="temperature"):
        HyperionLLM(model="chat", config=setup.config).chat(user("hi"), temperature=7)


async def test_tool_calling_contract(li_config, mock):
    llm = HyperionLLM(model="chat", config=li_config().config)
    mock.script("magic_function", tool_calls=[{"name": "magic_function", "arguments": {"input": 3}}])
    q = "What is the value of magic_function(3)? Use the tool."

    resp = llm.chat_with_tools([MAGIC], user_msg=q)
    (sel,) = llm.get_tool_calls_from_response(resp)
    assert sel.tool_name == "magic_function" and sel.tool_kwargs == {"input": 3} and sel.tool_id
    resp = await llm.achat_with_tools([MAGIC], user_msg=q)
    assert llm.get_tool_calls_from_response(resp)[0].tool_kwargs == {"input": 3}
    assert llm.predict_and_call([MAGIC], user_msg=q).response == "5"
    assert (await llm.apredict_and_call([MAGIC], user_msg=q)).response == "5"

    chunks = [r async for r in await llm.astream_chat_with_tools([MAGIC], user_msg=q)]
    assert llm.get_tool_calls_from_response(chunks[-1])[0].tool_kwargs == {"input": 3}

    history = [ChatMessage(role="system", content="be brief")]
    llm.chat_with_tools([MAGIC], user_msg=q, chat_history=history)
    assert len(history) == 1  # the caller's history is not appended to

    mock.clear_rules()
    plain = llm.chat_with_tools([MAGIC], user_msg="just say hello")
    assert llm.get_tool_calls_from_response(plain, error_on_no_tool_call=False) == []
    with pytest.raises(ToolCallMissingError) as ei:
        llm.get_tool_calls_from_response(plain)
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, HyperionError)

    two = [{"name": "magic_function", "arguments": {"input": 1}}, {"name": "magic_function", "arguments": {"input": 2}}]
    mock.script("twice", tool_calls=two)
    assert len(llm.get_tool_calls_from_response(llm.chat_with_tools([MAGIC], user_msg="twice"))) == 1
    both = llm.chat_with_tools([MAGIC], user_msg="twice", allow_parallel_tool_calls=True)
    assert [s.tool_kwargs["input"] for s in llm.get_tool_calls_from_response(both)] == [1, 2]


class Album(BaseModel):
    name: str
    year: int


async def test_structured_predict(li_config):
    llm = HyperionLLM(model="chat", config=li_config().config)
    prompt = PromptTemplate("Invent an album about {topic}.")
    album = llm.structured_predict(Album, prompt, topic="rain")
    assert isinstance(album, Album) and album.name
    assert isinstance(await llm.astructured_predict(Album, prompt, topic="snow"), Album)
    parts = list(llm.stream_structured_predict(Album, prompt, topic="wind"))
    assert parts and isinstance(parts[-1], Album)
    aparts = [p async for p in await llm.astream_structured_predict(Album, prompt, topic="fog")]
    assert aparts and isinstance(aparts[-1], Album)


async def test_typed_events_reach_the_users_handlers(li_config, mock, recorder):
    setup = li_config(governance={}, cache=True)
    llm = HyperionLLM(model="chat", config=setup.config)
    mock.fault(setup.deps["primary"], kind="server_error", times=1)
    first = await llm.achat(user("fail me over"))
    assert first.raw["failed_over"] and first.additional_kwargs["deployment"] == "backup"

    (routing,) = recorder.of(HyperionRoutingEvent)
    assert routing.deployment == "backup" and routing.failed_over
    assert [a["outcome"] for a in routing.attempts] == ["error", "ok"]
    assert routing.attempts[0]["error_class"] == "ProviderUnavailableError"
    (end,) = recorder.of(LLMChatEndEvent)
    assert routing.span_id == end.span_id  # inside the LLM call's span, next to LlamaIndex's own events
    (budget,) = recorder.of(HyperionBudgetEvent)
    assert budget.decision == "admitted" and budget.cost_usd == pytest.approx(first.additional_kwargs["cost"])

    hit = await llm.achat(user("fail me over"))
    assert hit.additional_kwargs["cache_tier"] == "l1" and hit.additional_kwargs["cost"] == 0
    (cached,) = recorder.of(HyperionCacheHitEvent)
    assert cached.tier == "l1" and cached.cost_saved == pytest.approx(first.additional_kwargs["cost"])
    assert cached.source_deployment == "backup"
    fresh = await llm.achat(user("fail me over"), cache=CacheControl(no_cache=True))  # per-call control
    assert fresh.additional_kwargs["cache_tier"] is None


async def test_budget_refusal_is_a_typed_event_and_a_hyperion_error(li_config, recorder):
    setup = li_config(governance={"budgets": [{"scope": "key", "period": "daily", "limit_usd": 1e-9}]})
    gw = Gateway(setup.config)
    key, _ = await gw.keys.create("thrifty")
    llm = HyperionLLM(model="chat", gateway=gw, virtual_key=key)
    with pytest.raises(BudgetExceededError, match="budget"):
        await llm.achat(user("too expensive"))
    (event,) = recorder.of(HyperionBudgetEvent)
    assert event.decision == "refused" and event.limit_usd == 1e-9 and event.request_id
    await gw.aclose()


def test_secrets_are_never_serialised(li_config):
    cfg = li_config().config
    llm = HyperionLLM(model="chat", config=cfg, virtual_key="hk-abc123.very-secret-part")
    for text in (llm.to_json(), str(llm.to_dict()), repr(llm), str(llm.model_dump()), str(llm.to_payload())):
        assert "very-secret-part" not in text and "sk-li-secret" not in text
    again = HyperionLLM.from_dict(llm.to_dict(), config=cfg)
    assert again.model == "chat" and again.virtual_key is None


def test_construction_is_cheap_and_gateways_are_shared(li_config):
    cfg = li_config().config
    before = len(_SHARED)
    t0 = time.perf_counter()
    llms = [HyperionLLM(model="chat", config=cfg, temperature=0.2) for _ in range(500)]
    per_llm = (time.perf_counter() - t0) / 500
    assert len(_SHARED) == before  # nothing was built: gateways come on first use
    t0 = time.perf_counter()
    Gateway(cfg)
    per_gateway = time.perf_counter() - t0
    assert per_llm < 0.5e-3 and per_llm * 5 < per_gateway, (per_llm, per_gateway)
    gws = {id(llm.gateway) for llm in llms[:50]}
    assert len(gws) == 1 and len(_SHARED) == before + 1  # one gateway (one pool) for all of them


async def test_config_from_a_yaml_file(mock, monkeypatch):
    monkeypatch.setenv("HYPERION_MOCK_URL", mock.url)
    example = Path(__file__).resolve().parents[2] / "examples" / "hyperion.yaml"
    llm = HyperionLLM(model="chat", config=str(example))
    resp = await llm.achat(user("hello from yaml"))
    assert resp.message.content == answer_for("hello from yaml") and resp.raw["deployment"] == "openai-primary"
    emb = HyperionEmbedding(model_name="embeddings", config=example)  # same file, same shared gateway
    assert len(await emb.aget_query_embedding("hello")) == 256 and emb.gateway is llm.gateway


async def test_raw_and_additional_kwargs_carry_the_providers_provenance(li_config):
    """raw / additional_kwargs: the core's events.provenance, with the provider's response id and
    system_fingerprint, and the model's reasoning (Anthropic thinking) when it sent some."""
    setup = li_config()
    r = await HyperionLLM(model="chat", config=setup.config).achat(user("who answered?"))
    assert r.raw["provider_id"].startswith("chatcmpl-") and r.raw["id"] == r.raw["provider_id"]
    assert r.raw["system_fingerprint"] == "fp_mock" and r.raw["model"] == "gpt-4o-mini"
    assert r.raw["finish_reason"] == "stop" and r.raw["reasoning"] is None
    assert r.additional_kwargs["provider_id"] == r.raw["provider_id"] and "reasoning" not in r.additional_kwargs
    cfg = dict(setup.config)
    cfg["routes"] = {**cfg["routes"], "thinker": {"deployments": [{"model": "backup/claude-haiku-4-5"}]}}
    thinker = HyperionLLM(model="thinker", config=cfg, max_tokens=3000, reasoning_effort="low")
    out = await thinker.achat(user("think about this"))
    assert out.raw["provider_id"].startswith("msg_") and out.raw["reasoning"].startswith("Mock thinking:")
    assert out.additional_kwargs["reasoning"] == out.raw["reasoning"]
    assert out.message.content.startswith("Mock answer to: think")
