"""Google AI Studio (Gemini API) wire format.

Requests: ``POST {base}/models/{model}:{method}`` where ``{base}`` ends in
``/v1beta`` (``/v1`` and ``/v1alpha`` are accepted too) and ``method`` is
``generateContent``, ``streamGenerateContent`` (SSE with ``?alt=sse``, else a
streamed JSON array), ``embedContent`` or ``batchEmbedContents``. Auth:
``x-goog-api-key`` header or ``?key=``. Read fields: ``contents`` (roles
``user`` / ``model``; parts ``text``, ``functionCall``, ``functionResponse``;
``thought`` parts are skipped), ``systemInstruction`` (ignored for the
prompt, counted in usage), ``generationConfig`` (``maxOutputTokens``,
``stopSequences``, ``responseMimeType`` + ``responseSchema`` /
``responseJsonSchema``), ``tools[].functionDeclarations`` (``parameters`` or
``parametersJsonSchema``), ``toolConfig.functionCallingConfig`` (``mode``,
``allowedFunctionNames``). snake_case spellings of these keys are accepted.

Responses: ``candidates[0].content.parts`` (``text`` or ``functionCall``),
``finishReason`` (``STOP`` / ``MAX_TOKENS``), ``usageMetadata``
(``promptTokenCount`` incl. cached, ``candidatesTokenCount``,
``thoughtsTokenCount``, ``cachedContentTokenCount``, ``totalTokenCount``).
SSE frames are ``data: {...}\\r\\n\\r\\n``, one word each; the last frame carries
``finishReason`` and ``usageMetadata``. Embeddings: ``{"embedding": {"values"}}``
/ ``{"embeddings": [{"values"}]}`` (default 256 dimensions,
``outputDimensionality`` overrides). Errors: ``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

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
    new_id,
    optional_int,
    thought_text,
)
from .content import word_chunks
from .embeddings import DEFAULT_DIMENSIONS
from .strict import Issue, gemini_rules

NAME = "gemini"
CHAT_METHODS = ("generateContent", "streamGenerateContent")
EMBED_METHODS = ("embedContent", "batchEmbedContents")
MALFORMED_BODY = b'{"candidates": [{"content": {"parts": [{"text": "Mock'
MALFORMED_EVENT = b'data: {"candidates": [{"content": {"parts": [{"text": "brok\r\n\r\n'
CONTEXT_WINDOW = 1048576
_FINISH = {"stop": "STOP", "stop_sequence": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}

# kind -> (status, status string, default message)
# fmt: off
_ERRORS: dict[str, tuple[int, str, str]] = {
    "rate_limit": (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    "server_error": (500, "INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"),
    "overloaded": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    "unavailable": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "context_window": (400, "INVALID_ARGUMENT",
                       "The input token count ({over}) exceeds the maximum number of tokens allowed ({limit})."),
    "content_policy": (400, "INVALID_ARGUMENT", "The request was blocked by safety filters (blockReason: SAFETY)."),
    "auth": (401, "UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
    "bad_request": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "not_found": (404, "NOT_FOUND", "models/{model} is not found for API version v1beta, or is not supported for generateContent."),
}
# fmt: on


def api_key(request: web.Request) -> str | None:
    return request.headers.get("x-goog-api-key") or request.query.get("key") or None


def error_body(
    kind: str,
    message: str | None = None,
    *,
    status: int | None = None,
    model: str = "",
    prompt_tokens: int = 0,
) -> tuple[int, dict]:
    default_status, name, default = _ERRORS[kind]
    status = status or default_status
    text = message or default.format(model=model, over=CONTEXT_WINDOW + prompt_tokens, limit=CONTEXT_WINDOW)
    return status, {"error": {"code": status, "message": text, "status": name}}


def split_tail(tail: str) -> tuple[str, str]:
    """``"gemini-2.5-flash:generateContent"`` -> ``("gemini-2.5-flash", "generateContent")``."""
    model, _, method = tail.rpartition(":")
    return (model, method) if model else (tail, "")


# ---------------------------------------------------------------- strict validation

_PROTO_TYPES = {"str": "TYPE_STRING", "int": "TYPE_INT32", "num": "TYPE_FLOAT", "bool": "TYPE_BOOL"}
_STRICT = {
    "generateContent": "gemini.generateContent",
    "streamGenerateContent": "gemini.generateContent",
    "embedContent": "gemini.embedContent",
    "batchEmbedContents": "gemini.batchEmbedContents",
}
_REQUEST_NAMES = {
    "gemini.generateContent": "GenerateContentRequest",
    "gemini.embedContent": "EmbedContentRequest",
    "gemini.batchEmbedContents": "BatchEmbedContentsRequest",
}


def strict_endpoint(kind: str, request: web.Request) -> str:
    return _STRICT[split_tail(request.match_info["tail"])[1]]


def strict_rules(kind: str, body: dict) -> Issue | None:
    return gemini_rules(body) if kind == "chat" else None


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _path(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{_snake(p)}" if out else _snake(p))
    return out


def invalid_body(issue: Issue, endpoint: str = "gemini.generateContent") -> tuple[int, dict]:
    """A strict-validation issue as Gemini's 400 INVALID_ARGUMENT (proto JSON parser wording)."""
    where = _path(issue.path)
    if issue.kind == "unknown":
        parent = _path(issue.path[:-1])
        message = f'Invalid JSON payload received. Unknown name "{issue.path[-1]}"' + (
            f" at '{parent}'" if parent else ""
        )
        message += ": Cannot find field."
        violation = {"field": parent, "description": message}
        body = error_body("bad_request", message)[1]
        body["error"]["details"] = [
            {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}
        ]
        return 400, body
    if issue.kind == "missing":
        name = _REQUEST_NAMES.get(endpoint, "GenerateContentRequest")
        message = f"* {name}.{where}: {_snake(str(issue.path[-1]))} is not specified\n"
    elif issue.kind == "type":
        expected = issue.expected[0] if isinstance(issue.expected, list) else issue.expected
        value = orjson.dumps(issue.value).decode()
        if expected in _PROTO_TYPES:
            message = f"Invalid value at '{where}' ({_PROTO_TYPES[expected]}), {value}"
        elif expected == "list":
            message = f"Invalid value at '{where}', {value}: expected a repeated field (a JSON array)"
        else:
            message = f"Invalid value at '{where}', {value}: expected a message (a JSON object)"
    elif issue.kind in ("value", "tag"):
        message = f"Invalid value at '{where}' (TYPE_ENUM), {orjson.dumps(issue.value).decode()}"
    else:
        message = issue.message or "Request contains an invalid argument."
    return error_body("bad_request", message)


