"""Reversible masking: typed placeholders (``<EMAIL_1>``) for one request, restored in its answer.

A :class:`Masker` lives on one request's context and nowhere else: the mapping is never stored,
cached or audited. What the provider sees, what the cache stores and what the audit log records all
hold placeholders; the caller's answer has its values back — whole answers, tool-call arguments
(JSON-escaped), and streams through :class:`StreamGuard`, which holds back a short look-behind
window so a placeholder or a card number split across chunks is still whole when it is handled.
A cache hit is restored with the *current* request's mapping, so it can never carry another
request's values (a placeholder the mapping does not know stays as it is).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace

from ..types import ChatChunk, ChatResponse, ToolCall, ToolCallDelta
from .pii import Finding

_PLACEHOLDER = re.compile(r"<([A-Z]+)_(\d{1,4})>")
#: characters that may start a value the output guards care about (or a placeholder)
_TRIGGER = re.compile(r"[<@:=_\d]")


class Masker:
    """One request's placeholder mapping."""

    __slots__ = ("by_value", "by_token", "counts")

    def __init__(self) -> None:
        self.by_value: dict[tuple[str, str], str] = {}
        self.by_token: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self.by_token)

    def token(self, typ: str, value: str) -> str:
        key = (typ, value)
        tok = self.by_value.get(key)
        if tok is None:
            n = self.counts.get(typ, 0) + 1
            self.counts[typ] = n
            tok = f"<{typ}_{n}>"
            self.by_value[key] = tok
            self.by_token[tok] = value
        return tok

    def mask(self, text: str, findings: list[Finding]) -> str:
        out, pos = [], 0
        for f in findings:
            out.append(text[pos : f.start])
            out.append(self.token(f.type, text[f.start : f.end]))
            pos = f.end
        out.append(text[pos:])
        return "".join(out)

    def restore(self, text: str | None) -> str | None:
        if not text or "<" not in text or not self.by_token:
            return text
        get = self.by_token.get
        return _PLACEHOLDER.sub(lambda m: get(m.group(0), m.group(0)), text)

    def restore_json(self, text: str) -> str:
        """Restore inside JSON text (tool-call arguments): values are JSON-string escaped."""
        if not text or "<" not in text or not self.by_token:
            return text
        get = self.by_token.get

        def sub(m: re.Match[str]) -> str:
            v = get(m.group(0))
            return m.group(0) if v is None else json.dumps(v, ensure_ascii=False)[1:-1]

        return _PLACEHOLDER.sub(sub, text)

    def restore_response(self, resp: ChatResponse) -> ChatResponse:
        if not self.by_token:
            return resp
        content = self.restore(resp.content)
        calls = tuple(ToolCall(t.id, t.name, self.restore_json(t.arguments)) for t in resp.tool_calls)
        if content == resp.content and calls == resp.tool_calls:
            return resp
        return replace(resp, content=content, tool_calls=calls)


#: ``(text) -> list of (start, end, type)`` of values in an answer the output policy acts on
Detect = Callable[[str], list[Finding]]
#: ``(findings) -> replacement text per finding`` (redact) or raises (block); records what it did
Act = Callable[[list[Finding], str], list[str | None]]


