"""The OpenAI wire, server side: Chat Completions / Embeddings / Models bodies in, answers out.

Pure and I/O-free; a door (``hyperion serve``) reads bytes, calls these, writes bytes::

    parsed = parse_chat(raw_body)                  # -> ParsedChat(request, stream, include_usage)
    resp = await gateway.pipeline ...              # ChatResponse / ChatChunk stream
    encode_chat_completion(resp)                   # -> bytes of a ``chat.completion`` object
    enc = ChunkEncoder(id=..., model=..., include_usage=parsed.include_usage)
    enc.chunk(chunk) ... enc.done()                # -> ``chat.completion.chunk`` SSE bytes, then [DONE]
    reply = error_reply(exc)                       # -> ErrorReply(status, payload, headers)

**Requests.** A body is checked as the OpenAI API checks it — the strict mock provider's validator and
messages (``mock_provider.strict`` over ``wire_schemas.json``, generated from the openai SDK, plus its
cross-field rules), so a refusal here is the same 400 body the real API (and the strict mock) gives.
``model`` is the route; ``temperature``, ``top_p``, ``max_tokens``, ``stop`` (a string becomes a list),
``seed``, ``n``, ``tools``, ``tool_choice`` and ``response_format`` are typed fields; ``stream`` and
``stream_options.include_usage`` say how to answer; every other parameter goes to ``extra`` under its
own name (``max_completion_tokens`` included: o-series upstreams refuse ``max_tokens``, and the
Anthropic/Gemini adapters read either). An explicit ``null`` is "not given", as the API treats it.

**Errors** (:func:`error_reply`, the inverse of ``errors.error_for_status``; see :data:`ERRORS`):

=============================  ======  =========================  ========================================
Hyperion error                 status  type / code                notes
=============================  ======  =========================  ========================================
InvalidRequestError, body      400     invalid_request_error      the API's own message/param/code
RouteNotFoundError             404     model_not_found            an unknown route is an unknown ``model``
InvalidKey/KeyRevoked/Expired  401     invalid_api_key            the SDKs raise AuthenticationError
PermissionDeniedError          403     permission_denied
RateLimitedError               429     rate_limit_exceeded        Retry-After + retry-after-ms: SDKs wait
BudgetExceededError            429     insufficient_quota         ``x-should-retry: false``
GovernanceStoreError           503     service_unavailable        fails closed; retrying is right
upstream 400s (context, ...)   400     context_length_exceeded,   the upstream's message
                                       content_policy_violation
upstream 429 (RateLimitError)  429     rate_limit_exceeded        upstream Retry-After passed on
upstream 5xx / unavailable     503     service_unavailable
upstream timeout, deadline     504     timeout
upstream auth / model 404      502     upstream_*                 the gateway's configuration, not the
                                                                  caller's key: ``x-should-retry: false``
AllDeploymentsFailedError      (the last upstream failure's status: all rate limited -> 429, ...)
NoHealthyDeploymentError       503     no_healthy_deployment
StreamInterruptedError         502     stream_interrupted         mid-stream: an SSE error event instead
=============================  ======  =========================  ========================================

Budget refusals use OpenAI's own answer for "out of money" (429 ``insufficient_quota``), which clients
already recognise as a quota problem (LangChain, LlamaIndex, retry libraries that check the code), with
``x-should-retry: false`` so the openai and anthropic SDKs do not retry it like a rate limit (both obey
that header before looking at the status); no Retry-After is sent. Messages carry the route and request
id, never secrets (scrubbed as audit events are).

**Answers.** Usage carries ``prompt_tokens_details.cached_tokens`` and
``completion_tokens_details.reasoning_tokens``; ``finish_reason`` is one the SDK accepts (``None`` or
an unknown reason becomes ``stop``, or ``tool_calls`` when the answer calls tools). One choice per
answer (``ChatResponse`` holds one). Streams: the first delta carries ``role``, tool calls stream as
``{index, id, type, function: {name, arguments}}`` then argument pieces, a finish chunk with an empty
delta, the usage chunk (``choices: []``) when ``include_usage``, then ``data: [DONE]``.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Collection, Iterable
from typing import Any

import orjson

from ..errors import AuthenticationError, BudgetExceededError, ConfigError, HyperionError, NotFoundError
from ..mock_provider import openai_wire as _mock
from ..mock_provider.strict import openai_rules, validate
from ..types import Caller, ChatChunk, ChatRequest, ChatResponse, EmbeddingResponse, Usage
from .common import (
    ErrorReply,
    ParsedChat,
    ParsedEmbeddings,
    RequestBodyError,
    client_message,
    decisive,
    load_body,
    lookup,
    retry_after_of,
    retry_headers,
    sse,
)

NOT_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
    "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you "
    "have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)"
)
NOT_OBJECT = (
    "We could not parse the JSON body of your request. (HINT: The OpenAI API expects a JSON object, but what "
    "was sent was not an object.)"
)
EMPTY_MESSAGES = "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead."

FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})

#: fields read into typed ``ChatRequest`` fields or consumed by the codec; the rest go to ``extra``
_TYPED = ("temperature", "top_p", "max_tokens", "seed", "n", "tools", "tool_choice", "response_format")
_CONSUMED = frozenset({"model", "messages", "stream", "stream_options", "stop", *_TYPED})

# fmt: off
#: error class name -> (HTTP status, error type, error code); the most specific class of an error's MRO wins.
#: A test fails when a HyperionError subclass has no entry of its own.
ERRORS: dict[str, tuple[int, str, str | None]] = {
    "HyperionError":               (500, "server_error", None),
    "ConfigError":                 (500, "server_error", "gateway_misconfigured"),
    "EmbeddingsExtraMissingError": (500, "server_error", "gateway_misconfigured"),
    "EmbedderIntegrityError":      (500, "server_error", "gateway_misconfigured"),
    "AuditError":                  (500, "server_error", None),
    "RedisServerError":            (500, "server_error", None),
    "RequestError":                (400, "invalid_request_error", None),
    "RouteNotFoundError":          (404, "invalid_request_error", "model_not_found"),
    "InvalidRequestError":         (400, "invalid_request_error", None),
    "RequestBodyError":            (400, "invalid_request_error", None),
    "AccessError":                 (403, "permission_error", "permission_denied"),
    "InvalidKeyError":             (401, "invalid_request_error", "invalid_api_key"),
    "KeyRevokedError":             (401, "invalid_request_error", "invalid_api_key"),
    "KeyExpiredError":             (401, "invalid_request_error", "invalid_api_key"),
    "PermissionDeniedError":       (403, "permission_error", "permission_denied"),
    "BudgetExceededError":         (429, "insufficient_quota", "insufficient_quota"),
    "RateLimitedError":            (429, "requests", "rate_limit_exceeded"),
    "GuardrailBlockedError":       (400, "invalid_request_error", "content_policy_violation"),
    "GovernanceStoreError":        (503, "server_error", "service_unavailable"),
    "ProviderError":               (502, "server_error", "upstream_error"),
    "RateLimitError":              (429, "requests", "rate_limit_exceeded"),
    "ProviderUnavailableError":    (503, "server_error", "service_unavailable"),
    "ProviderTimeoutError":        (504, "server_error", "timeout"),
    "FirstTokenTimeoutError":      (504, "server_error", "timeout"),
    "ProviderConnectionError":     (502, "server_error", "upstream_error"),
    "MalformedResponseError":      (502, "server_error", "upstream_error"),
    "StreamCutError":              (502, "server_error", "upstream_error"),
    "AuthenticationError":         (502, "server_error", "upstream_authentication_failed"),
    "NotFoundError":               (502, "server_error", "upstream_model_not_found"),
    "BadRequestError":             (400, "invalid_request_error", None),
    "ContextWindowExceededError":  (400, "invalid_request_error", "context_length_exceeded"),
    "ContentPolicyError":          (400, "invalid_request_error", "content_policy_violation"),
    "RoutingError":                (502, "server_error", None),
    "AllDeploymentsFailedError":   (502, "server_error", "all_deployments_failed"),
    "NoHealthyDeploymentError":    (503, "server_error", "no_healthy_deployment"),
    "DeadlineExceededError":       (504, "server_error", "timeout"),
    "StreamInterruptedError":      (502, "server_error", "stream_interrupted"),
}
# fmt: on

#: errors no retry can fix: the SDKs are told not to retry them (``x-should-retry: false``)
NO_RETRY: tuple[type[HyperionError], ...] = (
    BudgetExceededError,
    AuthenticationError,
    NotFoundError,
    ConfigError,
)
_UPSTREAM_AUTH = (
    "the upstream provider refused the gateway's credentials for this route (a gateway configuration problem, "
    "not your key)"
)


# ------------------------------------------------------------------------------------------- requests


def _refuse(issue: Any) -> RequestBodyError:
    _, body = _mock.invalid_body(issue)
    err = body["error"]
    return RequestBodyError(err["message"], param=err.get("param"), code=err.get("code"))


def _check(endpoint: str, body: dict[str, Any], allow: Collection[str]) -> None:
    checked = {k: v for k, v in body.items() if k not in allow} if allow else body
    issue = validate(endpoint, checked)
    if issue is None and endpoint == "openai.chat":
        issue = openai_rules(body)
    if issue is not None:
        raise _refuse(issue)


def parse_chat(
    body: bytes | str | dict[str, Any],
    *,
    allow: Collection[str] = (),
    strict: bool = True,
    caller: Caller | None = None,
    request_id: str | None = None,
) -> ParsedChat:
    """A ``POST /v1/chat/completions`` body as a :class:`ParsedChat`; a body the OpenAI API refuses
    raises :class:`RequestBodyError` with the API's message. ``allow`` names extra top-level fields to
    accept (say a route's ``allow_params``); ``strict=False`` skips the schema check."""
    data = load_body(body, NOT_JSON, NOT_OBJECT)
    if strict:
        _check("openai.chat", data, allow)
    messages = data.get("messages")
    if not isinstance(messages, list):
        raise RequestBodyError(
            "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
        )
    if not messages:
        raise RequestBodyError(EMPTY_MESSAGES, param="messages", code="empty_array")
    get = data.get
    stop = get("stop")
    extra = {k: v for k, v in data.items() if k not in _CONSUMED and v is not None}
    req = ChatRequest(
        route=get("model") if isinstance(get("model"), str) else str(get("model") or ""),
        messages=messages,
        temperature=get("temperature"),
        top_p=get("top_p"),
        max_tokens=get("max_tokens"),
        stop=[stop] if isinstance(stop, str) else (list(stop) if stop else None),
        seed=get("seed"),
        n=get("n"),
        tools=get("tools") or None,
        tool_choice=get("tool_choice"),
        response_format=get("response_format"),
        extra=extra,
        caller=caller,
    )
    if request_id:
        req.request_id = request_id
    options = get("stream_options") or {}
    return ParsedChat(
        req,
        stream=bool(get("stream")),
        include_usage=bool(options.get("include_usage")) if isinstance(options, dict) else False,
    )


def parse_embeddings(body: bytes | str | dict[str, Any], *, strict: bool = True) -> ParsedEmbeddings:
    """A ``POST /v1/embeddings`` body. Inputs must be text (token-id arrays are refused: the gateway
    embeds text on any provider). The openai SDK asks for ``base64`` unless told otherwise."""
    data = load_body(body, NOT_JSON, NOT_OBJECT)
    if strict:
        _check("openai.embeddings", data, ())
    raw = data.get("input")
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list) or not inputs or not all(isinstance(x, str) for x in inputs):
        raise RequestBodyError(
            "Invalid 'input': this gateway embeds text; send a string or an array of strings.",
            param="input",
            code="invalid_value",
        )
    dims = data.get("dimensions")
    return ParsedEmbeddings(
        route=str(data.get("model") or ""),
        inputs=inputs,
        dimensions=dims if isinstance(dims, int) else None,
        encoding_format=data.get("encoding_format") or "float",
        user=data.get("user"),
    )


