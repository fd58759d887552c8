"""The Responses codec (``hyperion_core.wire.responses``), pure: bodies in, chat requests out; answers
and chunk streams out as ``response`` objects and events the openai SDK's models accept strictly."""

from __future__ import annotations

import json

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from hyperion_core.types import ChatChunk, ChatResponse, ToolCall, ToolCallDelta, Usage
from hyperion_core.wire import RequestBodyError
from hyperion_core.wire import responses as rw

EVENTS: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)


def test_input_items_become_chat_messages():
    parsed = rw.parse_responses({
        "model": "r", "instructions": "sys", "max_output_tokens": 64, "temperature": 0.5, "top_p": 0.9,
        "parallel_tool_calls": False, "reasoning": {"effort": "low"}, "store": True, "metadata": {"a": "b"},
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
        "tool_choice": {"type": "function", "name": "f"},
        "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}, "strict": True}},
        "input": [
            {"role": "developer", "content": "dev"},
            {"role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "thinking"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{\"x\":1}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
            {"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,AA"}]},
        ],
    }, request_id="req-1")
    req = parsed.request
    assert parsed.include_usage and not parsed.stream and req.request_id == "req-1"
    assert req.max_tokens == 64 and req.temperature == 0.5 and req.top_p == 0.9
    assert req.extra == {"parallel_tool_calls": False, "reasoning_effort": "low"}
    assert req.tools == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": True}}]
    assert req.tool_choice == {"type": "function", "function": {"name": "f"}}
    assert req.response_format == {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"},
                                                                          "strict": True}}
    m = req.messages
    assert [x["role"] for x in m] == ["system", "system", "user", "assistant", "tool", "tool", "user"]
    assert m[2]["content"] == "ab" and m[3]["content"] == "thinking"
    assert [c["id"] for c in m[3]["tool_calls"]] == ["c1", "c2"]
    assert m[4] == {"role": "tool", "tool_call_id": "c1", "content": "one"} and m[5]["content"] == "two"
    assert m[6]["content"][0]["type"] == "image_url"
    assert rw.parse_responses({"model": "r", "input": "hi"}).request.messages == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("body,param", [
    ({"model": "r"}, "input"),
    ({"input": "hi"}, "model"),
    ({"model": "r", "input": "hi", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"model": "r", "input": "hi", "bogus": 1}, "bogus"),
    ({"model": "r", "input": "hi", "tools": [{"type": "web_search"}]}, "tools[0]"),
    ({"model": "r", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"model": "r", "input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
    ({"model": "r", "input": "hi", "temperature": "hot"}, "temperature"),
    ({"model": "r", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
])
def test_refusals_name_the_parameter(body, param):
    with pytest.raises(RequestBodyError) as info:
        rw.parse_responses(body)
    assert info.value.param == param
    assert rw.error_reply(info.value).status == 400


def answer(rid, content, tool_calls, finish, usage) -> ChatResponse:
    return ChatResponse(request_id=rid, route="r", deployment="d", model="m", content=content, tool_calls=tool_calls,
                        finish_reason=finish, usage=usage, cost=0.0, attempts=(), latency_ms=1.0)


def test_response_object_validates_strictly():
    resp = answer("req-1", "hi", (ToolCall("c1", "f", "{}"),), "tool_calls", Usage(prompt_tokens=3, completion_tokens=4))
    body = json.loads(rw.encode_response(resp, model="r", request={"model": "r", "input": "x", "tools": [
        {"type": "function", "name": "f", "parameters": {}}]}))
    r = Response.model_validate_json(json.dumps(body))
    assert [o.type for o in r.output] == ["message", "function_call"] and r.usage.total_tokens == 7
    cut = answer("req-2", "half", (), "length", Usage())
    r = Response.model_validate_json(rw.encode_response(cut))
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"


def _events(raw: bytes) -> list[dict]:
    out = []
    for frame in raw.decode().strip().split("\n\n"):
        event, data = frame.split("\n")
        body = json.loads(data.removeprefix("data: "))
        assert event == f"event: {body['type']}"
        EVENTS.validate_json(json.dumps(body))
        out.append(body)
    return out


def test_event_encoder_text_then_tools_then_completed():
    enc = rw.EventEncoder(id="resp_1", model="r", request={"model": "r", "input": "x"})
    raw = enc.chunk(ChatChunk(content="Hel")) + enc.chunk(ChatChunk(content="lo"))
    raw += enc.chunk(ChatChunk(tool_calls=(ToolCallDelta(0, "c1", "f", '{"a"'),)))
    raw += enc.chunk(ChatChunk(tool_calls=(ToolCallDelta(0, None, None, ":1}"),)))
    raw += enc.chunk(ChatChunk(tool_calls=(ToolCallDelta(1, "c2", "g", "{}"),)))
    raw += enc.chunk(ChatChunk(finish_reason="tool_calls", usage=Usage(prompt_tokens=5, completion_tokens=6)))
    events = _events(raw + enc.done())
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]
    final = events[-1]["response"]
    assert [o["type"] for o in final["output"]] == ["message", "function_call", "function_call"]
    assert final["output"][0]["content"][0]["text"] == "Hello" and final["output"][1]["arguments"] == '{"a":1}'
    assert final["usage"]["total_tokens"] == 11 and final["status"] == "completed"


def test_event_encoder_empty_stream_and_error():
    enc = rw.EventEncoder(id="resp_2", model="r")
    kinds = [e["type"] for e in _events(enc.done())]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed" and "response.output_item.done" in kinds
    enc = rw.EventEncoder(id="resp_3", model="r")
    raw = enc.chunk(ChatChunk(content="a")) + enc.error(RequestBodyError("boom"))
    last = _events(raw)[-1]
    assert last["type"] == "error" and last["message"] == "boom" and last["error"]["message"] == "boom"
