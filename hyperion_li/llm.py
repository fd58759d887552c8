"""``HyperionLLM``: a LlamaIndex function-calling LLM whose every call runs the Hyperion pipeline.

``Settings.llm = HyperionLLM(model="chat", config="hyperion.yaml")`` gives every query engine, chat
engine and agent the route's failover, cache, budgets and audit. Each method is prepare -> call ->
finish: the prepare and finish steps are shared; sync methods call the gateway's sync twins, async
methods its async ones, and that call is the only difference between them (STYLE 10).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from llama_index.core.base.llms.generic_utils import (
    achat_to_completion_decorator,
    astream_chat_to_completion_decorator,
    chat_to_completion_decorator,
    stream_chat_to_completion_decorator,
)
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr, SecretStr, field_validator
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW, DEFAULT_NUM_OUTPUTS
from llama_index.core.instrumentation.span import active_span_id
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection

from hyperion_core import Gateway
from hyperion_core._text import suggest
from hyperion_core.capabilities import route_info
from hyperion_core.doors import check_source, resolve_gateway
from hyperion_core.errors import ConfigError, HyperionError, InvalidRequestError
from hyperion_core.types import ChatChunk, ChatRequest
from hyperion_core.types import ChatResponse as HyperionResponse

from ._convert import (
    StreamState,
    failed_over,
    to_chat_response,
    to_openai_messages,
    tool_choice_for,
    tool_selections,
    tool_specs,
)
from .events import (
    HyperionBudgetEvent,
    HyperionCacheHitEvent,
    HyperionRoutingEvent,
    budget_event_for_error,
    dispatcher,
)

#: fields sent with every request under their OpenAI names (None = not sent: the provider's default)
_SENT_FIELDS = ("temperature", "top_p", "max_tokens", "stop", "seed", "timeout", "max_retries", "reasoning_effort")
#: OpenAI-client arguments with no meaning here: the provider's account lives in the gateway config
_CLIENT_ARGS = frozenset({
    "api_key", "api_base", "base_url", "api_version", "default_headers", "http_client", "async_http_client",
    "openai_client", "async_openai_client", "reuse_client", "organization",
})
#: LlamaIndex-side arguments that are not request parameters. ``parallel_tool_calls`` is OpenAI-only
#: (it would break an Anthropic or Gemini deployment of the route); parallelism is decided in
#: ``_validate_chat_with_tools_response`` instead.
_NOT_SENT = frozenset({"parallel_tool_calls", "tool_required", "allow_parallel_tool_calls", "verbose", "strict"})
#: request metadata key holding the LlamaIndex span the request belongs to (for the events it emits)
_SPAN = "llamaindex_span_id"


class ToolCallMissingError(HyperionError, ValueError):
    """The model answered without the tool call the caller required. Also a ``ValueError``, which is
    what LlamaIndex's own function-calling LLMs raise here, so existing handlers keep working."""


@dataclass(frozen=True, slots=True)
class RouteFacts:
    """What LlamaIndex needs to know about a route, read once from its deployments' model data."""

    context_window: int
    num_output: int
    supports_tools: bool

    @classmethod
    def of(cls, gw: Gateway, route: str) -> RouteFacts:
        """From the core's :func:`~hyperion_core.capabilities.route_info` (config, then litellm's map,
        then the provider kind's default); LlamaIndex's own defaults where the window is unknown."""
        info = route_info(gw, route)
        if info.kind != "chat":
            raise InvalidRequestError(f"route '{route}' is a {info.kind} route, not a chat route", route=route)
        return cls(
            context_window=info.max_input_tokens or DEFAULT_CONTEXT_WINDOW,
            num_output=info.max_output_tokens or DEFAULT_NUM_OUTPUTS,
            supports_tools=info.function_calling,
        )


