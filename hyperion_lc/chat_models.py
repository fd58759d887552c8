"""``HyperionChat``: a LangChain chat model whose every call runs the Hyperion gateway pipeline.

Swap it in for ``ChatOpenAI`` and a chain gets failover, caching, budgets, rate limits and audit::

    llm = HyperionChat(model="chat", config="hyperion.yaml", virtual_key="hk-...", temperature=0)
    chain = prompt | llm | StrOutputParser()

``model`` names a route of the gateway configuration. Sync calls use the gateway's sync twins, async
calls its async methods; both share the pure prepare step (:meth:`HyperionChat._prepare`) and the
conversions of ``_convert``, so they differ only in the call. Errors are two-parent classes
(:mod:`hyperion_lc.errors`); the gateway's decisions reach callback handlers as typed custom events
(:mod:`hyperion_lc.events`) and every answer's ``response_metadata`` says which deployment answered,
every attempt, the cache tier and the cost.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import JsonOutputKeyToolsParser, JsonOutputParser, PydanticToolsParser
from langchain_core.output_parsers.pydantic import PydanticOutputParser
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableMap, RunnablePassthrough, ensure_config
from langchain_core.utils import secret_from_env
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from hyperion_core import Gateway, HyperionError
from hyperion_core.types import CacheControl, ChatRequest

from . import _convert as C
from ._registry import registry
from .errors import HyperionInvalidRequestError, to_langchain_error
from .events import HyperionEvent, aemit, emit, failure_events, response_events

ENV_VIRTUAL_KEY = "HYPERION_VIRTUAL_KEY"

#: a private call-time kwarg: the list through which _stream/_astream hand their events to stream()/astream()
#: (langchain-core calls _stream without the run manager there; see HyperionChat.stream)
_CHANNEL = "_hyperion_events"

#: call-time keyword arguments that map to ``ChatRequest`` fields (the rest go to the provider as is)
_REQUEST_KWARGS = ("temperature", "top_p", "seed", "tools", "tool_choice", "timeout", "max_retries")


class HyperionChat(BaseChatModel):
    """A chat model served by a Hyperion gateway route.

    ``model`` is the route name. ``config`` (a YAML path, a dict or a ``GatewayConfig``; default
    ``$HYPERION_CONFIG``) or ``gateway`` says which gateway; gateways are shared per configuration, so
    building ``HyperionChat`` is cheap. ``virtual_key`` (alias ``api_key``; default
    ``$HYPERION_VIRTUAL_KEY``) is the caller's Hyperion key, a secret that never reaches a repr, the
    serialised model or a trace. ``timeout`` is the request's total deadline in seconds (across retries
    and failover). ``max_retries`` overrides the route's ``retry.attempts`` (extra attempts per
    deployment for retryable errors) when set.
    """

    model_config = ConfigDict(populate_by_name=True)

    model: str = Field(alias="model_name")
    """The gateway route (what callers name as their model)."""
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, alias="max_completion_tokens")
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] | str | None = Field(default=None, alias="stop_sequences")
    timeout: float | None = Field(default=None, alias="request_timeout")
    """Total deadline in seconds for one request (retries and failover included)."""
    max_retries: int | None = None
    """Extra attempts per deployment for retryable errors (default: the route's ``retry.attempts``)."""
    streaming: bool = False
    n: int | None = None
    """Only 1: a gateway answer is one choice (use ``batch`` for several)."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Provider parameters sent as is (e.g. ``{"logprobs": True}``)."""
    cache_control: CacheControl | None = Field(default=None, exclude=True)
    """Per-request cache control for every call (``CacheControl(no_cache=True)``, ``ttl=...``)."""
    config: Any = Field(default=None, exclude=True, repr=False)
    """Gateway configuration: a YAML path, a dict or a ``GatewayConfig`` (default ``$HYPERION_CONFIG``)."""
    gateway: Any = Field(default=None, exclude=True, repr=False)
    """A ``Gateway`` to use instead of ``config``."""
    virtual_key: SecretStr | None = Field(
        default_factory=secret_from_env(ENV_VIRTUAL_KEY, default=None), alias="api_key"
    )
    """The caller's Hyperion virtual key (``hk-...``)."""

    _gw: Gateway | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _collect_model_kwargs(cls, values: Any) -> Any:
        """Unknown constructor arguments become ``model_kwargs`` (with a warning), as in ``ChatOpenAI``."""
        if not isinstance(values, dict):
            return values
        known = set()
        for name, field in cls.model_fields.items():
            known.add(name)
            if field.alias:
                known.add(field.alias)
        extra = {k: values[k] for k in values if k not in known}
        if not extra:
            return values
        values = {k: v for k, v in values.items() if k not in extra}
        for k in extra:
            warnings.warn(f"HyperionChat: {k!r} is not a known parameter; it is sent to the provider "
                          "through model_kwargs", stacklevel=4)
        values["model_kwargs"] = {**extra, **(values.get("model_kwargs") or {})}
        return values

    @model_validator(mode="after")
    def _check(self) -> HyperionChat:
        if self.n is not None and self.n != 1:
            raise ValueError("n: a gateway answer is one choice; only n=1 is supported (use batch() for several)")
        if self.gateway is not None and not isinstance(self.gateway, Gateway):
            raise ValueError(f"gateway: expected a hyperion_core.Gateway, got {type(self.gateway).__name__}")
        return self

    # -- LangChain plumbing ------------------------------------------------------------------------

    @property
    def _llm_type(self) -> str:
        return "hyperion-chat"

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"virtual_key": ENV_VIRTUAL_KEY}

    @property
    def lc_attributes(self) -> dict[str, Any]:
        # a config *path* is serialised (a dict may carry provider secrets; a Gateway is live state)
        if isinstance(self.config, (str, os.PathLike)):
            return {"config": os.fspath(self.config)}
        return {}

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": self.stop,
            "timeout": self.timeout,
            "model_kwargs": self.model_kwargs,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "hyperion"
        ls_stop = stop or kwargs.get("stop") or self.stop
        if ls_stop:
            params["ls_stop"] = [ls_stop] if isinstance(ls_stop, str) else list(ls_stop)
        return params

    def _get_invocation_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        kwargs.pop(_CHANNEL, None)
        return super()._get_invocation_params(stop=stop, **kwargs)

    def _get_llm_string(self, stop: list[str] | None = None, **kwargs: Any) -> str:
        kwargs.pop(_CHANNEL, None)
        return super()._get_llm_string(stop=stop, **kwargs)

    # -- the gateway -------------------------------------------------------------------------------

    @property
    def gateway_instance(self) -> Gateway:
        """The gateway this model calls (shared per configuration; resolved on first use)."""
        gw = self._gw
        if gw is None:
            gw = self._gw = self.gateway if self.gateway is not None else registry.get(self.config)
        return gw

    # -- prepare (pure; shared by the sync and async paths) ------------------------------------------

    def _prepare(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> ChatRequest:
        kw = dict(kwargs)
        kw.pop("stream", None)
        kw.pop(_CHANNEL, None)
        route = kw.pop("model", None) or self.model
        params = {
            "temperature": self.temperature, "top_p": self.top_p, "seed": self.seed, "timeout": self.timeout,
            "max_retries": self.max_retries, "tools": None, "tool_choice": None,
        }
        for name in _REQUEST_KWARGS:
            if name in kw:
                params[name] = kw.pop(name)
        if "virtual_key" in kw or "api_key" in kw:
            # call kwargs are traced (invocation params) and part of LangChain's cache key
            raise HyperionInvalidRequestError(
                "virtual_key is a constructor argument, never a call argument: build one HyperionChat per "
                "key (construction is cheap and the gateway is shared)", route=self.model)
        max_tokens = kw.pop("max_tokens", None)
        max_completion_tokens = kw.pop("max_completion_tokens", None)
        max_tokens = max_tokens or max_completion_tokens or self.max_tokens
        stop = stop or self.stop or None
        response_format = C.response_format_of(kw.pop("response_format", None))
        cache = kw.pop("cache_control", None) or self.cache_control
        vk = self.virtual_key.get_secret_value() if self.virtual_key is not None else None
        extra = {**self.model_kwargs, **kw} if self.model_kwargs else kw
        return self.gateway_instance.request(
            route, C.to_openai_messages(messages), max_tokens=max_tokens, stop=stop,
            response_format=response_format, cache=cache, virtual_key=vk or None, **params, **extra,
        )

    # -- calls -------------------------------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        req = self._prepare(messages, stop, kwargs)
        try:
            resp = self.gateway_instance.complete(req)
        except HyperionError as exc:
            emit(run_manager, failure_events(exc, req))
            raise to_langchain_error(exc) from exc.__cause__
        emit(run_manager, response_events(resp))
        return C.to_chat_result(resp)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        req = self._prepare(messages, stop, kwargs)
        try:
            resp = await self.gateway_instance.acomplete(req)
        except HyperionError as exc:
            await aemit(run_manager, failure_events(exc, req))
            raise to_langchain_error(exc) from exc.__cause__
        await aemit(run_manager, response_events(resp))
        return C.to_chat_result(resp)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        sink = kwargs.pop(_CHANNEL, None)
        req = self._prepare(messages, stop, kwargs)
        stream = self.gateway_instance.stream(req)
        try:
            for piece in stream:
                msg = C.to_message_chunk(piece)
                if msg is not None:
                    yield ChatGenerationChunk(message=msg)
        except HyperionError as exc:
            if run_manager is not None:
                emit(run_manager, failure_events(exc, req))
            else:
                _deliver(failure_events(exc, req), sink)
            raise to_langchain_error(exc) from exc.__cause__
        resp = stream.response
        assert resp is not None
        if run_manager is not None:
            emit(run_manager, response_events(resp))
        else:
            _deliver(response_events(resp), sink)
        yield ChatGenerationChunk(message=C.final_chunk(resp))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        sink = kwargs.pop(_CHANNEL, None)
        req = self._prepare(messages, stop, kwargs)
        stream = self.gateway_instance.astream(req)
        try:
            async for piece in stream:
                msg = C.to_message_chunk(piece)
                if msg is not None:
                    yield ChatGenerationChunk(message=msg)
        except HyperionError as exc:
            if run_manager is not None:
                await aemit(run_manager, failure_events(exc, req))
            else:
                _deliver(failure_events(exc, req), sink)
            raise to_langchain_error(exc) from exc.__cause__
        finally:
            await stream.aclose()  # a caller that stopped reading: the gateway audits a cancelled stream
        resp = stream.response
        assert resp is not None
        if run_manager is not None:
            await aemit(run_manager, response_events(resp))
        else:
            _deliver(response_events(resp), sink)
        yield ChatGenerationChunk(message=C.final_chunk(resp))

    # -- streamed runs: deliver the events to the run's handlers --------------------------------------
    # langchain-core's stream()/astream() (and invoke() of a streaming=True model) call _stream without
    # the run's manager. These wrappers give the run a known id, let _stream hand its events over through
    # a private kwarg, and dispatch them to the same handlers the run has (before the final chunk is
    # passed on, so handlers see them before the run ends; after the error for a failed stream).

    def _channel(self, config: RunnableConfig | None, kwargs: dict[str, Any]) -> tuple[RunnableConfig, list[Any]]:
        config = ensure_config(config)
        if config.get("run_id") is None:
            config["run_id"] = uuid.uuid4()
        sink: list[HyperionEvent] = []
        kwargs[_CHANNEL] = sink
        return config, sink

    def _run_manager_for(self, config: RunnableConfig, stop: list[str] | None, kwargs: dict[str, Any],
                         cls: type[Any]) -> Any:
        meta = {**(config.get("metadata") or {}), **self._get_ls_params_with_defaults(stop=stop, **kwargs)}
        return cls.configure(config.get("callbacks"), self.callbacks, self.verbose, config.get("tags"),
                             self.tags, meta, self.metadata)

    def _flush(self, config: RunnableConfig, run_id: Any, sink: list[Any], stop: list[str] | None,
               kwargs: dict[str, Any]) -> None:
        events, sink[:] = list(sink), []
        cm = self._run_manager_for(config, stop, kwargs, CallbackManager)
        for ev in events:
            cm.on_custom_event(ev.name, ev, run_id=run_id)

    async def _aflush(self, config: RunnableConfig, run_id: Any, sink: list[Any], stop: list[str] | None,
                      kwargs: dict[str, Any]) -> None:
        events, sink[:] = list(sink), []
        cm = self._run_manager_for(config, stop, kwargs, AsyncCallbackManager)
        for ev in events:
            await cm.on_custom_event(ev.name, ev, run_id=run_id)

    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> Iterator[Any]:
        config, sink = self._channel(config, kwargs)
        run_id = config["run_id"]
        try:
            for chunk in super().stream(input, dict(config), stop=stop, **kwargs):  # type: ignore[arg-type]
                if sink:
                    self._flush(config, run_id, sink, stop, kwargs)
                yield chunk
        except BaseException:
            if sink:
                self._flush(config, run_id, sink, stop, kwargs)
            raise

    async def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      stop: list[str] | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        config, sink = self._channel(config, kwargs)
        run_id = config["run_id"]
        try:
            async for chunk in super().astream(input, dict(config), stop=stop, **kwargs):  # type: ignore[arg-type]
                if sink:
                    await self._aflush(config, run_id, sink, stop, kwargs)
                yield chunk
        except BaseException:
            if sink:
                await self._aflush(config, run_id, sink, stop, kwargs)
            raise

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        if not self.streaming:  # _generate has the run manager: nothing to relay
            return super().invoke(input, config, stop=stop, **kwargs)
        config, sink = self._channel(config, kwargs)
        try:
            return super().invoke(input, dict(config), stop=stop, **kwargs)  # type: ignore[arg-type]
        finally:
            if sink:
                self._flush(config, config["run_id"], sink, stop, kwargs)

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        if not self.streaming:
            return await super().ainvoke(input, config, stop=stop, **kwargs)
        config, sink = self._channel(config, kwargs)
        try:
            return await super().ainvoke(input, dict(config), stop=stop, **kwargs)  # type: ignore[arg-type]
        finally:
            if sink:
                await self._aflush(config, config["run_id"], sink, stop, kwargs)

    # -- tools and structured output ---------------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | Any],
        *,
        tool_choice: dict | str | bool | None = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (anything ``convert_to_openai_tool`` takes). ``tool_choice``: a tool's name,
        ``"any"`` / ``"required"`` / ``True``, ``"auto"``, ``"none"`` or an OpenAI dict."""
        formatted = C.format_tools(tools, strict)
        choice = C.format_tool_choice(tool_choice, [t["function"]["name"] for t in formatted if "function" in t])
        if choice is not None:
            kwargs["tool_choice"] = choice
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return super().bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Answers shaped by ``schema`` (pydantic class, TypedDict, JSON schema or OpenAI function).

        ``method``: ``json_schema`` (the provider's structured output, ``response_format``; default),
        ``function_calling`` (a forced tool call) or ``json_mode`` (``{"type": "json_object"}``; describe
        the shape in the prompt). ``include_raw``: return ``{"raw", "parsed", "parsing_error"}``.
        """
        if kwargs:
            raise ValueError(f"with_structured_output: unexpected arguments {sorted(kwargs)}")
        if schema is None and method != "json_mode":
            raise ValueError(f"with_structured_output: method {method!r} needs a schema")
        pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        parser: Runnable
        if method == "function_calling":
            name = convert_to_openai_tool(schema)["function"]["name"]
            llm = self.bind_tools(
                [schema], tool_choice=name, strict=strict, parallel_tool_calls=False,
                ls_structured_output_format={"kwargs": {"method": method, "strict": strict}, "schema": schema},
            )
            parser = (PydanticToolsParser(tools=[schema], first_tool_only=True) if pydantic  # type: ignore[list-item]
                      else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True))
        elif method == "json_schema":
            llm = self.bind(
                response_format=C.json_schema_format(schema, strict),
                ls_structured_output_format={"kwargs": {"method": method, "strict": strict}, "schema": schema},
            )
            parser = PydanticOutputParser(pydantic_object=schema) if pydantic else JsonOutputParser()  # type: ignore[arg-type]
        elif method == "json_mode":
            llm = self.bind(
                response_format={"type": "json_object"},
                ls_structured_output_format={"kwargs": {"method": method}, "schema": schema},
            )
            parser = PydanticOutputParser(pydantic_object=schema) if pydantic else JsonOutputParser()  # type: ignore[arg-type]
        else:
            raise ValueError(f"with_structured_output: unknown method {method!r} "
                             "(json_schema | function_calling | json_mode)")
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([fallback], exception_key="parsing_error")


def _deliver(events: Any, sink: list[Any] | None) -> None:
    if sink is not None and events:
        sink.extend(events)


__all__ = ["HyperionChat", "ENV_VIRTUAL_KEY"]
