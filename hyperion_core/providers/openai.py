"""OpenAI chat-completions wire format: OpenAI, vLLM, Ollama ``/v1`` and any compatible server."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import ProviderError
from ..types import ChatChunk, ChatRequest, ProviderResponse, ToolCall, ToolCallDelta, Usage
from .base import HttpAdapter, StreamParser, merged_params


def openai_usage(u: dict[str, Any] | None) -> Usage:
    if not u:
        return Usage()
    details = u.get("prompt_tokens_details") or {}
    cdetails = u.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=int(u.get("prompt_tokens") or 0),
        completion_tokens=int(u.get("completion_tokens") or 0),
        cached_prompt_tokens=int(details.get("cached_tokens") or 0),
        reasoning_tokens=int(cdetails.get("reasoning_tokens") or 0),
    )


class OpenAIStreamParser(StreamParser):
    __slots__ = ("done", "_finish", "_usage")

    def __init__(self) -> None:
        self.done = False
        self._finish: str | None = None
        self._usage: Usage | None = None

    def feed(self, event: str | None, data: bytes) -> ChatChunk | None:
        if data == b"[DONE]":
            self.done = True
            if self._finish is None and self._usage is None:
                return None
            # usage arrives in its own choice-less chunk after the finish reason
            return ChatChunk(finish_reason=self._finish, usage=self._usage or Usage())
        obj = orjson.loads(data)
        if "error" in obj and not obj.get("choices"):
            err = obj["error"] or {}
            raise ProviderError(f"stream error: {err.get('message', err)}", provider_code=err.get("code"))
        if obj.get("usage"):
            self._usage = openai_usage(obj["usage"])
        choices = obj.get("choices")
        if not choices:
            return None
        choice = choices[0]
        delta = choice.get("delta") or {}
        if choice.get("finish_reason"):
            self._finish = choice["finish_reason"]
        content = delta.get("content") or ""
        tcs = delta.get("tool_calls")
        if not content and not tcs:
            return None
        deltas: tuple[ToolCallDelta, ...] = ()
        if tcs:
            deltas = tuple(
                ToolCallDelta(
                    index=tc.get("index", i),
                    id=tc.get("id"),
                    name=(tc.get("function") or {}).get("name"),
                    arguments=(tc.get("function") or {}).get("arguments") or "",
                )
                for i, tc in enumerate(tcs)
            )
        return ChatChunk(content=content, tool_calls=deltas)

    def ended_early(self) -> ChatChunk | None:
        # the finish reason came; the usage chunk and [DONE] may not have (None: the caller estimates)
        return ChatChunk(finish_reason=self._finish, usage=self._usage) if self._finish else None


class OpenAIAdapter(HttpAdapter):
    wire = "openai"

    def url(self, stream: bool) -> str:
        return f"{(self.target.base_url or '').rstrip('/')}/chat/completions"

    def headers(self) -> dict[str, str]:
        h = {"content-type": "application/json", "accept": "application/json"}
        if self.target.api_key:
            h["authorization"] = f"Bearer {self.target.api_key}"
        h.update(self.target.headers)
        return h

    def build_body(self, req: ChatRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.target.model, "messages": req.messages}
        body.update(merged_params(req, self.target.params))
        if req.tools:
            body["tools"] = req.tools
        if req.tool_choice is not None:
            body["tool_choice"] = req.tool_choice
        if req.response_format is not None:
            body["response_format"] = req.response_format
        if req.extra:
            body.update(req.extra)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def parse_response(self, data: dict[str, Any]) -> ProviderResponse:
        choice = data["choices"][0]
        msg = choice["message"]
        tool_calls = tuple(
            ToolCall(
                id=tc["id"], name=tc["function"]["name"], arguments=tc["function"].get("arguments") or "{}"
            )
            for tc in msg.get("tool_calls") or ()
        )
        return ProviderResponse(
            content=msg.get("content"),
            tool_calls=tool_calls,
            finish_reason=choice.get("finish_reason"),
            usage=openai_usage(data.get("usage")),
            model=data.get("model") or self.target.model,
            id=data.get("id"),
            system_fingerprint=data.get("system_fingerprint"),
            logprobs=choice.get("logprobs"),
            reasoning=msg.get("reasoning_content") or msg.get("reasoning") or None,  # vLLM, DeepSeek / OpenRouter
        )

    def stream_parser(self) -> StreamParser:
        return OpenAIStreamParser()

    def error_details(self, data: Any) -> tuple[str, str | None]:
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            err = data["error"]
            return str(err.get("message") or err), err.get("code") or err.get("type")
        return super().error_details(data)

    async def embed(
        self, inputs: list[str], *, dimensions: int | None = None
    ) -> tuple[list[list[float]], Usage]:
        body: dict[str, Any] = {"model": self.target.model, "input": inputs, "encoding_format": "float"}
        if dimensions:
            body["dimensions"] = dimensions
        url = f"{(self.target.base_url or '').rstrip('/')}/embeddings"
        status, headers, raw = await self.http.post_json(url, body, self._headers)
        if status >= 400:
            raise self.parse_error(status, headers, raw)
        data = self._decode(raw)
        rows = sorted(data["data"], key=lambda r: r.get("index", 0))
        return [r["embedding"] for r in rows], openai_usage(data.get("usage"))