# ------------------------------------------------------------------------------------------ answers


def usage_body(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_prompt_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def finish_reason(reason: str | None, has_tool_calls: bool = False) -> str:
    if reason in FINISH_REASONS:
        return reason  # type: ignore[return-value]
    return "tool_calls" if has_tool_calls else "stop"


def chat_completion(
    resp: ChatResponse,
    *,
    model: str | None = None,
    id: str | None = None,
    created: int | None = None,
    system_fingerprint: str | None = None,
    logprobs: Any = None,
) -> dict[str, Any]:
    """A ``chat.completion`` object. ``model`` defaults to the model that answered (``resp.model``);
    ``logprobs`` is the choice's logprobs object when the deployment returned one."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": resp.content,
        "refusal": None,
        "annotations": [],
    }
    if resp.tool_calls:
        message["tool_calls"] = [
            {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
            for t in resp.tool_calls
        ]
    out: dict[str, Any] = {
        "id": id or f"chatcmpl-{resp.request_id}",
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model or resp.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": logprobs if logprobs is not None else getattr(resp, "logprobs", None),
                "finish_reason": finish_reason(resp.finish_reason, bool(resp.tool_calls)),
            }
        ],
        "usage": usage_body(resp.usage),
    }
    fingerprint = system_fingerprint or getattr(resp, "system_fingerprint", None)
    if fingerprint:
        out["system_fingerprint"] = fingerprint
    return out


def encode_chat_completion(resp: ChatResponse, **kw: Any) -> bytes:
    """:func:`chat_completion` as JSON bytes."""
    return orjson.dumps(chat_completion(resp, **kw))


class ChunkEncoder:
    """One streamed answer as ``chat.completion.chunk`` SSE events.

    Call :meth:`chunk` for every :class:`ChatChunk` the pipeline yields and :meth:`done` once it has
    ended normally (the finish chunk if none came, the usage chunk when ``include_usage``, then
    ``data: [DONE]``); on a failure mid-stream send :meth:`error` instead of :meth:`done`. Each returns
    the bytes to write (possibly empty). The envelope is serialised once; a chunk costs one small
    ``orjson.dumps`` of its delta.
    """

    __slots__ = (
        "include_usage",
        "_head",
        "_tail",
        "_usage_head",
        "_started",
        "_finished",
        "_usage",
        "_tools",
        "_id",
    )

    def __init__(
        self,
        *,
        id: str,
        model: str,
        created: int | None = None,
        include_usage: bool = False,
        system_fingerprint: str | None = None,
    ) -> None:
        envelope: dict[str, Any] = {
            "id": id,
            "object": "chat.completion.chunk",
            "created": created if created is not None else int(time.time()),
            "model": model,
        }
        if system_fingerprint:
            envelope["system_fingerprint"] = system_fingerprint
        prefix = b"data: " + orjson.dumps(envelope)[:-1]
        self.include_usage = include_usage
        self._id = id
        self._head = prefix + b',"choices":[{"index":0,"delta":'
        self._tail = b',"logprobs":null,"finish_reason":'
        self._usage_head = prefix + b',"choices":[],"usage":'
        self._started = False
        self._finished = False
        self._usage: Usage | None = None
        self._tools: set[int] = set()

    def _frame(self, delta: bytes, finish: str | None = None) -> bytes:
        end = b"null" if finish is None else b'"' + finish.encode() + b'"'
        usage = b',"usage":null}\n\n' if self.include_usage else b"}\n\n"
        return self._head + delta + self._tail + end + b"}]" + usage

    def chunk(self, c: ChatChunk) -> bytes:
        out = b""
        if c.content or c.tool_calls or not self._started:
            delta: dict[str, Any] = {}
            if not self._started:
                self._started = True
                delta["role"] = "assistant"
                delta["content"] = c.content if c.content or not c.tool_calls else None
            elif c.content:
                delta["content"] = c.content
            if c.tool_calls:
                delta["tool_calls"] = [self._tool(d) for d in c.tool_calls]
            out = self._frame(orjson.dumps(delta))
        if c.usage is not None:
            self._usage = c.usage
        if c.finish_reason is not None and not self._finished:
            self._finished = True
            out += self._frame(b"{}", finish_reason(c.finish_reason, bool(self._tools)))
        return out

    def _tool(self, d: Any) -> dict[str, Any]:
        piece: dict[str, Any] = {"index": d.index}
        fn: dict[str, Any] = {}
        if d.index not in self._tools:
            self._tools.add(d.index)
            piece["id"] = d.id or f"call_{self._id}_{d.index}"
            piece["type"] = "function"
            fn["name"] = d.name or ""
        elif d.id or d.name:
            if d.id:
                piece["id"] = d.id
            if d.name:
                fn["name"] = d.name
        fn["arguments"] = d.arguments
        piece["function"] = fn
        return piece

    def done(self) -> bytes:
        out = b"" if self._started else self.chunk(ChatChunk())
        if not self._finished:
            self._finished = True
            out += self._frame(b"{}", finish_reason(None, bool(self._tools)))
        if self.include_usage:
            out += self._usage_head + orjson.dumps(usage_body(self._usage or Usage())) + b"}\n\n"
        return out + b"data: [DONE]\n\n"

    def error(self, exc: BaseException) -> bytes:
        """An error event as OpenAI sends one mid-stream (the SDKs raise ``APIError`` on it)."""
        return error_event(exc)


def encode_stream(chunks: Iterable[ChatChunk], **kw: Any) -> bytes:
    """A whole stream's SSE bytes (replays, tests): :class:`ChunkEncoder` over ``chunks``, then ``done``."""
    enc = ChunkEncoder(**kw)
    return b"".join(enc.chunk(c) for c in chunks) + enc.done()


def _base64(vec: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()


def embeddings(
    resp: EmbeddingResponse, *, model: str | None = None, encoding_format: str = "float"
) -> dict[str, Any]:
    """A ``/v1/embeddings`` answer (``encoding_format="base64"``: little-endian float32, as OpenAI sends)."""
    b64 = encoding_format == "base64"
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _base64(v) if b64 else v}
            for i, v in enumerate(resp.vectors)
        ],
        "model": model or resp.model,
        "usage": {"prompt_tokens": resp.usage.prompt_tokens, "total_tokens": resp.usage.prompt_tokens},
    }