class StreamGuard:
    """A stream's chunk filter: restores placeholders and applies output checks incrementally.

    Text with nothing that could start a value (no digit, ``@``, ``<``, ``:``, ``=``, ``_``) is passed
    on at once except its last, possibly unfinished word; otherwise the last ``window`` characters are
    held back and the text is checked in batches of ``batch`` characters. Held text is released with
    the chunk that carries the finish reason, or by :meth:`flush` when the stream ends.
    """

    __slots__ = ("masker", "detect", "act", "window", "batch", "buf", "tool_bufs")

    def __init__(self, masker: Masker | None, detect: Detect | None = None, act: Act | None = None, *,
                 window: int = 64, batch: int = 32) -> None:
        self.masker = masker
        self.detect = detect
        self.act = act
        self.window = window
        self.batch = batch
        self.buf = ""
        self.tool_bufs: dict[int, str] = {}

    def __call__(self, chunk: ChatChunk) -> ChatChunk | None:
        final = chunk.finish_reason is not None
        text = self._text(chunk.content, final) if (chunk.content or self.buf) else ""
        calls = chunk.tool_calls
        if calls or (final and self.tool_bufs):
            calls = self._tools(calls, final)
        if text == chunk.content and calls is chunk.tool_calls:
            return chunk
        if not text and not calls and chunk.finish_reason is None and chunk.usage is None:
            return None
        return replace(chunk, content=text, tool_calls=calls)

    def flush(self) -> ChatChunk | None:
        text = self._text("", True) if self.buf else ""
        calls = self._tools((), True) if self.tool_bufs else ()
        return ChatChunk(content=text, tool_calls=calls) if text or calls else None

    # -- text ----------------------------------------------------------------------------------------
    def _text(self, piece: str, final: bool) -> str:
        buf = self.buf + piece
        if not buf:
            return ""
        if _TRIGGER.search(buf) is None:
            if final:
                self.buf = ""
                return buf
            cut = max(buf.rfind(" "), buf.rfind("\n")) + 1  # hold the last word: a value may start there
            self.buf = buf[cut:]
            return buf[:cut]
        if final:
            cut = len(buf)
        elif len(buf) < self.window + self.batch:
            self.buf = buf
            return ""
        else:
            cut = len(buf) - self.window
        return self._release(buf, cut, final)

    def _release(self, buf: str, cut: int, final: bool) -> str:
        spans: list[tuple[int, int, str | None]] = []
        masker = self.masker
        if masker is not None and masker.by_token and "<" in buf:
            for m in _PLACEHOLDER.finditer(buf):
                spans.append((m.start(), m.end(), masker.by_token.get(m.group(0), m.group(0))))
            if not final:  # an unfinished placeholder at the end stays held
                lt = buf.rfind("<")
                if lt >= 0 and ">" not in buf[lt:] and len(buf) - lt <= 24:
                    cut = min(cut, lt)
        if self.detect is not None:
            found = self.detect(buf)
            if found:
                for f in found:
                    if f.start < cut < f.end:
                        cut = f.start
                found = [f for f in found if f.end <= cut and not any(a < f.end and f.start < b for a, b, _ in spans)]
                if found and self.act is not None:
                    for f, rep in zip(found, self.act(found, buf)):
                        if rep is not None:
                            spans.append((f.start, f.end, rep))
        for a, b, _ in spans:
            if a < cut < b:
                cut = a
        spans = sorted(s for s in spans if s[1] <= cut)
        out, pos = [], 0
        for a, b, rep in spans:
            if a < pos:
                continue
            out.append(buf[pos:a])
            out.append(rep if rep is not None else buf[a:b])
            pos = b
        out.append(buf[pos:cut])
        self.buf = buf[cut:]
        return "".join(out)

    # -- tool-call arguments ---------------------------------------------------------------------------
    def _tools(self, calls: tuple[ToolCallDelta, ...], final: bool) -> tuple[ToolCallDelta, ...]:
        masker = self.masker
        if masker is None or not masker.by_token:
            return calls
        out: list[ToolCallDelta] = []
        done: set[int] = set()
        for d in calls:
            buf = self.tool_bufs.get(d.index, "") + d.arguments
            cut = len(buf)
            if not final:
                lt = buf.rfind("<")
                if lt >= 0 and ">" not in buf[lt:] and len(buf) - lt <= 24:
                    cut = lt
            self.tool_bufs[d.index] = buf[cut:]
            out.append(replace(d, arguments=masker.restore_json(buf[:cut])))
            done.add(d.index)
        if final:
            for i, rest in list(self.tool_bufs.items()):
                if rest and i not in done:
                    out.append(ToolCallDelta(index=i, arguments=masker.restore_json(rest)))
            self.tool_bufs.clear()
        return tuple(out)


__all__ = ["Masker", "StreamGuard"]
