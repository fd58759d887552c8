"""hyperion_li's public surface is pinned: exports, sync/async parity, error types, events' shape."""

from __future__ import annotations

import inspect

import pytest
from llama_index.core.instrumentation.events.base import BaseEvent
from llama_index.core.llms.function_calling import FunctionCallingLLM

import hyperion_li
from hyperion_core import ConfigError, HyperionError
from hyperion_li import HyperionEmbedding, HyperionInstrumentation, HyperionLLM

EXPORTS = {
    "HyperionLLM", "HyperionEmbedding", "HyperionInstrumentation", "HyperionGate", "HyperionRoutingEvent",
    "HyperionCacheHitEvent", "HyperionBudgetEvent", "ToolCallMissingError", "shared_gateway",
    "clear_shared_gateways",
}


def test_all_is_complete_and_importable():
    assert set(hyperion_li.__all__) == EXPORTS
    for name in hyperion_li.__all__:
        assert getattr(hyperion_li, name) is not None, name


def test_the_llm_contract_is_implemented():
    assert issubclass(HyperionLLM, FunctionCallingLLM)
    assert not HyperionLLM.__abstractmethods__ and not HyperionEmbedding.__abstractmethods__
    for name in ("HyperionRoutingEvent", "HyperionCacheHitEvent", "HyperionBudgetEvent"):
        cls = getattr(hyperion_li, name)
        assert issubclass(cls, BaseEvent) and cls.class_name() == name
    assert issubclass(hyperion_li.ToolCallMissingError, HyperionError)


@pytest.mark.parametrize(("sync", "async_"), [
    ("chat", "achat"), ("stream_chat", "astream_chat"), ("complete", "acomplete"),
    ("stream_complete", "astream_complete"), ("_chat", "_achat"), ("_stream_chat", "_astream_chat"),
    ("chat_with_tools", "achat_with_tools"), ("predict_and_call", "apredict_and_call"),
    ("structured_predict", "astructured_predict"), ("stream_structured_predict", "astream_structured_predict"),
])
def test_sync_and_async_twins_take_the_same_arguments(sync, async_):
    s, a = inspect.signature(getattr(HyperionLLM, sync)), inspect.signature(getattr(HyperionLLM, async_))
    assert list(s.parameters) == list(a.parameters)
    assert inspect.iscoroutinefunction(getattr(HyperionLLM, async_))


@pytest.mark.parametrize(("sync", "async_"), [
    ("_get_query_embedding", "_aget_query_embedding"), ("_get_text_embedding", "_aget_text_embedding"),
    ("_get_text_embeddings", "_aget_text_embeddings"), ("_embed", "_aembed"),
])
def test_embedding_twins(sync, async_):
    s, a = inspect.signature(getattr(HyperionEmbedding, sync)), inspect.signature(getattr(HyperionEmbedding, async_))
    assert list(s.parameters) == list(a.parameters)


def test_a_gateway_is_required_and_checked_at_construction(monkeypatch):
    monkeypatch.delenv("HYPERION_CONFIG", raising=False)
    for cls in (HyperionLLM, HyperionEmbedding):
        with pytest.raises(ConfigError, match="needs a gateway"):
            cls()
        with pytest.raises(ConfigError, match="expected a path, a mapping or a GatewayConfig"):
            cls(config=42)
    with pytest.raises(ConfigError, match="not both"):
        HyperionInstrumentation(gateway=object(), config="x.yaml")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must be a hyperion_core.Gateway"):
        HyperionLLM(gateway=object())  # type: ignore[arg-type]
