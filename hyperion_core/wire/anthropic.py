"""The Anthropic Messages wire, server side: ``POST /v1/messages`` bodies in, ``message`` objects and
Anthropic SSE events out, errors as ``{"type": "error", "error": {"type", "message"}}``.

Pure and I/O-free, the twin of :mod:`hyperion_core.wire.openai`::

    parsed = parse_messages(raw_body)             # -> ParsedChat; the ChatRequest is in OpenAI format
    encode_message(resp)                          # -> bytes of a ``message`` object
    enc = EventEncoder(id=..., model=...)
    enc.chunk(chunk) ... enc.done()               # -> message_start, content_block_*, message_delta, message_stop
    reply = error_reply(exc)                      # -> ErrorReply(status, payload, headers)

**Requests** are checked as the API checks them (the strict mock's validator and pydantic-style messages,
from the anthropic SDK's types) and converted to OpenAI-format messages, the pipeline's lingua franca,
so any deployment can serve them; the Anthropic adapter converts them back losslessly for the common
shapes:

* ``system`` (string or text blocks) -> a system message (blocks with ``cache_control`` stay parts);
* user ``text`` / ``image`` (base64 -> data URL, url) / ``document`` (base64 PDF, plain text -> ``file``
  parts) blocks -> content parts; a single plain text block -> a string;
* ``tool_result`` blocks -> ``tool`` messages (before the rest of that user turn); ``is_error`` has no
  OpenAI equivalent and is dropped;
* assistant ``text`` -> content, ``tool_use`` -> ``tool_calls`` (input as JSON text);
  ``thinking`` / ``redacted_thinking`` blocks stay as content parts (Claude needs them back with tool use);
* ``tools`` -> function tools (server tools, with a ``type`` other than ``custom``, pass unchanged);
  ``tool_choice`` auto/any/tool/none -> auto/required/function/none, ``disable_parallel_tool_use`` ->
  ``parallel_tool_calls: false``;
* ``max_tokens``, ``temperature``, ``top_p``, ``stop_sequences`` -> typed fields; ``metadata.user_id`` ->
  ``user``; ``thinking``, ``top_k``, ``service_tier`` and every other field -> ``extra`` by name.

Blocks with no OpenAI form (documents by URL or file id, search results, cache_control on tools) pass as
they are: Anthropic deployments take them, others refuse them upstream.

**Answers**: content blocks (text, then tool_use), ``stop_reason`` (stop -> end_turn, length ->
max_tokens, tool_calls -> tool_use, content_filter -> refusal), usage with ``input_tokens`` excluding
cache reads and writes (``cache_read_input_tokens``, ``cache_creation_input_tokens``), reasoning tokens
as ``output_tokens_details.thinking_tokens``. A stream's prompt usage is known only at its end, so
``message_start`` carries ``input_tokens`` from the ``input_tokens`` hint (default 0) and ``message_delta``
the final cumulative counts (the anthropic SDK and the Anthropic adapter take them from there).

**Errors** (:data:`ERRORS`): 400 invalid_request_error, 401 authentication_error (bad virtual key),
402 billing_error (budget refused: not retried by the SDK; also ``x-should-retry: false``), 403
permission_error, 404 not_found_error (unknown route), 429 rate_limit_error (our limits and upstream
429s, with Retry-After), 502 api_error (upstream failures, gateway-side credentials), 503 api_error (the
governance store is down), 504 timeout_error (deadlines, upstream timeouts), 529 overloaded_error
(upstream unavailable, every breaker open).
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Iterable
from typing import Any

import orjson

from ..errors import (
    AuthenticationError,
    BudgetExceededError,
    ContentPolicyError,
    ContextWindowExceededError,
    HyperionError,
    error_for_status,
)
from ..mock_provider import anthropic_wire as _mock
from ..mock_provider.strict import anthropic_rules, validate
from ..types import Caller, ChatChunk, ChatRequest, ChatResponse, Message, Usage
from .common import (
    ErrorReply,
    ParsedChat,
    RequestBodyError,
    client_message,
    decisive,
    load_body,
    lookup,
    retry_after_of,
    retry_headers,
    sse,
)
from .openai import NO_RETRY

NOT_JSON = "There was an issue with the request body: it is not valid JSON."
NOT_OBJECT = "There was an issue with the request body: it must be a JSON object."

#: OpenAI finish reason -> Anthropic stop reason (the inverse of the Anthropic adapter's map)
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}

_CONSUMED = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "temperature",
        "top_p",
        "stop_sequences",
        "stream",
        "tools",
        "tool_choice",
        "metadata",
    }
)

# fmt: off
#: error class name -> (HTTP status, Anthropic error type); the most specific class of an error's MRO wins
ERRORS: dict[str, tuple[int, str]] = {
    "HyperionError":               (500, "api_error"),
    "ConfigError":                 (500, "api_error"),
    "EmbeddingsExtraMissingError": (500, "api_error"),
    "EmbedderIntegrityError":      (500, "api_error"),
    "AuditError":                  (500, "api_error"),
    "RedisServerError":            (500, "api_error"),
    "RequestError":                (400, "invalid_request_error"),
    "RouteNotFoundError":          (404, "not_found_error"),
    "InvalidRequestError":         (400, "invalid_request_error"),
    "RequestBodyError":            (400, "invalid_request_error"),
    "AccessError":                 (403, "permission_error"),
    "InvalidKeyError":             (401, "authentication_error"),
    "KeyRevokedError":             (401, "authentication_error"),
    "KeyExpiredError":             (401, "authentication_error"),
    "PermissionDeniedError":       (403, "permission_error"),
    "BudgetExceededError":         (402, "billing_error"),
    "RateLimitedError":            (429, "rate_limit_error"),
    "GuardrailBlockedError":       (400, "invalid_request_error"),
    "GovernanceStoreError":        (503, "api_error"),
    "ProviderError":               (502, "api_error"),
    "RateLimitError":              (429, "rate_limit_error"),
    "ProviderUnavailableError":    (529, "overloaded_error"),
    "ProviderTimeoutError":        (504, "timeout_error"),
    "FirstTokenTimeoutError":      (504, "timeout_error"),
    "ProviderConnectionError":     (502, "api_error"),
    "MalformedResponseError":      (502, "api_error"),
    "StreamCutError":              (502, "api_error"),
    "AuthenticationError":         (502, "api_error"),
    "NotFoundError":               (502, "api_error"),
    "BadRequestError":             (400, "invalid_request_error"),
    "ContextWindowExceededError":  (400, "invalid_request_error"),
    "ContentPolicyError":          (400, "invalid_request_error"),
    "RoutingError":                (502, "api_error"),
    "AllDeploymentsFailedError":   (502, "api_error"),
    "NoHealthyDeploymentError":    (529, "overloaded_error"),
    "DeadlineExceededError":       (504, "timeout_error"),
    "StreamInterruptedError":      (502, "api_error"),
}
# fmt: on

_UPSTREAM_AUTH = (
    "the upstream provider refused the gateway's credentials for this route (a gateway configuration problem, "
    "not your key)"
)


# ------------------------------------------------------------------------------------------- requests


def _refuse(issue: Any) -> RequestBodyError:
    _, body = _mock.invalid_body(issue)
    return RequestBodyError(body["error"]["message"])


def _text_part(block: dict[str, Any]) -> dict[str, Any]:
    part = {"type": "text", "text": block.get("text") or ""}
    if block.get("cache_control"):
        part["cache_control"] = block["cache_control"]
    return part


def _part(block: Any) -> dict[str, Any]:
    """One Anthropic user/tool-result content block as an OpenAI content part (or itself)."""
    if not isinstance(block, dict):
        return {"type": "text", "text": str(block)}
    kind = block.get("type")
    if kind == "text":
        return _text_part(block)
    source = block.get("source") or {}
    stype = source.get("type")
    if kind == "image":
        if stype == "base64":
            url = f"data:{source.get('media_type') or 'image/png'};base64,{source.get('data') or ''}"
            return {"type": "image_url", "image_url": {"url": url}}
        if stype == "url":
            return {"type": "image_url", "image_url": {"url": source.get("url") or ""}}
    elif kind == "document" and not (block.get("title") or block.get("context") or block.get("citations")):
        if stype == "base64" and source.get("media_type") == "application/pdf":
            data = f"data:application/pdf;base64,{source.get('data') or ''}"
            return {"type": "file", "file": {"filename": "document.pdf", "file_data": data}}
        if stype == "text":
            text = base64.b64encode((source.get("data") or "").encode()).decode()
            return {
                "type": "file",
                "file": {"filename": "document.txt", "file_data": f"data:text/plain;base64,{text}"},
            }
    return block  # no OpenAI form: passed as it is


def _content(blocks: list[Any]) -> Any:
    """Parts as OpenAI content: a string for a single plain text block, else the list."""
    parts = [_part(b) for b in blocks]
    if len(parts) == 1 and parts[0].get("type") == "text" and "cache_control" not in parts[0]:
        return parts[0]["text"]
    return parts


def _tool_message(block: dict[str, Any]) -> Message:
    content = block.get("content")
    if isinstance(content, list):
        parts = [_part(b) for b in content]
        if all(p.get("type") == "text" and "cache_control" not in p for p in parts):
            content = "".join(p["text"] for p in parts)
        else:
            content = parts
    return {
        "role": "tool",
        "tool_call_id": block.get("tool_use_id"),
        "content": "" if content is None else content,
    }


def _assistant(content: Any) -> Message:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    parts: list[dict[str, Any]] = []  # text, and thinking blocks kept as they are
    calls: list[dict[str, Any]] = []
    for b in content or ():
        if not isinstance(b, dict):
            continue
        if b.get("type") == "tool_use":
            args = orjson.dumps(b.get("input") if b.get("input") is not None else {}).decode()
            calls.append(
                {
                    "id": b.get("id"),
                    "type": "function",
                    "function": {"name": b.get("name"), "arguments": args},
                }
            )
        else:
            parts.append(_text_part(b) if b.get("type") == "text" else b)
    msg: Message = {"role": "assistant"}
    if all(p.get("type") == "text" and "cache_control" not in p for p in parts):
        msg["content"] = "".join(p["text"] for p in parts) or None
    else:
        msg["content"] = parts
    if calls:
        msg["tool_calls"] = calls
    return msg


def convert_messages(system: Any, messages: list[dict[str, Any]]) -> list[Message]:
    """Anthropic ``system`` + ``messages`` as OpenAI-format messages."""
    out: list[Message] = []
    if isinstance(system, str):
        if system:
            out.append({"role": "system", "content": system})
    elif isinstance(system, list) and system:
        out.append({"role": "system", "content": _content(system)})
    for m in messages:
        role, content = m.get("role"), m.get("content")
        if role == "assistant":
            out.append(_assistant(content))
            continue
        if isinstance(content, str):
            out.append({"role": "user", "content": content})
            continue
        rest = []
        for b in content or ():
            if isinstance(b, dict) and b.get("type") == "tool_result":
                out.append(_tool_message(b))
            else:
                rest.append(b)
        if rest:
            out.append({"role": "user", "content": _content(rest)})
    return out


def convert_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for t in tools:
        if t.get("type") not in (None, "custom") or "input_schema" not in t:
            out.append(t)  # a server tool (web search, code execution, ...): Anthropic deployments only
            continue
        fn: dict[str, Any] = {
            "name": t.get("name"),
            "parameters": t.get("input_schema") or {"type": "object"},
        }
        if t.get("description"):
            fn["description"] = t["description"]
        if t.get("strict") is not None:
            fn["strict"] = t["strict"]
        out.append({"type": "function", "function": fn})
    return out


def convert_tool_choice(choice: dict[str, Any] | None) -> tuple[Any, bool | None]:
    """Anthropic ``tool_choice`` -> (OpenAI tool_choice, parallel_tool_calls or None)."""
    if not isinstance(choice, dict):
        return None, None
    parallel = False if choice.get("disable_parallel_tool_use") else None
    kind = choice.get("type")
    if kind == "any":
        return "required", parallel
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}, parallel
    if kind == "none":
        return "none", parallel
    return "auto", parallel


def parse_messages(
    body: bytes | str | dict[str, Any],
    *,
    allow: Collection[str] = (),
    strict: bool = True,
    caller: Caller | None = None,
    request_id: str | None = None,
) -> ParsedChat:
    """A ``POST /v1/messages`` body as a :class:`ParsedChat` (OpenAI-format request); a body the
    Anthropic API refuses raises :class:`RequestBodyError` with the API's message."""
    data = load_body(body, NOT_JSON, NOT_OBJECT)
    if strict:
        checked = {k: v for k, v in data.items() if k not in allow} if allow else data
        issue = validate("anthropic.messages", checked) or anthropic_rules(data)
        if issue is not None:
            raise _refuse(issue)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestBodyError("messages: at least one message is required")
    get = data.get
    extra = {k: v for k, v in data.items() if k not in _CONSUMED and v is not None}
    meta = get("metadata")
    if isinstance(meta, dict) and meta.get("user_id"):
        extra["user"] = meta["user_id"]
    tool_choice, parallel = convert_tool_choice(get("tool_choice"))
    if parallel is not None:
        extra["parallel_tool_calls"] = parallel
    stop = get("stop_sequences")
    req = ChatRequest(
        route=str(get("model") or ""),
        messages=convert_messages(get("system"), messages),
        temperature=get("temperature"),
        top_p=get("top_p"),
        max_tokens=get("max_tokens"),
        stop=list(stop) if stop else None,
        tools=convert_tools(get("tools")) if get("tools") else None,
        tool_choice=tool_choice,
        extra=extra,
        caller=caller,
    )
    if request_id:
        req.request_id = request_id
    return ParsedChat(req, stream=bool(get("stream")), include_usage=True)


