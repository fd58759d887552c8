"""Pure translations between LlamaIndex records and Hyperion's (the OpenAI chat format).

No I/O and no gateway here: the sync and async doors of :class:`~hyperion_li.HyperionLLM` share these
prepare / validate steps and differ only in the call (STYLE 10).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    CachePoint,
    ChatMessage,
    ChatResponse,
    ImageBlock,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.llms.utils import parse_partial_json

from hyperion_core.doors import cache_info_dict
from hyperion_core.errors import InvalidRequestError
from hyperion_core.events import provenance
from hyperion_core.types import ChatResponse as HyperionResponse
from hyperion_core.types import ToolCallDelta, Usage

_ROLE = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "developer",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.TOOL: "tool",
    MessageRole.FUNCTION: "tool",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
}


# -- LlamaIndex -> OpenAI format ------------------------------------------------------------------


def to_openai_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """LlamaIndex chat messages as OpenAI-format dicts (what every Hyperion adapter translates from)."""
    return [to_openai_message(m, i) for i, m in enumerate(messages)]


def to_openai_message(m: ChatMessage, index: int = 0) -> dict[str, Any]:
    role = _ROLE.get(m.role)
    if role is None:
        raise InvalidRequestError(f"messages[{index}].role: unsupported role {m.role!r}")
    texts: list[str] = []
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for block in m.blocks:
        if isinstance(block, TextBlock):
            texts.append(block.text)
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ToolCallBlock):
            args = block.tool_kwargs
            calls.append({
                "id": block.tool_call_id or f"call_{index}_{len(calls)}",
                "type": "function",
                "function": {"name": block.tool_name, "arguments": args if isinstance(args, str) else json.dumps(args)},
            })
        elif isinstance(block, ImageBlock):
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block)}})
        elif isinstance(block, (ThinkingBlock, CachePoint)):
            continue  # not part of the chat-completions input
        else:
            raise InvalidRequestError(
                f"messages[{index}]: {type(block).__name__} content is not supported by HyperionLLM "
                "(text, images and tool calls are)"
            )
    if not calls:
        calls = [_legacy_call(c) for c in m.additional_kwargs.get("tool_calls") or ()]
    has_image = any(p["type"] == "image_url" for p in parts)
    msg: dict[str, Any] = {"role": role, "content": parts if has_image else "\n".join(texts)}
    if calls and role == "assistant":
        msg["tool_calls"] = calls
        if not texts:
            msg["content"] = None
    if role == "tool":
        call_id = m.additional_kwargs.get("tool_call_id")
        if call_id:
            msg["tool_call_id"] = call_id
        name = m.additional_kwargs.get("name")
        if name:
            msg["name"] = name
    return msg


def _legacy_call(c: Any) -> dict[str, Any]:
    """A tool call kept the pre-ToolCallBlock way (``additional_kwargs["tool_calls"]``): dict or SDK object."""
    if isinstance(c, dict):
        fn = c.get("function") or {}
        return {"id": c.get("id"), "type": "function", "function": {"name": fn.get("name"), "arguments": fn.get("arguments") or "{}"}}
    fn = getattr(c, "function", None)
    return {"id": getattr(c, "id", None), "type": "function",
            "function": {"name": getattr(fn, "name", None), "arguments": getattr(fn, "arguments", None) or "{}"}}


def _image_url(block: ImageBlock) -> str:
    if block.url:
        return str(block.url)
    data = block.resolve_image(as_base64=True).read().decode()
    return f"data:{block.image_mimetype or 'image/png'};base64,{data}"


def tool_specs(tools: Iterable[Any], *, strict: bool = False) -> list[dict[str, Any]]:
    """Tools in the OpenAI format; ``strict`` marks each function strict with a closed schema (as
    LlamaIndex's ``OpenAI(strict=True)`` does; adapters for other wires drop the flag)."""
    specs = [t.metadata.to_openai_tool(skip_length_check=True) for t in tools]
    if strict:
        for spec in specs:
            fn = spec.get("function")
            if spec.get("type") == "function" and isinstance(fn, dict):
                fn["strict"] = True
                fn.setdefault("parameters", {})["additionalProperties"] = False
    return specs


def tool_choice_for(tool_choice: Any, tool_required: bool) -> Any:
    """``tool_choice`` as the OpenAI format spells it: a tool name forces that tool."""
    if tool_choice is None:
        return "required" if tool_required else "auto"
    if isinstance(tool_choice, str) and tool_choice not in ("auto", "none", "required"):
        return {"type": "function", "function": {"name": tool_choice}}
    return tool_choice


# -- Hyperion -> LlamaIndex -----------------------------------------------------------------------


def usage_dict(u: Usage) -> dict[str, Any]:
    """Usage in the OpenAI shape (what token counters and handlers already read)."""
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_prompt_tokens, "cache_write_tokens": u.cache_write_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def response_record(r: HyperionResponse) -> dict[str, Any]:
    """A response's provenance as plain data (``ChatResponse.raw``): the core's one description
    (:func:`hyperion_core.events.provenance`: route, deployment, provider, model, finish reason, cost,
    attempts, cache tier, and the provider's ``provider_id`` / ``system_fingerprint`` / ``logprobs`` /
    ``reasoning``) plus the usage in the OpenAI shape. ``id`` is the provider's response id (as in an
    OpenAI ``raw``), else the request id."""
    c = r.cache
    return {
        **provenance(r),
        "id": r.provider_id or r.request_id,
        "usage": usage_dict(r.usage),
        "cost": r.cost,
        "attempts": [
            {"deployment": a.deployment, "outcome": a.outcome, "latency_ms": a.latency_ms,
             "error_class": a.error_class, "status": a.status, "message": a.message}
            for a in r.attempts
        ],
        "failed_over": failed_over(r),
        "cache": None if c is None else cache_info_dict(c),
    }


def failed_over(r: HyperionResponse) -> bool:
    return any(a.outcome == "error" for a in r.attempts) or bool(r.resumed_by)


#: provider provenance copied to ``additional_kwargs`` when the provider sent it
_PROVIDER_KEYS = ("provider_id", "system_fingerprint", "logprobs", "reasoning")


def response_kwargs(r: HyperionResponse, record: dict[str, Any]) -> dict[str, Any]:
    """``ChatResponse.additional_kwargs``: OpenAI-style token counts plus Hyperion's provenance."""
    u = r.usage
    out = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "route": r.route,
        "deployment": r.deployment,
        "attempts": record["attempts"],
        "cost": r.cost,
        "cache_tier": r.cache.tier if r.cache is not None else None,
        "request_id": r.request_id,
    }
    out.update({k: record[k] for k in _PROVIDER_KEYS if record.get(k) is not None})
    return out


