"""Anthropic Messages wire format.

Requests: ``POST {base}/v1/messages`` with ``x-api-key`` (an
``Authorization: Bearer`` token is accepted too). Read fields: ``model``,
``system`` (ignored for the prompt, counted in usage), ``messages`` (string or
block content: ``text``, ``tool_use``, ``tool_result``), ``max_tokens``,
``stop_sequences``, ``stream``, ``tools`` (``input_schema``), ``tool_choice``
(``auto`` / ``any`` / ``tool`` / ``none``), ``thinking`` (enabled: a whole answer starts with a
``thinking`` block).

Responses: ``message`` objects (``stop_reason`` ``end_turn`` / ``max_tokens`` /
``stop_sequence`` / ``tool_use``; ``usage.input_tokens`` excludes cache reads,
which are reported as ``cache_read_input_tokens``; reasoning tokens are added to
``output_tokens``). Streams are ``event: X\\ndata: {...}\\n\\n`` frames:
``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``
(``text_delta`` per word, ``input_json_delta`` pieces for ``tool_use``),
``content_block_stop``, ``message_delta`` (stop reason, ``output_tokens``),
``message_stop``. Errors: ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from .common import (
    BadRequest,
    ChatRequest,
    Event,
    Message,
    Reply,
    Tool,
    bearer_token,
    new_id,
    optional_int,
    thought_text,
)
from .content import word_chunks
from .strict import Issue, anthropic_rules

NAME = "anthropic"
MALFORMED_BODY = (
    b'{"id": "msg_mock", "type": "message", "role": "assistant", "content": [{"type": "text", "text": "Mock'
)
MALFORMED_EVENT = b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_de\n\n'
CONTEXT_WINDOW = 200000
_FINISH = {
    "stop": "end_turn",
    "stop_sequence": "stop_sequence",
    "length": "max_tokens",
    "tool_calls": "tool_use",
}
_ARG_PIECE = 16

# kind -> (status, error type, default message)
_ERRORS: dict[str, tuple[int, str, str]] = {
    "rate_limit": (
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit.",
    ),
    "server_error": (500, "api_error", "Internal server error"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "unavailable": (503, "api_error", "Service unavailable"),
    "context_window": (400, "invalid_request_error", "prompt is too long: {over} tokens > {limit} maximum"),
    "content_policy": (400, "invalid_request_error", "Output blocked by content filtering policy"),
    "auth": (401, "authentication_error", "invalid x-api-key"),
    "bad_request": (400, "invalid_request_error", "Invalid request"),
    "not_found": (404, "not_found_error", "model: {model}"),
}


def api_key(request: web.Request) -> str | None:
    return request.headers.get("x-api-key") or bearer_token(request.headers)


def error_body(
    kind: str,
    message: str | None = None,
    *,
    status: int | None = None,
    model: str = "",
    prompt_tokens: int = 0,
) -> tuple[int, dict]:
    default_status, etype, default = _ERRORS[kind]
    status = status or default_status
    text = message or default.format(model=model, over=CONTEXT_WINDOW + prompt_tokens, limit=CONTEXT_WINDOW)
    return status, {
        "type": "error",
        "error": {"type": etype, "message": text},
        "request_id": f"req_{new_id()}",
    }


# ---------------------------------------------------------------- strict validation

_TYPE_NAMES = {
    "str": "a valid string",
    "int": "a valid integer",
    "num": "a valid number",
    "bool": "a valid boolean",
    "list": "a valid list",
    "object": "a valid dictionary",
    "null": "None",
}


def strict_endpoint(kind: str, request: web.Request) -> str:
    return "anthropic.messages"


def strict_rules(kind: str, body: dict) -> Issue | None:
    return anthropic_rules(body)


def _or(values: list) -> str:
    quoted = [f"'{v}'" for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


def invalid_body(issue: Issue, endpoint: str = "") -> tuple[int, dict]:
    """A strict-validation issue as Anthropic's 400 (pydantic-style ``<loc>: <msg>`` messages)."""
    loc = ".".join(str(p) for p in issue.path)
    if issue.kind == "unknown":
        message = f"{loc}: Extra inputs are not permitted"
    elif issue.kind == "missing":
        message = f"{loc}: Field required"
    elif issue.kind == "type":
        expected = issue.expected[0] if isinstance(issue.expected, list) else issue.expected
        message = f"{loc}: Input should be {_TYPE_NAMES.get(expected, 'valid')}"
    elif issue.kind == "value":
        message = f"{loc}: Input should be {_or([v for v in issue.expected if v is not None])}"
    elif issue.kind == "tag":
        tags = ", ".join(f"'{t}'" for t in issue.expected)
        message = (
            f"{loc}: Input tag '{issue.value}' found using '{issue.key}' does not match any of the expected "
            f"tags: {tags}"
        )
    else:
        message = issue.message or "Invalid request"
    return error_body("bad_request", message)


