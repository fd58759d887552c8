"""Hyperion governance for LlamaIndex LLMs that do not go through Hyperion (say ``OpenAI`` or
``OpenAILike``): budget and rate-limit admission, spend and audit, through LlamaIndex's
instrumentation module — the LlamaIndex twin of ``HyperionCallbackHandler``.

::

    hyperion = HyperionInstrumentation(config="hyperion.yaml", virtual_key="hk-...").attach()
    llm = OpenAILike(model="gpt-4o-mini", api_base=..., api_key=...)
    llm.chat([...])      # admitted (or refused: BudgetExceededError), then settled and audited once

How each step is hooked, and why:

* **Start** — ``LLMChatStartEvent`` / ``LLMCompletionStartEvent`` (event handler) record the call:
  its messages, model and span.
* **Admission** — an event or span handler cannot stop a call: ``Dispatcher.event`` and
  ``Dispatcher.span_enter`` catch every exception a handler raises (``except BaseException: pass``).
  The one hook LlamaIndex lets raise, between the start event and the provider call, is the LLM's
  ``rate_limiter`` (``llm_chat_callback`` awaits ``rate_limiter.async_acquire()`` right after
  dispatching the start event, outside any ``try``). So the span handler, when it enters an LLM's
  ``chat``/``complete``/``stream_*`` span, installs a :class:`HyperionGate` as that LLM's rate limiter
  (wrapping any limiter already there); the gate admits the recorded call with
  ``Gateway.abegin_external`` and raises its error (``BudgetExceededError``, ``RateLimitedError``,
  ``InvalidKeyError``...) to stop the call. ``enforce=False`` skips the gate (spend and audit only).
* **End** — ``LLMChatEndEvent`` / ``LLMCompletionEndEvent`` settle the call with ``aend_external`` at
  the usage the provider reported (``response.raw.usage``, or the ``additional_kwargs`` token counts;
  estimated at ~4 characters a token when the provider sent none, e.g. an OpenAI stream without
  ``stream_options={"include_usage": True}``).
* **Error** — a whole call's error arrives as the span's ``span_drop``; a stream's as an
  ``ExceptionEvent``; a stream the caller abandons is failed as ``cancelled`` when its generator is
  collected. Each calls ``afail_external`` (reservation released, failure audited) exactly once.

Every gateway operation runs on the gateway's own background loop (the one its sync twins use): sync
callers wait for it, async callers await admission without blocking their loop, and settlement is
scheduled without waiting — ``flush()`` / ``await aflush()`` waits for what is still in flight.
Nested LLM calls (an LLM whose ``chat`` calls its own ``complete``) are metered once, at the outer
call. ``HyperionLLM`` calls are skipped: the gateway pipeline already governs them.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
import weakref
from collections.abc import Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.base.llms.base import BaseLLM
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.exception import ExceptionEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatInProgressEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionInProgressEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.instrumentation.span import active_span_id
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index.core.rate_limiter import BaseRateLimiter

from hyperion_core import Gateway
from hyperion_core.doors import CallEnd, ExternalMeter, GatewayRef, usage_from
from hyperion_core.errors import ConfigError
from hyperion_core.pipeline import StreamCancelled
from hyperion_core.types import Usage

from ._convert import to_openai_messages
from .events import HyperionBudgetEvent, budget_event_for_error, dispatcher

#: LLM methods whose spans are calls to meter
LLM_METHODS = frozenset({"chat", "achat", "stream_chat", "astream_chat", "complete", "acomplete",
                         "stream_complete", "astream_complete"})
#: LlamaIndex LLM class -> provider kind, for pricing (litellm's model map); else ``provider=``
PROVIDERS = {"OpenAI": "openai", "OpenAILike": "openai", "AzureOpenAI": "azure", "Anthropic": "anthropic",
             "Gemini": "gemini", "GoogleGenAI": "gemini", "MistralAI": "mistral", "Groq": "groq",
             "Bedrock": "bedrock", "BedrockConverse": "bedrock", "Vertex": "vertex_ai", "Ollama": "ollama"}
_SKIP = frozenset({"HyperionLLM"})


@dataclass(slots=True)
class _Call:
    span_id: str
    model: str
    provider: str
    messages: list[dict[str, Any]]
    stream: bool
    #: the output cap of the LLM making the call (the budget reservation's output tokens); None = the model's
    max_tokens: int | None = None
    admitted: bool = False  # the meter holds it (admission passed)
    chunks: int = 0
    started: float = field(default_factory=time.perf_counter)


def _method(span_id: str) -> str:
    """``"OpenAILike.achat-<uuid4>"`` -> ``"achat"`` (the dispatcher's span id format)."""
    head = span_id[:-37] if len(span_id) > 37 and span_id[-37] == "-" else span_id
    return head.rpartition(".")[2]


class HyperionGate(BaseRateLimiter):
    """The admission hook: installed as an LLM's ``rate_limiter``; admits the call the start event
    recorded (raising the gateway's refusal) and then defers to the limiter it wraps, if any."""

    def __init__(self, owner: HyperionInstrumentation, inner: Any = None) -> None:
        self.owner = owner
        self.inner = inner

    def acquire(self, num_tokens: int = 0) -> None:
        self.owner._admit_sync(active_span_id.get())
        if self.inner is not None:
            self.inner.acquire(num_tokens)

    async def async_acquire(self, num_tokens: int = 0) -> None:
        await self.owner._admit_async(active_span_id.get())
        if self.inner is not None:
            await self.inner.async_acquire(num_tokens)


class _Events(BaseEventHandler):
    _owner: Any = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "HyperionEventHandler"

    def handle(self, event: Any, **kwargs: Any) -> None:
        o = self._owner
        if isinstance(event, (LLMChatStartEvent, LLMCompletionStartEvent)):
            o._started(event)
        elif isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent)):
            o._ended(event)
        elif isinstance(event, (LLMChatInProgressEvent, LLMCompletionInProgressEvent)):
            o._chunk(event.span_id)
        elif isinstance(event, ExceptionEvent):
            o._failed(event.span_id, event.exception)


