"""The OpenAI Responses wire (``POST /v1/responses``), server side: a Responses body in, a
:class:`ParsedChat` (the pipeline's ``ChatRequest`` in OpenAI chat format) out; a ``ChatResponse`` or a
``ChatChunk`` stream back as a ``response`` object or the Responses SSE event sequence. Pure, I/O-free.

**Requests.** ``input`` is a string (one user message) or a list of input items: messages with a
``role`` (``user`` / ``assistant`` / ``system`` / ``developer``; ``developer`` becomes ``system``) whose
``content`` is a string or ``input_text`` / ``output_text`` / ``input_image`` parts; ``function_call``
items (consecutive ones become one assistant message with ``tool_calls``) and ``function_call_output``
items (``tool`` messages); ``reasoning`` items are dropped (they belong to the model that wrote them).
``instructions`` is a leading system message, ``max_output_tokens`` is ``max_tokens``, ``temperature`` /
``top_p`` as they are, function ``tools`` / ``tool_choice`` in chat shape, ``text.format`` as
``response_format``, ``parallel_tool_calls`` / ``user`` / ``reasoning.effort`` to ``extra``. Server-side
state (``previous_response_id``, ``conversation``, ``background``) and hosted tools are refused (400):
the gateway stores no responses and runs no tools.

**Streams** (:class:`EventEncoder`): ``response.created``, ``response.in_progress``, then per output item
``response.output_item.added``, for text ``response.content_part.added`` / ``response.output_text.delta``
... / ``response.output_text.done`` / ``response.content_part.done``, for a function call
``response.function_call_arguments.delta`` ... / ``.done``, then ``response.output_item.done``; finally
``response.completed`` (``response.incomplete`` when the answer was cut by ``max_output_tokens``) with
usage. Every event carries ``sequence_number``. A failure mid-stream is an ``error`` event (which also
carries OpenAI's ``{"error": {...}}``, so the SDKs raise ``APIError``). Errors before the stream are
:func:`hyperion_core.wire.openai.error_reply`.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import orjson

from ..types import Caller, ChatChunk, ChatRequest, ChatResponse, ToolCallDelta, Usage
from .common import ParsedChat, RequestBodyError, load_body, sse
from .openai import NOT_JSON, NOT_OBJECT, error_reply

#: top-level fields this codec reads or accepts (and ignores: ``store``, ``include``, ``metadata`` ...)
KNOWN = frozenset({
    "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "tools", "tool_choice",
    "stream", "stream_options", "text", "parallel_tool_calls", "user", "reasoning", "store", "metadata",
    "include", "truncation", "service_tier", "prompt_cache_key", "safety_identifier", "top_logprobs",
    "max_tool_calls", "previous_response_id", "conversation", "background", "prompt",
})
_STATEFUL = ("previous_response_id", "conversation", "prompt")
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def _bad(message: str, param: str | None = None, code: str | None = "invalid_value") -> RequestBodyError:
    return RequestBodyError(message, param=param, code=code)


def _content(content: Any, where: str) -> Any:
    """A message's Responses content as chat content: a string when it is all text."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"Invalid '{where}.content': expected a string or an array of content parts.", f"{where}.content")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "input_image" and part.get("image_url"):
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal") or "")})
        else:
            raise _bad(f"Invalid '{where}.content[{j}]': content part type {kind!r} is not supported by this "
                       "gateway (input_text, output_text, input_image with image_url).", f"{where}.content[{j}]")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(str(p.get("text") or "") for p in output if isinstance(p, dict))
    return orjson.dumps(output).decode()


