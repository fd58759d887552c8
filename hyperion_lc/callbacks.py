"""Governance for chains that keep their own model (say ``ChatOpenAI``): attach a handler.

::

    handler = HyperionCallbackHandler(config="hyperion.yaml", virtual_key="hk-...")
    chain.invoke(inputs, config={"callbacks": [handler]})

On a chat-model / LLM start the handler admits the call through the gateway
(:meth:`~hyperion_core.Gateway.abegin_external`): the virtual key is authenticated, rate limits apply and
the budget is reserved from the estimated tokens at the model's price. A refusal raises (the handler has
``raise_error = True``), which stops the run before the model is called; the error is the two-parent class
of :mod:`hyperion_lc.errors` (catch ``BudgetExceededError`` or LangChain's ``ModelError``). On end the call
is settled at the model's reported usage (``usage_metadata``, else ``llm_output["token_usage"]``, else an
estimate) and audited like a gateway request — an answer ``HyperionCache`` served is settled at $0 and its
cost recorded as saved; on error it is released and the failure audited. Calls are correlated by
``run_id``: exactly one settle or release per admitted start (the bookkeeping is the core's
:class:`~hyperion_core.doors.ExternalMeter`, shared with the LlamaIndex instrumentation). Runs of
``HyperionChat`` are skipped (the gateway already governs them).

:class:`HyperionCallbackHandler` is sync and works for sync and async runs (LangChain runs a sync handler
of an async run in a worker thread). :class:`AsyncHyperionCallbackHandler` stays on the event loop in
async runs; in sync runs it gates too: LangChain would run its coroutines on a throwaway loop and
swallow their errors (so a refusal would not stop the call), so there its methods run synchronously on
the gateway's own loop instead, and a refusal raises as from the sync handler.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from pydantic import SecretStr

from hyperion_core import Gateway, HyperionError
from hyperion_core.doors import CallEnd, ExternalMeter, GatewayRef, cache_info_from, usage_from
from hyperion_core.types import Usage

from ._convert import to_openai_messages
from .errors import to_langchain_error

log = logging.getLogger("hyperion.langchain")

_PROVIDERS = {
    "azure": "azure",
    "azure_openai": "azure",
    "google_genai": "gemini",
    "google_vertexai": "vertex_ai",
}


def usage_of(response: LLMResult) -> Usage | None:
    """The token usage a model reported for its (first) generation (``usage_metadata``, else
    ``llm_output["token_usage"]``, by :func:`hyperion_core.doors.usage_from`), or None."""
    gen = response.generations[0][0] if response.generations and response.generations[0] else None
    um = getattr(getattr(gen, "message", None), "usage_metadata", None)
    if um:
        return usage_from(um, "langchain")
    out = response.llm_output or {}
    usage = usage_from(out.get("token_usage") or out.get("usage"))
    return usage if usage is not None and usage.total_tokens else None


class _Ledger:
    """What both handlers share: configuration, the pure prepare/settle steps and the meter."""

    raise_error = True  # a refusal on start must stop the run

    def __init__(
        self,
        *,
        config: Any = None,
        gateway: Gateway | None = None,
        virtual_key: str | SecretStr | None = None,
        route: str | None = None,
        provider: str | None = None,
    ) -> None:
        self._ref = GatewayRef(gateway, config, who=type(self).__name__)
        self.route = route
        self.provider = provider
        self.meter = ExternalMeter(
            self._ref, virtual_key=SecretStr(virtual_key) if isinstance(virtual_key, str) else virtual_key,
            route=route,
        )

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(route={self.route!r}, open_calls={self.meter.open_calls})"

    @property
    def gateway(self) -> Gateway:
        return self._ref.get()

    @property
    def open_calls(self) -> int:
        """Admitted calls not settled yet."""
        return self.meter.open_calls

    # -- prepare ---------------------------------------------------------------------------------
    def _begin_spec(
        self, messages: list[dict[str, Any]], run_id: UUID, kwargs: dict[str, Any]
    ) -> dict[str, Any] | None:
        params = kwargs.get("invocation_params") or {}
        if params.get("_type") == "hyperion-chat":
            return None  # HyperionChat runs through the gateway already
        meta = kwargs.get("metadata") or {}
        model = str(meta.get("ls_model_name") or params.get("model") or params.get("model_name") or "unknown")
        provider = self.provider or str(meta.get("ls_provider") or "openai")
        max_tokens = (
            meta.get("ls_max_tokens") or params.get("max_tokens") or params.get("max_completion_tokens")
        )
        return {
            "model": model,
            "messages": messages,
            "provider": _PROVIDERS.get(provider, provider),
            "max_tokens": max_tokens if isinstance(max_tokens, int) else None,
            "stream": bool(params.get("stream") or params.get("streaming")),
            "request_id": f"lc-{run_id}",
        }

    @staticmethod
    def _chat_messages(messages: list[list[BaseMessage]]) -> list[dict[str, Any]]:
        return to_openai_messages(messages[0]) if messages else []

    @staticmethod
    def _prompt_messages(prompts: list[str]) -> list[dict[str, Any]]:
        return [{"role": "user", "content": prompts[0]}] if prompts else []

    def _token(self, run_id: UUID) -> None:
        self.meter.token(run_id)

    # -- settle ------------------------------------------------------------------------------------
    @staticmethod
    def _end(response: LLMResult) -> CallEnd:
        gen = response.generations[0][0] if response.generations and response.generations[0] else None
        msg = getattr(gen, "message", None)
        text = gen.text if gen is not None else ""
        rmeta = getattr(msg, "response_metadata", None) or {}
        info = (getattr(gen, "generation_info", None) or {}) if gen is not None else {}
        model = rmeta.get("model_name") or (response.llm_output or {}).get("model_name")
        return CallEnd(
            usage=usage_of(response),  # None: estimated from the text
            content=text or None,
            finish_reason=info.get("finish_reason") or rmeta.get("finish_reason"),
            model=model,
            # an answer HyperionCache served: nothing was paid upstream, its cost is a saving
            cache=cache_info_from(rmeta) or cache_info_from(info),
        )

    @staticmethod
    def _refusal(exc: BaseException) -> BaseException:
        return to_langchain_error(exc) if isinstance(exc, HyperionError) else exc


class HyperionCallbackHandler(_Ledger, BaseCallbackHandler):
    """Admission, spend and audit for a model call made outside the gateway (sync; usable in async runs)."""

    def __init__(self, **kw: Any) -> None:
        _Ledger.__init__(self, **kw)
        BaseCallbackHandler.__init__(self)

    def _run(self, coro: Any) -> Any:
        return self.gateway.run_sync(coro)  # the gateway's own loop for sync callers

    def _begin(self, messages: list[dict[str, Any]], run_id: UUID, kwargs: dict[str, Any]) -> None:
        spec = self._begin_spec(messages, run_id, kwargs)
        if spec is None:
            return
        try:
            self._run(self.meter.abegin(run_id, **spec))
        except HyperionError as exc:
            raise self._refusal(exc) from exc.__cause__

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        self._begin(self._chat_messages(messages), run_id, kwargs)

    def on_llm_start(
        self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID, **kwargs: Any
    ) -> None:
        self._begin(self._prompt_messages(prompts), run_id, kwargs)

    def on_llm_new_token(self, token: str, *, run_id: UUID, **kwargs: Any) -> None:
        self._token(run_id)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        if not self.meter.is_open(run_id):
            return
        try:
            self._run(self.meter.aend(run_id, self._end(response)))
        except Exception:  # noqa: BLE001 - settling must never break the user's chain
            log.exception("hyperion: settling run %s failed", run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if not self.meter.is_open(run_id):
            return
        try:
            self._run(self.meter.afail(run_id, error))
        except Exception:  # noqa: BLE001
            log.exception("hyperion: auditing the failure of run %s failed", run_id)


def _sync_dispatch() -> bool:
    """Is a handler method being looked up by LangChain's *sync* dispatcher (a sync run)? True when
    no event loop runs in this thread, or when the caller is ``langchain_core``'s ``handle_event``
    (a sync run inside a running loop, e.g. ``invoke`` in a notebook cell)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return True
    caller = sys._getframe(2)  # _sync_dispatch <- __get__ <- LangChain's dispatcher (getattr adds no frame)
    return caller.f_code.co_name == "handle_event" and caller.f_globals.get("__name__") == _LC_MANAGER


