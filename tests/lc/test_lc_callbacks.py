"""HyperionCallbackHandler on chains that keep their own model: ChatOpenAI pointed at the mock."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.exceptions import ModelError
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI

from hyperion_core import BudgetExceededError, Gateway, InvalidKeyError
from hyperion_core.pricing import lookup
from hyperion_core.types import Usage
from hyperion_lc import AsyncHyperionCallbackHandler, HyperionCallbackHandler, HyperionChat


def gateway(mock, tmp_path, name: str, limit_usd: float = 1.0) -> Gateway:
    from lc_support import chat_config

    return Gateway(
        chat_config(
            mock,
            name,
            keys={"required": True, "store": "memory"},
            governance={"budgets": [{"scope": "key", "period": "daily", "limit_usd": limit_usd}]},
            audit={"sink": f"sqlite:///{tmp_path}/audit-{name}.db"},
        )
    )


def chat_openai(mock, dep: str, **kw: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-4o-mini", base_url=mock.base_url(dep, "openai"), api_key="sk-mock", max_retries=0, **kw
    )


async def status(gw: Gateway, key_id: str) -> Any:
    (s,) = [s for s in await gw.governance.status({"key": key_id}) if s.scope == "key"]
    return s


async def test_sync_handler_admits_settles_once_and_audits(mock, tmp_path):
    gw = gateway(mock, tmp_path, "cb-sync")
    key, rec = await gw.keys.create("app", team="web")
    handler = HyperionCallbackHandler(gateway=gw, virtual_key=key)
    assert key.split(".", 1)[1] not in repr(handler)
    model = chat_openai(mock, "cb-openai", stream_usage=True)  # without it, streamed usage is estimated
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model | StrOutputParser()
    answer = chain.invoke({"q": "hello from a chain"}, config={"callbacks": [handler]})
    assert answer.startswith("Mock answer to: hello from a chain.")
    full = None
    for chunk in model.stream("and a stream", config={"callbacks": [handler]}):
        full = chunk if full is None else full + chunk
    assert handler.open_calls == 0
    rows = await gw.spend_report("key")
    (row,) = rows
    assert row.group == rec.key_id and row.requests == 2  # exactly one settle per call
    price = lookup("openai", "gpt-4o-mini")
    stats = mock.stats()["cb-openai"]
    expected = price.cost(
        Usage(prompt_tokens=stats["prompt_tokens"], completion_tokens=stats["completion_tokens"])
    )
    assert row.cost_usd == pytest.approx(expected)  # settled at the usage the model reported
    events = list(reversed(await gw.audit.query(limit=10)))
    assert [e.outcome for e in events] == ["ok", "ok"]
    assert {e.route for e in events} == {"external:gpt-4o-mini"} and all(
        e.key_id == rec.key_id for e in events
    )
    assert events[0].request_id.startswith("lc-") and events[1].stream
    assert (await status(gw, rec.key_id)).reserved_usd == 0
    await gw.aclose()


async def test_refusal_stops_the_run_before_the_model_is_called(mock, tmp_path):
    gw = gateway(mock, tmp_path, "cb-refuse", limit_usd=0.00001)
    key, rec = await gw.keys.create("thrifty")
    handler = HyperionCallbackHandler(gateway=gw, virtual_key=key)
    model = chat_openai(mock, "cb-refused", max_tokens=500)  # reserving 500 output tokens exceeds the budget
    with pytest.raises(BudgetExceededError) as ei:
        model.invoke("too expensive", config={"callbacks": [handler]})
    assert isinstance(ei.value, ModelError) and "budget" in str(ei.value)
    assert "cb-refused" not in mock.stats()  # no request reached the provider
    with pytest.raises(InvalidKeyError):  # an unknown key is refused the same way
        model.invoke("who", config={"callbacks": [HyperionCallbackHandler(gateway=gw, virtual_key="hk-x.y")]})
    assert [e.outcome for e in reversed(await gw.audit.query(limit=10))] == ["budget_exceeded", "denied"]
    assert handler.open_calls == 0
    await gw.aclose()


async def test_errors_are_audited_and_release_the_reservation(mock, tmp_path):
    gw = gateway(mock, tmp_path, "cb-err")
    key, rec = await gw.keys.create("flaky")
    handler = HyperionCallbackHandler(gateway=gw, virtual_key=key)
    mock.fault("cb-broken", kind="server_error")
    with pytest.raises(Exception) as ei:  # ChatOpenAI's own error type
        chat_openai(mock, "cb-broken").invoke("boom", config={"callbacks": [handler]})
    assert "500" in str(ei.value) or "server" in str(ei.value).lower()
    (event,) = await gw.audit.query(limit=10)
    assert event.outcome == "error" and event.key_id == rec.key_id
    assert (await status(gw, rec.key_id)).reserved_usd == 0 and handler.open_calls == 0
    assert await gw.spend_report("key") == [] or (await gw.spend_report("key"))[0].cost_usd == 0
    await gw.aclose()


async def test_async_runs_with_both_handlers_and_hyperion_runs_are_not_counted_twice(mock, tmp_path):
    gw = gateway(mock, tmp_path, "cb-async")
    key, rec = await gw.keys.create("async")
    model = chat_openai(mock, "cb-aopenai")
    await model.ainvoke(
        "async one", config={"callbacks": [AsyncHyperionCallbackHandler(gateway=gw, virtual_key=key)]}
    )
    await model.ainvoke(
        "async two", config={"callbacks": [HyperionCallbackHandler(gateway=gw, virtual_key=key)]}
    )
    # a HyperionChat run is governed by the gateway itself: the handler leaves it alone
    handler = AsyncHyperionCallbackHandler(gateway=gw, virtual_key=key)
    await HyperionChat(model="chat", gateway=gw, virtual_key=key).ainvoke(
        "via the gateway", config={"callbacks": [handler]}
    )
    (row,) = await gw.spend_report("key")
    assert row.requests == 3
    routes = [e.route for e in reversed(await gw.audit.query(limit=10))]
    assert routes == ["external:gpt-4o-mini", "external:gpt-4o-mini", "chat"]
    with pytest.raises(BudgetExceededError):
        big = chat_openai(mock, "cb-aopenai", max_tokens=10_000_000)
        await big.ainvoke(
            "x", config={"callbacks": [AsyncHyperionCallbackHandler(gateway=gw, virtual_key=key)]}
        )
    await gw.aclose()


async def test_async_handler_gates_sync_runs_too(mock, tmp_path):
    """A sync run (here inside a running loop, as in a notebook cell) with the async handler: the refusal
    stops the call, and an admitted call is settled exactly once."""
    gw = gateway(mock, tmp_path, "cb-async-sync", limit_usd=0.00001)
    key, rec = await gw.keys.create("sync-with-async-handler")
    handler = AsyncHyperionCallbackHandler(gateway=gw, virtual_key=key)
    with pytest.raises(BudgetExceededError):
        chat_openai(mock, "cb-as-refused", max_tokens=500).invoke(
            "too expensive", config={"callbacks": [handler]}
        )
    assert "cb-as-refused" not in mock.stats()  # the model was never called
    chat_openai(mock, "cb-as-ok", max_tokens=5).invoke("hi", config={"callbacks": [handler]})
    assert handler.open_calls == 0
    assert [e.outcome for e in reversed(await gw.audit.query(limit=10))] == ["budget_exceeded", "ok"]
    await gw.aclose()


def test_async_handler_gates_plain_sync_code(mock, tmp_path):
    """No event loop at all (a script): the async handler's refusal still raises."""
    gw = gateway(mock, tmp_path, "cb-async-plain", limit_usd=0.00001)
    key, _ = gw.run_sync(gw.keys.create("plain"))
    handler = AsyncHyperionCallbackHandler(gateway=gw, virtual_key=key)
    with pytest.raises(BudgetExceededError):
        chat_openai(mock, "cb-plain-refused", max_tokens=500).invoke(
            "too expensive", config={"callbacks": [handler]}
        )
    assert "cb-plain-refused" not in mock.stats()
    chat_openai(mock, "cb-plain-ok", max_tokens=5).invoke("hi", config={"callbacks": [handler]})
    assert handler.open_calls == 0
    gw.close()
