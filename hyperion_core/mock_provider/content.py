"""Deterministic reply content: answers, token counts, tool calls, continuation.

Contract (identical on every wire, independent of model and deployment):

* **Prompt** = text of the last ``user`` message (``system`` text is ignored).
* ``answer_for(prompt)`` = ``"Mock answer to: <prompt>."`` + 20 filler words
  chosen from :data:`FILLER` by the sha256 of the prompt.
* **Tokens**: one token per whitespace-separated word (``count_tokens``).
  Prompt tokens = words of every message (text and tool results) + words of the
  top-level system prompt + 3 per message. Completion tokens = words of the
  text actually returned (for tool calls: words of ``name`` + JSON arguments).
* **Reply selection**, first that applies:

  1. a scripted rule matching the prompt (``rules.RuleBook``);
  2. with tools present and tool choice not ``none``: if the last message is a
     tool result -> ``"Tool result: <result>"``; else if the choice forces a
     tool or the prompt mentions a tool's name -> call it (the forced or
     mentioned tool, else the first) with arguments synthesised from its schema
     (``schema_synth.synthesize``);
  3. ``json_schema`` structured output -> synthesised JSON; ``json_object`` ->
     ``{"answer": answer_for(prompt)}``;
  4. ``answer_for(prompt)``.

* **Continuation**: if the conversation ends with an assistant message ``P``
  (prefill), or with assistant ``P`` + a user message containing "continue",
  the prompt is the last user message before ``P`` and, when the full reply
  starts with ``P``, only the remainder is returned. A stream cut after some
  chunks and resumed elsewhere therefore splices to exactly the full answer.
  With ``overlap`` (the ``resume_overlap`` fault) the remainder starts that many
  words earlier, repeating the end of ``P`` as real models often do.
* ``stop`` sequences cut the text at the earliest match (finish
  ``stop_sequence``); then ``max_tokens`` keeps that many words (finish ``length``).
* Streams send one word per chunk: ``word_chunks`` splits text into pieces
  carrying their leading whitespace, so ``"".join(word_chunks(t)) == t``.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import orjson

from .common import ChatRequest, Message, Reply, Tool, ToolCall
from .rules import Rule, RuleBook
from .schema_synth import synthesize

# fmt: off
FILLER: tuple[str, ...] = (
    "alpha", "amber", "anchor", "atlas", "beacon", "birch", "breeze", "canyon",
    "cedar", "cobalt", "comet", "coral", "delta", "dune", "echo", "ember",
    "falcon", "fern", "fjord", "flint", "galaxy", "garnet", "glacier", "harbor",
    "hazel", "horizon", "indigo", "iris", "jade", "juniper", "kestrel", "lagoon",
    "lantern", "lilac", "maple", "meadow", "meteor", "mosaic", "nectar", "nova",
    "oasis", "onyx", "orchid", "pebble", "pine", "prairie", "quartz", "quill",
    "raven", "reef", "ridge", "saffron", "sage", "sierra", "summit", "tundra",
    "umber", "valley", "velvet", "willow", "zenith", "zephyr", "orbit", "timber",
)
# fmt: on
FILLER_WORDS = 20
_CHUNK = re.compile(r"\s*\S+(?:\s+$)?")
_CONTINUE = re.compile(r"\bcontinue\b", re.IGNORECASE)


@lru_cache(maxsize=4096)
def answer_for(prompt: str) -> str:
    digest = hashlib.sha256(prompt.encode()).digest()
    words = " ".join(FILLER[b % len(FILLER)] for b in digest[:FILLER_WORDS])
    return f"Mock answer to: {prompt}. {words}"


def count_tokens(text: str) -> int:
    return len(text.split())


def word_chunks(text: str) -> list[str]:
    return _CHUNK.findall(text)


def prompt_tokens(req: ChatRequest) -> int:
    total = count_tokens(req.system)
    for m in req.messages:
        total += count_tokens(m.text) + 3
        if m.tool_result:
            total += count_tokens(m.tool_result)
    return total


def conversation_prompt(messages: list[Message]) -> tuple[str, str]:
    """``(prompt, prefix)``: the prompt to answer and the assistant text already produced (continuation)."""
    turns = messages
    if (
        len(turns) >= 2
        and turns[-1].role == "user"
        and turns[-2].role == "assistant"
        and turns[-2].text
        and _CONTINUE.search(turns[-1].text)
    ):
        turns = turns[:-1]  # "..., assistant P, user 'continue'" is answered like a prefill of P
    prefix = ""
    if turns and turns[-1].role == "assistant" and turns[-1].text:
        prefix, turns = turns[-1].text, turns[:-1]
    prompt = next((m.text for m in reversed(turns) if m.role == "user"), "")
    return prompt, prefix


def _call_id(name: str, prompt: str, index: int) -> str:
    return hashlib.sha1(f"{index}:{name}:{prompt}".encode()).hexdigest()[:24]


def _tool_calls_reply(calls: list[tuple[str, dict]], prompt: str) -> Reply:
    tool_calls = [ToolCall(_call_id(name, prompt, i), name, args) for i, (name, args) in enumerate(calls)]
    tokens = sum(count_tokens(c.name) + count_tokens(orjson.dumps(c.arguments).decode()) for c in tool_calls)
    return Reply(text="", finish="tool_calls", tool_calls=tool_calls, completion_tokens=tokens)


def _pick_tool(req: ChatRequest, prompt: str) -> Tool | None:
    by_name = {t.name: t for t in req.tools}
    mentioned = next((t for t in req.tools if t.name and t.name in prompt), None)
    if req.tool_name in by_name:
        return by_name[req.tool_name]
    if req.tool_choice == "required":
        return mentioned or req.tools[0]
    return mentioned


def _full_text(req: ChatRequest, prompt: str, rule: Rule | None) -> str:
    if rule is not None:
        return rule.content if rule.content is not None else orjson.dumps(rule.json).decode()
    if req.json_schema is not None:
        return orjson.dumps(synthesize(req.json_schema, prompt)).decode()
    if req.json_object:
        return orjson.dumps({"answer": answer_for(prompt)}).decode()
    return answer_for(prompt)


def _limit(text: str, req: ChatRequest) -> Reply:
    """Apply ``stop`` sequences, then ``max_tokens``."""
    finish, stop_sequence = "stop", None
    hits = [(text.find(s), s) for s in req.stop if s and s in text]
    if hits:
        index, stop_sequence = min(hits)
        text, finish = text[:index], "stop_sequence"
    if req.max_tokens is not None:
        chunks = word_chunks(text)
        if len(chunks) > req.max_tokens:
            text, finish, stop_sequence = "".join(chunks[: req.max_tokens]), "length", None
    return Reply(text=text, finish=finish, stop_sequence=stop_sequence, completion_tokens=count_tokens(text))


def _remainder(full: str, prefix: str, overlap: int) -> str:
    """``full`` after ``prefix``, starting ``overlap`` words early."""
    start = len(prefix)
    if overlap > 0:
        start -= len("".join(word_chunks(prefix)[-overlap:]))
    return full[start:]


def build_reply(req: ChatRequest, rules: RuleBook | None = None, *, overlap: int = 0) -> Reply:
    """The deterministic reply to ``req`` (see the module docstring for the rules)."""
    prompt, prefix = conversation_prompt(req.messages)
    rule = rules.take(prompt, req.deployment) if rules is not None else None
    reply: Reply | None = None
    if rule is not None and rule.tool_calls is not None:
        reply = _tool_calls_reply([(c["name"], c.get("arguments", {})) for c in rule.tool_calls], prompt)
    elif rule is None and req.tools and req.tool_choice != "none":
        last = req.messages[-1] if req.messages else None
        if last is not None and last.tool_result is not None:
            reply = _limit(f"Tool result: {last.tool_result}", req)
        elif (tool := _pick_tool(req, prompt)) is not None:
            reply = _tool_calls_reply([(tool.name, synthesize(tool.schema, prompt))], prompt)
    if reply is None:
        full = _full_text(req, prompt, rule)
        reply = _limit(_remainder(full, prefix, overlap) if prefix and full.startswith(prefix) else full, req)
    reply.prompt_tokens = prompt_tokens(req)
    return reply
