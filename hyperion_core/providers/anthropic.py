"""Anthropic Messages wire format (``POST /v1/messages``), converted from and to OpenAI-format records."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson

from ..errors import InvalidRequestError, MalformedResponseError, error_for_status
from ..http import HttpClient
from ..types import ChatChunk, ChatRequest, Message, ProviderResponse, ToolCall, ToolCallDelta, Usage
from .base import HttpAdapter, StreamParser, Target, merged_params, tool_arguments
from .params import JSON_TOOL, all_params, anthropic_file_block, anthropic_params

ANTHROPIC_VERSION = "2023-06-01"
#: max_tokens when neither the request, the deployment nor the price map says (the API requires one)
DEFAULT_MAX_TOKENS = 4096

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

#: the HTTP status Anthropic uses for each error type (for errors that arrive inside a stream)
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def anthropic_usage(u: dict[str, Any] | None) -> Usage:
    """Anthropic counts cache reads and writes apart from ``input_tokens``; Hyperion's prompt total includes them."""
    if not u:
        return Usage()
    cached = int(u.get("cache_read_input_tokens") or 0)
    written = int(u.get("cache_creation_input_tokens") or 0)
    return Usage(
        prompt_tokens=int(u.get("input_tokens") or 0) + cached + written,
        completion_tokens=int(u.get("output_tokens") or 0),
        cached_prompt_tokens=cached,
        cache_write_tokens=written,
    )


def finish_reason(stop_reason: str | None) -> str | None:
    return FINISH_REASONS.get(stop_reason, stop_reason) if stop_reason else None


# -- request conversion (pure) -------------------------------------------------------------------


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")


def _image_block(part: dict[str, Any]) -> dict[str, Any]:
    img = part.get("image_url")
    url = img.get("url", "") if isinstance(img, dict) else str(img or "")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";", 1)[0] or "image/png"
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI content (a string or a list of parts) as Anthropic content blocks; empty text is dropped."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, str):
            part = {"type": "text", "text": part}
        kind = part.get("type")
        if kind == "text":
            if not part.get("text"):
                continue
            block = {"type": "text", "text": part["text"]}
            if "cache_control" in part:
                block["cache_control"] = part["cache_control"]
            out.append(block)
        elif kind == "image_url":
            out.append(_image_block(part))
        elif kind == "file":
            out.append(anthropic_file_block(part))
        elif kind == "input_audio":
            raise InvalidRequestError("input_audio: the Anthropic wire format has no audio input")
        elif kind == "refusal":
            if part.get("refusal"):
                out.append({"type": "text", "text": part["refusal"]})
        else:  # already an Anthropic block (image, document, thinking, ...)
            out.append(part)
    return out


def _tool_use(tc: dict[str, Any]) -> dict[str, Any]:
    fn = tc.get("function") or {}
    args = tool_arguments(tc)
    return {"type": "tool_use", "id": tc.get("id"), "name": fn.get("name"), "input": args}


def _tool_result(msg: Message) -> dict[str, Any]:
    content = msg.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg.get("tool_call_id")}
    if isinstance(content, list):
        block["content"] = _blocks(content)
    else:
        block["content"] = "" if content is None else str(content)
    return block


def convert_messages(messages: list[Message]) -> tuple[Any, list[dict[str, Any]]]:
    """OpenAI-format messages -> (Anthropic ``system``, ``messages``).

    System/developer messages go to ``system``; tool results become user ``tool_result`` blocks; runs of
    same-role messages are merged, as the API requires alternating turns.
    """
    system_blocks: list[dict[str, Any]] = []
    turns: list[tuple[str, list[dict[str, Any]], Any]] = []  # (role, blocks, original string content)
    for msg in messages:
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            system_blocks.extend(_blocks(content))
            continue
        if role == "tool":
            role, blocks = "user", [_tool_result(msg)]
        elif role == "user":
            blocks = _blocks(content)
        elif role == "assistant":
            blocks = _blocks(content) + [_tool_use(tc) for tc in msg.get("tool_calls") or ()]
        else:
            raise InvalidRequestError(f"message role {role!r} is not supported by the Anthropic wire format")
        if not blocks:
            continue
        plain = content if isinstance(content, str) and len(blocks) == 1 and role == msg.get("role") else None
        if turns and turns[-1][0] == role:
            prev_role, prev_blocks, _ = turns[-1]
            turns[-1] = (prev_role, prev_blocks + blocks, None)
        else:
            turns.append((role, blocks, plain))
    # the API wants a user turn's tool_result blocks before any other block
    out = [
        {
            "role": r,
            "content": s if s is not None else sorted(b, key=lambda x: x.get("type") != "tool_result"),
        }
        for r, b, s in turns
    ]
    system: Any = None
    if system_blocks:
        if any("cache_control" in b or b.get("type") != "text" for b in system_blocks):
            system = system_blocks
        else:
            system = "\n\n".join(b["text"] for b in system_blocks)
    return system, out


