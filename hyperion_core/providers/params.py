"""Per-wire translation of OpenAI-format request parameters (pure; no I/O).

Parameters reach an adapter as typed :class:`~hyperion_core.types.ChatRequest` fields, as deployment
defaults (``Target.params``) or in ``ChatRequest.extra`` under their OpenAI Chat Completions names.
The OpenAI wire sends them as they are. The Anthropic and Gemini wires translate what has an
equivalent and drop the rest with a ``logging.debug`` naming the parameter and the wire:

=========================  ======================================  ====================================
OpenAI parameter           Anthropic Messages                      Gemini generateContent
=========================  ======================================  ====================================
max_tokens                 max_tokens (required; default below)    generationConfig.maxOutputTokens
max_completion_tokens      max_tokens when max_tokens is unset     maxOutputTokens when max_tokens unset
temperature, top_p, top_k  same names (dropped while thinking)     temperature, topP, topK
stop                       stop_sequences                          stopSequences
seed                       dropped                                 seed
n                          1: dropped; > 1: InvalidRequestError    candidateCount
frequency/presence_penalty dropped                                 frequencyPenalty / presencePenalty
logprobs, top_logprobs     dropped                                 responseLogprobs / logprobs
reasoning_effort           thinking {enabled, budget_tokens}       thinkingConfig.thinkingBudget
                           (max_tokens raised above the budget)
parallel_tool_calls=False  tool_choice.disable_parallel_tool_use   dropped
response_format            a forced synthetic tool carrying the    responseMimeType +
(json_schema/json_object)  schema; its input comes back as the     responseJsonSchema
                           answer's JSON ``content``
user                       metadata.user_id                        dropped
service_tier               auto / standard_only kept, else dropped serviceTier (default -> standard)
store                      dropped                                 store
logit_bias, metadata, ...  dropped                                 dropped
=========================  ======================================  ====================================

A key that is already the wire's own name (``thinking``, ``top_k``, ``metadata`` on Anthropic;
``safetySettings``, ``generationConfig``, ``thinkingConfig`` ... on Gemini) passes through unchanged;
anything else unknown to the wire is dropped with a debug log, never sent to be refused.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from ..errors import InvalidRequestError

log = logging.getLogger("hyperion.providers")

# fmt: off
#: OpenAI Chat Completions request parameters (besides model/messages/stream): the names a caller may use
#: on any route; a test keeps this in step with the openai SDK's ``CompletionCreateParams``
OPENAI_PARAMS = frozenset({
    "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs", "max_completion_tokens",
    "max_tokens", "metadata", "modalities", "moderation", "n", "parallel_tool_calls", "prediction",
    "presence_penalty", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention", "reasoning_effort",
    "response_format", "safety_identifier", "seed", "service_tier", "stop", "store", "stream_options",
    "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
})

#: ``reasoning_effort`` -> Anthropic ``thinking.budget_tokens`` (the API's minimum is 1024)
ANTHROPIC_THINKING_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 24576, "max": 32000}
#: ``reasoning_effort`` -> Gemini ``thinkingConfig.thinkingBudget`` (0 turns thinking off)
GEMINI_THINKING_BUDGET = {
    "none": 0,
    "minimal": 128,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": 32768,
    "max": 32768,
}
#: name of the synthetic tool that carries ``response_format`` on the Anthropic wire
JSON_TOOL = "json_output"

#: Anthropic Messages body fields a caller may set directly (sent unchanged)
ANTHROPIC_NATIVE = frozenset({
    "temperature", "top_p", "top_k", "metadata", "thinking", "service_tier", "container", "output_config",
    "cache_control", "inference_geo", "speed", "stop_sequences", "system", "diagnostics",
})
ANTHROPIC_SERVICE_TIERS = frozenset({"auto", "standard_only"})
#: Anthropic: OpenAI parameters with no equivalent (dropped, debug-logged)
ANTHROPIC_DROPPED = frozenset({
    "seed", "frequency_penalty", "presence_penalty", "logprobs", "top_logprobs", "logit_bias", "store",
    "verbosity", "prediction", "modalities", "audio", "web_search_options", "prompt_cache_key",
    "prompt_cache_retention", "prompt_cache_options", "safety_identifier", "stream_options", "moderation",
    "functions", "function_call",
})

#: Gemini: OpenAI sampling parameter -> ``generationConfig`` field
GEMINI_GENERATION = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "max_tokens": "maxOutputTokens",
    "stop": "stopSequences",
    "seed": "seed",
    "n": "candidateCount",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "logprobs": "responseLogprobs",
    "top_logprobs": "logprobs",
}
#: Gemini ``GenerateContentRequest`` top-level fields (camelCase and snake_case), merged when given
GEMINI_TOP_LEVEL = frozenset({
    "contents", "systemInstruction", "system_instruction", "tools", "toolConfig", "tool_config",
    "safetySettings", "safety_settings", "generationConfig", "generation_config", "cachedContent",
    "cached_content", "serviceTier", "store", "labels",
})
#: Gemini ``generationConfig`` fields a caller may set directly (camelCase), placed in ``generationConfig``
GEMINI_GENERATION_NATIVE = frozenset({
    "temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences", "seed",
    "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs", "responseMimeType",
    "responseSchema", "responseJsonSchema", "responseModalities", "thinkingConfig", "speechConfig",
    "mediaResolution", "enableEnhancedCivicAnswers",
})
#: OpenAI ``service_tier`` -> Gemini ``serviceTier`` (others dropped)
GEMINI_SERVICE_TIERS = {"default": "standard", "flex": "flex", "priority": "priority"}
#: Gemini: OpenAI parameters with no equivalent (dropped, debug-logged)
GEMINI_DROPPED = frozenset({
    "user", "parallel_tool_calls", "logit_bias", "metadata", "verbosity",
    "prediction", "modalities", "audio", "web_search_options", "prompt_cache_key", "prompt_cache_retention",
    "prompt_cache_options", "safety_identifier", "stream_options", "moderation", "functions",
    "function_call",
})
# fmt: on

#: every request parameter name some wire understands (what a route takes without ``allow_params``)
KNOWN_PARAMS = frozenset(
    OPENAI_PARAMS | ANTHROPIC_NATIVE | GEMINI_TOP_LEVEL | GEMINI_GENERATION_NATIVE | {"top_k", "max_output_tokens"}
) - {"contents", "system"}


def dropped(name: str, wire: str, reason: str = "no equivalent") -> None:
    log.debug("%s wire: parameter %r dropped (%s)", wire, name, reason)


def all_params(req_params: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any]:
    """Typed request fields (over deployment defaults), then ``extra`` on top."""
    if not extra:
        return req_params
    out = dict(req_params)
    out.update(extra)
    return out


# ------------------------------------------------------------------------------------- Anthropic


def anthropic_params(
    params: dict[str, Any],
    *,
    default_max_tokens: int,
    has_tools: bool,
    tool_choice: dict[str, Any] | None,
    response_format: dict[str, Any] | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """OpenAI-named ``params`` -> (Anthropic body fields, extra tools to append).

    ``tool_choice`` is the already-converted Anthropic tool choice (or None); the returned fields hold the
    final ``tool_choice`` when one is needed.
    """
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if key in ("max_tokens", "max_completion_tokens", "reasoning_effort", "parallel_tool_calls", "user"):
            continue  # handled below
        if key == "stop":
            out["stop_sequences"] = [value] if isinstance(value, str) else list(value)
        elif key == "n":
            if value != 1:
                raise InvalidRequestError(f"n={value}: the Anthropic wire returns one answer per request")
            dropped(key, "anthropic", "one answer per request")
        elif key == "service_tier" and value not in ANTHROPIC_SERVICE_TIERS:
            dropped(key, "anthropic", f"OpenAI tier {value!r} has no Anthropic equivalent")
        elif key in ANTHROPIC_NATIVE:
            out[key] = value
        elif key in ANTHROPIC_DROPPED:
            dropped(key, "anthropic")
        else:
            dropped(key, "anthropic", "not an Anthropic Messages parameter")
    max_tokens = params.get("max_tokens") or params.get("max_completion_tokens") or default_max_tokens
    out["max_tokens"] = int(max_tokens)

    user = params.get("user")
    if user:
        meta = out.get("metadata")
        out["metadata"] = {**(meta if isinstance(meta, dict) else {}), "user_id": str(user)}
    if isinstance(out.get("metadata"), dict):
        extra_keys = [k for k in out["metadata"] if k != "user_id"]
        for k in extra_keys:
            dropped(f"metadata.{k}", "anthropic", "Anthropic metadata only carries user_id")
        out["metadata"] = {k: v for k, v in out["metadata"].items() if k == "user_id"}
        if not out["metadata"]:
            del out["metadata"]

    tools: list[dict[str, Any]] = []
    forced = tool_choice
    if response_format is not None:
        tool, forced = json_tool(response_format, has_tools, tool_choice)
        if tool is not None:
            tools.append(tool)

    effort = params.get("reasoning_effort")
    if effort is not None and "thinking" not in out:
        budget = ANTHROPIC_THINKING_BUDGET.get(effort)
        if effort == "none":
            pass
        elif budget is None:
            raise InvalidRequestError(
                f"reasoning_effort {effort!r} is not one of {', '.join(['none', *ANTHROPIC_THINKING_BUDGET])}"
            )
        elif forced is not None and forced.get("type") in ("any", "tool"):
            dropped("reasoning_effort", "anthropic", "thinking cannot be combined with a forced tool choice")
        else:
            out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    thinking = out.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = int(thinking.get("budget_tokens") or 0)
        if out["max_tokens"] <= budget:  # max_tokens counts thinking: keep the caller's cap for the answer
            out["max_tokens"] = budget + out["max_tokens"]
        for key in ("temperature", "top_k"):
            if key in out and out[key] != 1:
                dropped(key, "anthropic", "not allowed while thinking")
                del out[key]
        if "top_p" in out and out["top_p"] < 0.95:
            dropped("top_p", "anthropic", "must be >= 0.95 while thinking")
            del out["top_p"]

    if params.get("parallel_tool_calls") is False and (has_tools or tools):
        forced = {**(forced or {"type": "auto"}), "disable_parallel_tool_use": True}
    elif "parallel_tool_calls" in params:
        dropped("parallel_tool_calls", "anthropic", "parallel tool use is the default")
    if forced is not None:
        out["tool_choice"] = forced
    return out, tools


def json_tool(
    response_format: dict[str, Any], has_tools: bool, tool_choice: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``response_format`` -> (the synthetic :data:`JSON_TOOL`, the tool choice to send).

    Forced (``{"type": "tool"}``) unless the caller also offers tools: then the model may call theirs or
    answer through the JSON tool (``any``), unless the caller chose a tool choice themselves.
    """
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") or {"type": "object"}
        description = (
            spec.get("description") or f"Answer with the {spec.get('name') or 'requested'} JSON object."
        )
    elif kind == "json_object":
        schema, description = {"type": "object"}, "Answer with a JSON object."
    else:
        return None, tool_choice
    tool = {"name": JSON_TOOL, "description": description, "input_schema": schema}
    if tool_choice is not None:
        return tool, tool_choice
    return tool, ({"type": "any"} if has_tools else {"type": "tool", "name": JSON_TOOL})


