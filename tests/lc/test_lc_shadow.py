"""HyperionShadow: the primary answers; the shadow never slows or fails it; the report compares."""

from __future__ import annotations

import asyncio
import time

import pytest
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI

from hyperion_core import Gateway
from hyperion_lc import HyperionChat, HyperionShadow
from hyperion_lc.shadow import text_agreement


def slow_sync(_: object) -> AIMessage:
    time.sleep(0.6)
    return AIMessage("late")


async def slow_async(_: object) -> AIMessage:
    await asyncio.sleep(0.6)
    return AIMessage("late")


def failing(_: object) -> AIMessage:
    raise RuntimeError("shadow exploded")


async def test_chatopenai_primary_hyperion_shadow_report(make_config, mock):
    gw = Gateway(make_config("sh-report"))
    primary = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=mock.base_url("sh-openai", "openai"),
        api_key="sk-mock",
        max_retries=0,
        stream_usage=True,
    )
    shadow = HyperionShadow(primary=primary, shadow=HyperionChat(model="chat", gateway=gw))
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | shadow | StrOutputParser()
    for i in range(4):
        assert (await chain.ainvoke({"q": f"question {i}"})).startswith(f"Mock answer to: question {i}.")
    chain.invoke({"q": "a sync one"})
    streamed = "".join([c async for c in chain.astream({"q": "a streamed one"})])
    assert streamed.startswith("Mock answer to: a streamed one.")
    assert await shadow.adrain(5)
    rows = shadow.report()
    assert len(rows) == 6 and all(r["agree"] for r in rows)  # same mock answers on both sides
    assert {r["shadow_deployment"] for r in rows} == {"openai-primary"}
    assert all(r["primary_cost"] > 0 and r["shadow_cost"] > 0 for r in rows)  # ChatOpenAI priced by model
    s = shadow.summary()
    assert s["primary"]["requests"] == s["shadow"]["requests"] == 6 and s["agreement_rate"] == 1.0
    table = shadow.table()
    assert "p50 latency ms" in table and "agreement: 100% of 6" in table
    shadow.close()
    await gw.aclose()
    gw.close()  # the sync call's loop and pool


async def test_a_slow_shadow_never_slows_the_primary():
    fast = RunnableLambda(lambda _: AIMessage("fast"))
    sync_shadow = HyperionShadow(primary=fast, shadow=RunnableLambda(slow_sync))
    t0 = time.perf_counter()
    for _ in range(3):
        assert sync_shadow.invoke("q").content == "fast"
    # three calls, each shadow sleeping 0.6 s: all three shadows still pending once the primaries are back
    assert sync_shadow.pending == 3 and sync_shadow.report() == []
    assert time.perf_counter() - t0 < 0.6  # waiting for even one shadow would take 0.6 s
    assert sync_shadow.drain(5)
    assert [r["shadow_latency_ms"] >= 550 for r in sync_shadow.report()] == [True] * 3

    async_shadow = HyperionShadow(
        primary=RunnableLambda(lambda _: AIMessage("fast")), shadow=RunnableLambda(slow_async), timeout=0.2
    )
    t0 = time.perf_counter()
    outs = await asyncio.gather(*(async_shadow.ainvoke("q") for _ in range(5)))
    assert [o.content for o in outs] == ["fast"] * 5 and time.perf_counter() - t0 < 0.6
    assert await async_shadow.adrain(5)
    assert {r["shadow_status"] for r in async_shadow.report()} == {"timeout"}
    assert (
        async_shadow.summary()["shadow"]["errors"] == 5 and async_shadow.summary()["primary"]["errors"] == 0
    )
    sync_shadow.close()


async def test_a_failing_shadow_never_fails_the_primary():
    primary = RunnableLambda(lambda _: AIMessage("fine"))
    shadow = HyperionShadow(primary=primary, shadow=RunnableLambda(failing))
    assert shadow.invoke("q").content == "fine"
    assert (await shadow.ainvoke("q")).content == "fine"
    assert [c.content for c in shadow.stream("q")] == ["fine"]
    assert shadow.drain(5) and await shadow.adrain(5)
    rows = shadow.report()
    assert len(rows) == 3 and {r["shadow_status"] for r in rows} == {"error"}
    assert all("RuntimeError: shadow exploded" in r["shadow_error"] for r in rows)
    assert all(r["agreement"] is None for r in rows)
    # the primary's own errors still reach the caller, and are recorded
    broken = HyperionShadow(primary=RunnableLambda(failing), shadow=primary)
    with pytest.raises(RuntimeError, match="shadow exploded"):
        await broken.ainvoke("q")
    await broken.adrain(5)
    (row,) = broken.report()
    assert row["primary_status"] == "error" and row["shadow_status"] == "ok"
    shadow.close()


async def test_capacity_and_sampling_bound_the_mirror():
    shadow = HyperionShadow(
        primary=RunnableLambda(lambda _: "a"), shadow=RunnableLambda(slow_async), max_pending=2
    )
    await asyncio.gather(*(shadow.ainvoke("q") for _ in range(5)))
    assert shadow.skipped == 3 and shadow.pending == 2
    await shadow.adrain(5)
    none = HyperionShadow(
        primary=RunnableLambda(lambda _: "a"), shadow=RunnableLambda(lambda _: "a"), sample_rate=0.0
    )
    none.invoke("q")
    assert none.skipped == 1 and none.report()[0]["shadow_status"] == "skipped"


def test_text_agreement():
    assert text_agreement("Hello  World", "hello world") == 1.0
    assert text_agreement("a b c d", "a b c e") == pytest.approx(3 / 5)
    assert text_agreement("", "") == 1.0 and text_agreement("x", "") == 0.0