def messages_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    """``instructions`` + ``input`` as OpenAI chat messages."""
    out: list[dict[str, Any]] = []
    instructions = data.get("instructions")
    if isinstance(instructions, str) and instructions:
        out.append({"role": "system", "content": instructions})
    raw = data.get("input")
    if isinstance(raw, str):
        out.append({"role": "user", "content": raw})
        return out
    if not isinstance(raw, list):
        raise _bad("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad(f"Invalid '{where}': expected an object.", where)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = _ROLES.get(str(item.get("role")))
            if role is None:
                raise _bad(f"Invalid '{where}.role': {item.get('role')!r}. Supported values are: 'user', "
                           "'assistant', 'system', and 'developer'.", f"{where}.role")
            out.append({"role": role, "content": _content(item.get("content"), where)})
        elif kind == "function_call":
            call = {"id": str(item.get("call_id") or item.get("id") or f"call_{i}"), "type": "function",
                    "function": {"name": str(item.get("name") or ""), "arguments": str(item.get("arguments") or "")}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":  # the text and the calls of one turn
                last.setdefault("tool_calls", []).append(call)
                last["content"] = last.get("content") or None
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            out.append({"role": "tool", "tool_call_id": str(item.get("call_id") or ""),
                        "content": _output_text(item.get("output"))})
        elif kind == "reasoning":
            continue
        else:
            raise _bad(f"Invalid '{where}.type': input item type {kind!r} is not supported by this gateway.",
                       f"{where}.type")
    if not out or all(m["role"] == "system" for m in out):
        raise _bad("Invalid 'input': expected at least one message.", "input", "empty_array")
    return out


def _tools(raw: Any) -> list[dict[str, Any]] | None:
    if not raw:
        return None
    if not isinstance(raw, list):
        raise _bad("Invalid 'tools': expected an array.", "tools")
    tools = []
    for i, t in enumerate(raw):
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(t.get("name"), str):
            kind = t.get("type") if isinstance(t, dict) else None
            raise _bad(f"Invalid 'tools[{i}]': tool type {kind!r} is not supported by this gateway (function "
                       "tools only: it runs no hosted tools).", f"tools[{i}]")
        fn = {"name": t["name"], "parameters": t.get("parameters") or {"type": "object", "properties": {}}}
        if t.get("description"):
            fn["description"] = t["description"]
        if t.get("strict") is not None:
            fn["strict"] = t["strict"]
        tools.append({"type": "function", "function": fn})
    return tools


def _tool_choice(raw: Any) -> Any:
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, dict) and raw.get("type") == "function" and raw.get("name"):
        return {"type": "function", "function": {"name": raw["name"]}}
    raise _bad("Invalid 'tool_choice': 'none', 'auto', 'required' or {\"type\": \"function\", \"name\": ...}.",
               "tool_choice")


def _response_format(text: Any) -> Any:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise _bad(f"Invalid 'text.format.type': {fmt.get('type')!r}.", "text.format.type")


def parse_responses(
    body: bytes | str | dict[str, Any],
    *,
    allow: Collection[str] = (),
    caller: Caller | None = None,
    request_id: str | None = None,
) -> ParsedChat:
    """A ``POST /v1/responses`` body as a :class:`ParsedChat` (``include_usage`` is always True: the
    ``response.completed`` event carries usage). ``allow``: extra top-level fields passed to ``extra``."""
    data = load_body(body, NOT_JSON, NOT_OBJECT)
    for key in data:
        if key not in KNOWN and key not in allow:
            raise _bad(f"Unknown parameter: '{key}'.", key, "unknown_parameter")
    for key in _STATEFUL:
        if data.get(key):
            raise _bad(f"'{key}' is not supported by this gateway: it stores no responses; send the whole "
                       "conversation in 'input'.", key, "unsupported_parameter")
    if data.get("background"):
        raise _bad("'background' is not supported by this gateway.", "background", "unsupported_parameter")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    get = data.get
    limit = get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise _bad("Invalid 'max_output_tokens': expected an integer >= 1.", "max_output_tokens")
    for name in ("temperature", "top_p"):
        v = get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise _bad(f"Invalid type for '{name}': expected a decimal.", name, "invalid_type")
    extra: dict[str, Any] = {k: data[k] for k in allow if k in data and data[k] is not None}
    if get("parallel_tool_calls") is not None and get("tools"):
        extra["parallel_tool_calls"] = bool(get("parallel_tool_calls"))
    if isinstance(get("user"), str):
        extra["user"] = get("user")
    reasoning = get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        extra["reasoning_effort"] = reasoning["effort"]
    req = ChatRequest(
        route=model,
        messages=messages_of(data),
        temperature=get("temperature"),
        top_p=get("top_p"),
        max_tokens=get("max_output_tokens"),
        tools=_tools(get("tools")),
        tool_choice=_tool_choice(get("tool_choice")),
        response_format=_response_format(get("text")),
        extra=extra,
        caller=caller,
    )
    if request_id:
        req.request_id = request_id
    return ParsedChat(req, stream=bool(get("stream")), include_usage=True)


# ------------------------------------------------------------------------------------------ answers


def usage_body(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_prompt_tokens, "cache_write_tokens": 0},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    }


