"""OpenAI Chat Completions / Embeddings wire format.

Requests: ``POST {base}/chat/completions`` and ``POST {base}/embeddings`` with
``Authorization: Bearer <key>``; ``GET {base}/models``. Read fields:
``model``, ``messages`` (string or text-part content; roles system/developer,
user, assistant, tool), ``stream``, ``stream_options.include_usage``,
``max_tokens`` / ``max_completion_tokens``, ``stop``, ``tools``,
``tool_choice``, ``response_format`` (``json_schema`` / ``json_object``);
embeddings: ``input`` (string, list of strings or token arrays),
``dimensions``, ``encoding_format``.

Responses follow the real shapes: ``chat.completion`` objects with ``usage``
(``prompt_tokens_details.cached_tokens``, ``completion_tokens_details.reasoning_tokens``;
reasoning tokens are included in ``completion_tokens`` as OpenAI does), and
``chat.completion.chunk`` SSE frames (``data: {...}\\n\\n``): a role chunk, one
chunk per word (tool calls: a header chunk then argument pieces), a finish
chunk, an optional usage chunk with empty ``choices``, then ``data: [DONE]``.
Errors: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from .common import (
    BadRequest,
    ChatRequest,
    EmbedRequest,
    Event,
    Message,
    Reply,
    Tool,
    bearer_token,
    new_id,
    optional_int,
)
from .content import word_chunks
from .embeddings import DEFAULT_DIMENSIONS, to_base64
from .strict import Issue, json_kind, openai_rules

NAME = "openai"
MALFORMED_BODY = b'{"id": "chatcmpl-mock", "object": "chat.completion", "choices": [{"index": 0, "message": {"content": "Mock'
MALFORMED_EVENT = b'data: {"id": "chatcmpl-mock", "choices": [{"delta": {"content": "brok\n\n'
_FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "tool_calls": "tool_calls"}
_ARG_PIECE = 16
MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o4-mini", "text-embedding-3-small")

# kind -> (status, type, code, default message)
# fmt: off
_ERRORS: dict[str, tuple[int, str, str | None, str]] = {
    "rate_limit": (429, "requests", "rate_limit_exceeded", "Rate limit reached for {model} on requests per min (RPM). Please try again later."),
    "server_error": (500, "server_error", None, "The server had an error while processing your request. Sorry about that!"),
    "overloaded": (503, "server_error", None, "The engine is currently overloaded, please try again later."),
    "unavailable": (503, "server_error", None, "The service is temporarily unavailable."),
    "context_window": (400, "invalid_request_error", "context_length_exceeded",
                       "This model's maximum context length is 128000 tokens. However, your messages resulted in "
                       "{over} tokens. Please reduce the length of the messages."),
    "content_policy": (400, "invalid_request_error", "content_policy_violation",
                       "Your request was rejected as a result of our safety system."),
    "auth": (401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    "bad_request": (400, "invalid_request_error", None, "Invalid request."),
    "not_found": (404, "invalid_request_error", "model_not_found",
                  "The model `{model}` does not exist or you do not have access to it."),
}
# fmt: on


def api_key(request: web.Request) -> str | None:
    return bearer_token(request.headers)


def error_body(
    kind: str,
    message: str | None = None,
    *,
    status: int | None = None,
    model: str = "",
    prompt_tokens: int = 0,
) -> tuple[int, dict]:
    default_status, etype, code, default = _ERRORS[kind]
    status = status or default_status
    text = message or default.format(model=model or "the model", over=128000 + prompt_tokens)
    param = "messages" if kind == "context_window" else None
    return status, {"error": {"message": text, "type": etype, "param": param, "code": code}}


# ---------------------------------------------------------------- strict validation

STRICT_ENDPOINTS = {"chat": "openai.chat", "embeddings": "openai.embeddings"}
_TYPE_NAMES = {
    "str": "a string",
    "int": "an integer",
    "num": "a decimal",
    "bool": "a boolean",
    "list": "an array",
    "object": "an object",
    "value": "a supported value",
    "null": "null",
}


def strict_endpoint(kind: str, request: web.Request) -> str:
    return STRICT_ENDPOINTS[kind]


def strict_rules(kind: str, body: dict) -> Issue | None:
    return openai_rules(body) if kind == "chat" else None


def _path(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _one_of(names: list[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


def invalid_body(issue: Issue, endpoint: str = "") -> tuple[int, dict]:
    """A strict-validation issue as OpenAI's 400 (messages as the real API words them)."""
    param: str | None = _path(issue.path)
    code: str | None
    if issue.kind == "unknown" and len(issue.path) == 1:
        message, param, code = f"Unrecognized request argument supplied: {issue.path[0]}", None, None
    elif issue.kind == "unknown":
        message, code = f"Unknown parameter: '{param}'.", "unknown_parameter"
    elif issue.kind == "missing":
        message, code = f"Missing required parameter: '{param}'.", "missing_required_parameter"
    elif issue.kind == "type":
        expected = issue.expected if isinstance(issue.expected, list) else [issue.expected]
        names = [_TYPE_NAMES.get(e, e) for e in dict.fromkeys(expected)]
        want = names[0] if len(names) == 1 else "one of " + " or ".join(names)
        got = _TYPE_NAMES.get(json_kind(issue.value), "a value")
        message, code = f"Invalid type for '{param}': expected {want}, but got {got} instead.", "invalid_type"
    elif issue.kind in ("value", "tag"):
        if issue.kind == "tag":
            param = f"{param}.{issue.key}"
        values = [str(v) for v in issue.expected if v is not None]
        message = f"Invalid value: '{issue.value}'. Supported values are: {_one_of(values)}."
        code = "invalid_value"
    else:
        message, code = issue.message or "Invalid request.", None
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    return 400, body