# ------------------------------------------------------------------------------------------ answers


def usage_body(u: Usage) -> dict[str, Any]:
    cached, written = u.cached_prompt_tokens, u.cache_write_tokens
    out: dict[str, Any] = {
        "input_tokens": max(u.prompt_tokens - cached - written, 0),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": u.completion_tokens,
    }
    if u.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    return out


def stop_reason(finish: str | None, has_tool_calls: bool = False) -> str:
    if finish in STOP_REASONS:
        return STOP_REASONS[finish]
    return "tool_use" if has_tool_calls else "end_turn"


def _input(arguments: str) -> dict[str, Any]:
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def message(resp: ChatResponse, *, model: str | None = None, id: str | None = None) -> dict[str, Any]:
    """A ``message`` object: a text block (when there is text), then one ``tool_use`` block per call."""
    content: list[dict[str, Any]] = []
    if resp.content:
        content.append({"type": "text", "text": resp.content})
    for t in resp.tool_calls:
        content.append({"type": "tool_use", "id": t.id, "name": t.name, "input": _input(t.arguments)})
    return {
        "id": id or f"msg_{resp.request_id}",
        "type": "message",
        "role": "assistant",
        "model": model or resp.model,
        "content": content,
        "stop_reason": stop_reason(resp.finish_reason, bool(resp.tool_calls)),
        "stop_sequence": None,
        "usage": usage_body(resp.usage),
    }