def echo(data: dict[str, Any]) -> dict[str, Any]:
    """The request fields a ``response`` object repeats back."""
    fmt = data.get("text") if isinstance(data.get("text"), dict) else None
    return {
        "instructions": data.get("instructions") if isinstance(data.get("instructions"), str) else None,
        "max_output_tokens": data.get("max_output_tokens"),
        "metadata": data.get("metadata") if isinstance(data.get("metadata"), dict) else {},
        "parallel_tool_calls": bool(data.get("parallel_tool_calls", True)),
        "temperature": data.get("temperature"),
        "top_p": data.get("top_p"),
        "tool_choice": data.get("tool_choice") or "auto",
        "tools": [{"parameters": None, "strict": None, **t} for t in data.get("tools") or () if isinstance(t, dict)],
        "text": fmt or {"format": {"type": "text"}},
        "user": data.get("user") if isinstance(data.get("user"), str) else None,
        "store": False,
        "truncation": "disabled",
        "reasoning": {"effort": None, "summary": None},
        "previous_response_id": None,
    }


def _envelope(id: str, model: str, created: int, request: dict[str, Any] | None, status: str) -> dict[str, Any]:
    return {"id": id, "object": "response", "created_at": created, "status": status, "error": None,
            "incomplete_details": None, "model": model, "output": [], **echo(request or {}), "usage": None}


def _status(finish: str | None) -> tuple[str, Any]:
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _message(id: str, text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "message", "id": id, "status": status, "role": "assistant", "content": [part]}


