"""Gemini ``generateContent`` wire format (Google AI Studio), converted from and to OpenAI-format records.

Gemini has no tool-call ids: calls get deterministic ids ``call_<n>`` (n = position in the answer), and
a tool result finds its function name through the assistant message that made the call.
"""

from __future__ import annotations

import mimetypes
from typing import Any

import orjson

from ..errors import InvalidRequestError, MalformedResponseError, error_for_status
from ..types import ChatChunk, ChatRequest, Message, ProviderResponse, ToolCall, ToolCallDelta, Usage
from .base import HttpAdapter, StreamParser, merged_params, tool_arguments
from .params import all_params, gemini_audio_part, gemini_file_part, gemini_params, gemini_response_format

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "content_filter",
    "MALFORMED_FUNCTION_CALL": "stop",
    "OTHER": "stop",
    "FINISH_REASON_UNSPECIFIED": "stop",
}

#: JSON-schema keys the ``parameters`` (OpenAPI subset) schema rejects
_SCHEMA_DROP = frozenset({"$schema", "additionalProperties", "strict", "$id"})
_VERSIONED = ("/v1beta", "/v1", "/v1alpha")


def gemini_usage(u: dict[str, Any] | None) -> Usage:
    """``promptTokenCount`` already includes cached tokens; thoughts are billed as output."""
    if not u:
        return Usage()
    thoughts = int(u.get("thoughtsTokenCount") or 0)
    return Usage(
        prompt_tokens=int(u.get("promptTokenCount") or 0),
        completion_tokens=int(u.get("candidatesTokenCount") or 0) + thoughts,
        cached_prompt_tokens=int(u.get("cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
    )


def finish_reason(reason: str | None, has_calls: bool) -> str | None:
    if not reason:
        return None
    out = FINISH_REASONS.get(reason, reason.lower())
    return "tool_calls" if has_calls and out == "stop" else out


# -- request conversion (pure) -------------------------------------------------------------------


def _image_part(part: dict[str, Any]) -> dict[str, Any]:
    img = part.get("image_url")
    url = img.get("url", "") if isinstance(img, dict) else str(img or "")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        mime = header[5:].split(";", 1)[0] or "image/png"
        return {"inlineData": {"mimeType": mime, "data": data}}
    mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or "image/jpeg"
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    out: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, str):
            part = {"type": "text", "text": part}
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                out.append({"text": part["text"]})
        elif kind == "image_url":
            out.append(_image_part(part))
        elif kind == "file":
            out.append(gemini_file_part(part))
        elif kind == "input_audio":
            out.append(gemini_audio_part(part))
        elif kind is None:  # a Gemini part already (inlineData, fileData, ...)
            out.append(part)
        else:
            raise InvalidRequestError(
                f"content part type {kind!r} is not supported by the Gemini wire format"
            )
    return out


def _function_call(tc: dict[str, Any]) -> dict[str, Any]:
    fn = tc.get("function") or {}
    args = tool_arguments(tc)
    return {"functionCall": {"name": fn.get("name"), "args": args}}


def _function_response(msg: Message, names: dict[str, str]) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    name = msg.get("name") or names.get(call_id or "")
    if not name:
        raise InvalidRequestError(f"tool message {call_id!r} answers no earlier assistant tool call")
    content = msg.get("content")
    text = (
        content
        if isinstance(content, str)
        else "".join(p.get("text", "") for p in content or () if isinstance(p, dict))
    )
    try:
        parsed = orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        parsed = None
    response = parsed if isinstance(parsed, dict) else {"content": text}
    return {"functionResponse": {"name": name, "response": response}}


def convert_messages(messages: list[Message]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """OpenAI-format messages -> (``systemInstruction``, ``contents``); same-role turns are merged."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name
    for msg in messages:
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_parts(msg.get("content")))
            continue
        if role == "user":
            grole, parts = "user", _parts(msg.get("content"))
        elif role == "assistant":
            grole, parts = "model", _parts(msg.get("content"))
            for tc in msg.get("tool_calls") or ():
                names[tc.get("id") or ""] = (tc.get("function") or {}).get("name")
                parts.append(_function_call(tc))
        elif role == "tool":
            grole, parts = "user", [_function_response(msg, names)]
        else:
            raise InvalidRequestError(f"message role {role!r} is not supported by the Gemini wire format")
        if not parts:
            continue
        if contents and contents[-1]["role"] == grole:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": grole, "parts": parts})
    return ({"parts": system} if system else None), contents


def clean_schema(schema: Any) -> Any:
    """A JSON schema trimmed to what Gemini's ``parameters`` accepts."""
    if isinstance(schema, list):
        return [clean_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_DROP:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: clean_schema(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf", "oneOf", "allOf"):
            out[key] = clean_schema(value)
        else:
            out[key] = value
    return out


def convert_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    decls: list[dict[str, Any]] = []
    native: list[dict[str, Any]] = []
    for t in tools:
        if t.get("type") != "function" or "function" not in t:
            native.append(t)  # a Gemini tool already (googleSearch, codeExecution, ...)
            continue
        fn = t["function"]
        decl: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        params = fn.get("parameters")
        if params and params.get("properties"):  # Gemini rejects an OBJECT with no properties
            decl["parameters"] = clean_schema(params)
        decls.append(decl)
    return ([{"functionDeclarations": decls}] if decls else []) + native


def convert_tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        mode = {"auto": "AUTO", "required": "ANY", "any": "ANY", "none": "NONE"}.get(choice)
        if mode is None:
            raise InvalidRequestError(f"tool_choice {choice!r} is not one of auto, required, none")
        return {"functionCallingConfig": {"mode": mode}}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    if isinstance(choice, dict):
        return choice  # a Gemini toolConfig already
    raise InvalidRequestError(f"tool_choice of type {type(choice).__name__} is not supported")


def generation_config(params: dict[str, Any], response_format: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAI-named sampling parameters and ``response_format`` -> ``generationConfig`` (see ``params``)."""
    cfg, _ = gemini_params(params)
    cfg.update(gemini_response_format(response_format))
    return cfg


# -- response parts --------------------------------------------------------------------------------


def _split_parts(parts: list[dict[str, Any]], first_call: int) -> tuple[list[str], list[tuple[int, dict]]]:
    texts: list[str] = []
    calls: list[tuple[int, dict]] = []
    for part in parts:
        if "functionCall" in part:
            calls.append((first_call + len(calls), part["functionCall"]))
        elif "text" in part and not part.get("thought"):
            texts.append(part["text"])
    return texts, calls


def _args(call: dict[str, Any]) -> str:
    return orjson.dumps(call.get("args") or {}).decode()


# -- stream parser -------------------------------------------------------------------------------


class GeminiStreamParser(StreamParser):
    """Each event is a partial ``GenerateContentResponse``; the one with ``finishReason`` is terminal."""

    __slots__ = ("done", "_usage", "_calls")

    def __init__(self) -> None:
        self.done = False
        self._usage: Usage | None = None
        self._calls = 0

    def feed(self, event: str | None, data: bytes) -> ChatChunk | None:
        obj = orjson.loads(data)
        if isinstance(obj.get("error"), dict):
            err = obj["error"]
            raise error_for_status(
                int(err.get("code") or 500),
                f"stream error: {err.get('message') or err}",
                provider_code=err.get("status"),
            )
        if obj.get("usageMetadata"):
            self._usage = gemini_usage(obj["usageMetadata"])
        candidates = obj.get("candidates") or []
        if not candidates:
            if (obj.get("promptFeedback") or {}).get("blockReason"):  # the prompt itself was blocked
                self.done = True
                return ChatChunk(finish_reason="content_filter", usage=self._usage or Usage())
            return None
        cand = candidates[0]
        texts, calls = _split_parts((cand.get("content") or {}).get("parts") or [], self._calls)
        self._calls += len(calls)
        deltas = tuple(
            ToolCallDelta(index=i, id=f"call_{i}", name=c.get("name"), arguments=_args(c)) for i, c in calls
        )
        content = "".join(texts)
        reason = cand.get("finishReason")
        if reason:
            self.done = True
            return ChatChunk(
                content=content,
                tool_calls=deltas,
                finish_reason=finish_reason(reason, self._calls > 0),
                usage=self._usage or Usage(),
            )
        if not content and not deltas:
            return None
        return ChatChunk(content=content, tool_calls=deltas)


# -- adapter -------------------------------------------------------------------------------------


class GeminiAdapter(HttpAdapter):
    wire = "gemini"

    def _root(self) -> str:
        """The versioned API root: ``base_url`` as given if it already ends in a version, else ``/v1beta``."""
        base = (self.target.base_url or "https://generativelanguage.googleapis.com").rstrip("/")
        return base if base.endswith(_VERSIONED) else f"{base}/v1beta"

    def _model(self) -> str:
        return self.target.model.removeprefix("models/")

    def url(self, stream: bool) -> str:
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self._root()}/models/{self._model()}:{action}"

    def headers(self) -> dict[str, str]:
        h = {"content-type": "application/json", "accept": "application/json"}
        if self.target.api_key:
            h["x-goog-api-key"] = self.target.api_key
        h.update(self.target.headers)
        return h

    def build_body(self, req: ChatRequest, stream: bool) -> dict[str, Any]:
        system, contents = convert_messages(req.messages)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = system
        if req.tools:
            body["tools"] = convert_tools(req.tools)
        tool_config = convert_tool_choice(req.tool_choice)
        if tool_config is not None:
            body["toolConfig"] = tool_config
        cfg, top = gemini_params(all_params(merged_params(req, self.target.params), req.extra))
        cfg.update(gemini_response_format(req.response_format))
        if cfg:
            body["generationConfig"] = cfg
        for key, value in top.items():
            if isinstance(value, dict) and isinstance(body.get(key), dict):
                body[key] = {**body[key], **value}  # e.g. generationConfig fields given whole
            else:
                body[key] = value
        return body

    def parse_response(self, data: dict[str, Any]) -> ProviderResponse:
        usage = gemini_usage(data.get("usageMetadata"))
        model = data.get("modelVersion") or self.target.model
        candidates = data.get("candidates") or []
        if not candidates:
            blocked = (data.get("promptFeedback") or {}).get("blockReason")
            if not blocked:
                raise ValueError("no candidates and no promptFeedback.blockReason")
            return ProviderResponse(None, (), "content_filter", usage, model, data.get("responseId"))
        cand = candidates[0]
        parts = (cand.get("content") or {}).get("parts") or []
        texts, calls = _split_parts(parts, 0)
        thoughts = [p["text"] for p in parts if p.get("thought") and isinstance(p.get("text"), str)]
        return ProviderResponse(
            content="".join(texts) if texts else None,
            tool_calls=tuple(ToolCall(id=f"call_{i}", name=c["name"], arguments=_args(c)) for i, c in calls),
            finish_reason=finish_reason(cand.get("finishReason"), bool(calls)),
            usage=usage,
            model=model,
            id=data.get("responseId"),
            reasoning="".join(thoughts) if thoughts else None,
        )

    def stream_parser(self) -> StreamParser:
        return GeminiStreamParser()

    def error_details(self, data: Any) -> tuple[str, str | None]:
        if isinstance(data, list) and data and isinstance(data[0], dict):  # some proxies wrap it in a list
            data = data[0]
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            err = data["error"]
            return str(err.get("message") or err), err.get("status")
        return super().error_details(data)

    async def embed(
        self, inputs: list[str], *, dimensions: int | None = None
    ) -> tuple[list[list[float]], Usage]:
        model = f"models/{self._model()}"
        requests = []
        for text in inputs:
            r: dict[str, Any] = {"model": model, "content": {"parts": [{"text": text}]}}
            if dimensions:
                r["outputDimensionality"] = dimensions
            requests.append(r)
        url = f"{self._root()}/{model}:batchEmbedContents"
        status, headers, raw = await self.http.post_json(url, {"requests": requests}, self._headers)
        if status >= 400:
            raise self.parse_error(status, headers, raw)
        data = self._decode(raw)
        try:
            vectors = [e["values"] for e in data["embeddings"]]
        except (KeyError, TypeError):
            raise MalformedResponseError(
                "gemini embeddings response has no embeddings[].values",
                route=self.target.route,
                deployment=self.target.name,
            ) from None
        return vectors, Usage(
            prompt_tokens=int((data.get("usageMetadata") or {}).get("promptTokenCount") or 0)
        )


__all__ = [
    "GeminiAdapter",
    "GeminiStreamParser",
    "gemini_usage",
    "convert_messages",
    "convert_tools",
    "convert_tool_choice",
    "generation_config",
    "finish_reason",
]