def encode_message(resp: ChatResponse, **kw: Any) -> bytes:
    return orjson.dumps(message(resp, **kw))


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return sse(orjson.dumps(payload), name)


class EventEncoder:
    """One streamed answer as Anthropic's event sequence.

    ``message_start`` comes with the first :meth:`chunk`; text opens a ``text`` block, each new tool call
    (a delta with a new index) a ``tool_use`` block, the open block is stopped before the next one starts;
    :meth:`done` stops the last block and sends ``message_delta`` (stop reason, final usage) and
    ``message_stop``. On a failure mid-stream send :meth:`error` instead of :meth:`done`.
    """

    __slots__ = (
        "_id",
        "_model",
        "_input_tokens",
        "_started",
        "_open",
        "_next",
        "_tools",
        "_finish",
        "_usage",
    )

    def __init__(self, *, id: str, model: str, input_tokens: int = 0) -> None:
        self._id = id
        self._model = model
        self._input_tokens = input_tokens
        self._started = False
        self._open: int | None = None  # index of the open content block
        self._next = 0
        self._tools: dict[int, int] = {}  # tool-call index -> content block index
        self._finish: str | None = None
        self._usage: Usage | None = None

    def start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        msg = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0},
        }
        return _event("message_start", {"type": "message_start", "message": msg})

    def _stop_open(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open = self._open, None
        return _event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _begin(self, block: dict[str, Any]) -> tuple[int, bytes]:
        out = self._stop_open()
        index, self._next = self._next, self._next + 1
        self._open = index
        return index, out + _event(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
        )

    def chunk(self, c: ChatChunk) -> bytes:
        out = self.start()
        if c.content:
            if self._open is None or self._open in self._tools.values():
                _, started = self._begin({"type": "text", "text": ""})
                out += started
            delta = {
                "type": "content_block_delta",
                "index": self._open,
                "delta": {"type": "text_delta", "text": c.content},
            }
            out += _event("content_block_delta", delta)
        for d in c.tool_calls:
            index = self._tools.get(d.index)
            if index is None:
                block = {
                    "type": "tool_use",
                    "id": d.id or f"toolu_{self._id}_{d.index}",
                    "name": d.name or "",
                    "input": {},
                }
                index, started = self._begin(block)
                self._tools[d.index] = index
                out += started
            if d.arguments:
                piece = {"type": "input_json_delta", "partial_json": d.arguments}
                out += _event(
                    "content_block_delta", {"type": "content_block_delta", "index": index, "delta": piece}
                )
        if c.usage is not None:
            self._usage = c.usage
        if c.finish_reason is not None:
            self._finish = c.finish_reason
        return out

    def done(self) -> bytes:
        out = self.start() + self._stop_open()
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(self._finish, bool(self._tools)), "stop_sequence": None},
            "usage": usage_body(self._usage or Usage()),
        }
        return out + _event("message_delta", delta) + _event("message_stop", {"type": "message_stop"})

    def error(self, exc: BaseException) -> bytes:
        return error_event(exc)


