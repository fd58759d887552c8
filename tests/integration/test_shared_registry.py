"""Both framework doors share one gateway per config (one pool, one budget ledger), and pass the
request options through the same pipeline."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage

from hyperion_core import AllDeploymentsFailedError, shared_gateway
from hyperion_core.registry import registry
from hyperion_lc import HyperionChat
from hyperion_li import HyperionLLM


def _cfg(mock) -> dict:
    return {
        "providers": {"p": {"kind": "openai", "api_key": "sk-x", "base_url": mock.base_url("shared-reg", "openai")}},
        "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini"}], "retry": {"attempts": 2, "backoff_base": 0}}},
    }


def test_langchain_and_llamaindex_share_one_gateway(mock):
    cfg = _cfg(mock)
    chat = HyperionChat(model="chat", config=cfg)
    llm = HyperionLLM(model="chat", config=dict(cfg))  # an equal dict, another object
    assert chat.invoke([HumanMessage("hello")]).content
    assert llm.complete("hello").text
    gw = shared_gateway(cfg)
    assert chat.gateway_instance is gw and llm.gateway is gw
    assert sum(1 for g, _ in registry._gateways.values() if g is gw) == 1


def test_max_retries_reaches_the_router(mock):
    cfg = _cfg(mock)
    mock.fault("shared-reg", kind="server_error", times=1)
    with pytest.raises(AllDeploymentsFailedError) as ei:
        HyperionChat(model="chat", config=cfg, max_retries=0).invoke([HumanMessage("no retry")])
    assert len(ei.value.attempts) == 1
    mock.fault("shared-reg", kind="server_error", times=1)
    msg = HyperionChat(model="chat", config=cfg).invoke([HumanMessage("route retries")])
    assert [a["outcome"] for a in msg.response_metadata["attempts"]] == ["error", "ok"]
