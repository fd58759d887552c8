"""Which ``ChatOpenAI``-style arguments reach the wire, and how (pure; no I/O).

``HyperionChat`` accepts ``ChatOpenAI``'s constructor surface. Every argument falls in one class:

* **request fields** — typed ``ChatRequest`` fields (``temperature``, ``max_tokens``, ``stop``, ``tools``,
  ``response_format``, ``timeout``, ``max_retries`` ...);
* **OpenAI request parameters** (:data:`WIRE_PARAMS`) — put in ``ChatRequest.extra`` under their OpenAI
  names; each adapter translates them for its wire (``reasoning_effort`` -> Anthropic thinking budget /
  Gemini thinking config, ``parallel_tool_calls`` -> Anthropic ``disable_parallel_tool_use``) or drops
  those its wire has no equivalent for, with a debug log;
* **client options** (:data:`CLIENT_OPTIONS`) — how ``ChatOpenAI`` builds its HTTP client
  (``default_headers``, ``http_client``, ``stream_usage`` ...): accepted and never sent (the gateway owns
  the connections; usage is always reported);
* **refused** (:data:`REFUSED`) — plainly wrong for a gateway model (``base_url``, ``openai_api_key``,
  Responses-API-only options): a :class:`~hyperion_lc.errors.HyperionConfigError` at construction that
  says where the setting belongs.

Anything else is an error naming the argument (with a "did you mean"). ``extra_body`` is the one
free-form door: its *contents* are provider parameters, merged into ``extra`` as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from hyperion_core._text import suggest

log = logging.getLogger("hyperion.langchain")

#: typed ``ChatRequest`` fields a caller may set (``max_completion_tokens`` is ``max_tokens``)
REQUEST_FIELDS = frozenset(
    {
        "temperature",
        "top_p",
        "seed",
        "n",
        "max_tokens",
        "stop",
        "tools",
        "tool_choice",
        "response_format",
        "timeout",
        "max_retries",
    }
)

#: OpenAI Chat Completions parameters sent in ``ChatRequest.extra`` under their OpenAI names
WIRE_PARAMS = frozenset(
    {
        "frequency_penalty",
        "presence_penalty",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "reasoning_effort",
        "verbosity",
        "service_tier",
        "store",
        "user",
        "metadata",
        "parallel_tool_calls",
        "prediction",
        "modalities",
        "audio",
        "web_search_options",
        "prompt_cache_key",
        "safety_identifier",
    }
)

#: ``ChatOpenAI`` client options: accepted, never on the wire
CLIENT_OPTIONS = frozenset(
    {
        "stream_usage",
        "default_headers",
        "default_query",
        "http_client",
        "http_async_client",
        "http_socket_options",
        "organization",
        "openai_organization",
        "tiktoken_model_name",
        "include_response_headers",
        "stream_chunk_timeout",
        "stream_options",
    }
)

_BASE_URL = (
    "the gateway calls its deployments itself: set the address in the gateway configuration "
    "(providers.<name>.base_url), not on HyperionChat"
)
_RESPONSES = "a Responses API option; Hyperion routes speak Chat Completions"

#: arguments that are plainly wrong for ``HyperionChat``, with where the setting belongs
REFUSED: dict[str, str] = {
    "base_url": _BASE_URL,
    "openai_api_base": _BASE_URL,
    "openai_proxy": "the gateway owns the connections: configure a proxy in its environment",
    "openai_api_key": (
        "provider keys live in the gateway configuration (providers.<name>.api_key); "
        "pass your Hyperion key as virtual_key= (alias api_key=)"
    ),
    "client": "HyperionChat has no OpenAI client to replace: pass gateway= or config=",
    "async_client": "HyperionChat has no OpenAI client to replace: pass gateway= or config=",
    "root_client": "HyperionChat has no OpenAI client to replace: pass gateway= or config=",
    "root_async_client": "HyperionChat has no OpenAI client to replace: pass gateway= or config=",
    "use_responses_api": _RESPONSES,
    "use_previous_response_id": _RESPONSES,
    "include": _RESPONSES,
    "truncation": _RESPONSES,
    "context_management": _RESPONSES,
    "prompt_cache_options": _RESPONSES,
    "functions": "legacy OpenAI functions: bind tools with bind_tools()",
    "function_call": "legacy OpenAI functions: use bind_tools(tool_choice=...)",
}
#: refused only when set to a true value (False / None mean "the default")
_REFUSED_WHEN_TRUE = frozenset({"use_responses_api", "use_previous_response_id"})

REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


def refusal(name: str, value: Any) -> str | None:
    """Why ``name=value`` is refused, or None."""
    why = REFUSED.get(name)
    if why is None or (name in _REFUSED_WHEN_TRUE and not value) or (name != "include" and value is None):
        return None
    return f"{name}: {why}"


def unknown(name: str, options: Iterable[str]) -> str:
    return (
        f"{name}: not a HyperionChat or OpenAI chat parameter{suggest(name, options)}; "
        "provider-specific parameters go in extra_body={...}"
    )


def check_reasoning_effort(value: Any) -> str | None:
    if value is None or value in REASONING_EFFORTS:
        return None
    return f"reasoning_effort: {value!r} is not one of {', '.join(REASONING_EFFORTS)}"


def effort_of(reasoning: Any) -> str | None:
    """``reasoning={"effort": ..., "summary": ...}`` (``ChatOpenAI``'s spelling) -> the effort."""
    if reasoning is None:
        return None
    if not isinstance(reasoning, Mapping):
        raise TypeError(
            f"reasoning: expected a dict like {{'effort': 'low'}}, got {type(reasoning).__name__}"
        )
    rest = sorted(k for k in reasoning if k != "effort")
    if rest:
        log.debug("hyperion: reasoning keys %s have no Chat Completions equivalent; dropped", rest)
    return reasoning.get("effort")


def split(
    params: Mapping[str, Any], *, known: Iterable[str] = ()
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """``params`` (OpenAI names) -> (typed request fields, ``extra`` provider parameters, problems).

    ``None`` values are unset. ``max_completion_tokens`` is ``max_tokens``; ``reasoning`` gives
    ``reasoning_effort``; ``extra_body``'s contents join ``extra`` as they are; names listed in
    ``disabled_params`` are not sent. Client options are dropped (debug log). ``problems`` lists refused
    and unknown names (``known``: further names to suggest)."""
    typed: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    problems: list[str] = []
    disabled = set(params.get("disabled_params") or ())
    for name, value in params.items():
        if value is None or name in ("disabled_params",):
            continue
        if name == "max_completion_tokens":
            typed.setdefault("max_tokens", value)
        elif name == "reasoning":
            try:
                effort = effort_of(value)
            except TypeError as exc:
                problems.append(str(exc))
                continue
            if effort is not None:
                extra.setdefault("reasoning_effort", effort)
        elif name == "extra_body":
            if not isinstance(value, Mapping):
                problems.append(
                    f"extra_body: expected a dict of provider parameters, got {type(value).__name__}"
                )
                continue
            for k, v in value.items():
                if v is not None:
                    (typed if k in REQUEST_FIELDS else extra).setdefault(k, v)
        elif name in REQUEST_FIELDS:
            typed[name] = value
        elif name in WIRE_PARAMS:
            extra[name] = value
        elif name in CLIENT_OPTIONS:
            log.debug("hyperion: %s is a client option; not sent to the provider", name)
        else:
            why = refusal(name, value)
            if why is not None:
                problems.append(why)
            elif name not in REFUSED:
                problems.append(unknown(name, {*REQUEST_FIELDS, *WIRE_PARAMS, *CLIENT_OPTIONS, *known}))
    if "reasoning_effort" in extra:
        bad = check_reasoning_effort(extra["reasoning_effort"])
        if bad:
            problems.append(bad)
    for name in disabled:
        if typed.pop(name, None) is not None or extra.pop(name, None) is not None:
            log.debug("hyperion: %s is in disabled_params; not sent", name)
    return typed, extra, problems


__all__ = [
    "REQUEST_FIELDS",
    "WIRE_PARAMS",
    "CLIENT_OPTIONS",
    "REFUSED",
    "REASONING_EFFORTS",
    "split",
    "refusal",
]