def _args(text: str) -> dict[str, Any] | str:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return text  # partial JSON while streaming; parsed leniently by get_tool_calls
    return value if isinstance(value, dict) else text


def assistant_message(text: str, calls: Sequence[tuple[str | None, str, str]]) -> ChatMessage:
    """The answer as a LlamaIndex message: a text block, one ``ToolCallBlock`` per call, and the calls
    again in the OpenAI format under ``additional_kwargs["tool_calls"]``, which parts of LlamaIndex
    still read (e.g. streaming structured outputs)."""
    blocks: list[Any] = [TextBlock(text=text)] if text else []
    kwargs: dict[str, Any] = {}
    if calls:
        blocks += [ToolCallBlock(tool_call_id=cid or None, tool_name=name, tool_kwargs=_args(args))
                   for cid, name, args in calls]
        kwargs["tool_calls"] = [{"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                                for cid, name, args in calls]
    return ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks, additional_kwargs=kwargs)


def to_chat_response(r: HyperionResponse) -> ChatResponse:
    record = response_record(r)
    return ChatResponse(
        message=assistant_message(r.content or "", [(c.id, c.name, c.arguments) for c in r.tool_calls]),
        raw=record,
        additional_kwargs=response_kwargs(r, record),
    )


class StreamState:
    """Accumulates streamed chunks into the growing LlamaIndex message (text and tool-call pieces)."""

    __slots__ = ("text", "calls")

    def __init__(self) -> None:
        self.text = ""
        self.calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]

    def add(self, content: str, deltas: tuple[ToolCallDelta, ...]) -> None:
        self.text += content
        for d in deltas:
            slot = self.calls.setdefault(d.index, ["", "", ""])
            if d.id:
                slot[0] = d.id
            if d.name:
                slot[1] = d.name
            slot[2] += d.arguments

    def message(self) -> ChatMessage:
        return assistant_message(self.text, [tuple(self.calls[i]) for i in sorted(self.calls)])


def tool_selections(response: ChatResponse) -> list[ToolSelection]:
    """The tool calls of a response (whole or a partial streamed one) as LlamaIndex selections."""
    out = []
    for block in response.message.blocks:
        if not isinstance(block, ToolCallBlock):
            continue
        args = block.tool_kwargs
        if isinstance(args, str):
            try:
                args = parse_partial_json(args) if args else {}
            except (ValueError, TypeError):
                args = {}
        out.append(ToolSelection(tool_id=block.tool_call_id or "", tool_name=block.tool_name,
                                 tool_kwargs=args if isinstance(args, dict) else {}))
    return out


__all__ = [
    "to_openai_messages",
    "to_openai_message",
    "tool_specs",
    "tool_choice_for",
    "usage_dict",
    "response_record",
    "response_kwargs",
    "failed_over",
    "to_chat_response",
    "assistant_message",
    "StreamState",
    "tool_selections",
]