class HyperionLLM(FunctionCallingLLM):
    """A LlamaIndex LLM over a Hyperion route. ``model`` is the route's name; the gateway comes from
    ``config=`` (a YAML path, a mapping or a ``GatewayConfig``; one gateway is shared per config) or
    ``gateway=``. ``virtual_key`` (``hk-...``) is authenticated and budgeted by the pipeline; it is a
    secret and never serialised. Errors are Hyperion's (``hyperion_core.errors``)."""

    model: str = Field(default="chat", description="The Hyperion route to call.")
    temperature: float | None = Field(default=None, description="Sampling temperature (0-2); None = the provider's default.")
    max_tokens: int | None = Field(default=None, description="Most tokens to generate; None = the provider's default.", gt=0)
    timeout: float | None = Field(default=None, description="Total deadline in seconds; None = the route's `timeout`.", gt=0)
    stop: list[str] | None = Field(default=None, description="Stop sequences.")
    top_p: float | None = Field(default=None, description="Nucleus sampling (0-1); None = the provider's default.", ge=0, le=1)
    seed: int | None = Field(default=None, description="Sampling seed, where the provider supports one.")
    max_retries: int | None = Field(
        default=None, ge=0,
        description="Extra attempts per deployment for retryable errors before failing over; None = the route's `retry.attempts`.",
    )
    logprobs: bool | None = Field(default=None, description="Ask for per-token log probabilities (OpenAI `logprobs`).")
    top_logprobs: int | None = Field(default=None, ge=0, le=20, description="With `logprobs`: alternatives per token.")
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = Field(
        default=None, description="Reasoning effort for reasoning models; None = the provider's default."
    )
    strict: bool = Field(default=False, description="Mark tool schemas strict (OpenAI structured tool calls).")
    context_window: int | None = Field(
        default=None, gt=0, description="Override the route's context window (tokens) LlamaIndex plans prompts for."
    )
    is_function_calling_model: bool | None = Field(
        default=None, description="Override whether the route calls tools (default: every deployment does)."
    )
    is_chat_model: bool = Field(default=True, description="Always True: Hyperion routes are chat routes.")
    additional_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Parameters sent with every request, by their OpenAI names (the adapters translate them per provider).",
    )
    config: Any = Field(default=None, exclude=True, repr=False, description="Gateway config: YAML path, mapping or GatewayConfig.")
    virtual_key: SecretStr | None = Field(default=None, exclude=True, repr=False, description="Hyperion virtual key (hk-...).")

    _gateway: Gateway | None = PrivateAttr(default=None)
    _facts: RouteFacts | None = PrivateAttr(default=None)

    def __init__(self, model: str = "chat", *, gateway: Gateway | None = None, **kwargs: Any) -> None:
        check_source(gateway, kwargs.get("config"), "HyperionLLM")
        _check_arguments(type(self), kwargs)
        super().__init__(model=model, **kwargs)
        self._gateway = gateway

    @field_validator("is_chat_model")
    @classmethod
    def _chat_only(cls, v: bool) -> bool:
        if not v:
            raise ValueError("HyperionLLM calls chat routes only; is_chat_model=False is not supported")
        return v

    @classmethod
    def class_name(cls) -> str:
        return "HyperionLLM"

    @property
    def gateway(self) -> Gateway:
        """The gateway this LLM calls (the shared one for its config, resolved on first use)."""
        gw = self._gateway
        if gw is None:
            gw = self._gateway = resolve_gateway(None, self.config, "HyperionLLM")
        return gw

    @property
    def metadata(self) -> LLMMetadata:
        facts = self._facts
        if facts is None:
            facts = self._facts = RouteFacts.of(self.gateway, self.model)
        tools = self.is_function_calling_model
        return LLMMetadata(
            context_window=self.context_window or facts.context_window,
            num_output=self.max_tokens or facts.num_output,
            is_chat_model=True,
            is_function_calling_model=facts.supports_tools if tools is None else tools,
            model_name=self.model,
        )

    # -- prepare and finish: shared by every door ------------------------------------------------

    def _params(self) -> dict[str, Any]:
        """The LLM's own request parameters by their OpenAI names; ``additional_kwargs`` win over fields."""
        params = {k: v for k in _SENT_FIELDS if (v := getattr(self, k)) is not None}
        if self.logprobs:
            params["logprobs"] = True
            if self.top_logprobs:
                params["top_logprobs"] = self.top_logprobs
        params.update(self.additional_kwargs)
        return params

    def _prepare(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> ChatRequest:
        # precedence: fields < additional_kwargs < this call's keyword arguments; the gateway's
        # ``request`` files named fields (temperature, max_retries, ...) and passes the rest as ``extra``
        params = self._params()
        params.update((k, v) for k, v in kwargs.items() if k not in _NOT_SENT)
        for key in ("route", "messages"):
            if key in params:
                raise InvalidRequestError(f"'{key}' is not a request parameter (HyperionLLM sets it)", route=self.model)
        if params.get("virtual_key") is None and self.virtual_key is not None:
            params["virtual_key"] = self.virtual_key.get_secret_value()
        req = self.gateway.request(self.model, to_openai_messages(messages), **params)
        req.metadata.setdefault(_SPAN, active_span_id.get())
        return req

    def _finish(self, req: ChatRequest, resp: HyperionResponse, *, stream: bool = False) -> ChatResponse:
        out = to_chat_response(resp)
        self._emit(req, resp, out.raw, stream)
        return out

    def _emit(self, req: ChatRequest, resp: HyperionResponse, record: dict[str, Any], stream: bool) -> None:
        span = req.metadata.get(_SPAN)
        dispatcher.event(HyperionRoutingEvent(
            route=resp.route, request_id=resp.request_id, deployment=resp.deployment, model=resp.model,
            attempts=record["attempts"], failed_over=failed_over(resp), resumed_by=list(resp.resumed_by),
            latency_ms=resp.latency_ms, ttft_ms=resp.ttft_ms, stream=stream, span_id=span,
        ))
        c = resp.cache
        if c is not None:
            dispatcher.event(HyperionCacheHitEvent(
                route=resp.route, request_id=resp.request_id, tier=c.tier, age_s=c.age_s, similarity=c.similarity,
                tokens_saved=c.tokens_saved, cost_saved=c.cost_saved, source_deployment=c.source_deployment,
                span_id=span,
            ))
        if self.gateway.governance is not None:
            dispatcher.event(HyperionBudgetEvent(
                route=resp.route, request_id=resp.request_id, decision="admitted", cost_usd=resp.cost, span_id=span,
            ))

    def _failed(self, req: ChatRequest, exc: BaseException) -> None:
        event = budget_event_for_error(exc, req.route)
        if event is not None:
            event.span_id = req.metadata.get(_SPAN)
            if event.request_id is None:
                event.request_id = req.request_id
            dispatcher.event(event)

    def _chunk(self, state: StreamState, chunk: ChatChunk) -> ChatResponse | None:
        if not chunk.content and not chunk.tool_calls:
            return None
        state.add(chunk.content, chunk.tool_calls)
        return ChatResponse(message=state.message(), delta=chunk.content)

    def _stream_end(self, req: ChatRequest, resp: HyperionResponse | None) -> ChatResponse:
        if resp is None:  # the gateway sets it after the last chunk of every successful stream
            raise InvalidRequestError("the stream ended without a response record", route=req.route)
        out = self._finish(req, resp, stream=True)
        out.delta = ""
        return out

    # -- chat ------------------------------------------------------------------------------------

    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        req = self._prepare(messages, kwargs)
        try:
            resp = self.gateway.complete(req)
        except HyperionError as exc:
            self._failed(req, exc)
            raise
        return self._finish(req, resp)

    async def _achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        req = self._prepare(messages, kwargs)
        try:
            resp = await self.gateway.acomplete(req)
        except HyperionError as exc:
            self._failed(req, exc)
            raise
        return self._finish(req, resp)

    def _stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        req = self._prepare(messages, kwargs)
        stream = self.gateway.stream(req)

        def gen() -> Generator[ChatResponse, None, None]:
            state = StreamState()
            try:
                for chunk in stream:
                    out = self._chunk(state, chunk)
                    if out is not None:
                        yield out
            except HyperionError as exc:
                self._failed(req, exc)
                raise
            yield self._stream_end(req, stream.response)

        return gen()

    async def _astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        req = self._prepare(messages, kwargs)
        stream = self.gateway.astream(req)

        async def gen() -> AsyncGenerator[ChatResponse, None]:
            state = StreamState()
            try:
                async for chunk in stream:
                    out = self._chunk(state, chunk)
                    if out is not None:
                        yield out
            except HyperionError as exc:
                self._failed(req, exc)
                raise
            finally:
                await stream.aclose()  # a consumer that stops early ends the upstream call (audited)
            yield self._stream_end(req, stream.response)

        return gen()

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(messages, **kwargs)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await self._achat(messages, **kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return self._stream_chat(messages, **kwargs)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        return await self._astream_chat(messages, **kwargs)

    # -- completion: a chat with one user message -------------------------------------------------

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return chat_to_completion_decorator(self._chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return await achat_to_completion_decorator(self._achat)(prompt, **kwargs)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        return stream_chat_to_completion_decorator(self._stream_chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        return await astream_chat_to_completion_decorator(self._astream_chat)(prompt, **kwargs)

    # -- tool calling ----------------------------------------------------------------------------

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[Any],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        tool_choice: Any = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        messages = list(chat_history or [])  # never the caller's list: it is their memory
        if isinstance(user_msg, str):
            user_msg = ChatMessage(role=MessageRole.USER, content=user_msg)
        if user_msg is not None:
            messages.append(user_msg)
        specs = tool_specs(tools, strict=self.strict if strict is None else strict)
        return {
            "messages": messages,
            "tools": specs or None,
            "tool_choice": tool_choice_for(tool_choice, tool_required) if specs else None,
            **kwargs,
        }

    def _validate_chat_with_tools_response(
        self, response: ChatResponse, tools: Sequence[Any], allow_parallel_tool_calls: bool = False, **kwargs: Any
    ) -> ChatResponse:
        if not allow_parallel_tool_calls:
            calls = [b for b in response.message.blocks if isinstance(b, ToolCallBlock)]
            if len(calls) > 1:
                response.message.blocks = [
                    b for b in response.message.blocks if not isinstance(b, ToolCallBlock) or b is calls[0]
                ]
        return response

    def _stream_program(self, output_cls: Any, prompt: Any) -> Any:
        """LlamaIndex's streaming structured-output program asks for the tool only if told to
        (``stream_call`` drops ``tool_choice`` from ``llm_kwargs``): build it with the tool required."""
        from llama_index.core.program.function_program import FunctionCallingProgram
        from llama_index.core.program.utils import get_program_for_llm
        from llama_index.core.types import PydanticProgramMode

        if self.pydantic_program_mode == PydanticProgramMode.DEFAULT and self.metadata.is_function_calling_model:
            return FunctionCallingProgram.from_defaults(output_cls, prompt=prompt, llm=self, tool_choice="required")
        return get_program_for_llm(output_cls, prompt, self, pydantic_program_mode=self.pydantic_program_mode)

    def _structured_stream_call(self, output_cls: Any, prompt: Any, llm_kwargs: dict[str, Any] | None = None,
                                **prompt_args: Any) -> Any:
        return self._stream_program(output_cls, prompt).stream_call(llm_kwargs=llm_kwargs, **prompt_args)

    async def _structured_astream_call(self, output_cls: Any, prompt: Any, llm_kwargs: dict[str, Any] | None = None,
                                       **prompt_args: Any) -> Any:
        return await self._stream_program(output_cls, prompt).astream_call(llm_kwargs=llm_kwargs, **prompt_args)

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        selections = tool_selections(response)
        if not selections and error_on_no_tool_call:
            raw = response.raw if isinstance(response.raw, dict) else {}
            raise ToolCallMissingError(
                "expected a tool call, but the model answered with text", route=raw.get("route", self.model),
                deployment=raw.get("deployment"), request_id=raw.get("request_id"),
            )
        return selections


def _check_arguments(cls: type[HyperionLLM], kwargs: dict[str, Any]) -> None:
    """Refuse a constructor argument the LLM would otherwise drop silently, naming it and the fix."""
    fields = set(cls.model_fields)
    for key in kwargs:
        if key in fields:
            continue
        if key in _CLIENT_ARGS:
            raise ConfigError(
                f"HyperionLLM: '{key}' is a provider-client argument; HyperionLLM calls a Hyperion route, so the "
                "provider's URL, key and headers belong in the gateway config (providers.<name>: base_url, "
                "api_key, headers)"
            )
        hint = suggest(key, fields) or " (provider parameters go in additional_kwargs={...})"
        raise ConfigError(f"HyperionLLM: unknown argument '{key}'{hint}")


__all__ = ["HyperionLLM", "ToolCallMissingError", "RouteFacts"]
