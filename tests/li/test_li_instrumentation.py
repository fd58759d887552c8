"""HyperionInstrumentation on LlamaIndex's own ``OpenAILike`` pointed at the mock provider: each call
admitted, settled and audited exactly once; refusal stops the call before it is sent; errors audited."""

from __future__ import annotations

import gc

import openai
import pytest
from llama_index.core.llms import ChatMessage, MockLLM
from llama_index.llms.openai_like import OpenAILike

from hyperion_core import BudgetExceededError, Gateway, Usage
from hyperion_core.pricing import lookup
from hyperion_li import HyperionBudgetEvent, HyperionGate, HyperionInstrumentation, HyperionLLM


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def openai_like(mock, dep: str) -> OpenAILike:
    return OpenAILike(
        model="gpt-4o-mini", api_base=mock.base_url(dep, "openai"), api_key="sk-ext", is_chat_model=True,
        is_function_calling_model=True, context_window=128000, max_retries=0,
        additional_kwargs={"stream_options": {"include_usage": True}},  # streamed usage, so nothing is estimated
    )


@pytest.fixture
async def governed(li_config):
    """A gateway with keys, governance and audit, a key, and the handler attached for that key."""
    setup = li_config(governance={"budgets": [{"scope": "key", "period": "daily", "limit_usd": 10}]}, audit=True)
    gw = Gateway(setup.config)
    key, rec = await gw.keys.create("notebook", team="research")
    handler = HyperionInstrumentation(gw, virtual_key=key).attach()
    yield gw, handler, rec
    handler.detach()
    await gw.aclose()
    gw.close()


async def audit_rows(gw):
    await gw.audit.aflush()
    return list(reversed(await gw.audit.query(limit=100)))


async def test_every_call_is_metered_exactly_once(governed, mock):
    gw, handler, rec = governed
    llm = openai_like(mock, "ext-meter")
    llm.chat(user("one"))
    await llm.achat(user("two"))
    list(llm.stream_chat(user("three")))
    [r async for r in await llm.astream_chat(user("four"))]
    llm.complete("five")
    await llm.acomplete("six")
    MockLLM(max_tokens=5).chat(user("seven"))  # CustomLLM: chat() calls complete() inside — counted once
    await handler.aflush()

    assert mock.stats()["ext-meter"]["requests"] == 6
    assert handler.stats == {"admitted": 7, "refused": 0, "settled": 7, "failed": 0, "estimated_usage": 1}
    rows = await audit_rows(gw)
    assert [r.outcome for r in rows] == ["ok"] * 7
    assert [r.stream for r in rows] == [False, False, True, True, False, False, False]
    assert {r.key_id for r in rows} == {rec.key_id} and {r.team for r in rows} == {"research"}
    ext = [r for r in rows if r.deployment == "openai/gpt-4o-mini"]
    assert len(ext) == 6 and {r.route for r in ext} == {"external:gpt-4o-mini"}
    # priced from the provider's own usage report, at litellm's price for the model
    price = lookup("openai", "gpt-4o-mini")
    for r in ext:
        assert r.prompt_tokens > 0 and r.cost == pytest.approx(
            price.cost(Usage(prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens)))
    stats = mock.stats()["ext-meter"]
    assert sum(r.prompt_tokens for r in ext) == stats["prompt_tokens"]
    assert sum(r.completion_tokens for r in ext) == stats["completion_tokens"]
    (row,) = await gw.spend_report("key")
    assert row.group == rec.key_id and row.requests == 7 and row.cost_usd == pytest.approx(sum(r.cost for r in rows))
    (status,) = await gw.governance.status({"key": rec.key_id})
    assert status.spent_usd == pytest.approx(row.cost_usd) and status.reserved_usd == 0


async def test_hyperion_llm_calls_are_not_metered_twice(governed, li_config):
    gw, handler, rec = governed
    llm = HyperionLLM(model="chat", gateway=gw)
    await llm.achat(user("through the pipeline"))
    list(llm.stream_chat(user("streamed through the pipeline")))
    await handler.aflush()
    assert handler.stats["admitted"] == 0 and llm.rate_limiter is None
    assert len(await audit_rows(gw)) == 2  # the pipeline's own events, nothing more


async def test_refusal_stops_the_call_before_it_is_sent(li_config, mock, recorder):
    setup = li_config(governance={"budgets": [{"scope": "key", "period": "daily", "limit_usd": 1e-9}]}, audit=True)
    gw = Gateway(setup.config)
    key, _ = await gw.keys.create("broke")
    handler = HyperionInstrumentation(gw, virtual_key=key).attach()
    llm = openai_like(mock, "ext-refuse")
    try:
        with pytest.raises(BudgetExceededError, match="budget"):
            await llm.achat(user("too expensive"))
        with pytest.raises(BudgetExceededError):
            llm.chat(user("still too expensive"))
        with pytest.raises(BudgetExceededError):
            list(llm.stream_chat(user("streams too")))
        assert mock.stats().get("ext-refuse", {}).get("requests", 0) == 0  # nothing reached the provider
        assert handler.stats["refused"] == 3 and handler.stats["admitted"] == 0
        events = recorder.of(HyperionBudgetEvent)
        assert [e.decision for e in events] == ["refused"] * 3 and {e.source for e in events} == {"external"}
        assert [r.outcome for r in await audit_rows(gw)] == ["budget_exceeded"] * 3
        assert isinstance(llm.rate_limiter, HyperionGate)
    finally:
        handler.detach()
        await gw.aclose()
        gw.close()
    assert llm.rate_limiter is None  # detach restores the LLM
    await llm.achat(user("no longer governed"))


async def test_errors_and_abandoned_streams_are_audited(governed, mock):
    gw, handler, _ = governed
    llm = openai_like(mock, "ext-err")
    mock.fault("ext-err", kind="server_error", times=2)
    with pytest.raises(openai.InternalServerError):
        await llm.achat(user("boom"))
    with pytest.raises(openai.InternalServerError):
        llm.chat(user("boom again"))
    mock.fault("ext-err", cut_after_chunks=3, times=1)
    with pytest.raises(Exception):  # noqa: B017 - the SDK's own error for a cut stream
        list(llm.stream_chat(user("cut me off")))
    stream = llm.stream_chat(user("I will stop reading"))
    next(stream), next(stream)
    stream.close()
    del stream
    gc.collect()
    await handler.aflush()
    rows = await audit_rows(gw)
    assert [r.outcome for r in rows] == ["error", "error", "error", "cancelled"]
    assert rows[0].error_class == "InternalServerError" and rows[1].error_class == "InternalServerError"
    assert rows[3].stream and rows[3].delivered_chunks == 2
    assert handler.stats["failed"] == 4
    (status,) = await gw.governance.status({"key": rows[0].key_id})
    assert status.reserved_usd == 0 and status.spent_usd == 0  # every hold released, nothing billed


async def test_observe_only_mode_records_spend_without_a_gate(governed, mock):
    gw, handler, rec = governed
    handler.detach()
    observer = HyperionInstrumentation(gw, virtual_key=handler._virtual_key, enforce=False).attach()
    try:
        llm = openai_like(mock, "ext-observe")
        await llm.achat(user("observed, not gated"))
        await observer.aflush()
        assert llm.rate_limiter is None and observer.stats["settled"] == 1
        (row,) = await gw.spend_report("key")
        assert row.group == rec.key_id and row.requests == 1
    finally:
        observer.detach()
        handler.attach()
