"""Programmable fault injection, keyed on deployment (and optionally model).

A :class:`Fault` is matched against every chat and embeddings request; the
first active fault in insertion order whose ``deployment`` (``"*"`` = any) and
``model`` (``None`` = any) match, and whose ``probability`` roll succeeds,
applies to that request. A fault with ``times`` expires after that many hits
(a failed probability roll is not a hit and lets later faults match).

Effects, in the order the server applies them:

``latency_ms``        sleep before the response (before a stream's first byte)
``hang``              accept the request and never answer; ends when the client
                      disconnects or after ``hang_s`` (the socket is then closed)
``kind``/``status``   answer with an error in the wire's format; ``kind`` is one
                      of :data:`ERROR_KINDS`, ``status`` a raw HTTP status (kind
                      inferred); ``message`` overrides the text; ``retry_after``
                      (seconds) adds ``Retry-After`` / ``retry-after-ms`` headers
``malformed``         200 with invalid JSON; in a stream one broken SSE data line
                      after the first chunk, then a normal finish
``cut_after_chunks``  stream: N content chunks then the connection is closed with
                      no terminal event; non-stream: half the body, then closed
``chunk_delay_ms``    sleep between stream content chunks
``stall_after_chunks`` stream: N content chunks, then silence with the connection
                      open (until the client gives up, or ``hang_s``)
``eof_after_chunks``  stream: N content chunks, then a clean end of the body
                      (HTTP terminator sent) without the terminal event
``drop_after_finish`` stream: the whole answer up to the frame carrying its finish
                      reason, then the connection is closed before the trailer
                      (``[DONE]``, ``message_stop``; Gemini's finish frame is terminal)
``empty``             200 with no content and no finish reason (Anthropic, whose
                      API always sets one: ``content: []`` with ``end_turn``)
``resume_overlap``    a continuation (see ``content``) repeats this many words of
                      the text it continues, as real models often do
``usage``             OpenAI wire: this usage object is reported verbatim instead
                      of the computed one (``{}``: none) — an upstream that omits
                      its usage or reports nonsense (negative, 2^63, cached > prompt)
``cached_tokens`` /   reported in usage (OpenAI ``prompt_tokens_details`` /
``reasoning_tokens``  ``completion_tokens_details``, Anthropic cache_read, Gemini
                      ``cachedContentTokenCount`` / ``thoughtsTokenCount``)

``probability`` rolls use a per-fault ``random.Random(seed)`` (seed defaults
to 0), so a run is reproducible. :class:`FaultBook` is thread-safe.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from .common import new_id

ERROR_KINDS: tuple[str, ...] = (
    "rate_limit",
    "server_error",
    "overloaded",
    "unavailable",
    "context_window",
    "content_policy",
    "auth",
    "bad_request",
    "not_found",
)


def kind_for_status(status: int) -> str:
    """The error kind whose body best fits a raw HTTP ``status``."""
    specific = {
        400: "bad_request",
        401: "auth",
        403: "auth",
        404: "not_found",
        413: "context_window",
        429: "rate_limit",
        503: "unavailable",
        529: "overloaded",
    }
    if status in specific:
        return specific[status]
    return "server_error" if status >= 500 else "bad_request"


@dataclass(slots=True)
class Fault:
    deployment: str = "*"
    model: str | None = None
    kind: str | None = None
    status: int | None = None
    message: str | None = None
    retry_after: float | None = None
    latency_ms: float = 0.0
    hang: bool = False
    hang_s: float = 300.0
    cut_after_chunks: int | None = None
    malformed: bool = False
    chunk_delay_ms: float = 0.0
    stall_after_chunks: int | None = None
    eof_after_chunks: int | None = None
    drop_after_finish: bool = False
    empty: bool = False
    resume_overlap: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    usage: dict[str, Any] | None = None
    times: int | None = None
    probability: float | None = None
    seed: int = 0
    id: str = field(default_factory=new_id)
    hits: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in ERROR_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {ERROR_KINDS}")
        if self.status is not None and not 100 <= int(self.status) <= 599:
            raise ValueError("status must be an HTTP status code")
        if self.kind is None and self.status is not None and self.status >= 400:
            self.kind = kind_for_status(self.status)
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        for name in ("cut_after_chunks", "stall_after_chunks", "eof_after_chunks", "resume_overlap"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")
        self._rng = random.Random(self.seed)

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> Fault:
        allowed = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")} - {"id", "hits"}
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**spec)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}

    @property
    def is_error(self) -> bool:
        return self.kind is not None

    def matches(self, deployment: str, model: str) -> bool:
        return self.deployment in ("*", deployment) and self.model in (None, model)


class FaultBook:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> str:
        with self._lock:
            self._faults.append(fault)
        return fault.id

    def clear(self, deployment: str | None = None) -> int:
        with self._lock:
            keep = [f for f in self._faults if deployment is not None and f.deployment != deployment]
            removed = len(self._faults) - len(keep)
            self._faults = keep
        return removed

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_dict() for f in self._faults]

    def take(self, deployment: str, model: str) -> Fault | None:
        """The fault hitting this request, if any; counts the hit against ``times``."""
        if not self._faults:  # lock-free fast path for the common benchmark case
            return None
        with self._lock:
            for i, fault in enumerate(self._faults):
                if not fault.matches(deployment, model):
                    continue
                if fault.probability is not None and fault._rng.random() >= fault.probability:
                    continue
                fault.hits += 1
                if fault.times is not None and fault.hits >= fault.times:
                    del self._faults[i]
                return fault
        return None
