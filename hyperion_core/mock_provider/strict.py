"""Strict request validation: the mock answers a wrong body as the real API would.

The accepted fields, required fields and basic types of every endpoint come from
``wire_schemas.json``, generated from the official SDKs' request types by ``_gen_schema`` (a test
fails when the file drifts from the installed SDKs). :func:`validate` walks a request body against
it and returns the first :class:`Issue`; each wire module renders an issue as its provider's 400
(``openai_wire.invalid_body`` etc.). On top of the schema, :func:`semantic_issue` checks the few
cross-field rules the real APIs enforce (tool results answering tool calls, Anthropic's thinking
budget) — only rules the providers are known to reject.

The schema is loaded and compiled once, on first use, into small node objects whose ``check``
returns ``None`` or an ``Issue``; checking a typical chat body costs a few tens of microseconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("wire_schemas.json")

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Issue:
    """What is wrong with a body. ``kind``: unknown | missing | type | value | tag | rule."""

    kind: str
    path: Path_
    expected: Any = None  # type name ("str", "int", "num", "bool", "list", "object"), allowed values, tags
    value: Any = None
    key: str | None = None  # tag: the discriminating key
    message: str | None = None  # rule: the provider's message


_JSON_KIND = {
    str: "str",
    bool: "bool",
    int: "int",
    float: "num",
    list: "list",
    dict: "object",
    type(None): "null",
}


def json_kind(value: Any) -> str:
    return _JSON_KIND.get(type(value), "object")


# ------------------------------------------------------------------------------------------ nodes


class Node:
    kind = "any"

    def check(self, v: Any, path: Path_) -> Issue | None:
        return None

    def accepts_kind(self, v: Any) -> bool:
        return True


class Scalar(Node):
    def __init__(self, kind: str) -> None:
        self.kind = kind

    def accepts_kind(self, v: Any) -> bool:
        k = type(v)
        if self.kind == "num":
            return (k is int or k is float) and k is not bool
        if self.kind == "int":
            return k is int or (k is float and v.is_integer())
        return _JSON_KIND.get(k) == self.kind

    def check(self, v: Any, path: Path_) -> Issue | None:
        return None if self.accepts_kind(v) else Issue("type", path, self.kind, v)


class Lit(Node):
    kind = "value"

    def __init__(self, values: list[Any], fold: bool) -> None:
        self.values = values
        self.fold = fold
        self.set = frozenset(
            (x.lower() if fold and isinstance(x, str) else x) for x in values if x is not None
        )

    def accepts_kind(self, v: Any) -> bool:
        return any(type(x) is type(v) for x in self.values)

    def check(self, v: Any, path: Path_) -> Issue | None:
        key = v.lower() if self.fold and isinstance(v, str) else v
        if isinstance(key, (list, dict)) or key not in self.set:
            return Issue("value", path, self.values, v)
        return None


class ListOf(Node):
    kind = "list"

    def __init__(self, item: Node) -> None:
        self.item = item

    def accepts_kind(self, v: Any) -> bool:
        return type(v) is list

    def check(self, v: Any, path: Path_) -> Issue | None:
        if type(v) is not list:
            return Issue("type", path, "list", v)
        item = self.item
        for i, x in enumerate(v):
            if (issue := item.check(x, (*path, i))) is not None:
                return issue
        return None


class MapOf(Node):
    kind = "object"

    def __init__(self, value: Node) -> None:
        self.value = value

    def accepts_kind(self, v: Any) -> bool:
        return type(v) is dict

    def check(self, v: Any, path: Path_) -> Issue | None:
        if type(v) is not dict:
            return Issue("type", path, "object", v)
        for k, x in v.items():
            if (issue := self.value.check(x, (*path, k))) is not None:
                return issue
        return None


class Obj(Node):
    kind = "object"

    def __init__(self, name: str) -> None:
        self.name = name
        self.fields: dict[str, Node] = {}
        self.required: tuple[str, ...] = ()
        self.alternatives: dict[str, str] = {}  # Gemini: snake_case <-> camelCase spelling of a required key
        #: an explicit null on an optional field means "not given" (OpenAI, Gemini); Anthropic (pydantic)
        #: only takes null where the SDK type is Optional
        self.null_is_absent = False

    def accepts_kind(self, v: Any) -> bool:
        return type(v) is dict

    def check(self, v: Any, path: Path_) -> Issue | None:
        if type(v) is not dict:
            return Issue("type", path, "object", v)
        fields = self.fields
        for k, x in v.items():
            node = fields.get(k)
            if node is None:
                return Issue("unknown", (*path, k))
            if x is None and node is not ANY:  # explicit null: allowed where the SDK says Optional
                if not _allows_null(node) and not (self.null_is_absent and k not in self.required):
                    return Issue("type", (*path, k), node.kind, None)
                continue
            if (issue := node.check(x, (*path, k))) is not None:
                return issue
        for k in self.required:
            if k not in v and self.alternatives.get(k) not in v:
                return Issue("missing", (*path, k))
        return None


class AnyOf(Node):
    def __init__(self, options: list[Node]) -> None:
        self.options = options
        self.nullable = any(isinstance(o, Scalar) and o.kind == "null" for o in options)
        self.discriminator: str | None = None
        self.by_tag: dict[Any, list[Obj]] = {}

    @property
    def kind(self) -> str:  # the first non-null option's kind names the expectation
        return next((o.kind for o in self.options if o.kind != "null"), "any")

    def finish(self) -> None:
        """Find a discriminating key (``type`` / ``role``) shared by every object option as a literal."""
        objs = [o for o in self.options if isinstance(o, Obj)]
        if len(objs) < 2:
            return
        for key in ("type", "role"):
            if all(isinstance(o.fields.get(key), Lit) for o in objs):
                self.discriminator = key
                for o in objs:
                    for tag in o.fields[key].values:  # type: ignore[union-attr]
                        self.by_tag.setdefault(tag, []).append(o)
                return

    def accepts_kind(self, v: Any) -> bool:
        return any(o.accepts_kind(v) for o in self.options)

    def check(self, v: Any, path: Path_) -> Issue | None:
        if v is None and self.nullable:
            return None
        candidates = [o for o in self.options if o.accepts_kind(v)]
        if not candidates:
            return Issue("type", path, [o.kind for o in self.options if o.kind != "null"], v)
        if self.discriminator is not None and type(v) is dict and any(isinstance(o, Obj) for o in candidates):
            key = self.discriminator
            if key not in v:
                non_obj = [o for o in candidates if not isinstance(o, Obj)]
                if not non_obj:
                    return Issue("missing", (*path, key))
                candidates = non_obj
            else:
                tagged = self.by_tag.get(v[key]) if isinstance(v[key], (str, int, bool)) else None
                if not tagged:
                    return Issue("tag", path, list(self.by_tag), v[key], key=key)
                candidates = tagged  # type: ignore[assignment]
        first: Issue | None = None
        for o in candidates:
            issue = o.check(v, path)
            if issue is None:
                return None
            first = first or issue
        return first


ANY = Node()


def _allows_null(node: Node) -> bool:
    return (isinstance(node, AnyOf) and node.nullable) or (isinstance(node, Lit) and None in node.values)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


class Compiler:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.defs = doc["defs"]
        self.objs: dict[str, Obj] = {}
        self.unions: list[AnyOf] = []

    def obj(self, name: str) -> Obj:
        if name in self.objs:
            return self.objs[name]
        node = self.objs[name] = Obj(name)
        d = self.defs[name]
        fold = bool(d.get("case_insensitive_enums"))
        node.fields = {k: self.node(s, fold) for k, s in d["fields"].items()}
        node.required = tuple(d["required"])
        node.null_is_absent = not name.startswith("anthropic.")
        if "required_any_spelling" in d:
            node.alternatives = {k: _camel(k) for k in node.required}
        return node

    def node(self, spec: Any, fold: bool = False) -> Node:
        if isinstance(spec, str):
            return ANY if spec == "any" else Scalar(spec)
        if "lit" in spec:
            return Lit(spec["lit"], fold)
        if "list" in spec:
            return ListOf(self.node(spec["list"], fold))
        if "map" in spec:
            return MapOf(self.node(spec["map"], fold))
        if "ref" in spec:
            return self.obj(spec["ref"])
        union = AnyOf([self.node(s, fold) for s in spec["any_of"]])
        self.unions.append(union)
        return union


@lru_cache(maxsize=1)
def endpoints() -> dict[str, Obj]:
    """Endpoint name (``openai.chat``, ``anthropic.messages``, ``gemini.generateContent``, ...) -> root node."""
    doc = json.loads(SCHEMA_FILE.read_text())
    c = Compiler(doc)
    roots = {ep: c.obj(name) for ep, name in doc["endpoints"].items()}
    for union in c.unions:  # every Obj is complete now
        union.finish()
    return roots


def validate(endpoint: str, body: dict[str, Any]) -> Issue | None:
    """The first problem with ``body`` for ``endpoint``, or None."""
    return endpoints()[endpoint].check(body, ())


# ------------------------------------------------------------------------------ semantic rules


def openai_rules(body: dict[str, Any]) -> Issue | None:
    """Tool messages must answer the preceding assistant ``tool_calls``, and every call must be answered."""
    pending: list[str] = []
    for i, m in enumerate(body.get("messages") or ()):
        role = m.get("role")
        if role == "tool":
            if m.get("tool_call_id") not in pending:
                return Issue(
                    "rule",
                    ("messages", i, "role"),
                    message="Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                    "message with 'tool_calls'.",
                )
            pending.remove(m.get("tool_call_id"))
            continue
        if pending:
            return _unanswered(pending, ("messages", i - 1))
        if role == "assistant":
            pending = [tc.get("id") for tc in m.get("tool_calls") or () if isinstance(tc, dict)]
    return None


def _unanswered(ids: list[str], path: Path_) -> Issue:
    return Issue(
        "rule",
        ("messages",),
        message="An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(ids)}",
    )


def _blocks(m: dict[str, Any]) -> list[dict[str, Any]]:
    content = m.get("content")
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def anthropic_rules(body: dict[str, Any]) -> Issue | None:
    messages = body.get("messages") or ()
    if not messages:
        return Issue("rule", ("messages",), message="messages: at least one message is required")
    prev_uses: list[str] = []
    for i, m in enumerate(messages):
        blocks = _blocks(m)
        results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
        stray = [r for r in results if r not in prev_uses]
        if stray:
            return Issue(
                "rule",
                ("messages", i, "content", 0),
                message=f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{stray[0]}. Each `tool_result` block must have a corresponding `tool_use` block in the "
                "previous message.",
            )
        missing = [u for u in prev_uses if u not in results]
        if missing:
            return Issue(
                "rule",
                ("messages", i),
                message=f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately "
                f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                "`tool_result` block in the next message.",
            )
        prev_uses = (
            [b.get("id") for b in blocks if b.get("type") == "tool_use"]
            if m.get("role") == "assistant"
            else []
        )
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens") or 0
        if budget < 1024:
            return Issue(
                "rule",
                ("thinking", "enabled", "budget_tokens"),
                message="thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
            )
        if body.get("max_tokens", 0) <= budget:
            return Issue(
                "rule", ("max_tokens",), message="`max_tokens` must be greater than `thinking.budget_tokens`."
            )
        if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
            return Issue(
                "rule",
                ("tool_choice",),
                message="Thinking may not be enabled when tool_choice forces tool use.",
            )
        if body.get("temperature") not in (None, 1, 1.0):
            return Issue(
                "rule",
                ("temperature",),
                message="`temperature` may only be set to 1 when thinking is enabled. Please consult our "
                "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking",
            )
    return None


def gemini_rules(body: dict[str, Any]) -> Issue | None:
    """A ``functionResponse`` turn must come right after the ``functionCall`` turn it answers."""
    contents = body.get("contents") or ()
    for i, c in enumerate(contents):
        parts = [p for p in c.get("parts") or () if isinstance(p, dict)]
        if any("functionResponse" in p or "function_response" in p for p in parts):
            prev = [p for p in (contents[i - 1].get("parts") or ()) if isinstance(p, dict)] if i else []
            if not any("functionCall" in p or "function_call" in p for p in prev):
                return Issue(
                    "rule",
                    ("contents", i),
                    message="Please ensure that function response turn comes immediately after a function "
                    "call turn.",
                )
    return None
