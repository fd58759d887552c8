"""Request, response and stream records shared by every door and adapter.

Messages use the OpenAI chat format (``{"role": ..., "content": ..., "tool_calls": [...]}``), the
lingua franca of LangChain, LlamaIndex and litellm; adapters translate to their wire format.
Records are slotted dataclasses: cheap to build on the hot path, immutable once returned.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypedDict

Message = dict[str, Any]

_ids = itertools.count(1)
_prefix = os.urandom(4).hex()


def new_request_id() -> str:
    """A process-unique, cheap request id (no uuid4 syscall on the hot path)."""
    return f"req-{_prefix}-{next(_ids):08x}"


@dataclass(slots=True)
class Caller:
    """Who is calling: filled by authorization (virtual key) or passed by a trusted door."""

    virtual_key: str | None = None
    key_id: str | None = None
    team: str | None = None
    user: str | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    #: a call the gateway makes for itself (the semantic cache's verifier): no virtual key needed.
    #: Only in-process code can set it; a server never lets a client do so
    internal: bool = False
    #: a door verified who calls by other means than a virtual key (the server's OIDC tokens): no
    #: virtual key needed; ``key_id`` / ``team`` / ``user`` are the budget subjects as the door set them
    authenticated: bool = False


@dataclass(slots=True, frozen=True)
class CacheControl:
    """Per-request cache control. ``ttl`` in seconds overrides the route's tiers (0 = do not store)."""

    no_cache: bool = False  # neither read nor write the cache
    no_store: bool = False  # may read, never write
    force_refresh: bool = False  # skip reads, write the fresh answer
    ttl: float | None = None
    namespace: str | None = None  # an extra partition of the cache key space


@dataclass(slots=True, frozen=True)
class CacheInfo:
    """How a response came from the cache (``ChatResponse.cache``; None for a fresh answer)."""

    tier: str  # events.CacheTier: "l1" | "l2" | "semantic" | "coalesced"
    age_s: float
    similarity: float | None = None  # semantic tier: 1 - cosine distance
    guards: tuple[str, ...] = ()  # guards that passed (semantic tier)
    tokens_saved: int = 0
    cost_saved: float = 0.0  # USD the original call cost
    source_deployment: str | None = None


@dataclass(slots=True)
class ChatRequest:
    """One chat request as the pipeline sees it, whichever door it came through."""

    route: str
    messages: list[Message]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    n: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    #: provider parameters passed through unchanged (e.g. ``{"logprobs": True}``)
    extra: dict[str, Any] = field(default_factory=dict)
    caller: Caller | None = None
    cache: CacheControl | None = None
    #: total deadline in seconds for this request; overrides the route's ``timeout``
    timeout: float | None = None
    #: extra attempts per deployment for retryable errors; overrides the route's ``retry.attempts``
    max_retries: int | None = None
    request_id: str = field(default_factory=new_request_id)
    metadata: dict[str, Any] = field(default_factory=dict)
    #: pin one deployment of the route (its ``name``): only it is tried, no failover, no cache read; a
    #: virtual key needs the ``deployments:pin`` permission (role ``admin``). The server reads it from
    #: ``model: "<route>/<deployment>"``
    deployment: str | None = None

    def with_messages(self, messages: list[Message]) -> ChatRequest:
        return replace(self, messages=messages)


@dataclass(slots=True, frozen=True)
class Usage:
    """Token counts. ``prompt_tokens`` includes ``cached_prompt_tokens`` and ``cache_write_tokens``;
    ``completion_tokens`` includes ``reasoning_tokens`` (OpenAI's convention, which adapters normalise to)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_prompt_tokens + other.cached_prompt_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )


@dataclass(slots=True, frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as in the OpenAI format


@dataclass(slots=True, frozen=True)
class ToolCallDelta:
    """A piece of a streamed tool call; pieces with the same ``index`` concatenate."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


Outcome = Literal["ok", "error", "cancelled"]  # cancelled: a hedged attempt another one beat


@dataclass(slots=True, frozen=True)
class Attempt:
    """One call to one deployment."""

    deployment: str
    outcome: Outcome
    latency_ms: float
    error_class: str | None = None
    status: int | None = None
    message: str | None = None


