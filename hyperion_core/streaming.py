"""Stream records: the caller-facing :class:`ChatStream` and the pure accumulator behind it.

Stream resume asks the next deployment to continue a cut answer: the conversation is extended with
the partial answer as an assistant turn and :data:`RESUME_INSTRUCTION` (which quotes where the answer
stopped) as a user turn. What comes back passes through a :class:`Seam`: models asked to continue
often repeat the last words, so the longest overlap between the end of the delivered text and the
start of the continuation is trimmed (:func:`splice`) before it is spliced in, and the caller sees one
uninterrupted stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from .types import ChatChunk, ChatResponse, Message, ToolCall, Usage

if TYPE_CHECKING:
    from ._portal import Portal

RESUME_INSTRUCTION = (
    "Your previous answer was cut off. Continue it from exactly the next character after where it "
    "stopped, which was: \u00ab{tail}\u00bb. Do not repeat any of it and do not add any preamble; if it "
    "stopped in the middle of a word, finish that word."
)
_TAIL = 80  # characters of the partial answer quoted in the instruction
_SEAM_HOLD = 400  # characters of a continuation held back at most while looking for an overlap


def resume_messages(messages: list[Message], partial: str) -> list[Message]:
    """The conversation that asks a deployment to continue ``partial`` from its very next character."""
    ask = RESUME_INSTRUCTION.format(tail=partial[-_TAIL:])
    return [*messages, {"role": "assistant", "content": partial}, {"role": "user", "content": ask}]


def _boundary(a: str, b: str) -> bool:
    """Is the gap between characters ``a`` and ``b`` a word boundary?"""
    return not a or not b or not (a.isalnum() and b.isalnum())


def splice(delivered: str, continuation: str) -> str:
    """``continuation`` without the part that repeats the end of ``delivered``: the longest prefix of
    the continuation that is a suffix of the delivered text (ignoring whitespace at the joint) and
    starts and ends on word boundaries; whitespace is not doubled at the joint."""
    d = delivered.rstrip()
    ws = delivered[len(d) :]
    best = 0
    for k in range(min(len(continuation), len(delivered), _SEAM_HOLD), 0, -1):
        piece = continuation[:k]
        body = piece.lstrip()
        if not body.strip():
            continue
        if not (delivered.endswith(piece) or d.endswith(piece) or (ws and d.endswith(body))):
            continue
        base = delivered if delivered.endswith(piece) else d
        start = len(base) - len(piece if base.endswith(piece) else body)
        if not _boundary(base[start - 1 : start], base[start : start + 1]):
            continue
        if not _boundary(continuation[k - 1 : k], continuation[k : k + 1]):
            continue
        best = k
        break
    rest = continuation[best:]
    if (not delivered or delivered[-1].isspace()) and rest[:1].isspace():
        rest = rest.lstrip()
    return rest


class Seam:
    """Holds back the first chunks of a continuation until its overlap with the ``delivered`` text is
    known, then lets them through as one chunk with the overlap trimmed (:func:`splice`)."""

    __slots__ = ("delivered", "text", "open")

    def __init__(self, delivered: str) -> None:
        self.delivered = delivered
        self.text = ""
        self.open = True

    def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
        """The chunks to pass on now (none while the overlap is still undecided)."""
        if not self.open:
            return [chunk]
        self.text += chunk.content
        if not chunk.tool_calls and chunk.finish_reason is None and chunk.usage is None:
            head = self.text.lstrip()
            if len(self.text) < _SEAM_HOLD and (not head or head in self.delivered):
                return []  # still inside text the delivered answer already has: could be a repeat
            chunk = ChatChunk(deployment=chunk.deployment)
        self.open = False
        out = replace(chunk, content=splice(self.delivered, self.text))
        return [out] if out.content or out.tool_calls or out.finish_reason or out.usage is not None else []

    def flush(self) -> list[ChatChunk]:
        """At the end of the continuation: what is still held back."""
        if not self.open:
            return []
        self.open = False
        rest = splice(self.delivered, self.text)
        return [ChatChunk(content=rest)] if rest else []


def segment_usage(prompt_estimate: int, chunks: int, chars: int) -> Usage:
    """What one stream segment that ended without the provider's usage cost upstream: its prompt
    (estimated) and every token generated, estimated as the larger of one a chunk and one per four
    characters of content and tool arguments."""
    return Usage(prompt_tokens=prompt_estimate, completion_tokens=max(chunks, -(-chars // 4)))


class Accumulator:
    """Collects a stream's chunks into the final message, usage and finish reason."""

    __slots__ = ("parts", "tools", "usage", "finish_reason", "chunks", "chars")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.tools: dict[int, list[str | None]] = {}  # index -> [id, name, args...]
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.chunks = 0
        self.chars = 0  # content and tool-argument characters (for estimates when usage never came)

    def add(self, chunk: ChatChunk) -> None:
        self.chunks += 1
        if chunk.content:
            self.parts.append(chunk.content)
            self.chars += len(chunk.content)
        for d in chunk.tool_calls:
            self.chars += len(d.arguments)
            slot = self.tools.get(d.index)
            if slot is None:
                slot = self.tools[d.index] = [None, None]
            if d.id:
                slot[0] = d.id
            if d.name:
                slot[1] = d.name
            if d.arguments:
                slot.append(d.arguments)
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self.usage = chunk.usage

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def tool_calls(self) -> tuple[ToolCall, ...]:
        out = []
        for index in sorted(self.tools):
            slot = self.tools[index]
            out.append(
                ToolCall(
                    id=slot[0] or f"call_{index}",
                    name=slot[1] or "",
                    arguments="".join(a for a in slot[2:] if a) or "{}",
                )
            )
        return tuple(out)


class ChatStream:
    """An async iterator of :class:`ChatChunk`. After the last chunk, ``response`` holds the whole
    answer with deployment, attempts, usage and cost (``None`` if the stream failed)."""

    def __init__(self, agen: AsyncIterator[ChatChunk] | None = None) -> None:
        self._agen = agen
        self.response: ChatResponse | None = None
        #: (usage, cost, deployment) generated upstream before the caller closed the stream early
        self.partial: tuple[Usage, float, str] | None = None

    def __aiter__(self) -> ChatStream:
        return self

    def __anext__(self) -> Awaitable[ChatChunk]:
        if self._agen is None:
            raise RuntimeError("ChatStream has no chunks attached")
        return self._agen.__anext__()

    def attach(self, agen: AsyncIterator[ChatChunk]) -> ChatStream:
        """Give the stream the chunks it will yield (for a producer that needs the stream first)."""
        self._agen = agen
        return self

    async def aclose(self) -> None:
        aclose = getattr(self._agen, "aclose", None)
        if aclose is not None:
            await aclose()

    async def collect(self) -> ChatResponse:
        """Drain the stream and return the final response."""
        async for _ in self:
            pass
        assert self.response is not None
        return self.response


# -- sync twin ---------------------------------------------------------------------------------------


class SyncChatStream:
    """Iterate a :class:`ChatStream` from sync code; ``response`` as on the async stream."""

    def __init__(self, stream: ChatStream, portal: Portal) -> None:
        self._stream = stream
        self._portal = portal

    def __iter__(self) -> Iterator[ChatChunk]:
        return self._portal.iterate(self._stream)

    @property
    def response(self) -> ChatResponse | None:
        return self._stream.response

    def collect(self) -> ChatResponse:
        for _ in self:
            pass
        assert self.response is not None
        return self.response


__all__ = [
    "SyncChatStream","ChatStream", "Accumulator", "RESUME_INSTRUCTION", "Seam", "resume_messages", "segment_usage", "splice"]