# ---------------------------------------------------------------- requests


def _get(obj: dict, camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _parts_text(parts: Any) -> str:
    if not isinstance(parts, list):
        return ""
    return "\n".join(p["text"] for p in parts if isinstance(p, dict) and "text" in p and not p.get("thought"))


def _response_text(response: Any) -> str:
    if isinstance(response, dict):
        for key in ("content", "result", "output"):
            if isinstance(response.get(key), str):
                return response[key]
        values = list(response.values())
        if len(values) == 1 and isinstance(values[0], str):
            return values[0]
    return orjson.dumps(response).decode()


def _message(raw: Any) -> Message:
    if not isinstance(raw, dict):
        raise BadRequest("contents: each content must be an object")
    parts = raw.get("parts") or []
    responses = [_get(p, "functionResponse", "function_response") for p in parts if isinstance(p, dict)]
    responses = [r for r in responses if isinstance(r, dict)]
    if responses:
        return Message(
            "tool",
            _parts_text(parts),
            tool_result="\n".join(_response_text(r.get("response")) for r in responses),
        )
    return Message("assistant" if raw.get("role") == "model" else "user", _parts_text(parts))


def _tools(body: dict) -> list[Tool]:
    tools = []
    for group in body.get("tools") or ():
        decls = (
            _get(group, "functionDeclarations", "function_declarations") if isinstance(group, dict) else None
        )
        for decl in decls or ():
            if isinstance(decl, dict) and decl.get("name"):
                schema = (
                    _get(decl, "parametersJsonSchema", "parameters_json_schema")
                    or decl.get("parameters")
                    or {}
                )
                tools.append(Tool(decl["name"], schema))
    return tools


def _tool_choice(body: dict, tools: list[Tool]) -> tuple[str, str | None, list[Tool]]:
    config = (
        _get(
            _get(body, "toolConfig", "tool_config") or {}, "functionCallingConfig", "function_calling_config"
        )
        or {}
    )
    mode = str(config.get("mode", "AUTO")).upper()
    if mode == "NONE":
        return "none", None, tools
    if mode != "ANY":
        return "auto", None, tools
    allowed = _get(config, "allowedFunctionNames", "allowed_function_names") or []
    narrowed = [t for t in tools if t.name in allowed] or tools
    return "required", (allowed[0] if len(allowed) == 1 else None), narrowed


def parse_chat(body: dict, request: web.Request) -> ChatRequest:
    model, method = split_tail(request.match_info["tail"])
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("contents is not specified")
    config = _get(body, "generationConfig", "generation_config") or {}
    tools = _tools(body)
    choice, name, tools = _tool_choice(body, tools)
    schema = _get(config, "responseJsonSchema", "response_json_schema") or _get(
        config, "responseSchema", "response_schema"
    )
    is_json = _get(config, "responseMimeType", "response_mime_type") == "application/json"
    return ChatRequest(
        model=model,
        messages=[_message(c) for c in contents],
        system=_parts_text((_get(body, "systemInstruction", "system_instruction") or {}).get("parts")),
        stream=method == "streamGenerateContent",
        sse=request.query.get("alt") == "sse",
        max_tokens=optional_int(_get(config, "maxOutputTokens", "max_output_tokens"), "maxOutputTokens"),
        stop=tuple(_get(config, "stopSequences", "stop_sequences") or ()),
        tools=tools,
        tool_choice=choice,
        tool_name=name,
        json_schema=schema if is_json and schema else None,
        json_object=is_json and not schema,
        thinking=bool((_get(config, "thinkingConfig", "thinking_config") or {}).get("includeThoughts")),
    )


def parse_embed(body: dict, request: web.Request) -> EmbedRequest:
    model, method = split_tail(request.match_info["tail"])
    batch = method == "batchEmbedContents"
    items = body.get("requests") if batch else [body]
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise BadRequest("requests must be a non-empty array" if batch else "content is not specified")
    dims = optional_int(
        _get(items[0], "outputDimensionality", "output_dimensionality"), "outputDimensionality", 1
    )
    texts = [_parts_text((i.get("content") or {}).get("parts")) for i in items]
    return EmbedRequest(model=model, texts=texts, dimensions=dims or DEFAULT_DIMENSIONS, batch=batch)


# --------------------------------------------------------------- responses


def _usage(reply: Reply) -> dict:
    return {
        "promptTokenCount": reply.prompt_tokens,
        "candidatesTokenCount": reply.completion_tokens,
        "totalTokenCount": reply.prompt_tokens + reply.completion_tokens + reply.reasoning_tokens,
        "cachedContentTokenCount": min(reply.cached_tokens, reply.prompt_tokens),
        "thoughtsTokenCount": reply.reasoning_tokens,
    }


def _parts(reply: Reply) -> list[dict]:
    if reply.tool_calls:
        return [{"functionCall": {"name": c.name, "args": c.arguments}} for c in reply.tool_calls]
    return [{"text": reply.text}]


def _thought(req: ChatRequest, reply: Reply) -> list[dict]:
    return [{"text": thought_text(reply), "thought": True}] if req.thinking else []


def _candidate(parts: list[dict], finish: str | None = None) -> dict:
    out: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish is not None:
        out["finishReason"] = finish
    return out


def chat_body(req: ChatRequest, reply: Reply) -> dict:
    return {
        "candidates": [_candidate(_thought(req, reply) + _parts(reply), _FINISH.get(reply.finish))],
        "usageMetadata": _usage(reply),
        "modelVersion": req.model,
        "responseId": new_id(),
    }


def chat_events(req: ChatRequest, reply: Reply) -> list[Event]:
    rid = new_id()
    pieces = (
        [[p] for p in _parts(reply)] if reply.tool_calls else [[{"text": w}] for w in word_chunks(reply.text)]
    )
    objs = [
        {"candidates": [_candidate(parts)], "modelVersion": req.model, "responseId": rid} for parts in pieces
    ]
    final = {
        "candidates": [_candidate([{"text": ""}], _FINISH.get(reply.finish))],
        "usageMetadata": _usage(reply),
        "modelVersion": req.model,
        "responseId": rid,
    }
    objs.append(final)
    # every frame but the last (finishReason + usage) carries content
    events = [Event(_frame(o, i, req.sse), content=i < len(objs) - 1) for i, o in enumerate(objs)]
    return events if req.sse else [*events, Event(b"]")]


def _frame(obj: dict, index: int, sse: bool) -> bytes:
    """SSE: ``data: {...}\\r\\n\\r\\n``; JSON-array streaming: ``[{...}`` then ``,\\r\\n{...}`` (closed by ``]``)."""
    if sse:
        return b"data: " + orjson.dumps(obj) + b"\r\n\r\n"
    return (b"[" if index == 0 else b",\r\n") + orjson.dumps(obj)


def embed_body(req: EmbedRequest, vectors: list[list[float]], tokens: int) -> dict:
    if req.batch:
        return {"embeddings": [{"values": v} for v in vectors]}
    return {"embedding": {"values": vectors[0]}}