def convert_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for t in tools:
        if t.get("type") == "function" and "function" in t:
            fn = t["function"]
            tool = {
                "name": fn["name"],
                "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
            }
            if fn.get("description"):
                tool["description"] = fn["description"]
            out.append(tool)
        else:  # an Anthropic tool already (custom with input_schema, or a server tool)
            out.append(t)
    return out


def convert_tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        kind = {"auto": "auto", "required": "any", "any": "any", "none": "none"}.get(choice)
        if kind is None:
            raise InvalidRequestError(f"tool_choice {choice!r} is not one of auto, required, none")
        return {"type": kind}
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
        return choice  # already Anthropic-shaped
    raise InvalidRequestError(f"tool_choice of type {type(choice).__name__} is not supported")


# -- stream parser -------------------------------------------------------------------------------


class AnthropicStreamParser(StreamParser):
    """``message_start`` .. ``message_stop``; ``message_stop`` is the terminal event, and a
    ``message_delta`` with its ``stop_reason`` already completes the answer. No content at all with
    ``end_turn`` is an empty answer (:class:`MalformedResponseError`), as in whole answers."""

    __slots__ = ("done", "_usage", "_stop", "_tool_pos", "_answered")

    def __init__(self) -> None:
        self.done = False
        self._usage: dict[str, Any] = {}
        self._stop: str | None = None
        self._tool_pos: dict[int, int] = {}  # content block index -> position among tool calls
        self._answered = False  # any text or tool call yet

    def feed(self, event: str | None, data: bytes) -> ChatChunk | None:
        obj = orjson.loads(data)
        kind = obj.get("type") or event
        if kind == "content_block_delta":
            delta = obj["delta"]
            dtype = delta.get("type")
            if dtype == "text_delta":
                text = delta.get("text") or ""
                self._answered = self._answered or bool(text)
                return ChatChunk(content=text) if text else None
            if dtype == "input_json_delta":
                piece = delta.get("partial_json") or ""
                pos = self._tool_pos.get(obj.get("index", -1))
                if not piece or pos is None:
                    return None
                return ChatChunk(tool_calls=(ToolCallDelta(index=pos, arguments=piece),))
            return None  # thinking_delta, signature_delta, citations_delta
        if kind == "content_block_start":
            block = obj["content_block"]
            if block.get("type") != "tool_use":
                text = (block.get("text") or "") if block.get("type") == "text" else ""
                self._answered = self._answered or bool(text)
                return ChatChunk(content=text) if text else None
            self._answered = True
            pos = len(self._tool_pos)
            self._tool_pos[obj.get("index", pos)] = pos
            initial = block.get("input")
            args = orjson.dumps(initial).decode() if initial else ""
            return ChatChunk(
                tool_calls=(
                    ToolCallDelta(index=pos, id=block.get("id"), name=block.get("name"), arguments=args),
                )
            )
        if kind == "message_start":
            self._merge_usage((obj.get("message") or {}).get("usage"))
            return None
        if kind == "message_delta":
            stop = (obj.get("delta") or {}).get("stop_reason")
            if stop:
                self._stop = stop
            self._merge_usage(obj.get("usage"))
            return None
        if kind == "message_stop":
            self.done = True
            return self._closing()
        if kind == "error":
            err = obj.get("error") or {}
            etype = err.get("type")
            raise error_for_status(
                ERROR_STATUS.get(etype, 500),
                f"stream error: {err.get('message') or err}",
                provider_code=etype,
            )
        return None  # ping, content_block_stop, unknown future events

    def _closing(self) -> ChatChunk:
        if not self._answered and self._stop in (None, "end_turn"):
            raise MalformedResponseError("Anthropic returned an empty answer: no content with end_turn")
        return ChatChunk(finish_reason=finish_reason(self._stop), usage=anthropic_usage(self._usage))

    def ended_early(self) -> ChatChunk | None:
        return self._closing() if self._stop else None  # message_delta carried the stop_reason

    def _merge_usage(self, u: dict[str, Any] | None) -> None:
        if u:
            self._usage.update({k: v for k, v in u.items() if v is not None})


# -- adapter -------------------------------------------------------------------------------------


