"""Pure conversions between LangChain messages and the gateway's records (OpenAI chat format).

No I/O: shared by ``HyperionChat``'s sync and async paths, the callback handler and the cache adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_openai_messages
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers.openai_tools import make_invalid_tool_call, parse_tool_call
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool

from hyperion_core.doors import cache_info_dict
from hyperion_core.events import provenance
from hyperion_core.types import ChatChunk, ChatResponse, Message, ToolCall, Usage

# -- messages ------------------------------------------------------------------------------------


def to_openai_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """LangChain messages -> OpenAI chat messages: system / user (text and multimodal parts, names) /
    assistant (text, ``tool_calls``; Anthropic-style ``tool_use`` blocks too) / tool results; LangChain's
    standard content blocks (images as base64 or URL, files, audio) become OpenAI parts.

    What the Chat Completions format has no place for is left out, as ``ChatOpenAI`` does: an
    assistant's non-text blocks (``tool_call`` blocks of v1 content — the calls travel in
    ``tool_calls`` —, ``thinking`` / ``reasoning`` blocks) and a tool message's ``name``. A tool
    result's images and files (Chat Completions tool messages carry text only) follow the turn's tool
    messages in a user message, which every wire accepts."""
    out: list[Message] = []
    media: list[dict[str, Any]] = []
    for m in convert_to_openai_messages(list(messages)):
        m = _clean(m)
        if media and m.get("role") != "tool":
            out.append({"role": "user", "content": media})
            media = []
        if m.get("role") == "tool" and isinstance(m.get("content"), list):
            parts = m["content"]
            text = [p for p in parts if isinstance(p, dict) and p.get("type") == "text"]
            other = [p for p in parts if not (isinstance(p, dict) and p.get("type") == "text")]
            if other:
                note = f"[the tool's result includes {len(other)} attachment(s), in the next message]"
                m = {**m, "content": text or [{"type": "text", "text": note}]}
                media += [
                    {"type": "text", "text": f"Attachments of tool call {m.get('tool_call_id')}:"},
                    *other,
                ]
        out.append(m)
    if media:
        out.append({"role": "user", "content": media})
    return out


_ASSISTANT_PARTS = ("text", "refusal")


def _clean(m: Message) -> Message:
    role = m.get("role")
    if role == "tool":
        return {k: v for k, v in m.items() if k in ("role", "content", "tool_call_id")}
    if role != "assistant":
        return m
    content = m.get("content")
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict) and p.get("type") in _ASSISTANT_PARTS]
        content = (
            "".join(p.get("text") or "" for p in parts) if all(p["type"] == "text" for p in parts) else parts
        )
    if not content and m.get("tool_calls"):
        content = None  # only tool calls: null content, as ChatOpenAI sends it
    return m if content is m.get("content") else {**m, "content": content}


def text_of(message: BaseMessage) -> str:
    """The text of a message (text parts joined)."""
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(
        p if isinstance(p, str) else (p.get("text") or "")
        for p in content
        if isinstance(p, str) or (isinstance(p, dict) and p.get("type") == "text")
    )


# -- tools ---------------------------------------------------------------------------------------


def format_tools(tools: Sequence[Any], strict: bool | None = None) -> list[dict[str, Any]]:
    """Tools (LangChain tools, functions, pydantic classes, TypedDicts, JSON schemas, OpenAI tool
    dicts) -> OpenAI tool definitions."""
    return [convert_to_openai_tool(t, strict=strict) for t in tools]


def format_tool_choice(choice: Any, tool_names: Sequence[str]) -> Any:
    """LangChain's ``tool_choice`` spellings -> OpenAI's: a tool's name, ``"any"`` / ``"required"`` /
    ``True`` (call some tool), ``"auto"``, ``"none"``, or an OpenAI dict. ``None`` / ``False``: unset."""
    if choice is None or choice is False:
        return None
    if choice is True or choice in ("any", "required"):
        return "required"
    if isinstance(choice, str):
        if choice in ("auto", "none"):
            return choice
        if choice in tool_names:
            return {"type": "function", "function": {"name": choice}}
        raise ValueError(
            f"tool_choice {choice!r}: not one of the bound tools {list(tool_names)} "
            "nor 'auto' / 'none' / 'any' / 'required'"
        )
    if isinstance(choice, dict):
        return choice
    raise ValueError(f"tool_choice: expected a str, bool or dict, got {type(choice).__name__}")


def json_schema_format(schema: Any, strict: bool | None = None) -> dict[str, Any]:
    """A schema (pydantic class, TypedDict, JSON schema, OpenAI function) -> ``response_format``."""
    fn = convert_to_openai_tool(schema, strict=strict)["function"]
    spec: dict[str, Any] = {"name": fn["name"], "schema": fn.get("parameters") or {"type": "object"}}
    if fn.get("description"):
        spec["description"] = fn["description"]
    if strict is not None:
        spec["strict"] = strict
    return {"type": "json_schema", "json_schema": spec}


def response_format_of(value: Any) -> dict[str, Any] | None:
    """``response_format`` as passed by a caller: an OpenAI dict as is, a schema converted."""
    if value is None or (isinstance(value, dict) and "type" in value):
        return value
    return json_schema_format(value)


# -- responses -----------------------------------------------------------------------------------


def usage_metadata(u: Usage) -> UsageMetadata:
    """Gateway usage -> LangChain's: input includes cache reads/writes, output includes reasoning."""
    input_details: dict[str, int] = {"cache_read": u.cached_prompt_tokens}
    if u.cache_write_tokens:
        input_details["cache_creation"] = u.cache_write_tokens
    return UsageMetadata(
        input_tokens=u.prompt_tokens,
        output_tokens=u.completion_tokens,
        total_tokens=u.prompt_tokens + u.completion_tokens,
        input_token_details=input_details,  # type: ignore[typeddict-item]
        output_token_details={"reasoning": u.reasoning_tokens},
    )


