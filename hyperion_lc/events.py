"""Typed records of the gateway's decisions, delivered to LangChain's own observability.

``HyperionChat`` hands each of these to the run's callback handlers as a custom event
(``on_custom_event(name, data, run_id=<the chat model run>, ...)``; ``astream_events`` shows them as
``on_custom_event`` with the record as ``data``), after the answer or the failure is known:

=========================  ===============================================================
``hyperion.route``         :class:`RouteDecision` — the deployment that answered, every attempt
``hyperion.failover``      :class:`FailoverAttempt` — one per failed attempt before the answer
``hyperion.cache_hit``     :class:`CacheHitEvent` — tier, similarity, guards, what was saved
``hyperion.refused``       :class:`AdmissionRefused` — budget, rate limit or access refusal
``hyperion.failed``        :class:`RequestFailed` — the request failed (attempts attached)
=========================  ===============================================================

Records are frozen; ``to_dict()`` gives plain JSON-ready data. Nothing is sent when the run has no
handlers, so an untraced call pays nothing for this.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from langchain_core.callbacks.manager import ahandle_event, handle_event

from hyperion_core import errors as E
from hyperion_core.types import Attempt, ChatRequest, ChatResponse


@dataclass(slots=True, frozen=True)
class AttemptRecord:
    """One call to one deployment (``outcome``: ok | error)."""

    deployment: str
    outcome: str
    latency_ms: float
    error_class: str | None = None
    status: int | None = None
    message: str | None = None

    @classmethod
    def of(cls, a: Attempt) -> AttemptRecord:
        return cls(a.deployment, a.outcome, round(a.latency_ms, 3), a.error_class, a.status, a.message)


@dataclass(slots=True, frozen=True)
class HyperionEvent:
    """Base of every event: which request, on which route."""

    name: ClassVar[str] = "hyperion.event"
    request_id: str
    route: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.name, **asdict(self)}


@dataclass(slots=True, frozen=True)
class RouteDecision(HyperionEvent):
    name: ClassVar[str] = "hyperion.route"
    deployment: str
    model: str
    attempts: tuple[AttemptRecord, ...]
    failed_over: bool  # an earlier deployment (or attempt) failed first
    resumed_by: tuple[str, ...]  # deployments that continued a cut stream
    cache_tier: str | None  # "l1" | "l2" | "semantic" | "coalesced" when served by the cache
    cost: float  # USD paid upstream (0 for a cache hit)
    latency_ms: float


@dataclass(slots=True, frozen=True)
class FailoverAttempt(HyperionEvent):
    name: ClassVar[str] = "hyperion.failover"
    deployment: str
    error_class: str | None
    status: int | None
    message: str | None
    latency_ms: float


@dataclass(slots=True, frozen=True)
class CacheHitEvent(HyperionEvent):
    name: ClassVar[str] = "hyperion.cache_hit"
    tier: str
    similarity: float | None
    age_s: float
    guards: tuple[str, ...]
    source_deployment: str | None
    tokens_saved: int
    cost_saved: float  # USD the original call cost


@dataclass(slots=True, frozen=True)
class AdmissionRefused(HyperionEvent):
    """The pipeline refused the request before any upstream call (``reason``: budget_exceeded |
    rate_limited | denied)."""

    name: ClassVar[str] = "hyperion.refused"
    reason: str
    error_class: str
    message: str
    budget: str | None = None
    limit_usd: float | None = None
    spent_usd: float | None = None
    retry_after: float | None = None


@dataclass(slots=True, frozen=True)
class RequestFailed(HyperionEvent):
    name: ClassVar[str] = "hyperion.failed"
    error_class: str
    message: str
    deployment: str | None
    attempts: tuple[AttemptRecord, ...]


def response_events(resp: ChatResponse) -> list[HyperionEvent]:
    """The events of an answered request."""
    rid, route = resp.request_id, resp.route
    attempts = tuple(AttemptRecord.of(a) for a in resp.attempts)
    out: list[HyperionEvent] = [
        FailoverAttempt(rid, route, a.deployment, a.error_class, a.status, a.message, a.latency_ms)
        for a in attempts
        if a.outcome != "ok"
    ]
    c = resp.cache
    if c is not None:
        out.append(
            CacheHitEvent(
                rid,
                route,
                c.tier,
                c.similarity,
                round(c.age_s, 3),
                tuple(c.guards),
                c.source_deployment,
                c.tokens_saved,
                c.cost_saved,
            )
        )
    out.append(
        RouteDecision(
            rid,
            route,
            resp.deployment,
            resp.model,
            attempts,
            any(a.outcome != "ok" for a in attempts) or bool(resp.resumed_by),
            tuple(resp.resumed_by),
            c.tier if c is not None else None,
            resp.cost,
            round(resp.latency_ms, 3),
        )
    )
    return out


def failure_events(exc: BaseException, req: ChatRequest) -> list[HyperionEvent]:
    """The events of a failed request."""
    rid, route = req.request_id, req.route
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, (E.BudgetExceededError, E.RateLimitedError, E.AccessError)):
        reason = (
            "budget_exceeded"
            if isinstance(exc, E.BudgetExceededError)
            else "rate_limited"
            if isinstance(exc, E.RateLimitedError)
            else "denied"
        )
        return [
            AdmissionRefused(
                rid,
                route,
                reason,
                type(exc).__name__,
                message,
                budget=getattr(exc, "budget", None),
                limit_usd=getattr(exc, "limit", None),
                spent_usd=getattr(exc, "spent", None),
                retry_after=getattr(exc, "retry_after", None),
            )
        ]
    attempts = tuple(
        AttemptRecord.of(a) for a in getattr(exc, "attempts", None) or () if isinstance(a, Attempt)
    )
    out: list[HyperionEvent] = [
        FailoverAttempt(rid, route, a.deployment, a.error_class, a.status, a.message, a.latency_ms)
        for a in attempts
        if a.outcome != "ok"
    ]
    out.append(
        RequestFailed(rid, route, type(exc).__name__, message, getattr(exc, "deployment", None), attempts)
    )
    return out


def emit(run_manager: Any, events: list[HyperionEvent]) -> None:
    """Hand ``events`` to the run's handlers (sync runs)."""
    if run_manager is None or not run_manager.handlers:
        return
    for ev in events:
        handle_event(
            run_manager.handlers,
            "on_custom_event",
            "ignore_custom_event",
            ev.name,
            ev,
            run_id=run_manager.run_id,
            tags=run_manager.tags,
            metadata=run_manager.metadata,
        )


async def aemit(run_manager: Any, events: list[HyperionEvent]) -> None:
    """Hand ``events`` to the run's handlers (async runs)."""
    if run_manager is None or not run_manager.handlers:
        return
    for ev in events:
        await ahandle_event(
            run_manager.handlers,
            "on_custom_event",
            "ignore_custom_event",
            ev.name,
            ev,
            run_id=run_manager.run_id,
            tags=run_manager.tags,
            metadata=run_manager.metadata,
        )


__all__ = [
    "HyperionEvent",
    "AttemptRecord",
    "RouteDecision",
    "FailoverAttempt",
    "CacheHitEvent",
    "AdmissionRefused",
    "RequestFailed",
    "response_events",
    "failure_events",
    "emit",
    "aemit",
]
