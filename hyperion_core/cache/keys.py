"""Cache keys (pure): the canonical form of everything that changes a model's answer, and its hash.

Two requests get the same exact key when they differ only in formatting: JSON whitespace and key
order (tool arguments, tool schemas, ``response_format``, ``tool_choice``, extra parameters), a
string content versus a list of text parts, ``None`` versus an absent field, ``1`` versus ``1.0`` for
temperature/top_p, a single stop string versus a one-item list, and the values of tool-call ids
(providers mint them at random; what counts is which tool result answers which call, so ids are
replaced by their order of first appearance). Anything else that reaches the model — route, role,
text, names, tool calls, every sampling parameter, tools, tool choice, response format, extra
parameters — is part of the key, and so are the tenant scope and the request's cache namespace.

The route part of every key is the route's name and :func:`route_fingerprint` (what serves it), when the
gateway gives one. The semantic tier partitions entries by :func:`semantic_partition_key` (everything but the last user
turn's text) and embeds :func:`semantic_text` (that text).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ..errors import InvalidRequestError
from ..types import Caller, ChatRequest, Message
from .config import Scope

#: bump when the canonical form changes: old entries then simply miss
KEY_VERSION = 1
ANONYMOUS = "anonymous"
_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
_HOLE = {"$semantic": "last-user-text"}  # stands in for the embedded text in the partition form


def _default(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)  # pydantic models (e.g. a response_format schema class)
    if callable(dump):
        return dump(mode="json")
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).hex()
    return f"{type(obj).__qualname__}:{obj!r}"


def canonical_json(obj: Any) -> bytes:
    """Compact JSON with sorted keys: equal for values that differ only in formatting. What JSON cannot
    carry (lone surrogates, integers past 64 bits, nesting deeper than 254) is the caller's error."""
    try:
        return orjson.dumps(obj, default=_default, option=_OPTS)
    except orjson.JSONEncodeError as exc:
        raise InvalidRequestError(f"the request cannot be encoded as JSON: {exc}") from None


def digest(data: bytes, size: int = 16) -> str:
    return hashlib.blake2b(data, digest_size=size).hexdigest()


# -- scope -----------------------------------------------------------------------------------


def scope_of(caller: Caller | None, scope: Scope) -> str:
    """The tenant a request's entries belong to.

    ``key``: the virtual key (its id; a bare key secret is hashed, never stored); ``team``: the
    caller's team, or its key when it has no team; ``shared``: every caller of the route. A caller
    with no key falls back to its ``user``; a request without a caller is ``anonymous`` and shares
    only with other anonymous requests, whatever the scope.
    """
    if caller is None:
        return ANONYMOUS
    if scope == "shared":
        return "shared"
    if scope == "team" and caller.team:
        return f"team:{caller.team}"
    if caller.key_id:
        return f"key:{caller.key_id}"
    if caller.virtual_key:
        return f"vk:{digest(caller.virtual_key.encode(), 12)}"
    if caller.user:
        return f"user:{caller.user}"
    return ANONYMOUS


def scope_hash(scope: str) -> str:
    """A short hash of the scope: the Redis Cluster hash tag and the semantic tier's tenant tag."""
    return digest(scope.encode(), 8)


# -- messages --------------------------------------------------------------------------------


def text_of(content: Any) -> str | None:
    """The text of a content that is only text (a string or text parts, joined with ""), else None."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text":
                texts.append(part.get("text") or "")
            else:
                return None
        return "".join(texts)
    return None


def _content(content: Any) -> Any:
    text = text_of(content)
    if text is not None:
        return text or None
    if isinstance(content, list):  # mixed parts (images, audio, files): kept in order
        return [
            {"type": "text", "text": p.get("text") or ""} if isinstance(p, dict) and p.get("type") == "text" else p
            for p in content
        ]
    return content


def _arguments(args: Any) -> Any:
    if isinstance(args, (str, bytes)):
        try:
            return {"json": orjson.loads(args)}
        except orjson.JSONDecodeError:
            return {"raw": args if isinstance(args, str) else args.decode(errors="replace")}
    return {"json": args}


class _Ids:
    """Tool-call ids -> their order of first appearance in the conversation."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: dict[Any, int] = {}

    def __call__(self, tc_id: Any) -> int | None:
        if tc_id is None:
            return None
        return self.seen.setdefault(tc_id, len(self.seen))