def _call(id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def response_object(
    resp: ChatResponse,
    *,
    model: str | None = None,
    id: str | None = None,
    created: int | None = None,
    request: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``response`` object for a whole answer; ``request`` is the body, for the fields echoed back."""
    rid = id or f"resp_{resp.request_id}"
    status, incomplete = _status(resp.finish_reason)
    out = _envelope(rid, model or resp.model, created if created is not None else int(time.time()), request, status)
    items: list[dict[str, Any]] = []
    if resp.content or not resp.tool_calls:
        items.append(_message(f"msg_{resp.request_id}", resp.content or ""))
    for i, t in enumerate(resp.tool_calls):
        items.append(_call(f"fc_{resp.request_id}_{i}", t.id, t.name, t.arguments))
    out.update(output=items, incomplete_details=incomplete, usage=usage_body(resp.usage))
    return out


def encode_response(resp: ChatResponse, **kw: Any) -> bytes:
    return orjson.dumps(response_object(resp, **kw))


class EventEncoder:
    """One streamed answer as the Responses SSE events. Same protocol as the chat encoders:
    :meth:`chunk` per :class:`ChatChunk`, then :meth:`done` (or :meth:`error` on a failure)."""

    def __init__(self, *, id: str, model: str, request: dict[str, Any] | None = None, created: int | None = None) -> None:
        self.id = id
        self.base = _envelope(id, model, created if created is not None else int(time.time()), request, "in_progress")
        self.seq = 0
        self.items: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None  # the item being streamed
        self.tools: dict[int, dict[str, Any]] = {}  # tool-call index -> its item
        self.usage: Usage | None = None
        self.finish: str | None = None
        self.started = False

    def _event(self, kind: str, **fields: Any) -> bytes:
        body = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return sse(orjson.dumps(body), kind)

    def _start(self) -> bytes:
        self.started = True
        return (self._event("response.created", response=self.base)
                + self._event("response.in_progress", response=self.base))

    def _close(self) -> bytes:
        item, self.open = self.open, None
        if item is None:
            return b""
        index = len(self.items)
        out = b""
        if item["type"] == "message":
            text = item["content"][0]["text"]
            part = {"type": "output_text", "text": text, "annotations": []}
            loc = {"item_id": item["id"], "output_index": index, "content_index": 0}
            out += self._event("response.output_text.done", **loc, text=text, logprobs=[])
            out += self._event("response.content_part.done", **loc, part=part)
        else:
            out += self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                               name=item["name"], arguments=item["arguments"])
        item["status"] = "completed"
        self.items.append(item)
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def _text(self, delta: str) -> bytes:
        out = b""
        if self.open is None or self.open["type"] != "message":
            out += self._close()
            self.open = _message(f"msg_{self.id}_{len(self.items)}", "", "in_progress")
            part = {"type": "output_text", "text": "", "annotations": []}
            added = {**self.open, "content": []}
            out += self._event("response.output_item.added", output_index=len(self.items), item=added)
            out += self._event("response.content_part.added", item_id=self.open["id"], output_index=len(self.items),
                               content_index=0, part=part)
        self.open["content"][0]["text"] += delta
        return out + self._event("response.output_text.delta", item_id=self.open["id"], output_index=len(self.items),
                                 content_index=0, delta=delta, logprobs=[])

    def _tool(self, d: ToolCallDelta) -> bytes:
        out = b""
        item = self.tools.get(d.index)
        if item is None:
            out += self._close()
            call_id = d.id or f"call_{self.id}_{d.index}"
            item = _call(f"fc_{self.id}_{d.index}", call_id, d.name or "", "", "in_progress")
            self.tools[d.index] = self.open = item
            out += self._event("response.output_item.added", output_index=len(self.items), item=dict(item))
        elif d.name and not item["name"]:
            item["name"] = d.name
        if d.arguments:
            item["arguments"] += d.arguments
            if item is self.open:
                out += self._event("response.function_call_arguments.delta", item_id=item["id"],
                                   output_index=len(self.items), delta=d.arguments)
        return out

    def chunk(self, c: ChatChunk) -> bytes:
        out = b"" if self.started else self._start()
        if c.content:
            out += self._text(c.content)
        for d in c.tool_calls:
            out += self._tool(d)
        if c.usage is not None:
            self.usage = c.usage
        if c.finish_reason is not None:
            self.finish = c.finish_reason
        return out

    def done(self) -> bytes:
        out = b"" if self.started else self._start()
        if not self.items and self.open is None:
            out += self._text("")
        out += self._close()
        status, incomplete = _status(self.finish)
        final = {**self.base, "status": status, "incomplete_details": incomplete, "output": self.items,
                 "usage": usage_body(self.usage or Usage())}
        return out + self._event("response.completed" if status == "completed" else "response.incomplete",
                                 response=final)

    def error(self, exc: BaseException) -> bytes:
        """An ``error`` event; it also carries ``{"error": {...}}`` so the SDKs raise ``APIError``."""
        err = error_reply(exc).payload["error"]
        out = b"" if self.started else self._start()
        return out + self._event("error", code=err.get("code") or err.get("type"), message=err["message"],
                                 param=err.get("param"), error=err)


__all__ = [
    "NOT_JSON", "NOT_OBJECT", "EventEncoder", "encode_response", "error_reply", "messages_of", "parse_responses",
    "response_object", "usage_body",
]
