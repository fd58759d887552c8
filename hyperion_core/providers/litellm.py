"""The long tail of providers through litellm (Bedrock, Vertex, Azure, Cohere, Mistral, ...).

Also serves any deployment forced to ``adapter: litellm``. litellm is imported on first use, never when
this module is imported (``import litellm`` takes ~2 s). Answers are normalised to the same records
the native adapters return, and every litellm exception becomes a Hyperion error through
:data:`LITELLM_ERRORS` (a test fails when litellm grows an exception that has no entry).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from ..audit.scrub import scrub
from ..errors import (
    AuthenticationError,
    BadRequestError,
    ContentPolicyError,
    ContextWindowExceededError,
    HyperionError,
    InvalidRequestError,
    MalformedResponseError,
    NotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    StreamCutError,
    error_for_status,
)
from ..types import ChatChunk, ChatRequest, ProviderResponse, ToolCall, ToolCallDelta, Usage
from .base import Adapter, merged_params, retry_after_seconds
from .params import OPENAI_PARAMS, dropped

#: parameters the adapter always sends itself (litellm handles them for every provider)
_ALWAYS_SENT = frozenset({"stream_options", "tools", "tool_choice"})

_litellm: Any = None

#: Hyperion provider kinds that litellm knows under another name
PROVIDER_NAMES = {"openai_compatible": "openai", "vllm": "hosted_vllm", "ollama": "openai"}

#: litellm exception class name (``litellm.exceptions``) -> Hyperion error class. The most specific
#: entry along the raised exception's MRO wins. ``ProviderError`` / ``BadRequestError`` entries are
#: refined by status code and message (``errors.error_for_status``) into a subclass when one fits.
LITELLM_ERRORS: dict[str, type[ProviderError]] = {
    # 400 family
    "BadRequestError": BadRequestError,
    "InvalidRequestError": BadRequestError,  # deprecated litellm alias
    "UnprocessableEntityError": BadRequestError,  # 422
    "MalformedRequestFieldError": BadRequestError,
    "ImageFetchError": BadRequestError,  # an image URL in the request could not be fetched
    "UnsupportedParamsError": BadRequestError,  # a native adapter would get the provider's 400
    "VectorStoreSearchError": BadRequestError,
    "ContextWindowExceededError": ContextWindowExceededError,
    "ContentPolicyViolationError": ContentPolicyError,
    "RejectedRequestError": ContentPolicyError,  # rejected by a (litellm-side) pre-call check
    "GuardrailRaisedException": ContentPolicyError,
    "BlockedPiiEntityError": ContentPolicyError,
    "ModifyResponseException": ContentPolicyError,  # a litellm guardrail replaced the answer
    "SensitiveDataRouteException": ContentPolicyError,  # a litellm guardrail wants another model
    # this deployment cannot serve it; another might (failover, no retry)
    "AuthenticationError": AuthenticationError,
    "CallerCredentialAuthenticationError": AuthenticationError,
    "PermissionDeniedError": AuthenticationError,  # 403
    "PaymentRequiredError": AuthenticationError,  # 402: the deployment's account is out of credit
    "NotFoundError": NotFoundError,
    "UnsupportedEndpointError": NotFoundError,
    "EndpointNotSupportedByModelError": NotFoundError,
    "LiteLLMUnknownProvider": NotFoundError,  # the deployment names a provider litellm does not know
    "ModelNotMappedError": NotFoundError,
    # transient: retry, then fail over
    "RateLimitError": RateLimitError,
    "CallerCredentialRateLimitError": RateLimitError,
    "BudgetExceededError": RateLimitError,  # litellm's own budget limiter (unused by Hyperion)
    "Timeout": ProviderTimeoutError,
    "APIConnectionError": ProviderConnectionError,
    "InternalServerError": ProviderUnavailableError,
    "ServiceUnavailableError": ProviderUnavailableError,
    "BadGatewayError": ProviderUnavailableError,
    "MidStreamFallbackError": StreamCutError,
    "APIResponseValidationError": MalformedResponseError,
    "JSONSchemaValidationError": MalformedResponseError,
    # generic: classified by status code when there is one
    "APIError": ProviderError,
    "OpenAIError": ProviderError,
    "MockException": ProviderError,
}
_REFINED = (ProviderError, BadRequestError)
_LITELLM_PREFIX = re.compile(r"^(?:(?:litellm\.)?\w+(?:Error|Exception|Timeout): )+")


def load_litellm() -> Any:
    """Import litellm once, quietly, with its bundled data: it never fetches its cost map, Anthropic
    beta-header table or tokenizers over the network (``LITELLM_OFFLINE_MODE``)."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
        os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
        os.environ.setdefault("LITELLM_TELEMETRY", "False")
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        _litellm = litellm
    return _litellm


