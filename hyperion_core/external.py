"""Calls made outside the gateway (a LangChain or LlamaIndex handler around the framework's own model
client): the same stages as any request — Authorize and Admit before the call, Settle and Audit after —
through :meth:`Pipeline.enter` / :meth:`Pipeline.exit`. Mixed into :class:`~hyperion_core.gateway.Gateway`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .pipeline import EXTERNAL, RequestContext
from .pricing import lookup
from .types import CacheInfo, Caller, ChatRequest, ChatResponse, Message, Usage

if TYPE_CHECKING:
    from .pipeline import Pipeline


@dataclass(slots=True)
class ExternalCall:
    """A model call made outside the gateway, admitted by :meth:`Gateway.abegin_external`."""

    req: ChatRequest
    model: str
    provider: str
    price: Any
    ticket: RequestContext  # its passage through the pipeline
    started: float


class ExternalCalls:
    """The external-call API (needs ``request`` and ``pipeline`` from the gateway)."""

    pipeline: Pipeline
    request: Callable[..., ChatRequest]  # the gateway's request builder

    async def abegin_external(self, *, model: str, messages: list[Message], provider: str = "openai",
                              route: str | None = None, max_tokens: int | None = None, virtual_key: str | None = None,
                              caller: Caller | None = None, stream: bool = False,
                              request_id: str | None = None) -> ExternalCall:
        """Admit a model call that another client makes (say ``ChatOpenAI``): authorize the key,
        apply rate limits and reserve the budget at ``provider/model``'s price. Raises the same
        errors as a gateway call (audited); hand the result to :meth:`aend_external` or
        :meth:`afail_external` exactly once."""
        req = self.request(route or f"external:{model}", messages, max_tokens=max_tokens, caller=caller,
                           virtual_key=virtual_key)
        if request_id:
            req.request_id = request_id
        price = lookup(provider, model)
        ctx = self.pipeline.context(req, EXTERNAL)
        ctx.streamed = stream
        ctx.priced = [(price, model)]
        await self.pipeline.enter(ctx)
        return ExternalCall(req, model, provider, price, ctx, time.perf_counter())

    async def aend_external(self, call: ExternalCall, *, usage: Usage, content: str | None = None,
                            finish_reason: str | None = None, model: str | None = None, ttft_ms: float | None = None,
                            stream: bool | None = None, cache: CacheInfo | None = None) -> ChatResponse:
        """Settle the call at its actual usage, record spend and audit it; returns it as a response record.
        ``stream``: whether it turned out to be streamed (handlers often learn that only from tokens).
        ``cache``: the answer came from Hyperion's cache (say ``HyperionCache``): it costs nothing and
        ``cache.cost_saved`` is recorded as saved."""
        if stream is not None:
            call.ticket.streamed = stream
        resp = ChatResponse(
            request_id=call.req.request_id, route=call.req.route, deployment=f"{call.provider}/{model or call.model}",
            model=model or call.model, content=content, tool_calls=(), finish_reason=finish_reason, usage=usage,
            cost=0.0 if cache is not None else call.price.cost(usage), attempts=(),
            latency_ms=(time.perf_counter() - call.started) * 1000.0, ttft_ms=ttft_ms, cache=cache,
        )
        await self.pipeline.exit(call.ticket, resp)
        return resp

    async def afail_external(self, call: ExternalCall, exc: BaseException) -> None:
        """Release the call's reservation and audit its failure."""
        await self.pipeline.exit(call.ticket, None, exc)



__all__ = ["ExternalCall", "ExternalCalls"]