#: provenance keys (:func:`hyperion_core.events.provenance`) -> ``ChatOpenAI``'s names for them
_LC_NAMES = {"provider_id": "id", "model": "model_name", "cost_usd": "cost"}


def response_metadata(resp: ChatResponse, provider: str | None = None) -> dict[str, Any]:
    """Where the answer came from and what it cost (``cost`` in USD; 0 for a cache hit), built from
    the core's one description (:func:`hyperion_core.events.provenance`) under ``ChatOpenAI``'s names
    where it has them: ``model_name``, ``model_provider`` (LangChain's name for the provider of the
    deployment that answered), ``id`` (the provider's response id), ``finish_reason``,
    ``system_fingerprint``, ``logprobs`` and ``reasoning`` (the latter four only when the provider
    sent them); then Hyperion's own: route, deployment, request id, attempts, cache, latency."""
    p = provenance(resp)
    meta: dict[str, Any] = {"model_name": p["model"], "model_provider": provider}
    for key in ("provider_id", "system_fingerprint", "logprobs", "reasoning"):
        if p[key] is not None:
            meta[_LC_NAMES.get(key, key)] = p[key]
    meta["finish_reason"] = p["finish_reason"]
    meta.update(
        route=p["route"],
        deployment=p["deployment"],
        request_id=p["request_id"],
        attempts=[
            {**a, "latency_ms": round(t.latency_ms, 3)} for a, t in zip(p["attempts"], resp.attempts, strict=True)
        ],
        cost=p["cost_usd"],
        cache_tier=p["cache_tier"],
        cache=None if resp.cache is None else cache_info_dict(resp.cache),
        latency_ms=round(resp.latency_ms, 3),
        ttft_ms=None if resp.ttft_ms is None else round(resp.ttft_ms, 3),
        resumed_by=p["resumed_by"],
    )
    return meta


def _tool_calls(calls: Sequence[ToolCall]) -> tuple[list[Any], list[Any]]:
    valid: list[Any] = []
    invalid: list[Any] = []
    for t in calls:
        raw = {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments or "{}"}}
        try:
            parsed = parse_tool_call(raw, return_id=True)
        except OutputParserException as exc:
            invalid.append(make_invalid_tool_call(raw, str(exc)))
            continue
        if parsed is not None:
            valid.append(parsed)
    return valid, invalid


def to_ai_message(resp: ChatResponse, provider: str | None = None) -> AIMessage:
    tool_calls, invalid = _tool_calls(resp.tool_calls)
    meta = response_metadata(resp, provider)
    extra: dict[str, Any] = {"id": meta["id"]} if isinstance(meta.get("id"), str) else {}
    if meta.get("reasoning"):  # where DeepSeek / vLLM integrations put it
        extra["additional_kwargs"] = {"reasoning_content": meta["reasoning"]}
    return AIMessage(
        content=resp.content or "",
        tool_calls=tool_calls,
        invalid_tool_calls=invalid,
        usage_metadata=usage_metadata(resp.usage),
        response_metadata=meta,
        **extra,
    )


def to_chat_result(resp: ChatResponse, provider: str | None = None) -> ChatResult:
    u = resp.usage
    return ChatResult(
        generations=[ChatGeneration(message=to_ai_message(resp, provider))],
        llm_output={
            "model_name": resp.model,
            "token_usage": {
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
                "total_tokens": u.total_tokens,
            },
        },
    )


def to_message_chunk(chunk: ChatChunk) -> AIMessageChunk | None:
    """A streamed piece as a LangChain chunk (None for a piece with neither text nor tool-call delta:
    the stream's usage and metadata come once, in :func:`final_chunk`)."""
    if chunk.tool_calls:
        return AIMessageChunk(
            content=chunk.content,
            tool_call_chunks=[
                tool_call_chunk(name=d.name, args=d.arguments or None, id=d.id, index=d.index)
                for d in chunk.tool_calls
            ],
        )
    if chunk.content:
        return AIMessageChunk(content=chunk.content)
    return None


def final_chunk(resp: ChatResponse, provider: str | None = None) -> AIMessageChunk:
    """The last chunk of a stream: no content; the whole stream's usage (input tokens counted once)
    and the response metadata."""
    return AIMessageChunk(
        content="",
        usage_metadata=usage_metadata(resp.usage),
        response_metadata=response_metadata(resp, provider),
        chunk_position="last",
    )


__all__ = [
    "to_openai_messages",
    "text_of",
    "format_tools",
    "format_tool_choice",
    "json_schema_format",
    "response_format_of",
    "usage_metadata",
    "response_metadata",
    "to_ai_message",
    "to_chat_result",
    "to_message_chunk",
    "final_chunk",
]