def encode_stream(chunks: Iterable[ChatChunk], **kw: Any) -> bytes:
    """A whole stream's SSE bytes: :class:`EventEncoder` over ``chunks``, then ``done``."""
    enc = EventEncoder(**kw)
    return b"".join(enc.chunk(c) for c in chunks) + enc.done()


# ------------------------------------------------------------------------------------------- errors


def error_reply(exc: BaseException) -> ErrorReply:
    """Any exception as Anthropic's error body with its status and headers (non-Hyperion: a bare 500)."""
    if not isinstance(exc, HyperionError):
        return ErrorReply(
            500, {"type": "error", "error": {"type": "api_error", "message": "internal error"}}, {}
        )
    decided = decisive(exc)
    status, etype = lookup(ERRORS, type(decided))
    text = _UPSTREAM_AUTH if isinstance(exc, AuthenticationError) else None
    message_text = client_message(exc, text)
    # keep the words the adapters classify by, so an Anthropic client (or a Hyperion in front) sees the kind
    if isinstance(decided, ContextWindowExceededError) and not isinstance(
        error_for_status(400, message_text), ContextWindowExceededError
    ):
        message_text = f"prompt is too long: {message_text}"
    elif isinstance(decided, ContentPolicyError) and not isinstance(
        error_for_status(400, message_text), ContentPolicyError
    ):
        message_text = f"blocked by content policy: {message_text}"
    headers: dict[str, str] = {}
    if status in (429, 503, 529) and not isinstance(exc, BudgetExceededError):
        headers.update(retry_headers(retry_after_of(exc, decided)))
    if isinstance(decided, NO_RETRY) or isinstance(exc, NO_RETRY):
        headers["x-should-retry"] = "false"
    payload: dict[str, Any] = {"type": "error", "error": {"type": etype, "message": message_text}}
    if exc.request_id:
        payload["request_id"] = exc.request_id
        headers["request-id"] = exc.request_id
    return ErrorReply(status, payload, headers)


def error_event(exc: BaseException) -> bytes:
    """An ``event: error`` frame for a stream that has already begun (the SDKs raise on it)."""
    reply = error_reply(exc)
    return _event("error", {"type": "error", "error": reply.payload["error"]})


__all__ = [
    "ERRORS",
    "STOP_REASONS",
    "EventEncoder",
    "convert_messages",
    "convert_tool_choice",
    "convert_tools",
    "encode_message",
    "encode_stream",
    "error_event",
    "error_reply",
    "message",
    "parse_messages",
    "stop_reason",
    "usage_body",
]
