"""The audit record: exactly one frozen :class:`AuditEvent` per request, and the pure builders that
assemble it from the gateway's own records (``ChatResponse``, ``Attempt``, ``Caller``, errors).

Builders are duck-typed and do no I/O. Every string that reaches an event from outside (error
messages, metadata, stored prompts and answers) goes through the :mod:`scrubber <.scrub>`, and the
caller's virtual key is removed literally, so secrets never reach a sink.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import time as _time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import AccessError, BudgetExceededError, HyperionError, RateLimitedError
from ..events import CACHE_TIERS, OUTCOMES, CacheTier  # one vocabulary (events.py)
from ..events import Outcome as AuditOutcome
from ..types import Attempt
from .scrub import Scrubber

#: error messages longer than this (characters) are cut, with a marker
MAX_ERROR_MESSAGE = 2000


class AuditError(HyperionError):
    """The audit log could not do what was asked (bad event, spool in use, sink refused a write)."""


class FrozenMap(Mapping[str, str]):
    """An immutable, hashable, picklable ``str -> str`` mapping (an event's ``metadata``)."""

    __slots__ = ("_d",)

    def __init__(self, data: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._d: dict[str, str] = dict(data)

    def __getitem__(self, key: str) -> str:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        return hash(frozenset(self._d.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._d!r})"

    def __reduce__(self):
        return (FrozenMap, (self._d,))


#: the metadata of an event without any (immutable: shared)
_EMPTY_METADATA = FrozenMap()


@dataclass(slots=True, frozen=True)
class AuditAttempt:
    """One call to one deployment, as the audit trail keeps it (no message text: it may hold secrets)."""

    deployment: str
    outcome: str  # "ok" | "error"
    error_class: str | None = None
    status: int | None = None
    latency_ms: float = 0.0


@dataclass(slots=True, frozen=True)
class AuditEvent:
    """One request, whatever its outcome. Times are epoch seconds; durations milliseconds; money USD.

    ``prompt`` (the scrubbed messages as JSON) and ``answer`` are None unless the log is configured
    with ``store_content=True``. ``metadata`` is a ``str -> str`` mapping (the caller's tags and
    metadata, scrubbed).
    """

    id: str
    time: float
    outcome: AuditOutcome
    request_id: str | None = None
    key_id: str | None = None
    team: str | None = None
    user: str | None = None
    route: str | None = None
    deployment: str | None = None
    attempts: tuple[AuditAttempt, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float = 0.0
    cost_saved: float = 0.0
    cache_tier: CacheTier | None = None
    ttft_ms: float | None = None
    latency_ms: float | None = None
    stream: bool = False
    delivered_chunks: int | None = None
    error_class: str | None = None
    error_message: str | None = None
    guardrails: tuple[str, ...] = ()
    prompt: str | None = None
    answer: str | None = None
    metadata: Mapping[str, str] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise AuditError(f"AuditEvent.outcome: {self.outcome!r} is not one of {', '.join(OUTCOMES)}")
        if self.cache_tier is not None and self.cache_tier not in CACHE_TIERS:
            raise AuditError(f"AuditEvent.cache_tier: {self.cache_tier!r} is not one of {', '.join(CACHE_TIERS)}")
        if not isinstance(self.metadata, FrozenMap):
            object.__setattr__(self, "metadata", FrozenMap({str(k): str(v) for k, v in self.metadata.items()}))
        if not isinstance(self.attempts, tuple):
            object.__setattr__(self, "attempts", tuple(self.attempts))
        if not isinstance(self.guardrails, tuple):
            object.__setattr__(self, "guardrails", tuple(self.guardrails))

    def to_dict(self) -> dict[str, Any]:
        """JSON-native form (what sinks store and what the chain hashes)."""
        return {
            "id": self.id,
            "time": self.time,
            "outcome": self.outcome,
            "request_id": self.request_id,
            "key_id": self.key_id,
            "team": self.team,
            "user": self.user,
            "route": self.route,
            "deployment": self.deployment,
            "attempts": [
                {
                    "deployment": a.deployment,
                    "outcome": a.outcome,
                    "error_class": a.error_class,
                    "status": a.status,
                    "latency_ms": a.latency_ms,
                }
                for a in self.attempts
            ],
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_prompt_tokens": self.cached_prompt_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost": self.cost,
            "cost_saved": self.cost_saved,
            "cache_tier": self.cache_tier,
            "ttft_ms": self.ttft_ms,
            "latency_ms": self.latency_ms,
            "stream": self.stream,
            "delivered_chunks": self.delivered_chunks,
            "error_class": self.error_class,
            "error_message": self.error_message,
            "guardrails": list(self.guardrails),
            "prompt": self.prompt,
            "answer": self.answer,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditEvent:
        """Inverse of :meth:`to_dict`; unknown keys (from a newer writer) are ignored."""
        known = {k: v for k, v in d.items() if k in _FIELDS}
        known["attempts"] = tuple(AuditAttempt(**a) for a in d.get("attempts") or ())
        known["guardrails"] = tuple(d.get("guardrails") or ())
        known["metadata"] = FrozenMap(d.get("metadata") or {})
        return cls(**known)


_FIELDS = frozenset(AuditEvent.__dataclass_fields__)


_EVENT_PREFIX = os.urandom(5).hex()  # per process (re-drawn in forked children below)
_event_seq = itertools.count()


def _reseed_after_fork() -> None:
    global _EVENT_PREFIX, _event_seq
    _EVENT_PREFIX, _event_seq = os.urandom(5).hex(), itertools.count()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_after_fork)


def new_event_id() -> str:
    """Unique across processes and roughly time-ordered: ``evt-<ms since epoch, hex>-<40 random bits per
    process><counter>`` — no system call for randomness per event (it was ~3% of a governed request)."""
    return f"evt-{_time.time_ns() // 1_000_000:011x}-{_EVENT_PREFIX}{next(_event_seq) & 0xFFFFFF:06x}"


def outcome_for(exc: BaseException) -> AuditOutcome:
    """Which outcome an exception means. An exception may say so itself with an ``audit_outcome``
    attribute (e.g. a guardrail block that should read ``denied``)."""
    declared = getattr(exc, "audit_outcome", None)
    if declared in OUTCOMES:
        return declared  # type: ignore[return-value]
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, AccessError):
        return "denied"
    if isinstance(exc, BudgetExceededError):
        return "budget_exceeded"
    if isinstance(exc, RateLimitedError):  # Hyperion's own limit; an upstream 429 is an "error"
        return "rate_limited"
    return "error"


# -- builders ----------------------------------------------------------------------------------


def event_from_response(
    resp: Any,
    caller: Any = None,
    *,
    stream: bool,
    store_content: bool,
    messages: Sequence[Mapping[str, Any]] | None = None,
    delivered_chunks: int | None = None,
    guardrails: Iterable[str] = (),
    metadata: Mapping[str, Any] | None = None,
    secrets: Iterable[str | None] = (),
    time: float | None = None,
) -> AuditEvent:
    """The ``ok`` event for a :class:`~hyperion_core.types.ChatResponse` (duck-typed).

    ``messages`` are stored (scrubbed, as JSON) only with ``store_content``; so is the answer.
    ``time`` defaults to now (epoch seconds). ``secrets`` are extra strings never to store.
    """
    # the hot path of every answered request: no scrubber unless there is text to scrub, no keyword
    # dicts merged, the metadata handed over already frozen
    merged = _merged_metadata(caller, metadata)
    scrubber = _scrubber(caller, secrets) if store_content or merged else None
    usage = getattr(resp, "usage", None)
    cache = getattr(resp, "cache", None)
    return AuditEvent(
        id=new_event_id(),
        time=_time.time() if time is None else time,
        outcome="ok",
        request_id=getattr(resp, "request_id", None),
        key_id=_str_or_none(getattr(caller, "key_id", None)),
        team=_str_or_none(getattr(caller, "team", None)),
        user=_str_or_none(getattr(caller, "user", None)),
        route=getattr(resp, "route", None),
        deployment=getattr(resp, "deployment", None),
        attempts=_attempts(getattr(resp, "attempts", ())),
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cached_prompt_tokens=int(getattr(usage, "cached_prompt_tokens", 0) or 0),
        reasoning_tokens=int(getattr(usage, "reasoning_tokens", 0) or 0),
        cost=_num(getattr(resp, "cost", 0.0)) or 0.0,
        cost_saved=_num(getattr(cache, "cost_saved", 0.0)) or 0.0 if cache is not None else 0.0,
        cache_tier=getattr(cache, "tier", None),
        ttft_ms=_num(getattr(resp, "ttft_ms", None)),
        latency_ms=_num(getattr(resp, "latency_ms", None)),
        stream=stream,
        delivered_chunks=delivered_chunks,
        guardrails=guardrails if type(guardrails) is tuple else tuple(guardrails),
        prompt=_prompt(messages, scrubber) if scrubber is not None and store_content else None,
        answer=_answer(resp, scrubber) if scrubber is not None and store_content else None,
        metadata=FrozenMap(scrubber.metadata(merged)) if scrubber is not None and merged else _EMPTY_METADATA,
    )


def event_from_error(
    exc: BaseException,
    request_id: str | None,
    route: str | None,
    caller: Any = None,
    *,
    stream: bool,
    outcome: AuditOutcome | None = None,
    deployment: str | None = None,
    attempts: Iterable[Any] | None = None,
    usage: Any = None,
    cost: float = 0.0,
    latency_ms: float | None = None,
    ttft_ms: float | None = None,
    delivered_chunks: int | None = None,
    guardrails: Iterable[str] = (),
    store_content: bool = False,
    messages: Sequence[Mapping[str, Any]] | None = None,
    metadata: Mapping[str, Any] | None = None,
    secrets: Iterable[str | None] = (),
    time: float | None = None,
) -> AuditEvent:
    """The event for a request that ended in ``exc``: an error, a denial, a rate limit, a budget
    refusal or a cancellation (see :func:`outcome_for`; ``outcome`` overrides it).

    Attempts, deployment, request id and delivered chunks are read from the exception when it
    carries them (``RoutingError.attempts``, ``StreamInterruptedError.delivered_chunks``); explicit
    arguments win. A stream cut after some chunks records ``usage``/``cost`` if the caller passes them.
    """
    scrubber = _scrubber(caller, secrets)
    tried = _attempts(attempts if attempts is not None else getattr(exc, "attempts", None) or ())
    if deployment is None:
        deployment = getattr(exc, "deployment", None) or (tried[-1].deployment if tried else None)
    if delivered_chunks is None:
        delivered_chunks = getattr(exc, "delivered_chunks", None)
    message = getattr(exc, "message", None) if isinstance(exc, HyperionError) else str(exc)
    message = scrubber.text(str(message or type(exc).__name__))
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[: MAX_ERROR_MESSAGE - 15] + "... [truncated]"
    return AuditEvent(
        id=new_event_id(),
        time=_time.time() if time is None else time,
        outcome=outcome or outcome_for(exc),
        request_id=request_id or getattr(exc, "request_id", None),
        **_caller_fields(caller),
        route=route or getattr(exc, "route", None),
        deployment=deployment,
        attempts=tried,
        **_usage_fields(usage),
        cost=_num(cost) or 0.0,
        ttft_ms=_num(ttft_ms),
        latency_ms=_num(latency_ms),
        stream=stream,
        delivered_chunks=delivered_chunks,
        error_class=type(exc).__name__,
        error_message=message,
        guardrails=tuple(guardrails),
        prompt=_prompt(messages, scrubber) if store_content else None,
        metadata=_metadata(caller, metadata, scrubber),
    )


# -- helpers -----------------------------------------------------------------------------------


def _scrubber(caller: Any, secrets: Iterable[str | None]) -> Scrubber:
    return Scrubber((getattr(caller, "virtual_key", None), *secrets))


def _caller_fields(caller: Any) -> dict[str, str | None]:
    return {
        "key_id": _str_or_none(getattr(caller, "key_id", None)),
        "team": _str_or_none(getattr(caller, "team", None)),
        "user": _str_or_none(getattr(caller, "user", None)),
    }


def _usage_fields(usage: Any) -> dict[str, int]:
    return {
        "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
        "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
        "cached_prompt_tokens": int(getattr(usage, "cached_prompt_tokens", 0) or 0),
        "reasoning_tokens": int(getattr(usage, "reasoning_tokens", 0) or 0),
    }


def _attempts(attempts: Iterable[Any]) -> tuple[AuditAttempt, ...]:
    out = []
    for a in attempts:
        if type(a) is Attempt:  # the gateway's own record (typed): no duck typing needed
            latency = a.latency_ms
            out.append(AuditAttempt(
                str(a.deployment), str(a.outcome), a.error_class, int(a.status) if isinstance(a.status, int) else None,
                (latency if type(latency) is float and math.isfinite(latency) else _num(latency)) or 0.0,
            ))
            continue
        if isinstance(a, AuditAttempt):
            out.append(a)
            continue
        status = getattr(a, "status", None)
        out.append(
            AuditAttempt(
                deployment=str(getattr(a, "deployment", "?")),
                outcome=str(getattr(a, "outcome", "error")),
                error_class=getattr(a, "error_class", None),
                status=int(status) if isinstance(status, int) else None,
                latency_ms=_num(getattr(a, "latency_ms", 0.0)) or 0.0,
            )
        )
    return tuple(out)


def _metadata(caller: Any, extra: Mapping[str, Any] | None, scrubber: Scrubber) -> dict[str, str]:
    return scrubber.metadata(_merged_metadata(caller, extra))


def _merged_metadata(caller: Any, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """The caller's metadata, its tags and the pipeline's notes, not scrubbed yet."""
    merged: dict[str, Any] = dict(getattr(caller, "metadata", None) or {})
    tags = getattr(caller, "tags", None)
    if tags:
        merged["tags"] = ",".join(map(str, tags))
    if extra:
        merged.update(extra)
    return merged


def _prompt(messages: Sequence[Mapping[str, Any]] | None, scrubber: Scrubber) -> str | None:
    if not messages:
        return None
    return orjson.dumps(scrubber.structure(list(messages)), default=str).decode()


def _answer(resp: Any, scrubber: Scrubber) -> str | None:
    content = getattr(resp, "content", None)
    if content is not None:
        return scrubber.text(str(content))
    calls = getattr(resp, "tool_calls", None) or ()
    if not calls:
        return None
    payload = [{"name": getattr(c, "name", None), "arguments": getattr(c, "arguments", None)} for c in calls]
    return scrubber.text(orjson.dumps(payload).decode())


def _num(value: Any) -> float | None:
    """A finite float or None (NaN/inf would not survive JSON)."""
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


__all__ = [
    "AuditEvent",
    "AuditAttempt",
    "AuditOutcome",
    "AuditError",
    "CacheTier",
    "FrozenMap",
    "OUTCOMES",
    "event_from_response",
    "event_from_error",
    "new_event_id",
    "outcome_for",
]