# -- exceptions ----------------------------------------------------------------------------------


def error_class(exc: BaseException) -> type[ProviderError] | None:
    """The table entry for ``exc``: the first litellm class along its MRO that has one."""
    for klass in type(exc).__mro__:
        if klass.__module__ == "litellm.exceptions":
            cls = LITELLM_ERRORS.get(klass.__name__)
            if cls is not None:
                return cls
    return None


def causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (litellm's ``original_exception``, ``__cause__``, ``__context__``), outermost first."""
    out: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(out) < 16:
        seen.add(id(current))
        out.append(current)
        nxt = getattr(current, "original_exception", None)
        current = nxt if isinstance(nxt, BaseException) else (current.__cause__ or current.__context__)
    return out


def _upstream_response(chain: list[BaseException]) -> Any:
    """The provider's own HTTP error response, when litellm kept the ``httpx.HTTPStatusError`` it wraps.
    litellm's exceptions carry placeholder responses (and e.g. turn Anthropic's 529 into a 500)."""
    for exc in chain:
        if type(exc).__name__.endswith("HTTPStatusError"):
            response = getattr(exc, "response", None)
            if response is not None and getattr(response, "status_code", None):
                return response
    return None


def _status(exc: BaseException, upstream: Any) -> int | None:
    candidates = (
        getattr(upstream, "status_code", None),
        getattr(exc, "status_code", None),
        getattr(getattr(exc, "response", None), "status_code", None),
    )
    for value in candidates:
        try:
            if value is not None:
                return int(value)
        except (TypeError, ValueError):
            continue
    return None


def _transport_class(chain: list[BaseException]) -> type[ProviderError] | None:
    """Timeout / connection class when the chain holds a transport failure (httpx or aiohttp) and no answer."""
    import httpx  # a litellm dependency, loaded with it

    for exc in chain:
        if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
            return ProviderTimeoutError
        if isinstance(exc, (httpx.TransportError, ConnectionError)) or type(exc).__module__.startswith(
            "aiohttp"
        ):
            return ProviderConnectionError
    return None


def _retry_after(chain: list[BaseException], upstream: Any) -> float | None:
    sources: list[Any] = [getattr(upstream, "headers", None)]
    for exc in chain:
        sources += [
            getattr(exc, "litellm_response_headers", None),
            getattr(exc, "headers", None),
            getattr(getattr(exc, "response", None), "headers", None),
        ]
    for headers in sources:
        if headers:
            try:
                value = retry_after_seconds(headers)
            except (AttributeError, TypeError):
                continue
            if value is not None:
                return value
    return None


def _json_in(text: str) -> Any:
    """The first JSON object embedded in ``text`` (litellm quotes upstream bodies in its messages)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start >= 0:
        try:
            return decoder.raw_decode(text, start)[0]
        except ValueError:
            start = text.find("{", start + 1)
    return None


def _body(exc: BaseException, upstream: Any) -> Any:
    for response in (upstream, getattr(exc, "response", None)):
        try:
            raw = response.content if response is not None else b""
        except Exception:  # httpx.ResponseNotRead and friends
            raw = b""
        if raw:
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                pass
    body = getattr(exc, "body", None)
    if isinstance(body, (dict, list)):
        return body
    return _json_in(str(getattr(exc, "message", "") or exc))


def provider_details(exc: BaseException, upstream: Any = None) -> tuple[str, str | None]:
    """(message, provider code) of a litellm exception, from the upstream error body when it has one."""
    body = _body(exc, upstream)
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):  # OpenAI {code,type}, Anthropic {type}, Gemini {status}
        code = err.get("code") if isinstance(err.get("code"), str) else None
        return str(err.get("message") or err), code or err.get("type") or err.get("status")
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"], body.get("code") or body.get("type")
    message = _LITELLM_PREFIX.sub("", str(getattr(exc, "message", "") or exc)) or type(exc).__name__
    return message, None


def map_exception(
    exc: BaseException, *, route: str | None = None, deployment: str | None = None
) -> HyperionError:
    """One litellm (or stray transport) exception as a Hyperion error with status, retry-after and context."""
    if isinstance(exc, HyperionError):
        exc.route = exc.route or route
        exc.deployment = exc.deployment or deployment
        return exc
    original = getattr(exc, "original_exception", None)
    if getattr(exc, "is_pre_first_chunk", False) and isinstance(original, Exception):
        # litellm wraps a stream that failed before its first chunk (an HTTP error status, say) in
        # MidStreamFallbackError; nothing was streamed, so the original failure is the one to report
        err = map_exception(original, route=route, deployment=deployment)
        err.__cause__ = exc
        return err
    chain = causes(exc)
    upstream = _upstream_response(chain)
    cls = error_class(exc)
    if cls is None:
        if isinstance(exc, TimeoutError):
            cls = ProviderTimeoutError
        elif isinstance(exc, ConnectionError):
            cls = ProviderConnectionError
        else:
            cls = ProviderError
    status = _status(exc, upstream)
    message, code = provider_details(exc, upstream)
    transport = _transport_class(chain) if upstream is None else None
    if upstream is None and any(isinstance(e, json.JSONDecodeError) for e in chain):
        # litellm reports an unparseable provider body as a 500, a connection error or even a 422
        cls, status = MalformedResponseError, None
    elif transport is not None and cls is not StreamCutError:
        # a body cut short or a refused connection, which litellm may report as a 500
        cls, status = transport, None
    elif cls in _REFINED and status is not None:
        refined = type(error_for_status(status, message, provider_code=code))
        if issubclass(refined, cls):
            cls = refined
    if cls is StreamCutError:  # the status litellm gives a broken stream is made up
        status = None
    err = cls(
        f"{type(exc).__name__}: {message}"[:1000],
        status=status,
        retry_after=_retry_after(chain, upstream),
        provider_code=code,
        route=route,
        deployment=deployment,
    )
    err.__cause__ = exc
    return err


# -- responses -----------------------------------------------------------------------------------


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def litellm_usage(u: Any) -> Usage:
    """litellm's OpenAI-shaped usage (``prompt_tokens`` already includes cache reads and writes)."""
    if u is None:
        return Usage()
    pdetails = _get(u, "prompt_tokens_details")
    cdetails = _get(u, "completion_tokens_details")
    cached = _int(_get(pdetails, "cached_tokens")) or _int(_get(u, "cache_read_input_tokens"))
    written = _int(_get(pdetails, "cache_creation_tokens")) or _int(_get(u, "cache_creation_input_tokens"))
    return Usage(
        prompt_tokens=_int(_get(u, "prompt_tokens")),
        completion_tokens=_int(_get(u, "completion_tokens")),
        cached_prompt_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=_int(_get(cdetails, "reasoning_tokens")),
    )


def _tool_calls(raw: Any) -> tuple[ToolCall, ...]:
    out = []
    for i, tc in enumerate(raw or ()):
        fn = _get(tc, "function")
        out.append(
            ToolCall(
                id=_get(tc, "id") or f"call_{i}",
                name=_get(fn, "name") or "",
                arguments=_get(fn, "arguments") or "{}",
            )
        )
    return tuple(out)


def parse_response(resp: Any, default_model: str) -> ProviderResponse:
    choice = resp.choices[0]
    msg = choice.message
    return ProviderResponse(
        content=_get(msg, "content"),
        tool_calls=_tool_calls(_get(msg, "tool_calls")),
        finish_reason=_get(choice, "finish_reason"),
        usage=litellm_usage(_get(resp, "usage")),
        model=_get(resp, "model") or default_model,
        id=_get(resp, "id"),
        system_fingerprint=_get(resp, "system_fingerprint"),
        logprobs=_get(choice, "logprobs"),
        reasoning=_get(msg, "reasoning_content") or None,
    )


def parse_chunk(chunk: Any) -> tuple[str, tuple[ToolCallDelta, ...], str | None, Usage | None]:
    """(content, tool-call deltas, finish reason, usage) of one litellm stream chunk."""
    usage = _get(chunk, "usage")
    choices = _get(chunk, "choices") or ()
    if not choices:
        return "", (), None, litellm_usage(usage) if usage else None
    choice = choices[0]
    delta = _get(choice, "delta")
    content = _get(delta, "content") or ""
    deltas = tuple(
        ToolCallDelta(
            index=_get(tc, "index") if _get(tc, "index") is not None else i,
            id=_get(tc, "id"),
            name=_get(_get(tc, "function"), "name"),
            arguments=_get(_get(tc, "function"), "arguments") or "",
        )
        for i, tc in enumerate(_get(delta, "tool_calls") or ())
    )
    return content, deltas, _get(choice, "finish_reason"), litellm_usage(usage) if usage else None


def upstream_finished(stream: Any) -> bool | None:
    """Whether litellm's stream wrapper saw the provider's own finish reason. litellm makes up a
    ``stop`` when a non-OpenAI stream ends early; its bookkeeping tells the two apart (None: unknown)."""
    if not hasattr(stream, "received_finish_reason"):
        return None
    return bool(
        stream.received_finish_reason
        or getattr(stream, "intermittent_finish_reason", None)
        or getattr(stream, "received_any_finish_reason", False)
    )


#: litellm providers that forward OpenAI-format messages as they are (tool-call arguments unparsed)
_PASSTHROUGH = ("openai/", "hosted_vllm/", "azure/")


def check_tool_arguments(messages: list[dict[str, Any]]) -> None:
    """Reject tool-call arguments that are not a JSON object, as the native adapters do, before litellm
    parses them while translating (its error would be indistinguishable from an unparseable answer)."""
    for msg in messages:
        for tc in msg.get("tool_calls") or ():
            fn = tc.get("function") or {}
            raw = fn.get("arguments") or "{}"
            try:
                args = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
            except orjson.JSONDecodeError:
                args = None
            if not isinstance(args, dict):
                raise InvalidRequestError(
                    f"tool call {tc.get('id')!r} ({fn.get('name')}) arguments are not a JSON object: {str(raw)[:80]!r}"
                )


# -- adapter -------------------------------------------------------------------------------------


class LiteLLMAdapter(Adapter):
    wire = "litellm"
    _unsupported: frozenset[str] | None = None

    def model_name(self) -> str:
        provider = PROVIDER_NAMES.get(self.target.kind, self.target.kind)
        model = self.target.model
        return model if model.startswith(f"{provider}/") else f"{provider}/{model}"

    def _common(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"model": self.model_name(), "num_retries": 0, "max_retries": 0}
        if self.target.base_url:
            kw["api_base"] = self.target.base_url
        if self.target.api_key:
            kw["api_key"] = self.target.api_key
        if self.target.headers:
            kw["extra_headers"] = dict(self.target.headers)
        if self.target.timeout:
            kw["timeout"] = self.target.timeout
        return kw

    def build_kwargs(self, req: ChatRequest, stream: bool) -> dict[str, Any]:
        """The ``litellm.acompletion`` keyword arguments for ``req`` (pure)."""
        kw = self._common()
        if not kw["model"].startswith(_PASSTHROUGH):
            check_tool_arguments(req.messages)
        kw["messages"] = req.messages
        kw.update(merged_params(req, self.target.params))
        if req.tools:
            kw["tools"] = req.tools
        if req.tool_choice is not None:
            kw["tool_choice"] = req.tool_choice
        if req.response_format is not None:
            kw["response_format"] = req.response_format
        kw["stream"] = stream
        if stream:
            kw["stream_options"] = {"include_usage": True}
        kw.update(self.target.litellm_params)
        kw.update(req.extra)
        unsupported = self._unsupported_params()
        for key in unsupported.intersection(kw):
            dropped(key, f"litellm {self.model_name()}", "litellm does not send it for this provider")
            del kw[key]
        return kw

    def _unsupported_params(self) -> frozenset[str]:
        """OpenAI parameters litellm refuses for this model (``UnsupportedParamsError``), computed once: the
        adapter drops them, as the native adapters drop what their wire has no equivalent for."""
        if self._unsupported is None:
            provider = PROVIDER_NAMES.get(self.target.kind, self.target.kind)
            try:
                supported = load_litellm().get_supported_openai_params(
                    model=self.target.model.removeprefix(f"{provider}/"), custom_llm_provider=provider
                )
            except Exception:  # unknown provider/model: let litellm itself decide per call
                supported = None
            keep = _ALWAYS_SENT | set(supported or OPENAI_PARAMS)
            self._unsupported = frozenset(OPENAI_PARAMS - keep)
        return self._unsupported

    def _error(self, exc: BaseException) -> HyperionError:
        """The Hyperion error for ``exc``, scrubbed: an upstream that echoes the API key (or any
        credential) never hands it to the caller, in the message or the exception chain."""
        err = map_exception(exc, route=self.target.route, deployment=self.target.name)
        secrets = (self.target.api_key,)
        err.message = scrub(err.message, secrets)
        err.args = (err.message,)
        if scrub(str(exc), secrets) != str(exc):
            err.__cause__ = None
            err.__suppress_context__ = True
        elif err.__cause__ is None:
            err.__cause__ = exc
        return err

    async def chat(self, req: ChatRequest) -> ProviderResponse:
        kwargs = self.build_kwargs(req, False)
        litellm = load_litellm()
        try:
            resp = await litellm.acompletion(**kwargs)
        except Exception as exc:
            raise self._error(exc)  # noqa: B904 - chained inside _error, unless it would carry a secret
        try:
            return parse_response(resp, self.target.model)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise MalformedResponseError(
                f"litellm response has an unexpected shape ({type(exc).__name__}: {exc})",
                route=self.target.route,
                deployment=self.target.name,
            ) from exc

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        kwargs = self.build_kwargs(req, True)
        litellm = load_litellm()
        try:
            stream = await litellm.acompletion(**kwargs)
        except Exception as exc:
            raise self._error(exc)  # noqa: B904 - chained inside _error, unless it would carry a secret
        finish: str | None = None
        usage: Usage | None = None
        try:
            async for chunk in stream:
                content, deltas, reason, chunk_usage = parse_chunk(chunk)
                if reason:
                    finish = reason
                if chunk_usage is not None:
                    usage = chunk_usage
                if content or deltas:
                    yield ChatChunk(content=content, tool_calls=deltas)
        except Exception as exc:
            raise self._error(exc)  # noqa: B904 - chained inside _error, unless it would carry a secret
        finally:
            closer = getattr(stream, "aclose", None)
            if closer is not None:
                try:
                    await closer()
                except Exception:  # closing a broken stream may fail again; the first error wins
                    pass
        if finish is None or upstream_finished(stream) is False:
            raise StreamCutError(
                f"{self.target.kind} stream (via litellm) ended without a finish reason",
                route=self.target.route,
                deployment=self.target.name,
            )
        yield ChatChunk(finish_reason=finish, usage=usage or Usage())

    async def embed(
        self, inputs: list[str], *, dimensions: int | None = None
    ) -> tuple[list[list[float]], Usage]:
        kwargs = self._common()
        kwargs["input"] = inputs
        if dimensions:
            kwargs["dimensions"] = dimensions
        kwargs.update(self.target.litellm_params)
        litellm = load_litellm()
        try:
            resp = await litellm.aembedding(**kwargs)
        except Exception as exc:
            raise self._error(exc)  # noqa: B904 - chained inside _error, unless it would carry a secret
        try:
            rows = sorted(resp.data, key=lambda r: _get(r, "index") or 0)
            vectors = [list(_get(r, "embedding")) for r in rows]
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise MalformedResponseError(
                f"litellm embeddings response has an unexpected shape ({type(exc).__name__})",
                route=self.target.route,
                deployment=self.target.name,
            ) from exc
        return vectors, litellm_usage(_get(resp, "usage"))


__all__ = [
    "LiteLLMAdapter",
    "LITELLM_ERRORS",
    "load_litellm",
    "error_class",
    "map_exception",
    "provider_details",
    "litellm_usage",
    "parse_response",
    "parse_chunk",
]