# ---------------------------------------------------------------- requests


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    raise BadRequest("message content must be a string or an array of content parts")


def _message(raw: Any) -> Message:
    if not isinstance(raw, dict) or "role" not in raw:
        raise BadRequest("each message must be an object with a role")
    role = raw["role"]
    text = _text(raw.get("content"))
    if role == "tool":
        return Message("tool", "", tool_result=text)
    return Message("system" if role == "developer" else role, text)


def _tools(body: dict) -> list[Tool]:
    tools = []
    for raw in body.get("tools") or ():
        fn = raw.get("function") if isinstance(raw, dict) else None
        if isinstance(fn, dict) and fn.get("name"):
            tools.append(Tool(fn["name"], fn.get("parameters") or {}))
    return tools


def _tool_choice(choice: Any) -> tuple[str, str | None]:
    if isinstance(choice, dict):
        return "required", (choice.get("function") or {}).get("name")
    if choice in ("none", "required"):
        return choice, None
    return "auto", None


def _first(body: dict, *keys: str) -> Any:
    return next((body[k] for k in keys if body.get(k) is not None), None)


def parse_chat(body: dict, request: web.Request) -> ChatRequest:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array")
    stop = body.get("stop") or ()
    choice, name = _tool_choice(body.get("tool_choice"))
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema", {}) if fmt.get("type") == "json_schema" else None
    return ChatRequest(
        model=str(body.get("model", "")),
        messages=[_message(m) for m in messages],
        stream=bool(body.get("stream")),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        max_tokens=optional_int(_first(body, "max_completion_tokens", "max_tokens"), "max_tokens"),
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
        tools=_tools(body),
        tool_choice=choice,
        tool_name=name,
        json_schema=schema,
        json_object=fmt.get("type") == "json_object",
    )


def parse_embed(body: dict, request: web.Request) -> EmbedRequest:
    raw = body.get("input")
    if isinstance(raw, str):
        texts = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        texts = [" ".join(map(str, raw))]
    elif isinstance(raw, list) and raw:
        texts = [x if isinstance(x, str) else " ".join(map(str, x)) for x in raw]
    else:
        raise BadRequest("'input' must be a string or a non-empty array")
    return EmbedRequest(
        model=str(body.get("model", "")),
        texts=texts,
        dimensions=optional_int(body.get("dimensions"), "dimensions", 1) or DEFAULT_DIMENSIONS,
        base64=body.get("encoding_format") == "base64",
    )


# --------------------------------------------------------------- responses


def _usage(reply: Reply) -> dict:
    if reply.usage is not None:  # a fault: what a lying (or silent) upstream reports
        return reply.usage
    completion = reply.completion_tokens + reply.reasoning_tokens
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": reply.prompt_tokens + completion,
        "prompt_tokens_details": {
            "cached_tokens": min(reply.cached_tokens, reply.prompt_tokens),
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": reply.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _tool_call(call, index: int | None = None) -> dict:
    out = {
        "id": f"call_{call.id}",
        "type": "function",
        "function": {"name": call.name, "arguments": orjson.dumps(call.arguments).decode()},
    }
    if index is not None:
        out["index"] = index
    return out


def chat_body(req: ChatRequest, reply: Reply) -> dict:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text if not reply.tool_calls else None,
        "refusal": None,
        "annotations": [],
    }
    if reply.tool_calls:
        message["tool_calls"] = [_tool_call(c) for c in reply.tool_calls]
    return {
        "id": f"chatcmpl-{new_id()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": req.model,
        "system_fingerprint": "fp_mock",
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": _FINISH.get(reply.finish)}
        ],
        "usage": _usage(reply),
    }


def chat_events(req: ChatRequest, reply: Reply) -> list[Event]:
    base = {
        "id": f"chatcmpl-{new_id()}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": req.model,
        "system_fingerprint": "fp_mock",
    }
    if req.include_usage:
        base["usage"] = None

    def frame(delta: dict, finish: str | None = None, content: bool = False) -> Event:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return Event(b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n", content)

    events = [frame({"role": "assistant", "content": "" if not reply.tool_calls else None, "refusal": None})]
    if reply.tool_calls:
        for i, call in enumerate(reply.tool_calls):
            head = _tool_call(call, i)
            args, head["function"]["arguments"] = head["function"]["arguments"], ""
            events.append(frame({"tool_calls": [head]}, content=True))
            for j in range(0, len(args), _ARG_PIECE):
                piece = {"index": i, "function": {"arguments": args[j : j + _ARG_PIECE]}}
                events.append(frame({"tool_calls": [piece]}, content=True))
    else:
        events.extend(frame({"content": word}, content=True) for word in word_chunks(reply.text))
    events.append(frame({}, _FINISH.get(reply.finish)))
    if req.include_usage:
        usage_chunk = {**base, "choices": [], "usage": _usage(reply)}
        events.append(Event(b"data: " + orjson.dumps(usage_chunk) + b"\n\n"))
    events.append(Event(b"data: [DONE]\n\n"))
    return events


def embed_body(req: EmbedRequest, vectors: list[list[float]], tokens: int) -> dict:
    data = [
        {"object": "embedding", "index": i, "embedding": to_base64(v) if req.base64 else v}
        for i, v in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def models_body() -> dict:
    created = 1700000000
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": created, "owned_by": "mock"} for m in MODELS],
    }