# ---------------------------------------------------------------- requests


def _block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def _message(raw: Any) -> Message:
    if not isinstance(raw, dict) or raw.get("role") not in ("user", "assistant"):
        raise BadRequest("messages: each message needs role 'user' or 'assistant'")
    content = raw.get("content")
    results = (
        [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        if isinstance(content, list)
        else []
    )
    if results:
        return Message(
            "tool",
            _block_text(content),
            tool_result="\n".join(_block_text(b.get("content")) for b in results),
        )
    return Message(raw["role"], _block_text(content))


def _tool_choice(choice: Any) -> tuple[str, str | None]:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "tool":
        return "required", choice.get("name")
    if kind == "any":
        return "required", None
    return ("none" if kind == "none" else "auto"), None


def parse_chat(body: dict, request: web.Request) -> ChatRequest:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: at least one message is required")
    choice, name = _tool_choice(body.get("tool_choice"))
    tools = [
        Tool(t["name"], t.get("input_schema") or {})
        for t in body.get("tools") or ()
        if isinstance(t, dict) and t.get("name")
    ]
    return ChatRequest(
        model=str(body.get("model", "")),
        messages=[_message(m) for m in messages],
        system=_block_text(body.get("system")),
        stream=bool(body.get("stream")),
        max_tokens=optional_int(body.get("max_tokens"), "max_tokens"),
        stop=tuple(body.get("stop_sequences") or ()),
        tools=tools,
        tool_choice=choice,
        tool_name=name,
        thinking=isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "enabled",
    )


# --------------------------------------------------------------- responses


def _usage(reply: Reply) -> dict:
    cached = min(reply.cached_tokens, reply.prompt_tokens)
    return {
        "input_tokens": reply.prompt_tokens - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": reply.completion_tokens + reply.reasoning_tokens,
    }


def _blocks(reply: Reply) -> list[dict]:
    if reply.tool_calls:
        return [
            {"type": "tool_use", "id": f"toolu_{c.id}", "name": c.name, "input": c.arguments}
            for c in reply.tool_calls
        ]
    return [{"type": "text", "text": reply.text}] if reply.text else []


def _thinking(reply: Reply) -> dict:
    return {"type": "thinking", "thinking": thought_text(reply), "signature": f"mock-sig-{new_id()}"}


def chat_body(req: ChatRequest, reply: Reply) -> dict:
    return {
        "id": f"msg_{new_id()}",
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": ([_thinking(reply)] if req.thinking else []) + _blocks(reply),
        "stop_reason": _FINISH[reply.finish or "stop"],
        "stop_sequence": reply.stop_sequence,
        "usage": _usage(reply),
    }


def _event(name: str, payload: dict, content: bool = False) -> Event:
    return Event(b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n", content)


def _delta(index: int, delta: dict) -> Event:
    return _event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}, True
    )


def _block(index: int, block: dict, deltas: list[dict]) -> list[Event]:
    """``content_block_start``, one ``content_block_delta`` per delta, ``content_block_stop``."""
    start = {"type": "content_block_start", "index": index, "content_block": block}
    return [
        _event("content_block_start", start),
        *(_delta(index, d) for d in deltas),
        _event("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def _block_events(reply: Reply) -> list[Event]:
    if not reply.tool_calls:
        words = [{"type": "text_delta", "text": w} for w in word_chunks(reply.text)]
        return _block(0, {"type": "text", "text": ""}, words)
    events = []
    for i, block in enumerate(_blocks(reply)):
        args = orjson.dumps(block["input"]).decode()
        pieces = [
            {"type": "input_json_delta", "partial_json": args[j : j + _ARG_PIECE]}
            for j in range(0, len(args), _ARG_PIECE)
        ]
        events += _block(i, {**block, "input": {}}, pieces)
    return events


def chat_events(req: ChatRequest, reply: Reply) -> list[Event]:
    usage = _usage(reply)
    message = {**chat_body(req, reply), "content": [], "stop_reason": None, "stop_sequence": None}
    message["usage"] = {**usage, "output_tokens": 1}
    blocks = _block_events(reply)
    final = {
        "type": "message_delta",
        "delta": {"stop_reason": _FINISH[reply.finish or "stop"], "stop_sequence": reply.stop_sequence},
        "usage": {"output_tokens": usage["output_tokens"]},
    }
    return [
        _event("message_start", {"type": "message_start", "message": message}),
        blocks[0],  # content_block_start
        _event("ping", {"type": "ping"}),
        *blocks[1:],
        _event("message_delta", final),
        _event("message_stop", {"type": "message_stop"}),
    ]