class _Spans(BaseSpanHandler[Any]):
    _owner: Any = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "HyperionSpanHandler"

    def span_enter(self, id_: str, bound_args: inspect.BoundArguments, instance: Any = None,
                   parent_id: str | None = None, tags: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._owner._entered(id_, instance, parent_id)

    def span_exit(self, id_: str, bound_args: inspect.BoundArguments, instance: Any = None,
                  result: Any = None, **kwargs: Any) -> None:
        self._owner._exited(id_, result)

    def span_drop(self, id_: str, bound_args: inspect.BoundArguments, instance: Any = None,
                  err: BaseException | None = None, **kwargs: Any) -> None:
        self._owner._dropped(id_, err)

    def new_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        return None


class HyperionInstrumentation:
    """Meter every (non-Hyperion) LlamaIndex LLM call through a gateway's governance and audit.

    ``gateway=`` or ``config=`` as for ``HyperionLLM``; ``virtual_key`` names the caller whose keys,
    budgets and rate limits apply; ``route`` is the name calls are governed and audited under (a key
    restricted to routes must allow it; default ``external:<model>``); ``provider`` prices the model
    (default: from the LLM class, else ``openai``). :meth:`attach` adds the handlers to a dispatcher
    (the root by default)."""

    def __init__(
        self,
        gateway: Gateway | None = None,
        *,
        config: Any = None,
        virtual_key: str | None = None,
        route: str | None = None,
        provider: str | None = None,
        enforce: bool = True,
    ) -> None:
        self._ref = GatewayRef(gateway, config, who="HyperionInstrumentation")
        #: admission, settlement and release of each call (shared with LangChain's callback handler)
        self.meter = ExternalMeter(self._ref, virtual_key=virtual_key, route=route)
        self._virtual_key = virtual_key
        self.route = route
        self.provider = provider
        self.enforce = enforce
        self.event_handler = _Events()
        self.event_handler._owner = self
        self.span_handler = _Spans()
        self.span_handler._owner = self
        self._lock = threading.Lock()
        self._parents: dict[str, str | None] = {}
        self._caps: dict[str, int] = {}  # span -> the output cap of the LLM whose call it is
        self._pending: dict[str, _Call] = {}
        self._inflight: set[Future[Any]] = set()
        self._gated: dict[int, weakref.ref[Any]] = {}  # LLMs carrying a gate (pydantic models: unhashable)
        self._dispatcher: Any = None
        #: counters: calls admitted, refused, settled, failed (including cancelled streams)
        self.stats = {"admitted": 0, "refused": 0, "settled": 0, "failed": 0, "estimated_usage": 0}

    def __repr__(self) -> str:  # the virtual key never shows
        return f"HyperionInstrumentation(route={self.route!r}, enforce={self.enforce})"

    @property
    def gateway(self) -> Gateway:
        return self._ref.get()

    # -- lifecycle -------------------------------------------------------------------------------

    def attach(self, dispatcher: Any = None) -> HyperionInstrumentation:
        """Add the event and span handlers to ``dispatcher`` (default: LlamaIndex's root)."""
        if self._dispatcher is not None:
            raise ConfigError("HyperionInstrumentation is already attached; detach() it first")
        d = dispatcher or get_dispatcher()
        d.add_event_handler(self.event_handler)
        d.add_span_handler(self.span_handler)
        self._dispatcher = d
        return self

    def detach(self) -> None:
        """Remove the handlers and every gate this instance installed (restoring wrapped limiters)."""
        d, self._dispatcher = self._dispatcher, None
        if d is not None:
            d.event_handlers = [h for h in d.event_handlers if h is not self.event_handler]
            d.span_handlers = [h for h in d.span_handlers if h is not self.span_handler]
        with self._lock:
            gated, self._gated = list(self._gated.values()), {}
        for ref in gated:
            llm = ref()
            gate = getattr(llm, "rate_limiter", None)
            if isinstance(gate, HyperionGate) and gate.owner is self:
                llm.rate_limiter = gate.inner

    def guard(self, llm: BaseLLM) -> BaseLLM:
        """Install the admission gate on ``llm`` now (the span handler does it on the first call)."""
        gate = getattr(llm, "rate_limiter", None)
        if not (isinstance(gate, HyperionGate) and gate.owner is self):
            llm.rate_limiter = HyperionGate(self, inner=gate)
            key = id(llm)
            with self._lock:
                self._gated[key] = weakref.ref(llm, lambda _, k=key: self._gated.pop(k, None))
        return llm

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until every settlement scheduled so far is recorded (sync callers)."""
        with self._lock:
            futures = list(self._inflight)
        wait(futures, timeout=timeout)

    async def aflush(self, timeout: float | None = 30.0) -> None:
        """Wait until every settlement scheduled so far is recorded, without blocking the loop."""
        with self._lock:
            futures = [asyncio.wrap_future(f) for f in self._inflight]
        if futures:
            await asyncio.wait(futures, timeout=timeout)

    async def __aenter__(self) -> HyperionInstrumentation:
        return self.attach()

    async def __aexit__(self, *exc: object) -> None:
        await self.aflush()
        self.detach()

    def __enter__(self) -> HyperionInstrumentation:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.flush()
        self.detach()

    # -- spans -----------------------------------------------------------------------------------

    def _entered(self, span_id: str, instance: Any, parent_id: str | None) -> None:
        with self._lock:
            self._parents[span_id] = parent_id
        if (isinstance(instance, BaseLLM) and instance.class_name() not in _SKIP
                and _method(span_id) in LLM_METHODS):
            cap = max_tokens_of(instance)  # the start event carries metadata only, not the LLM's cap
            if cap is not None:
                with self._lock:
                    self._caps[span_id] = cap
            if self.enforce:
                self.guard(instance)

    def _exited(self, span_id: str, result: Any) -> None:
        with self._lock:
            self._parents.pop(span_id, None)
            self._caps.pop(span_id, None)
            pending = self._pending.get(span_id)
        if pending is not None and pending.stream and result is not None:
            # a stream's span ends when its generator is returned; the call ends with the generator
            try:
                weakref.finalize(result, self._abandoned, span_id)
            except TypeError:
                pass

    def _dropped(self, span_id: str, err: BaseException | None) -> None:
        with self._lock:
            self._parents.pop(span_id, None)
            self._caps.pop(span_id, None)
        if err is not None:
            self._failed(span_id, err)

    def _nested(self, span_id: str | None) -> bool:
        """Is an LLM call already metered further up this span's chain?"""
        seen = 0
        with self._lock:
            parent = self._parents.get(span_id) if span_id else None
            while parent is not None and seen < 256:
                if parent in self._pending:
                    return True
                parent = self._parents.get(parent)
                seen += 1
        return False

    # -- the call's life -------------------------------------------------------------------------

    def _started(self, event: Any) -> None:
        span_id = event.span_id
        md = event.model_dict or {}
        cls = str(md.get("class_name") or "")
        if not span_id or cls in _SKIP or self._nested(span_id):
            return
        if isinstance(event, LLMChatStartEvent):
            messages = to_openai_messages(event.messages)
        else:
            messages = [{"role": "user", "content": event.prompt}]
        model = str(md.get("model") or md.get("model_name") or "unknown")
        provider = self.provider or PROVIDERS.get(cls, "openai")
        with self._lock:
            cap = self._caps.pop(span_id, None)
        call = _Call(span_id, model, provider, messages, stream="stream" in _method(span_id), max_tokens=cap)
        with self._lock:
            self._pending[span_id] = call

    def _chunk(self, span_id: str | None) -> None:
        p = self._pending.get(span_id) if span_id else None
        if p is not None:
            p.chunks += 1

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    async def _begin(self, p: _Call) -> None:
        await self.meter.abegin(p.span_id, model=p.model, provider=p.provider, messages=p.messages,
                                max_tokens=p.max_tokens, stream=p.stream)
        p.admitted = True

    def _take_unadmitted(self, span_id: str | None) -> _Call | None:
        with self._lock:
            p = self._pending.get(span_id) if span_id else None
        return p if p is not None and not p.admitted else None

    def _admit_sync(self, span_id: str | None) -> None:
        p = self._take_unadmitted(span_id)
        if p is not None:
            try:
                self.gateway.run_sync(self._begin(p))
            except BaseException as exc:
                self._refused(p, exc)
                raise
            self._count("admitted")

    async def _admit_async(self, span_id: str | None) -> None:
        p = self._take_unadmitted(span_id)
        if p is not None:
            try:
                await asyncio.wrap_future(self.gateway.submit(self._begin(p)))
            except BaseException as exc:
                self._refused(p, exc)
                raise
            self._count("admitted")

    def _refused(self, p: _Call, exc: BaseException) -> None:
        """Admission failed: the gateway already audited it and released nothing; forget the call."""
        with self._lock:
            self._pending.pop(p.span_id, None)
        self._count("refused")
        event = budget_event_for_error(exc, self.route or f"external:{p.model}", source="external")
        if event is not None:
            event.span_id = p.span_id
            dispatcher.event(event)

    def _ended(self, event: Any) -> None:
        with self._lock:
            p = self._pending.pop(event.span_id, None) if event.span_id else None
        if p is None:
            return
        response = event.response
        usage = usage_of(response)
        if isinstance(event, LLMChatEndEvent):
            content = response.message.content if response is not None else None
        else:
            content = response.text if response is not None else None
        if usage is None:
            self._count("estimated_usage")
        raw = getattr(response, "raw", None)
        model = (raw.get("model") if isinstance(raw, Mapping) else getattr(raw, "model", None)) or None
        self._schedule(self._settle(p, usage, content, model if isinstance(model, str) else None))

    async def _settle(self, p: _Call, usage: Usage | None, content: str | None, model: str | None) -> None:
        gw = self.gateway
        if not p.admitted:  # no gate ran (enforce=False, or an LLM that skips its rate limiter): admit late
            await self._begin(p)
        resp = await self.meter.aend(p.span_id, CallEnd(usage=usage, content=content, model=model))
        if resp is None:
            return
        self._count("settled")
        if gw.governance is not None:
            dispatcher.event(HyperionBudgetEvent(
                route=resp.route, request_id=resp.request_id, decision="admitted", cost_usd=resp.cost,
                source="external", span_id=p.span_id,
            ))

    def _failed(self, span_id: str | None, exc: BaseException) -> None:
        with self._lock:
            p = self._pending.pop(span_id, None) if span_id else None
        if p is None or not p.admitted:
            return
        if p.stream and isinstance(exc, (GeneratorExit, asyncio.CancelledError)):
            exc = StreamCancelled(p.chunks)  # the caller stopped reading: audited as cancelled
        self._count("failed")
        self._schedule(self.meter.afail(p.span_id, exc))

    def _abandoned(self, span_id: str) -> None:
        with self._lock:
            p = self._pending.get(span_id)
        if p is not None:
            self._failed(span_id, StreamCancelled(p.chunks))

    def _schedule(self, coro: Any) -> None:
        """Sync callers wait for the gateway; callers inside an event loop are not blocked."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.gateway.run_sync(coro)
            return
        fut = self.gateway.submit(coro)
        with self._lock:
            self._inflight.add(fut)
        fut.add_done_callback(self._done)

    def _done(self, fut: Future[Any]) -> None:
        with self._lock:
            self._inflight.discard(fut)


#: where LlamaIndex LLMs keep their output cap, most specific first: ``additional_kwargs`` are sent over
#: the fields (``OpenAI``), ``max_completion_tokens`` is OpenAI's newer name, ``num_predict`` Ollama's
_MAX_TOKENS_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens", "max_new_tokens", "num_predict")


def max_tokens_of(llm: Any) -> int | None:
    """The output-token cap a LlamaIndex LLM sends with each call, or None when it sends none (the
    model's own limit applies). Its ``additional_kwargs`` win over its fields, as ``OpenAI`` sends them."""
    extra = getattr(llm, "additional_kwargs", None)
    for src in (extra, llm):
        for key in _MAX_TOKENS_KEYS:
            v = src.get(key) if isinstance(src, Mapping) else getattr(src, key, None)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return None


def usage_of(response: Any) -> Usage | None:
    """Token usage a LlamaIndex response carries: ``raw.usage`` (OpenAI, Anthropic or Gemini shape;
    object or dict), else OpenAI-style counts in ``additional_kwargs``, parsed by the core's one parser
    per wire (:func:`hyperion_core.doors.usage_from`); None when the provider reported none."""
    if response is None:
        return None
    raw = getattr(response, "raw", None)
    u = raw.get("usage") if isinstance(raw, Mapping) else getattr(raw, "usage", None)
    if u is None and isinstance(raw, Mapping):
        u = raw.get("usage_metadata") or raw.get("usageMetadata")  # Gemini
    usage = usage_from(u)
    if usage is None:
        ak = getattr(response, "additional_kwargs", None) or {}
        if "prompt_tokens" in ak or "completion_tokens" in ak:
            usage = usage_from(ak, "openai")
    return usage


__all__ = ["HyperionInstrumentation", "HyperionGate", "usage_of", "max_tokens_of", "LLM_METHODS", "PROVIDERS"]
