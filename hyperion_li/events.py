"""Hyperion's decisions as typed LlamaIndex instrumentation events (STYLE 11).

:class:`~hyperion_li.HyperionLLM`, :class:`~hyperion_li.HyperionEmbedding` and
:class:`~hyperion_li.HyperionInstrumentation` dispatch these into LlamaIndex's dispatcher tree
(``get_dispatcher("hyperion_li")``, which propagates to the root), inside the span of the LLM call
they belong to, so a user's existing event handler sees them next to ``LLMChatEndEvent`` & co::

    class Watch(BaseEventHandler):
        def handle(self, event, **kw):
            if isinstance(event, HyperionRoutingEvent) and event.failed_over:
                print("failed over to", event.deployment)

    get_dispatcher().add_event_handler(Watch())

Money is USD, durations milliseconds.
"""

from __future__ import annotations

from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.base import BaseEvent

from hyperion_core.events import CacheTier

dispatcher = get_dispatcher("hyperion_li")


class HyperionRoutingEvent(BaseEvent):
    """Which deployment answered a request, after which attempts."""

    route: str
    #: the request's id (None for embeddings: ``EmbeddingResponse`` carries none)
    request_id: str | None = None
    deployment: str
    model: str
    #: every call to a deployment, in order: ``{deployment, outcome, latency_ms, error_class, status, message}``
    attempts: list[dict[str, Any]] = Field(default_factory=list)
    #: True when an attempt failed before the answer (or a cut stream was resumed elsewhere)
    failed_over: bool = False
    resumed_by: list[str] = Field(default_factory=list)
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    stream: bool = False

    @classmethod
    def class_name(cls) -> str:
        return "HyperionRoutingEvent"


class HyperionCacheHitEvent(BaseEvent):
    """An answer served from Hyperion's response cache (nothing was paid upstream)."""

    route: str
    request_id: str
    tier: CacheTier
    age_s: float
    similarity: float | None = None
    tokens_saved: int = 0
    cost_saved: float = 0.0
    source_deployment: str | None = None

    @classmethod
    def class_name(cls) -> str:
        return "HyperionCacheHitEvent"


class HyperionBudgetEvent(BaseEvent):
    """A governance decision on a request: ``admitted`` (then ``cost_usd`` is what it cost once
    settled), ``refused`` (a hard budget would be exceeded) or ``rate_limited`` (Hyperion's own RPM/TPM)."""

    route: str
    request_id: str | None = None
    decision: Literal["admitted", "refused", "rate_limited"]
    #: what the request cost (admitted) — 0 for a cache hit
    cost_usd: float = 0.0
    #: the refusing budget's label, limit and spend (refused)
    budget: str | None = None
    limit_usd: float | None = None
    spent_usd: float | None = None
    #: seconds until the limit admits again (rate_limited)
    retry_after: float | None = None
    message: str | None = None
    #: ``hyperion`` for HyperionLLM / HyperionEmbedding, ``external`` for a call metered by the handler
    source: Literal["hyperion", "external"] = "hyperion"

    @classmethod
    def class_name(cls) -> str:
        return "HyperionBudgetEvent"


def budget_event_for_error(exc: BaseException, route: str, source: str = "hyperion") -> HyperionBudgetEvent | None:
    """The refusal event for a governance error, or None for any other error."""
    from hyperion_core.errors import BudgetExceededError, RateLimitedError

    if isinstance(exc, BudgetExceededError):
        return HyperionBudgetEvent(
            route=route, request_id=exc.request_id, decision="refused", budget=exc.budget, limit_usd=exc.limit,
            spent_usd=exc.spent, message=exc.message, source=source,
        )
    if isinstance(exc, RateLimitedError):
        return HyperionBudgetEvent(
            route=route, request_id=exc.request_id, decision="rate_limited", retry_after=exc.retry_after,
            message=exc.message, source=source,
        )
    return None


__all__ = ["HyperionRoutingEvent", "HyperionCacheHitEvent", "HyperionBudgetEvent", "dispatcher"]