def anthropic_file_block(part: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI ``file`` content part as an Anthropic ``document`` block (PDF or plain text)."""
    media, data = _file_data(part, "anthropic")
    if media == "application/pdf":
        return {"type": "document", "source": {"type": "base64", "media_type": media, "data": data}}
    if media == "text/plain":
        text = base64.b64decode(data).decode("utf-8", "replace")
        return {"type": "document", "source": {"type": "text", "media_type": media, "data": text}}
    raise InvalidRequestError(
        f"file of type {media!r}: the Anthropic wire takes PDF and plain-text documents"
    )


def gemini_file_part(part: dict[str, Any]) -> dict[str, Any]:
    media, data = _file_data(part, "gemini")
    return {"inlineData": {"mimeType": media, "data": data}}


def gemini_audio_part(part: dict[str, Any]) -> dict[str, Any]:
    audio = part.get("input_audio") or {}
    fmt = audio.get("format") or "wav"
    if not audio.get("data"):
        raise InvalidRequestError("input_audio part has no data")
    return {"inlineData": {"mimeType": f"audio/{'mpeg' if fmt == 'mp3' else fmt}", "data": audio["data"]}}


def _file_data(part: dict[str, Any], wire: str) -> tuple[str, str]:
    f = part.get("file") or {}
    raw = f.get("file_data") or ""
    if not raw:
        what = "a file_id (uploaded to OpenAI)" if f.get("file_id") else "no file_data"
        raise InvalidRequestError(f"file part with {what}: the {wire} wire needs inline base64 file_data")
    if raw.startswith("data:"):
        header, _, data = raw.partition(",")
        media = header[5:].split(";", 1)[0]
    else:  # bare base64: the type comes from the file name
        data, name = raw, str(f.get("filename") or "")
        media = "application/pdf" if name.lower().endswith(".pdf") else "text/plain" if name else ""
    if not media:
        raise InvalidRequestError("file part without a media type (use a data: URL or a filename)")
    return media, data


# ------------------------------------------------------------------------------------------ Gemini


def gemini_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """OpenAI-named ``params`` -> (``generationConfig`` fields, other top-level body fields)."""
    cfg: dict[str, Any] = {}
    top: dict[str, Any] = {}
    for key, value in params.items():
        if value is None or key in ("max_completion_tokens", "reasoning_effort"):
            continue
        if key in GEMINI_GENERATION:
            if key == "stop":
                value = [value] if isinstance(value, str) else list(value)
            cfg[GEMINI_GENERATION[key]] = value
        elif key == "service_tier":
            if value in GEMINI_SERVICE_TIERS:
                top["serviceTier"] = GEMINI_SERVICE_TIERS[value]
            else:
                dropped(key, "gemini", f"OpenAI tier {value!r} has no Gemini equivalent")
        elif key in GEMINI_GENERATION_NATIVE:
            cfg[key] = value
        elif key in GEMINI_TOP_LEVEL:
            top[key] = value
        elif key in GEMINI_DROPPED:
            dropped(key, "gemini")
        else:
            dropped(key, "gemini", "not a Gemini generateContent parameter")
    if "maxOutputTokens" not in cfg and params.get("max_completion_tokens"):
        cfg["maxOutputTokens"] = params["max_completion_tokens"]
    effort = params.get("reasoning_effort")
    if effort is not None:
        budget = GEMINI_THINKING_BUDGET.get(effort)
        if budget is None:
            raise InvalidRequestError(
                f"reasoning_effort {effort!r} is not one of {', '.join(GEMINI_THINKING_BUDGET)}"
            )
        cfg["thinkingConfig"] = {**cfg.get("thinkingConfig", {}), "thinkingBudget": budget}
    return cfg, top


def gemini_response_format(response_format: dict[str, Any] | None) -> dict[str, Any]:
    if not response_format:
        return {}
    kind = response_format.get("type")
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return {"responseMimeType": "application/json", **({"responseJsonSchema": schema} if schema else {})}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    return {}


__all__ = [
    "OPENAI_PARAMS",
    "ANTHROPIC_THINKING_BUDGET",
    "GEMINI_THINKING_BUDGET",
    "JSON_TOOL",
    "anthropic_params",
    "anthropic_file_block",
    "gemini_params",
    "gemini_file_part",
    "gemini_audio_part",
    "gemini_response_format",
    "json_tool",
]