@dataclass(slots=True, frozen=True)
class ProviderResponse:
    """What an adapter returns for a whole (non-streamed) chat call."""

    content: str | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None
    usage: Usage
    model: str
    id: str | None = None  # the provider's response id
    system_fingerprint: str | None = None  # OpenAI wire: the backend configuration that answered
    logprobs: Any = None  # OpenAI wire: the choice's ``logprobs`` as sent
    reasoning: str | None = None  # thinking text: OpenAI-wire ``reasoning_content``, Anthropic / Gemini thoughts


@dataclass(slots=True, frozen=True)
class ChatChunk:
    """One streamed piece. The final chunk of a stream carries ``finish_reason`` and ``usage``."""

    content: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None
    deployment: str | None = None


@dataclass(slots=True, frozen=True)
class RouteDecision:
    """Why this deployment answered: the strategy and the rule, score, variant or hedge that chose it
    (``ChatResponse.decision``; the server sends ``reason`` as ``x-hyperion-route-reason``)."""

    strategy: str  # the route's strategy (``failover``, ``policy``, ``quality``, ...) or ``split``
    reason: str  # one human-readable line, e.g. ``rule long_context: prompt_tokens 9120 >= 8000``
    rule: str | None = None  # the policy rule that matched
    variant: str | None = None  # the experiment variant that served the request (``a`` / ``b``)
    experiment: str | None = None  # the experiment (split) that chose the variant
    hedged: bool = False  # a hedge attempt (not the first) produced the answer
    scores: dict[str, float] | None = None  # ``quality``: the deployments' scores for the task


@dataclass(slots=True, frozen=True)
class ChatResponse:
    """The gateway's answer: the message plus where it came from and what it cost."""

    request_id: str
    route: str
    deployment: str
    model: str
    content: str | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None
    usage: Usage
    cost: float  # USD
    attempts: tuple[Attempt, ...]
    latency_ms: float
    ttft_ms: float | None = None
    #: deployments that continued a cut stream (stream resume), in order
    resumed_by: tuple[str, ...] = ()
    #: set when the answer came from the cache (then ``cost`` is 0: nothing was paid upstream)
    cache: CacheInfo | None = None
    #: provenance the provider sent (None when it sent none, and for cache hits): its response id,
    #: the OpenAI wire's ``system_fingerprint`` and ``logprobs``, and the model's reasoning text
    provider_id: str | None = None
    system_fingerprint: str | None = None
    logprobs: Any = None
    reasoning: str | None = None
    #: how the route chose the deployment (policy rule, quality scores, experiment variant, hedge);
    #: None for a plain ``failover`` pick
    decision: RouteDecision | None = None

    @property
    def message(self) -> Message:
        msg: Message = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = [
                {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
                for t in self.tool_calls
            ]
        return msg


@dataclass(slots=True, frozen=True)
class EmbeddingResponse:
    vectors: list[list[float]]
    model: str
    deployment: str
    usage: Usage
    cost: float
    attempts: tuple[Attempt, ...]
    latency_ms: float
    request_id: str | None = None



class RequestParams(TypedDict, total=False):
    """Keyword arguments of :meth:`Gateway.acomplete` / ``astream`` / ``request`` (all optional).
    Provider parameters beyond these (``logprobs=``, ``reasoning_effort=``, ...) go in ``extra``
    under their OpenAI names; a name no wire knows is refused unless the route's ``allow_params`` has it."""

    temperature: float
    top_p: float
    max_tokens: int
    stop: str | list[str]
    seed: int
    n: int
    tools: list[dict[str, Any]]
    tool_choice: Any
    response_format: dict[str, Any]
    caller: Caller
    virtual_key: str
    cache: CacheControl
    timeout: float
    max_retries: int
    metadata: dict[str, Any]
    #: pin this deployment of the route (no failover; see ``ChatRequest.deployment``)
    deployment: str
    #: provider parameters by their OpenAI names (``{"logprobs": True}``); they may also be passed as
    #: keyword arguments of their own
    extra: dict[str, Any]


__all__ = [
    "RequestParams",
    "Message",
    "Caller",
    "CacheControl",
    "CacheInfo",
    "ChatRequest",
    "Usage",
    "ToolCall",
    "ToolCallDelta",
    "Attempt",
    "ProviderResponse",
    "ChatChunk",
    "ChatResponse",
    "RouteDecision",
    "EmbeddingResponse",
    "new_request_id",
]