_LC_MANAGER = "langchain_core.callbacks.manager"


class _gated:  # noqa: N801 - used as a decorator
    """An async handler method that LangChain's sync dispatcher gets as a sync method: the coroutine
    runs to completion on the gateway's loop and its errors propagate (``raise_error``), so a refusal
    stops a sync run as it stops an async one."""

    def __init__(self, fn: Callable[..., Coroutine[Any, Any, None]]) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self.fn
        bound = self.fn.__get__(obj, objtype)
        if not _sync_dispatch():
            return bound

        @functools.wraps(self.fn)
        def run_sync(*args: Any, **kwargs: Any) -> None:
            obj.gateway.run_sync(bound(*args, **kwargs))

        return run_sync


class AsyncHyperionCallbackHandler(_Ledger, AsyncCallbackHandler):
    """:class:`HyperionCallbackHandler` on the caller's event loop for async runs; sync runs are gated
    synchronously on the gateway's loop (see the module docstring)."""

    def __init__(self, **kw: Any) -> None:
        _Ledger.__init__(self, **kw)
        AsyncCallbackHandler.__init__(self)

    async def _begin(self, messages: list[dict[str, Any]], run_id: UUID, kwargs: dict[str, Any]) -> None:
        spec = self._begin_spec(messages, run_id, kwargs)
        if spec is None:
            return
        try:
            await self.meter.abegin(run_id, **spec)
        except HyperionError as exc:
            raise self._refusal(exc) from exc.__cause__

    @_gated
    async def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        await self._begin(self._chat_messages(messages), run_id, kwargs)

    @_gated
    async def on_llm_start(
        self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID, **kwargs: Any
    ) -> None:
        await self._begin(self._prompt_messages(prompts), run_id, kwargs)

    @_gated
    async def on_llm_new_token(self, token: str, *, run_id: UUID, **kwargs: Any) -> None:
        self._token(run_id)

    @_gated
    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        if not self.meter.is_open(run_id):
            return
        try:
            await self.meter.aend(run_id, self._end(response))
        except Exception:  # noqa: BLE001
            log.exception("hyperion: settling run %s failed", run_id)

    @_gated
    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if not self.meter.is_open(run_id):
            return
        try:
            await self.meter.afail(run_id, error)
        except Exception:  # noqa: BLE001
            log.exception("hyperion: auditing the failure of run %s failed", run_id)


__all__ = ["HyperionCallbackHandler", "AsyncHyperionCallbackHandler", "usage_of"]
