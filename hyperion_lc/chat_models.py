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

import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Literal, get_type_hints

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput, ModelProfile
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
from hyperion_core.doors import resolve_gateway
from hyperion_core.tokens import estimate_prompt_tokens
from hyperion_core.types import CacheControl, ChatRequest

from . import _convert as C
from . import _params as P
from . import _route_info as R
from .errors import HyperionConfigError, HyperionInvalidRequestError, to_langchain_error
from .events import HyperionEvent, aemit, emit, failure_events, response_events

ENV_VIRTUAL_KEY = "HYPERION_VIRTUAL_KEY"

#: a private call-time kwarg: the list through which _stream/_astream hand their events to stream()/astream()
#: (langchain-core calls _stream without the run manager there; see HyperionChat.stream)
_CHANNEL = "_hyperion_events"

log = logging.getLogger("hyperion.langchain")

#: the constructor's fields that are OpenAI request parameters (sent per :mod:`hyperion_lc._params`)
_PARAM_FIELDS = (
    "temperature",
    "top_p",
    "seed",
    "max_tokens",
    "timeout",
    "max_retries",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "reasoning_effort",
    "reasoning",
    "verbosity",
    "service_tier",
    "store",
)


#: the keys ``ModelProfile`` declares (LangChain warns about others)
_PROFILE_KEYS = frozenset(get_type_hints(ModelProfile))


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
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[int, int] | None = None
    reasoning_effort: str | None = None
    """``none`` … ``xhigh``; Anthropic deployments get a thinking budget, Gemini a thinking config."""
    reasoning: dict[str, Any] | None = None
    """``ChatOpenAI``'s ``{"effort": ...}`` spelling of ``reasoning_effort``."""
    verbosity: str | None = None
    service_tier: str | None = None
    store: bool | None = None
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Further OpenAI chat parameters (e.g. ``{"user": "u-1", "parallel_tool_calls": False}``); each
    adapter translates them for its wire or drops what its wire lacks. Unknown names are refused."""
    extra_body: dict[str, Any] | None = None
    """Provider-specific parameters, merged into the request as they are (e.g. vLLM's ``top_k``)."""
    disabled_params: dict[str, Any] | None = None
    """Parameter names never to send (keys; values are ignored), as in ``ChatOpenAI``."""
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
    def _sort_arguments(cls, values: Any) -> Any:
        """``ChatOpenAI``'s constructor surface (see :mod:`hyperion_lc._params`): client options are
        accepted and dropped, OpenAI request parameters without a field join ``model_kwargs``, and
        refused or unknown arguments raise :class:`~hyperion_lc.errors.HyperionConfigError` naming them."""
        if not isinstance(values, dict):
            return values
        known = set()
        for name, field in cls.model_fields.items():
            known.add(name)
            if field.alias:
                known.add(field.alias)
        values = dict(values)
        problems: list[str] = []
        moved: dict[str, Any] = {}
        for k in [k for k in values if k not in known]:
            v = values.pop(k)
            if k in P.CLIENT_OPTIONS:
                log.debug(
                    "hyperion: HyperionChat(%s=...) is a client option; the gateway owns the connections", k
                )
            elif k in P.WIRE_PARAMS:
                moved[k] = v
            else:
                why = P.refusal(k, v)
                if why is not None:
                    problems.append(why)
                elif k not in P.REFUSED:
                    problems.append(P.unknown(k, known | P.WIRE_PARAMS | P.CLIENT_OPTIONS))
        mk = dict(values.get("model_kwargs") or {})
        for k in list(mk):
            if k in _PARAM_FIELDS or k in ("stop", "n"):  # a field's value passed the ChatOpenAI way
                values.setdefault(k, mk.pop(k))
            elif k == "max_completion_tokens":
                values.setdefault("max_tokens", mk.pop(k))
        if mk or moved:
            _, _, bad = P.split({**mk, **moved})
            problems += [f"model_kwargs: {p}" if not p.startswith(tuple(moved)) else p for p in bad]
            values["model_kwargs"] = {**moved, **mk}
        problems += [p for p in (P.check_reasoning_effort(values.get("reasoning_effort")),) if p]
        if isinstance(values.get("reasoning"), dict):
            problems += [p for p in (P.check_reasoning_effort(values["reasoning"].get("effort")),) if p]
        if values.get("n") not in (None, 1):
            problems.append(
                "n: a gateway answer is one choice; only n=1 is supported (use batch() for several)"
            )
        if problems:
            head = (
                problems[0]
                if len(problems) == 1
                else f"{len(problems)} problems:\n  " + "\n  ".join(problems)
            )
            raise HyperionConfigError(f"HyperionChat: {head}", problems)
        return values

    @model_validator(mode="after")
    def _check(self) -> HyperionChat:
        if self.gateway is not None and not isinstance(self.gateway, Gateway):
            raise ValueError(f"gateway: expected a hyperion_core.Gateway, got {type(self.gateway).__name__}")
        return self

    def _resolve_model_profile(self) -> ModelProfile | None:
        """The route's profile (what holds whichever deployment answers; see :func:`_route_info.profile`),
        computed once per configuration and route; each model gets its own copy."""
        prof = R.route(self.gateway or self.config, self.model).profile
        return None if prof is None else ModelProfile(**prof)  # type: ignore[typeddict-item]

    @model_validator(mode="after")
    def _check_profile_keys(self) -> HyperionChat:
        """LangChain's unknown-profile-key warning (it calls ``get_type_hints`` per instance, most of
        what building a model cost): the keys are compared with ``ModelProfile``'s, read once."""
        if self.profile and isinstance(self.profile, dict) and not _PROFILE_KEYS.issuperset(self.profile):
            BaseChatModel._check_profile_keys(self)
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
    def _default_params(self) -> dict[str, Any]:
        """The constructor's request parameters, OpenAI names (``None``: unset)."""
        return {
            **{name: getattr(self, name) for name in _PARAM_FIELDS},
            **self.model_kwargs,
            "extra_body": self.extra_body,
            "disabled_params": self.disabled_params,
        }

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "stop": self.stop,
            **{k: v for k, v in self._default_params.items() if v is not None},
        }

    def route_targets(self, route: str | None = None) -> list[R.Target]:
        """The deployments of ``route`` (default: this model's), in order, from the configuration."""
        return list(R.route(self._gw or self.gateway or self.config, route or self.model).targets)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """LangSmith sees the provider and model of the route's first deployment (the one that answers
        unless it fails; ``response_metadata`` says which did); the route is in ``ls_hyperion_route``."""
        params = super()._get_ls_params(stop=stop, **kwargs)
        route = kwargs.get("model") or self.model
        ts = self.route_targets(route)
        params["ls_provider"] = ts[0].ls_provider if ts else "hyperion"
        params["ls_model_name"] = ts[0].model if ts else route
        params["ls_hyperion_route"] = route  # type: ignore[typeddict-unknown-key]
        ls_stop = stop or kwargs.get("stop") or self.stop
        if ls_stop:
            params["ls_stop"] = [ls_stop] if isinstance(ls_stop, str) else list(ls_stop)
        return params

    def _provider_of(self, resp: Any) -> str | None:
        """The LangChain provider name of the deployment that answered ``resp``."""
        for t in self.route_targets(resp.route):
            if t.name == resp.deployment:
                return t.ls_provider
        return None

    # -- token counting: the embedded estimator, never a tokenizer download ---------------------------

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text``, estimated offline (about 4 characters a token; no tokenizer download)."""
        return max(len(text) // 4, 1 if text else 0)

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Prompt tokens of ``messages`` (and ``tools``), by the estimator the gateway's admission uses."""
        req = ChatRequest(
            route=self.model,
            messages=C.to_openai_messages(messages),
            tools=C.format_tools(tools) if tools else None,
        )
        return estimate_prompt_tokens(req)

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
            gw = self._gw = resolve_gateway(self.gateway, self.config, "HyperionChat")
        return gw

    # -- prepare (pure; shared by the sync and async paths) ------------------------------------------

    def _prepare(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> ChatRequest:
        kw = dict(kwargs)
        kw.pop("stream", None)
        kw.pop(_CHANNEL, None)
        route = kw.pop("model", None) or self.model
        if "virtual_key" in kw or "api_key" in kw:
            # call kwargs are traced (invocation params) and part of LangChain's cache key
            raise HyperionInvalidRequestError(
                "virtual_key is a constructor argument, never a call argument: build one HyperionChat per "
                "key (construction is cheap and the gateway is shared)",
                route=self.model,
            )
        cache = kw.pop("cache_control", None) or self.cache_control
        defaults = self._default_params
        if "max_completion_tokens" in kw:  # the call's spelling wins over the constructor's max_tokens
            defaults.pop("max_tokens", None)
        if "reasoning" in kw:
            defaults.pop("reasoning_effort", None)
        if kw.get("extra_body") is not None and defaults.get("extra_body"):
            kw["extra_body"] = {**defaults["extra_body"], **kw["extra_body"]}
        typed, extra, problems = P.split({**defaults, **kw})
        if problems:
            raise HyperionInvalidRequestError("HyperionChat call: " + "; ".join(problems), route=route)
        typed.pop("n", None)  # only 1, checked at construction
        typed["stop"] = stop or typed.get("stop") or self.stop or None
        typed["response_format"] = C.response_format_of(typed.get("response_format"))
        vk = self.virtual_key.get_secret_value() if self.virtual_key is not None else None
        req = self.gateway_instance.request(
            route,
            C.to_openai_messages(messages),
            cache=cache,
            virtual_key=vk or None,
            **typed,
        )
        req.extra = extra  # OpenAI names (``metadata`` here is the provider's, not the request's)
        return req

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
        return C.to_chat_result(resp, self._provider_of(resp))

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
        return C.to_chat_result(resp, self._provider_of(resp))

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
        yield ChatGenerationChunk(message=C.final_chunk(resp, self._provider_of(resp)))

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
        yield ChatGenerationChunk(message=C.final_chunk(resp, self._provider_of(resp)))

    # -- streamed runs: deliver the events to the run's handlers --------------------------------------
    # langchain-core's stream()/astream() (and invoke() of a streaming=True model) call _stream without
    # the run's manager. These wrappers give the run a known id, let _stream hand its events over through
    # a private kwarg, and dispatch them to the same handlers the run has (before the final chunk is
    # passed on, so handlers see them before the run ends; after the error for a failed stream).

    def _channel(
        self, config: RunnableConfig | None, kwargs: dict[str, Any]
    ) -> tuple[RunnableConfig, list[Any]]:
        config = ensure_config(config)
        if config.get("run_id") is None:
            config["run_id"] = uuid.uuid4()
        sink: list[HyperionEvent] = []
        kwargs[_CHANNEL] = sink
        return config, sink

    def _run_manager_for(
        self, config: RunnableConfig, stop: list[str] | None, kwargs: dict[str, Any], cls: type[Any]
    ) -> Any:
        meta = {**(config.get("metadata") or {}), **self._get_ls_params_with_defaults(stop=stop, **kwargs)}
        return cls.configure(
            config.get("callbacks"),
            self.callbacks,
            self.verbose,
            config.get("tags"),
            self.tags,
            meta,
            self.metadata,
        )

    def _flush(
        self,
        config: RunnableConfig,
        run_id: Any,
        sink: list[Any],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> None:
        events, sink[:] = list(sink), []
        cm = self._run_manager_for(config, stop, kwargs, CallbackManager)
        for ev in events:
            cm.on_custom_event(ev.name, ev, run_id=run_id)

    async def _aflush(
        self,
        config: RunnableConfig,
        run_id: Any,
        sink: list[Any],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> None:
        events, sink[:] = list(sink), []
        cm = self._run_manager_for(config, stop, kwargs, AsyncCallbackManager)
        for ev in events:
            await cm.on_custom_event(ev.name, ev, run_id=run_id)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[Any]:
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

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
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

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        if not self.streaming:  # _generate has the run manager: nothing to relay
            return super().invoke(input, config, stop=stop, **kwargs)
        config, sink = self._channel(config, kwargs)
        try:
            return super().invoke(input, dict(config), stop=stop, **kwargs)  # type: ignore[arg-type]
        finally:
            if sink:
                self._flush(config, config["run_id"], sink, stop, kwargs)

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
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
        choice = C.format_tool_choice(
            tool_choice, [t["function"]["name"] for t in formatted if "function" in t]
        )
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
                [schema],
                tool_choice=name,
                strict=strict,
                parallel_tool_calls=False,
                ls_structured_output_format={
                    "kwargs": {"method": method, "strict": strict},
                    "schema": schema,
                },
            )
            parser = (
                PydanticToolsParser(tools=[schema], first_tool_only=True)
                if pydantic  # type: ignore[list-item]
                else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
            )
        elif method == "json_schema":
            llm = self.bind(
                response_format=C.json_schema_format(schema, strict),
                ls_structured_output_format={
                    "kwargs": {"method": method, "strict": strict},
                    "schema": schema,
                },
            )
            parser = PydanticOutputParser(pydantic_object=schema) if pydantic else JsonOutputParser()  # type: ignore[arg-type]
        elif method == "json_mode":
            llm = self.bind(
                response_format={"type": "json_object"},
                ls_structured_output_format={"kwargs": {"method": method}, "schema": schema},
            )
            parser = PydanticOutputParser(pydantic_object=schema) if pydantic else JsonOutputParser()  # type: ignore[arg-type]
        else:
            raise ValueError(
                f"with_structured_output: unknown method {method!r} "
                "(json_schema | function_calling | json_mode)"
            )
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([fallback], exception_key="parsing_error")


def _deliver(events: Any, sink: list[Any] | None) -> None:
    if sink is not None and events:
        sink.extend(events)


#: the provider name ``init_chat_model("hyperion:<route>")`` and ``create_agent(model="hyperion:<route>")`` use
PROVIDER = "hyperion"


def register_provider() -> bool:
    """Make ``init_chat_model("hyperion:<route>", ...)`` (and so ``create_agent(model="hyperion:<route>")``)
    build a :class:`HyperionChat`. ``langchain`` 1.x resolves ``provider:model`` strings through its
    provider table and offers no plugin hook, so this adds one entry there; importing ``hyperion_lc``
    calls it. Returns False when ``langchain`` is not installed. Idempotent."""
    try:
        from langchain.chat_models import base as lc_base
    except ImportError:
        return False
    table = getattr(lc_base, "_BUILTIN_PROVIDERS", None)
    if not isinstance(table, dict):
        return False
    if PROVIDER not in table:
        table[PROVIDER] = ("hyperion_lc.chat_models", "HyperionChat", _init_hyperion)
        lc_base._get_chat_model_creator.cache_clear()  # an earlier "unsupported provider" is not cached, but be safe
    return True


def _init_hyperion(cls: type[HyperionChat], model: str, **kwargs: Any) -> HyperionChat:
    return cls(model=model, **kwargs)


__all__ = ["HyperionChat", "ENV_VIRTUAL_KEY", "PROVIDER", "register_provider"]