def encode_embeddings(resp: EmbeddingResponse, **kw: Any) -> bytes:
    return orjson.dumps(embeddings(resp, **kw))


def models(routes: Iterable[str], *, created: int = 0, owned_by: str = "hyperion") -> dict[str, Any]:
    """A ``/v1/models`` list: one model per route (name the routes the caller's key may use)."""
    return {
        "object": "list",
        "data": [{"id": r, "object": "model", "created": created, "owned_by": owned_by} for r in routes],
    }


def encode_models(routes: Iterable[str], **kw: Any) -> bytes:
    return orjson.dumps(models(routes, **kw))


# ------------------------------------------------------------------------------------------- errors


def error_reply(exc: BaseException) -> ErrorReply:
    """Any exception as OpenAI's ``{"error": {message, type, param, code}}`` with its status and headers
    (see the table in the module docstring). Non-Hyperion exceptions are a bare 500."""
    if not isinstance(exc, HyperionError):
        return ErrorReply(
            500,
            {"error": {"message": "internal error", "type": "server_error", "param": None, "code": None}},
            {},
        )
    decided = decisive(exc)
    status, etype, code = lookup(ERRORS, type(decided))
    param = getattr(exc, "param", None)
    if isinstance(exc, RequestBodyError):
        code = exc.code
    elif code is None and isinstance(decided, HyperionError):
        code = getattr(decided, "provider_code", None)
    if code == "context_length_exceeded":
        param = "messages"
    if (
        status == 429
        and etype == "requests"
        and "tpm" in str(getattr(decided, "limit_name", "") or "").lower()
    ):
        etype = "tokens"
    text = _UPSTREAM_AUTH if isinstance(exc, AuthenticationError) else None
    headers: dict[str, str] = {}
    if status in (429, 503) and not isinstance(exc, BudgetExceededError):
        headers.update(retry_headers(retry_after_of(exc, decided)))
    if isinstance(decided, NO_RETRY) or isinstance(exc, NO_RETRY):
        headers["x-should-retry"] = "false"
    if exc.request_id:
        headers["x-request-id"] = exc.request_id
    body = {"error": {"message": client_message(exc, text), "type": etype, "param": param, "code": code}}
    return ErrorReply(status, body, headers)


def error_event(exc: BaseException) -> bytes:
    """An error as an SSE event inside a stream that has already begun."""
    return sse(orjson.dumps(error_reply(exc).payload))


__all__ = [
    "ERRORS",
    "NO_RETRY",
    "FINISH_REASONS",
    "ChunkEncoder",
    "chat_completion",
    "encode_chat_completion",
    "encode_stream",
    "embeddings",
    "encode_embeddings",
    "models",
    "encode_models",
    "error_reply",
    "error_event",
    "finish_reason",
    "parse_chat",
    "parse_embeddings",
    "usage_body",
]
