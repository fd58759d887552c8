"""``POST /v1/responses`` over real HTTP (ServerThread + mock provider): the official openai SDK's
``client.responses`` (JSON, ``stream=True``, the ``responses.stream`` helper, a function-call round trip,
errors) and LangChain's ``ChatOpenAI(use_responses_api=True)``. Every streamed event is also validated
strictly against the SDK's pydantic event models."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter
from test_server import Env, config

from hyperion_core.server import create_app
from hyperion_core.server.testing import ServerThread

EVENTS: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
TOOLS = [{"type": "function", "name": "magic_function", "description": "magic",
          "parameters": {"type": "object", "properties": {"input": {"type": "integer"}}, "required": ["input"]}}]
ASK = "What is the value of magic_function(3)? Use the tool."


@pytest.fixture
def env(mock, tmp_path, request):
    dep = request.node.name[-24:].replace("[", "-").replace("]", "")
    app = create_app(config(mock, f"r-{dep}", tmp_path))
    srv = ServerThread(app).start()
    e = Env(srv, app.state.gateway)
    e.dep = f"r-{dep}"
    yield e
    srv.stop()


def test_text_json_with_instructions_and_params(env):
    client = env.oai(env.key())
    raw = client.responses.with_raw_response.create(
        model="chat", input="hello there", instructions="Be brief.", max_output_tokens=200, temperature=0.2,
    )
    resp = raw.parse()
    Response.model_validate(resp.model_dump(), strict=False)  # every required field present, typed
    assert resp.status == "completed" and resp.object == "response" and resp.model == "chat"
    assert resp.output_text and resp.output[0].type == "message" and resp.output[0].role == "assistant"
    assert resp.instructions == "Be brief." and resp.max_output_tokens == 200 and resp.temperature == 0.2
    assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert raw.headers["x-hyperion-route"] == "chat" and float(raw.headers["x-hyperion-cost"]) > 0
    (event,) = env.audit(request_id=raw.headers["x-hyperion-request-id"])
    assert event.outcome == "ok"
    # input items with roles (developer -> system, assistant history, content parts)
    resp = client.responses.create(model="solo", input=[
        {"role": "developer", "content": "You answer."},
        {"role": "user", "content": [{"type": "input_text", "text": "first question"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "first answer"}]},
        {"role": "user", "content": "second question"},
    ])
    assert "second question" in resp.output_text


def test_stream_event_sequence(env):
    client = env.oai(env.key())
    stream = client.responses.create(model="chat", input="tell me a story", stream=True)
    events = list(stream)
    for e in events:
        EVENTS.validate_python(e.model_dump(), strict=False)
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = next(e for e in events if e.type == "response.output_text.done")
    assert text and done.text == text
    final = events[-1].response
    assert final.output_text == text and final.usage.output_tokens > 0 and final.status == "completed"
    # the SDK's stream helper accumulates the same events into a final response
    with client.responses.stream(model="chat", input="tell me a story") as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == final.output_text == text


def test_function_call_round_trip(env):
    client = env.oai(env.key())
    first = client.responses.create(model="chat", input=ASK, tools=TOOLS)
    (call,) = [o for o in first.output if o.type == "function_call"]
    assert call.name == "magic_function" and json.loads(call.arguments) == {"input": 3} and call.call_id
    second = client.responses.create(model="chat", tools=TOOLS, input=[
        {"role": "user", "content": ASK},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "42"},
    ])
    assert "42" in second.output_text
    # streamed: the call's arguments as delta events, then the done events and the item
    events = list(client.responses.create(model="chat", input=ASK, tools=TOOLS, stream=True))
    for e in events:
        EVENTS.validate_python(e.model_dump(), strict=False)
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(args) == {"input": 3} and done.arguments == args and done.name == "magic_function"
    final = events[-1].response
    assert events[-1].type == "response.completed"
    assert [o.type for o in final.output if o.type == "function_call"] == ["function_call"]


def test_errors_in_openai_format(env):
    client = env.oai(env.key(), max_retries=0)
    with pytest.raises(openai.NotFoundError) as nf:
        client.responses.create(model="nope", input="hi")
    assert nf.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model="chat", input="hi", previous_response_id="resp_123")
    assert bad.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="chat", input="hi", tools=[{"type": "web_search"}])
    with pytest.raises(openai.AuthenticationError):
        env.oai("hk-wrong", max_retries=0).responses.create(model="chat", input="hi")
    r = httpx.post(env.url + "/v1/responses", content=b"{not json", headers={"authorization": "Bearer x"})
    assert r.status_code in (400, 401) and "error" in r.json()
    poor = env.key("poor", team="poor")
    with pytest.raises(openai.RateLimitError) as rl:
        env.oai(poor, max_retries=0).responses.create(model="chat", input="spend it", max_output_tokens=50)
    assert rl.value.body["code"] == "insufficient_quota"


def test_langchain_use_responses_api(env):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=env.url + "/v1", api_key=env.key(), model="chat", use_responses_api=True,
                     max_retries=0)
    msg = llm.invoke("hello from langchain")
    assert msg.text and msg.usage_metadata["output_tokens"] > 0
    text = "".join(c.text for c in llm.stream("tell me a story"))
    assert text

    @tool
    def magic_function(input: int) -> int:
        """magic"""
        return input + 2

    bound = llm.bind_tools([magic_function])
    history = [HumanMessage(ASK)]
    ai = bound.invoke(history)
    assert ai.tool_calls[0]["name"] == "magic_function" and ai.tool_calls[0]["args"] == {"input": 3}
    history += [ai, ToolMessage("5", tool_call_id=ai.tool_calls[0]["id"])]
    final = bound.invoke(history)
    assert "5" in final.text


def test_raw_sse_frames_validate_against_the_sdk_models(env):
    body = {"model": "chat", "input": ASK, "tools": TOOLS, "stream": True}
    with httpx.stream("POST", env.url + "/v1/responses", json=body,
                      headers={"authorization": f"Bearer {env.key()}"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        frames = r.read().decode().strip().split("\n\n")
    for frame in frames:
        event_line, data_line = frame.split("\n")
        data = json.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {data['type']}"
        EVENTS.validate_json(json.dumps(data))  # the wire bytes themselves, not the SDK's lenient construct


def test_failure_mid_stream_is_an_error_event_the_sdk_raises(env, mock):
    mock.fault(env.dep, cut_after_chunks=2)
    client = env.oai(env.key(), max_retries=0)
    seen = []
    with pytest.raises(openai.APIError) as info:
        for e in client.responses.create(model="solo", input="tell me a long story", stream=True):
            seen.append(e.type)
    assert "response.created" in seen and "response.completed" not in seen
    assert info.value.body["code"]
