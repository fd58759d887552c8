"""Pure checks of a chat request before anything is sent (the Validate and Admit stages use them):
what the request may contain, and how many output tokens it may cost at most. No I/O."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._text import suggest
from .errors import InvalidRequestError
from .providers.params import ANTHROPIC_THINKING_BUDGET, GEMINI_THINKING_BUDGET, KNOWN_PARAMS
from .types import ChatRequest

if TYPE_CHECKING:
    from .routing import RouteState

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

#: parameters a request may not set through ``extra``, and why
_RESERVED_PARAMS = {
    "model": "the route's deployments choose the model (and its price); call the route that serves the model you want",
    "messages": "pass messages as the messages argument",
    "stream": "call astream()/stream() to stream",
}

#: request parameters (OpenAI names, in ``ChatRequest.extra``) that also bound the answer's size
_OUTPUT_CAPS = ("max_completion_tokens", "max_output_tokens")


def output_cap(req: ChatRequest) -> int | None:
    """The most output tokens the request lets one answer have: ``max_tokens`` or an alias in
    ``extra`` (the largest when several are set), or None when it sets none."""
    cap = req.max_tokens
    if req.extra:
        for name in _OUTPUT_CAPS:
            v = req.extra.get(name)
            if type(v) is int and v > 0 and (cap is None or v > cap):
                cap = v
    return cap


def thinking_budget(req: ChatRequest) -> int:
    """Output tokens a request may spend thinking on top of its answer: an explicit budget (Anthropic
    ``thinking.budget_tokens``, Gemini ``thinkingConfig.thinkingBudget``) or the largest budget a
    wire gives its ``reasoning_effort`` (0 when it asks for none)."""
    extra = req.extra
    if not extra:
        return 0
    out = 0
    effort = extra.get("reasoning_effort")
    if isinstance(effort, str):
        out = max(ANTHROPIC_THINKING_BUDGET.get(effort, 0), GEMINI_THINKING_BUDGET.get(effort, 0))
    thinking = extra.get("thinking")
    if isinstance(thinking, dict) and type(thinking.get("budget_tokens")) is int:
        out = max(out, thinking["budget_tokens"])
    tc = extra.get("thinkingConfig")
    if isinstance(tc, dict) and type(tc.get("thinkingBudget")) is int:
        out = max(out, tc["thinkingBudget"])
    return out


def answers(req: ChatRequest) -> int:
    """How many answers one call asks for (``n`` / Gemini ``candidateCount``)."""
    n = req.n if type(req.n) is int and req.n > 1 else 1
    cc = req.extra.get("candidateCount") if req.extra else None
    return max(n, cc) if type(cc) is int else n


def validate_chat(rs: RouteState, req: ChatRequest) -> None:
    """Refuse what no deployment should be sent, naming the problem; apply the route's defaults."""
    msgs = req.messages
    if not isinstance(msgs, list) or not msgs:
        raise InvalidRequestError("messages: must be a non-empty list of messages", route=req.route)
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise InvalidRequestError(
                f"messages[{i}]: must be a dict with 'role' and 'content', got {type(m).__name__}", route=req.route
            )
        role = m.get("role")
        if role not in _ROLES:
            raise InvalidRequestError(
                f"messages[{i}].role: unknown role {role!r}" + suggest(str(role), set(_ROLES)), route=req.route
            )
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise InvalidRequestError(
                f"messages[{i}].content: must be a string or a list of parts, got {type(content).__name__}",
                route=req.route,
            )
    if req.max_tokens is not None and (type(req.max_tokens) is not int or not 1 <= req.max_tokens < 2**31):
        raise InvalidRequestError(f"max_tokens: must be a positive integer, got {req.max_tokens!r}", route=req.route)
    for name in ("temperature", "top_p"):
        v = getattr(req, name)
        if v is not None and (type(v) not in (int, float) or not 0 <= v <= (2 if name == "temperature" else 1)):
            raise InvalidRequestError(
                f"{name}: must be a number from 0 to {2 if name == 'temperature' else 1}, got {v!r}", route=req.route
            )
    for name in ("n", "seed"):
        v = getattr(req, name)
        if v is not None and (type(v) is not int or (name == "n" and v < 1) or not -(2**63) <= v < 2**63):
            raise InvalidRequestError(f"{name}: must be {'a positive ' if name == 'n' else 'an '}integer, got {v!r}",
                                      route=req.route)
    if req.stop is not None and (not isinstance(req.stop, list) or not all(isinstance(x, str) for x in req.stop)):
        raise InvalidRequestError(f"stop: must be a string or a list of strings, got {req.stop!r}", route=req.route)
    if req.tools is not None and (not isinstance(req.tools, list) or not all(isinstance(t, dict) for t in req.tools)):
        raise InvalidRequestError("tools: must be a list of tool definitions (dicts)", route=req.route)
    if req.extra:
        check_extra(rs, req)
    if req.max_tokens is None and rs.cfg.default_max_tokens and not output_cap(req):
        req.max_tokens = rs.cfg.default_max_tokens  # enforced upstream, so budgets may reserve just this
    if req.max_retries is not None and (type(req.max_retries) is not int or req.max_retries < 0):
        raise InvalidRequestError(f"max_retries: must be an integer >= 0, got {req.max_retries!r}", route=req.route)


def check_extra(rs: RouteState, req: ChatRequest) -> None:
    """Extra parameters reach the provider: the deployment owns ``model`` (a caller's ``model`` would
    be billed at the route's price), and a name no wire knows is refused unless the route allows it
    (``allow_params``) — never silently sent or silently dropped."""
    allowed = rs.cfg.allow_params
    for name in req.extra:
        if name in _RESERVED_PARAMS:
            raise InvalidRequestError(f"{name}: {_RESERVED_PARAMS[name]}", route=req.route)
        if name not in KNOWN_PARAMS and name not in allowed and "*" not in allowed:
            raise InvalidRequestError(
                f"unknown request parameter '{name}'" + (suggest(name, set(KNOWN_PARAMS)) or "")
                + f" (route '{req.route}' takes the OpenAI Chat Completions parameters and each wire's own; "
                "list others in its allow_params)",
                route=req.route,
            )



__all__ = ["output_cap", "thinking_budget", "answers", "validate_chat", "check_extra"]
