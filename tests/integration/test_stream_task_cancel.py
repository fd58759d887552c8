"""A stream whose consuming task is cancelled mid-way (what a server does when its client goes away) is
billed and audited like a stream the caller closed. Found by bench/governance_attack.py (S1): 50 such
streams, each after a few chunks had reached the caller, settled at $0.00 with 0 tokens on the audit
event, where ``aclose()`` at the same point bills the prompt and the delivered tokens."""

from __future__ import annotations

import asyncio

import pytest

from hyperion_core import Gateway


def make(mock, dep: str, tmp_path) -> Gateway:
    return Gateway({
        "providers": {"p": {"kind": "openai", "api_key": "sk-test", "base_url": mock.base_url(dep, "openai")}},
        "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini"}], "retry": {"attempts": 0}}},
        "keys": {"required": True, "store": "memory"},
        "governance": {"budgets": [{"scope": "team", "period": "daily", "limit_usd": 10.0}]},
        "audit": {"sink": f"sqlite:///{tmp_path}/audit-{dep}.db"},
    })


async def test_a_stream_whose_task_is_cancelled_mid_way_is_billed_for_what_was_delivered(mock, tmp_path):
    gw = make(mock, "g-task-cancel", tmp_path)
    key, _ = await gw.keys.create("c", team="cancellers")
    mock.fault("g-task-cancel", chunk_delay_ms=20)  # slow enough to be cancelled between two chunks
    got: list[str] = []

    async def consume() -> None:
        async for chunk in gw.astream("chat", [{"role": "user", "content": "a story cut short by a cancel"}],
                                      virtual_key=key, max_tokens=60):
            got.append(chunk.content)

    task = asyncio.ensure_future(consume())
    while len(got) < 3:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (st,) = await gw.governance.status({"team": "cancellers"})
    assert st.reserved_usd == 0
    assert st.spent_usd > 0  # was $0.00: the hold was released as if nothing had been generated
    (event,) = await gw.audit.query(limit=5)
    assert event.outcome == "cancelled" and event.cost == pytest.approx(st.spent_usd)
    assert event.prompt_tokens > 0 and event.completion_tokens >= len(got) >= 3
    assert event.delivered_chunks == len(got)
    await gw.aclose()
