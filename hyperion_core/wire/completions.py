"""The OpenAI legacy Completions wire (``POST /v1/completions``) over the chat pipeline.

A ``prompt`` (a string, or a list holding one string) becomes one user message on the route named by
``model``; the answer goes back as a ``text_completion`` object, or as ``text_completion`` SSE chunks
ending in ``data: [DONE]`` (with a usage chunk when ``stream_options.include_usage``). As the API does,
``max_tokens`` defaults to 16. What a chat model cannot honour is refused with the API's 400 body
rather than silently dropped: several prompts in one request, token-id prompts, ``echo``, ``suffix``,
``best_of`` above 1, ``n`` above 1. Errors are the OpenAI wire's (:func:`openai.error_reply`).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..types import Caller, ChatChunk, ChatRequest, ChatResponse, Usage
from .common import ParsedChat, RequestBodyError, load_body
from .openai import NOT_JSON, NOT_OBJECT, error_event, error_reply, usage_body

#: the API's default when a request sets no ``max_tokens``
DEFAULT_MAX_TOKENS = 16
_NUMBERS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
#: passed to the deployment under their OpenAI names (the chat wires know them)
_EXTRA = ("presence_penalty", "frequency_penalty", "logit_bias", "user")
_KNOWN = frozenset({"model", "prompt", "max_tokens", "stream", "stream_options", "stop", "seed", "n", "echo",
                    "suffix", "best_of", "logprobs", *_NUMBERS, *_EXTRA})


def _bad(message: str, param: str, code: str | None = None) -> RequestBodyError:
    return RequestBodyError(message, param=param, code=code)


def _prompt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    if value is None:
        raise _bad("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
    if isinstance(value, list) and len(value) > 1 and all(isinstance(v, str) for v in value):
        raise _bad(f"Invalid 'prompt': this gateway answers one prompt per request, got {len(value)}; send "
                   "one request per prompt.", "prompt", "invalid_value")
    raise _bad("Invalid 'prompt': expected a string (token-id prompts are not supported by this gateway: "
               "its routes may be served by any provider's tokenizer).", "prompt", "invalid_type")


def parse_completions(body: bytes | str | dict[str, Any], *, caller: Caller | None = None,
                      request_id: str | None = None, allow: Any = ()) -> ParsedChat:
    """A ``POST /v1/completions`` body as a :class:`ParsedChat` (one user message)."""
    data = load_body(body, NOT_JSON, NOT_OBJECT)
    unknown = [k for k in data if k not in _KNOWN and k not in allow]
    if unknown:
        raise _bad(f"Unrecognized request argument supplied: {unknown[0]}", unknown[0], "unknown_parameter")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    prompt = _prompt(data.get("prompt"))
    for name in _NUMBERS:
        v = data.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise _bad(f"Invalid type for '{name}': expected a decimal, but got {type(v).__name__} instead.",
                       name, "invalid_type")
    max_tokens = data.get("max_tokens", DEFAULT_MAX_TOKENS)
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _bad(f"Invalid 'max_tokens': expected an integer of at least 1, got {max_tokens!r}.", "max_tokens",
                   "invalid_value")
    if data.get("echo"):
        raise _bad("Invalid 'echo': this gateway does not echo prompts (chat models behind it cannot).", "echo",
                   "unsupported_parameter")
    if data.get("suffix"):
        raise _bad("Invalid 'suffix': insertion is not supported by this gateway.", "suffix", "unsupported_parameter")
    for name in ("best_of", "n"):
        v = data.get(name)
        if v is not None and v != 1:
            raise _bad(f"Invalid '{name}': this gateway returns one completion per request (got {v!r}).", name,
                       "unsupported_parameter")
    stop = data.get("stop")
    if stop is not None and not (isinstance(stop, str) or (isinstance(stop, list)
                                                         and all(isinstance(s, str) for s in stop))):
        raise _bad("Invalid type for 'stop': expected a string or an array of strings.", "stop", "invalid_type")
    extra = {k: data[k] for k in _EXTRA if data.get(k) is not None}
    extra.update({k: data[k] for k in allow if k in data and k not in _KNOWN})
    logprobs = data.get("logprobs")
    if logprobs:
        if isinstance(logprobs, bool) or not isinstance(logprobs, int) or not 0 <= logprobs <= 5:
            raise _bad("Invalid 'logprobs': expected an integer between 0 and 5.", "logprobs", "invalid_value")
        extra.update(logprobs=True, top_logprobs=logprobs)
    req = ChatRequest(
        route=model,
        messages=[{"role": "user", "content": prompt}],
        temperature=data.get("temperature"),
        top_p=data.get("top_p"),
        max_tokens=max_tokens,
        stop=[stop] if isinstance(stop, str) else (list(stop) if stop else None),
        seed=data.get("seed"),
        extra=extra,
        caller=caller,
    )
    if request_id:
        req.request_id = request_id
    options = data.get("stream_options") or {}
    return ParsedChat(req, stream=bool(data.get("stream")),
                      include_usage=bool(options.get("include_usage")) if isinstance(options, dict) else False)


def _finish(reason: str | None) -> str:
    return reason if reason in ("stop", "length", "content_filter") else "stop"


def completion(resp: ChatResponse, *, model: str, id: str, created: int | None = None) -> dict[str, Any]:
    """A ``text_completion`` object."""
    return {
        "id": id,
        "object": "text_completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [{"text": resp.content or "", "index": 0, "logprobs": None,
                     "finish_reason": _finish(resp.finish_reason)}],
        "usage": usage_body(resp.usage),
    }


def encode_completion(resp: ChatResponse, **kw: Any) -> bytes:
    return orjson.dumps(completion(resp, **kw))


class TextChunkEncoder:
    """A streamed answer as ``text_completion`` SSE chunks (the interface of ``openai.ChunkEncoder``)."""

    __slots__ = ("_head", "_usage_head", "_finished", "_usage", "include_usage")

    def __init__(self, *, id: str, model: str, include_usage: bool = False, created: int | None = None) -> None:
        envelope = {"id": id, "object": "text_completion",
                    "created": created if created is not None else int(time.time()), "model": model}
        prefix = b"data: " + orjson.dumps(envelope)[:-1]
        self._head = prefix + b',"choices":[{"text":'
        self._usage_head = prefix + b',"choices":[],"usage":'
        self._finished = False
        self._usage: Usage | None = None
        self.include_usage = include_usage

    def _frame(self, text: str, finish: str | None) -> bytes:
        end = b"null" if finish is None else b'"' + finish.encode() + b'"'
        return self._head + orjson.dumps(text) + b',"index":0,"logprobs":null,"finish_reason":' + end + b"}]}\n\n"

    def chunk(self, c: ChatChunk) -> bytes:
        out = self._frame(c.content, None) if c.content else b""
        if c.usage is not None:
            self._usage = c.usage
        if c.finish_reason is not None and not self._finished:
            self._finished = True
            out += self._frame("", _finish(c.finish_reason))
        return out

    def done(self) -> bytes:
        out = b""
        if not self._finished:
            self._finished = True
            out = self._frame("", "stop")
        if self.include_usage:
            out += self._usage_head + orjson.dumps(usage_body(self._usage or Usage())) + b"}\n\n"
        return out + b"data: [DONE]\n\n"

    def error(self, exc: BaseException) -> bytes:
        return error_event(exc)


__all__ = ["DEFAULT_MAX_TOKENS", "NOT_JSON", "NOT_OBJECT", "TextChunkEncoder", "completion", "encode_completion",
           "error_reply", "parse_completions"]
