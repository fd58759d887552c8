"""Hyperion for LlamaIndex.

* :class:`HyperionLLM` — a function-calling LLM over a Hyperion route (``Settings.llm``): failover,
  cache, budgets and audit for every query engine, chat engine and agent;
* :class:`HyperionEmbedding` — embeddings over a Hyperion embedding route (``Settings.embed_model``),
  batched, cached, governed and audited;
* :class:`HyperionInstrumentation` — an instrumentation handler giving any other LlamaIndex LLM
  (``OpenAI``, ``OpenAILike``, ...) Hyperion's budget refusal, spend and audit;
* typed events (:class:`HyperionRoutingEvent`, :class:`HyperionCacheHitEvent`,
  :class:`HyperionBudgetEvent`) dispatched into LlamaIndex's instrumentation for your own handlers.

``notebooks/llamaindex_quickstart.ipynb`` walks through all of it against the bundled mock provider.
"""

from hyperion_core.registry import shared_gateway

from .embedding import HyperionEmbedding
from .events import HyperionBudgetEvent, HyperionCacheHitEvent, HyperionRoutingEvent
from .instrumentation import HyperionGate, HyperionInstrumentation
from .llm import HyperionLLM, ToolCallMissingError


def clear_shared_gateways() -> list:
    """Forget every shared gateway (tests); returns them so the caller can close them."""
    from hyperion_core.registry import registry

    return registry.clear()


__all__ = [
    "HyperionLLM",
    "HyperionEmbedding",
    "HyperionInstrumentation",
    "HyperionGate",
    "HyperionRoutingEvent",
    "HyperionCacheHitEvent",
    "HyperionBudgetEvent",
    "ToolCallMissingError",
    "shared_gateway",
    "clear_shared_gateways",
]
