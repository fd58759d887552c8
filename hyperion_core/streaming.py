"""Stream records: the caller-facing :class:`ChatStream` and the pure accumulator behind it.

Stream resume asks the next deployment to continue a cut answer: the conversation is extended with
the partial answer as an assistant turn and :data:`RESUME_INSTRUCTION` as a user turn, and what comes
back is spliced in, so the caller sees one uninterrupted stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from .types import ChatChunk, ChatResponse, Message, ToolCall, Usage

RESUME_INSTRUCTION = (
    "Continue your previous answer exactly where it stopped. Do not repeat anything already written "
    "and do not add any preamble."
)


def resume_messages(messages: list[Message], partial: str) -> list[Message]:
    """The conversation that asks a deployment to continue ``partial``."""
    return [*messages, {"role": "assistant", "content": partial}, {"role": "user", "content": RESUME_INSTRUCTION}]


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
        self._agen = agen  # type: ignore[assignment]
        self.response: ChatResponse | None = None
        #: (usage, cost, deployment) generated upstream before the caller closed the stream early
        self.partial: tuple[Usage, float, str] | None = None

    def __aiter__(self) -> ChatStream:
        return self

    def __anext__(self):
        return self._agen.__anext__()

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


__all__ = ["ChatStream", "Accumulator", "RESUME_INSTRUCTION", "resume_messages", "segment_usage"]