class AnthropicAdapter(HttpAdapter):
    wire = "anthropic"

    def __init__(self, target: Target, http: HttpClient) -> None:
        super().__init__(target, http)
        self._default_max_tokens = self.default_max_tokens()

    def url(self, stream: bool) -> str:
        base = (self.target.base_url or "https://api.anthropic.com").rstrip("/")
        if base.endswith("/v1/messages"):
            return base
        return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"

    def headers(self) -> dict[str, str]:
        h = {
            "content-type": "application/json",
            "accept": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
        }
        if self.target.api_key:
            h["x-api-key"] = self.target.api_key
        h.update(self.target.headers)
        return h

    def default_max_tokens(self) -> int:
        """The cap sent when the request says none (the API requires ``max_tokens``)."""
        cap = self.target.price.max_output_tokens
        return min(cap, DEFAULT_MAX_TOKENS) if cap else DEFAULT_MAX_TOKENS

    def build_body(self, req: ChatRequest, stream: bool) -> dict[str, Any]:
        system, messages = convert_messages(req.messages)
        body: dict[str, Any] = {"model": self.target.model, "messages": messages}
        if system is not None:
            body["system"] = system
        fields, json_tools = anthropic_params(
            all_params(merged_params(req, self.target.params), req.extra),
            default_max_tokens=self._default_max_tokens,
            has_tools=bool(req.tools),
            tool_choice=convert_tool_choice(req.tool_choice),
            response_format=req.response_format,
        )
        body.update(fields)
        if req.tools or json_tools:
            body["tools"] = convert_tools(req.tools or []) + json_tools
        if stream:
            body["stream"] = True
        return body

    async def chat(self, req: ChatRequest) -> ProviderResponse:
        resp = await super().chat(req)
        return unwrap_json_answer(resp) if req.response_format is not None else resp

    def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        chunks = super().stream(req)
        return chunks if req.response_format is None else _unwrapped(chunks)

    def parse_response(self, data: dict[str, Any]) -> ProviderResponse:
        texts: list[str] = []
        calls: list[ToolCall] = []
        thoughts: list[str] = []
        for block in data["content"]:
            kind = block.get("type")
            if kind == "text":
                texts.append(block.get("text") or "")
            elif kind == "thinking":
                thoughts.append(block.get("thinking") or "")
            elif kind == "tool_use":
                args = orjson.dumps(block.get("input") or {}).decode()
                calls.append(ToolCall(id=block["id"], name=block["name"], arguments=args))
        return ProviderResponse(
            content="".join(texts) if texts else None,
            tool_calls=tuple(calls),
            finish_reason=finish_reason(data.get("stop_reason")),
            usage=anthropic_usage(data.get("usage")),
            model=data.get("model") or self.target.model,
            id=data.get("id"),
            reasoning="".join(thoughts) if thoughts else None,
        )

    def stream_parser(self) -> StreamParser:
        return AnthropicStreamParser()

    def is_empty(self, data: Any, resp: ProviderResponse) -> bool:
        # Anthropic always sets a stop_reason: no content blocks at all with end_turn is the empty answer
        return super().is_empty(data, resp) or (not data.get("content") and data.get("stop_reason") == "end_turn")

    def error_details(self, data: Any) -> tuple[str, str | None]:
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            err = data["error"]
            return str(err.get("message") or err), err.get("type")
        return super().error_details(data)


def unwrap_json_answer(resp: ProviderResponse) -> ProviderResponse:
    """The synthetic :data:`~.params.JSON_TOOL` call carrying a ``response_format`` answer, as JSON ``content``
    (what the OpenAI wire returns); other tool calls stay tool calls."""
    calls = [c for c in resp.tool_calls if c.name == JSON_TOOL]
    if not calls:
        return resp
    rest = tuple(c for c in resp.tool_calls if c.name != JSON_TOOL)
    finish = "stop" if resp.finish_reason == "tool_calls" and not rest else resp.finish_reason
    return replace(resp, content=calls[0].arguments, tool_calls=rest, finish_reason=finish)


async def _unwrapped(chunks: AsyncIterator[ChatChunk]) -> AsyncIterator[ChatChunk]:
    unwrap = JsonToolUnwrapper()
    async for chunk in chunks:
        yield unwrap.feed(chunk)


class JsonToolUnwrapper:
    """The streaming twin of :func:`unwrap_json_answer`: the JSON tool's argument pieces become content."""

    __slots__ = ("_json_index", "_others")

    def __init__(self) -> None:
        self._json_index: int | None = None
        self._others = 0

    def feed(self, chunk: ChatChunk) -> ChatChunk:
        if not chunk.tool_calls and chunk.finish_reason is None:
            return chunk
        content, kept = chunk.content, []
        for d in chunk.tool_calls:
            if d.name == JSON_TOOL:
                self._json_index = d.index
            if d.index == self._json_index:
                content += d.arguments
            else:
                if d.name is not None:
                    self._others += 1
                kept.append(d)
        finish = chunk.finish_reason
        if finish == "tool_calls" and self._json_index is not None and not self._others:
            finish = "stop"
        return replace(chunk, content=content, tool_calls=tuple(kept), finish_reason=finish)


__all__ = [
    "AnthropicAdapter",
    "AnthropicStreamParser",
    "JsonToolUnwrapper",
    "unwrap_json_answer",
    "anthropic_usage",
    "convert_messages",
    "convert_tools",
    "convert_tool_choice",
    "finish_reason",
]
