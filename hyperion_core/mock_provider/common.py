"""Wire-independent request/reply types shared by the mock provider modules.

Each wire module (``openai_wire``, ``anthropic_wire``, ``gemini_wire``) parses its
provider's request JSON into a :class:`ChatRequest` or :class:`EmbedRequest`;
``content.build_reply`` turns a ``ChatRequest`` into a :class:`Reply`; the wire
module renders that ``Reply`` back as a JSON body or a list of stream
:class:`Event` frames. Nothing in this module does I/O.

Conventions:

* ``Message.role`` is normalised to ``system``, ``user``, ``assistant`` or
  ``tool`` (a message carrying tool results: OpenAI ``tool``, an Anthropic user
  message with ``tool_result`` blocks, a Gemini ``functionResponse`` turn).
* ``ChatRequest.tool_choice`` is ``auto``, ``none`` or ``required``;
  ``tool_name`` names the forced tool when the client forces one.
* ``Reply.finish`` is one of :data:`FINISHES`; wires map it to their own enum.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Finish = Literal["stop", "stop_sequence", "length", "tool_calls"]
FINISHES: tuple[str, ...] = ("stop", "stop_sequence", "length", "tool_calls")
WIRES: tuple[str, ...] = ("openai", "anthropic", "gemini")


class Reject(Exception):
    """Answer the request with a wire-formatted error of ``kind`` (see ``faults.ERROR_KINDS``)."""

    def __init__(
        self,
        kind: str,
        message: str | None = None,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        model: str = "",
        tokens: int = 0,
    ) -> None:
        super().__init__(message or kind)
        self.kind, self.message, self.status, self.retry_after = kind, message, status, retry_after
        self.model, self.tokens = model, tokens


class BadRequest(Reject):
    """The request body is not something the provider would accept (-> 400 ``bad_request``)."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_request", message)


class Refused(Exception):
    """Answer with this exact wire-formatted error (strict validation builds it with the wire's renderer)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        err = body.get("error")
        super().__init__(str(err.get("message") if isinstance(err, dict) else body))
        self.status, self.body = status, body


@dataclass(slots=True)
class Message:
    role: str
    text: str = ""
    tool_result: str | None = None


@dataclass(slots=True)
class Tool:
    name: str
    schema: dict[str, Any]


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    system: str = ""
    stream: bool = False
    sse: bool = True  # Gemini only: False = JSON-array streaming (no ?alt=sse)
    include_usage: bool = False  # OpenAI stream_options.include_usage
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    tools: list[Tool] = field(default_factory=list)
    tool_choice: str = "auto"
    tool_name: str | None = None
    json_schema: dict[str, Any] | None = None
    json_object: bool = False
    deployment: str = "default"
    #: the caller asked to see the model's thinking (Anthropic ``thinking`` enabled, Gemini
    #: ``thinkingConfig.includeThoughts``): whole answers carry a thinking block / thought part
    thinking: bool = False


def thought_text(reply: Reply) -> str:
    """The deterministic "thinking" shown before an answer when a request asks for it."""
    what = f"a call to {reply.tool_calls[0].name}" if reply.tool_calls else repr(reply.text[:40])
    return f"Mock thinking: the answer is {what}."


@dataclass(slots=True)
class EmbedRequest:
    model: str
    texts: list[str]
    dimensions: int = 256
    base64: bool = False
    batch: bool = True  # Gemini: batchEmbedContents (True) vs embedContent (False)


@dataclass(slots=True)
class ToolCall:
    id: str  # provider-neutral suffix; wires add their prefix (call_, toolu_)
    name: str
    arguments: dict[str, Any]


@dataclass(slots=True)
class Reply:
    text: str
    finish: str = "stop"
    tool_calls: list[ToolCall] = field(default_factory=list)
    stop_sequence: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    usage: dict[str, Any] | None = None  # reported verbatim instead of the computed usage (a fault)


@dataclass(slots=True)
class Event:
    """One stream frame, already encoded. ``content`` marks frames counted by ``cut_after_chunks``."""

    data: bytes
    content: bool = False


def optional_int(value: Any, name: str, minimum: int = 0) -> int | None:
    """``value`` as an int >= ``minimum`` (``None`` passes through); anything else is a ``BadRequest``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadRequest(f"{name} must be an integer >= {minimum}")
    return value


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    header = headers.get("Authorization", "")
    if header[:7].lower() != "bearer ":
        return None
    return header[7:].strip() or None


def new_id() -> str:
    return os.urandom(12).hex()


def wire_base_url(root: str, deployment: str, wire: str) -> str:
    """The base URL a client SDK (or litellm ``api_base``) needs for ``wire`` on ``deployment``."""
    root = root.rstrip("/")
    if wire == "openai":
        return f"{root}/{deployment}/v1"
    if wire == "anthropic":
        return f"{root}/{deployment}"
    if wire == "gemini":
        return f"{root}/{deployment}/v1beta"
    raise ValueError(f"unknown wire {wire!r}; expected one of {WIRES}")