def _tool_call(tc: Any, ids: _Ids) -> dict[str, Any]:
    if not isinstance(tc, dict):  # a hyperion ToolCall
        return {"id": ids(getattr(tc, "id", None)), "type": "function", "name": getattr(tc, "name", None),
                "arguments": _arguments(getattr(tc, "arguments", None))}
    fn = tc.get("function") or {}
    out = {k: v for k, v in tc.items() if k not in ("id", "type", "function", "index") and v is not None}
    out.update(
        id=ids(tc.get("id")),
        type=tc.get("type") or "function",
        name=fn.get("name"),
        arguments=_arguments(fn.get("arguments")),
    )
    return out


_KNOWN = frozenset({"role", "content", "name", "tool_calls", "tool_call_id"})


def canonical_message(msg: Message, ids: _Ids) -> dict[str, Any]:
    out: dict[str, Any] = {"role": msg.get("role"), "content": _content(msg.get("content"))}
    if msg.get("name") is not None:
        out["name"] = msg["name"]
    if msg.get("tool_calls"):
        out["tool_calls"] = [_tool_call(tc, ids) for tc in msg["tool_calls"]]
    if msg.get("tool_call_id") is not None:
        out["tool_call_id"] = ids(msg["tool_call_id"])
    for k, v in msg.items():  # anything else a provider may read (audio, refusal, ...)
        if k not in _KNOWN and v is not None:
            out[k] = v
    return out


def canonical_messages(messages: Iterable[Message]) -> list[dict[str, Any]]:
    ids = _Ids()
    return [canonical_message(m, ids) for m in messages]


# -- requests --------------------------------------------------------------------------------


def _num(v: Any) -> Any:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def _params(req: ChatRequest) -> dict[str, Any]:
    stop = req.stop
    if isinstance(stop, str):
        stop = [stop]
    return {
        "temperature": _num(req.temperature),
        "top_p": _num(req.top_p),
        "max_tokens": req.max_tokens,
        "stop": list(stop) if stop else None,
        "seed": req.seed,
        "n": req.n,
        "tools": req.tools or None,
        "tool_choice": req.tool_choice,
        "response_format": req.response_format,
        "extra": req.extra or None,
    }


def _namespace(req: ChatRequest) -> str | None:
    return req.cache.namespace if req.cache is not None else None


def route_fingerprint(deployments: Iterable[Mapping[str, Any]]) -> str:
    """A short hash of what serves a route: each deployment's provider, model, endpoint and default
    parameters (never its credentials), in any order. Part of every key, so two gateways whose
    routes share a name but not their models never share answers, and a route whose models change
    starts with an empty cache instead of serving the old models' answers."""
    return digest(canonical_json(sorted(canonical_json(d) for d in deployments)), 8)


def canonical_form(req: ChatRequest, scope: str, route_id: str | None = None) -> bytes:
    """The canonical bytes behind :func:`exact_key` (useful for debugging a miss). ``route_id``:
    the route's name and fingerprint (default: its name alone)."""
    return canonical_json(
        {
            "v": KEY_VERSION,
            "tier": "exact",
            "route": route_id or req.route,
            "scope": scope,
            "namespace": _namespace(req),
            "messages": canonical_messages(req.messages),
            "params": _params(req),
        }
    )


def exact_key(req: ChatRequest, scope: str, route_id: str | None = None) -> str:
    """The exact tiers' key: 32 hex characters (BLAKE2b-128 of :func:`canonical_form`)."""
    return digest(canonical_form(req, scope, route_id))


def semantic_text(req: ChatRequest) -> str | None:
    """The text the semantic tier embeds: the last turn, when it is a user turn made only of text
    (None otherwise: the semantic tier then stays out of the way)."""
    if not req.messages:
        return None
    last = req.messages[-1]
    if last.get("role") != "user":
        return None
    text = text_of(last.get("content"))
    return text if text and text.strip() else None


def semantic_partition_key(req: ChatRequest, scope: str, route_id: str | None = None) -> str:
    """A hash of everything except the last user turn's text: earlier turns, system prompt, the
    last turn's other fields, parameters, tools, scope and namespace. Entries are only ever compared
    with entries of the same partition."""
    msgs = canonical_messages(req.messages)
    if msgs and msgs[-1].get("role") == "user":
        msgs[-1]["content"] = _HOLE
    return digest(
        canonical_json(
            {
                "v": KEY_VERSION,
                "tier": "semantic",
                "route": route_id or req.route,
                "scope": scope,
                "namespace": _namespace(req),
                "messages": msgs,
                "params": _params(req),
            }
        )
    )


__all__ = [
    "KEY_VERSION",
    "ANONYMOUS",
    "canonical_json",
    "canonical_form",
    "canonical_messages",
    "digest",
    "exact_key",
    "route_fingerprint",
    "scope_of",
    "scope_hash",
    "semantic_partition_key",
    "semantic_text",
    "text_of",
]
