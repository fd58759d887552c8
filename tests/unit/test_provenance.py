"""Response provenance: the provider's response id, system_fingerprint, logprobs and reasoning travel
from each adapter's parse_response into ChatResponse and events.provenance (pure; no sockets)."""

from __future__ import annotations

from hyperion_core.events import provenance
from hyperion_core.http import HttpClient
from hyperion_core.providers.anthropic import AnthropicAdapter
from hyperion_core.providers.base import Target
from hyperion_core.providers.gemini import GeminiAdapter
from hyperion_core.providers.litellm import parse_response as litellm_parse
from hyperion_core.providers.openai import OpenAIAdapter
from hyperion_core.types import ChatResponse, Usage


def adapter(cls, wire: str, model: str):
    return cls(Target(name="d1", route="r", kind=wire, wire=wire, model=model, base_url="http://mock/d1",
                      api_key="sk-test"), HttpClient())


LOGPROBS = {"content": [{"token": "Hi", "logprob": -0.01, "bytes": [72, 105], "top_logprobs": []}]}


def test_openai_wire_carries_id_fingerprint_logprobs_and_reasoning_content():
    a = adapter(OpenAIAdapter, "openai", "gpt-4o-mini")
    body = {
        "id": "chatcmpl-abc", "object": "chat.completion", "model": "gpt-4o-mini", "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": LOGPROBS,
                     "message": {"role": "assistant", "content": "Hi", "reasoning_content": "think first"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    r = a.parse_response(body)
    assert (r.id, r.system_fingerprint, r.logprobs, r.reasoning) == ("chatcmpl-abc", "fp_1", LOGPROBS, "think first")
    plain = a.parse_response({**body, "system_fingerprint": None,
                              "choices": [{**body["choices"][0], "logprobs": None,
                                           "message": {"role": "assistant", "content": "Hi"}}]})
    assert (plain.system_fingerprint, plain.logprobs, plain.reasoning) == (None, None, None)


def test_anthropic_thinking_blocks_and_gemini_thought_parts_are_reasoning():
    a = adapter(AnthropicAdapter, "anthropic", "claude-haiku-4-5")
    r = a.parse_response({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [{"type": "thinking", "thinking": "Let me think.", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "xxx"},
                    {"type": "text", "text": "The answer."}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 5, "output_tokens": 9},
    })
    assert (r.id, r.content, r.reasoning) == ("msg_1", "The answer.", "Let me think.")
    g = adapter(GeminiAdapter, "gemini", "gemini-2.5-flash")
    r = g.parse_response({
        "responseId": "resp-1", "modelVersion": "gemini-2.5-flash",
        "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
            {"text": "Pondering.", "thought": True}, {"text": "The answer."}]}}],
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 3, "thoughtsTokenCount": 2},
    })
    assert (r.id, r.content, r.reasoning) == ("resp-1", "The answer.", "Pondering.")


def test_litellm_response_and_provenance_keys():
    class Obj:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    resp = Obj(id="chatcmpl-l", model="m", system_fingerprint="fp_l", usage=None,
               choices=[Obj(finish_reason="stop", logprobs=None,
                            message=Obj(content="x", tool_calls=None, reasoning_content="because"))])
    r = litellm_parse(resp, "m")
    assert (r.id, r.system_fingerprint, r.reasoning) == ("chatcmpl-l", "fp_l", "because")
    cr = ChatResponse(request_id="req-1", route="r", deployment="openai/d1", model="m", content="x", tool_calls=(),
                      finish_reason="stop", usage=Usage(), cost=0.0, attempts=(), latency_ms=1.0,
                      provider_id="chatcmpl-l", system_fingerprint="fp_l", logprobs=LOGPROBS, reasoning="because")
    p = provenance(cr)
    assert (p["provider_id"], p["system_fingerprint"], p["logprobs"], p["reasoning"]) == (
        "chatcmpl-l", "fp_l", LOGPROBS, "because")
