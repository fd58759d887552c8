"""The server-side wire codecs (``hyperion_core.wire``): what they encode, the official SDKs and our own
adapters read back; what they refuse, they refuse as the real APIs (and the strict mock) do; every
Hyperion error has a status and a body. No sockets: the SDKs talk to ``MockTransport``s."""

from __future__ import annotations

import base64
import struct
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import orjson
import pydantic
import pytest
from anthropic.types import Message as AnthropicMessage
from anthropic.types import RawMessageStreamEvent
from openai.types.chat import ChatCompletion, ChatCompletionChunk

# modules that define HyperionError subclasses, imported so the exhaustive mapping test sees them all
import hyperion_core.audit  # noqa: F401
import hyperion_core.cache.embedders  # noqa: F401
import hyperion_core.redis_server  # noqa: F401
from hyperion_core import errors as E
from hyperion_core.http import HttpClient
from hyperion_core.mock_provider import anthropic_wire as mock_anthropic
from hyperion_core.mock_provider import openai_wire as mock_openai
from hyperion_core.mock_provider.strict import validate
from hyperion_core.providers.anthropic import AnthropicAdapter, AnthropicStreamParser
from hyperion_core.providers.base import Target
from hyperion_core.providers.openai import OpenAIAdapter, OpenAIStreamParser
from hyperion_core.types import (
    Attempt,
    ChatChunk,
    ChatResponse,
    EmbeddingResponse,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from hyperion_core.wire import ErrorReply, RequestBodyError
from hyperion_core.wire import anthropic as wa
from hyperion_core.wire import openai as wo

# ------------------------------------------------------------------------------------------ helpers

TOOL = {
    "type": "function",
    "function": {
        "name": "magic_function",
        "description": "Applies a magic function to an input.",
        "parameters": {"type": "object", "properties": {"input": {"type": "integer"}}, "required": ["input"]},
    },
}
USAGE = Usage(prompt_tokens=120, completion_tokens=40, cached_prompt_tokens=100, reasoning_tokens=12)
A_USAGE = Usage(prompt_tokens=120, completion_tokens=40, cached_prompt_tokens=80, cache_write_tokens=30)


def response(content="Hello there.", tool_calls=(), finish="stop", usage=USAGE) -> ChatResponse:
    return ChatResponse(
        request_id="req-1",
        route="chat",
        deployment="d1",
        model="gpt-4o-mini",
        content=content,
        tool_calls=tuple(tool_calls),
        finish_reason=finish,
        usage=usage,
        cost=0.001,
        attempts=(Attempt("d1", "ok", 1.0),),
        latency_ms=1.0,
    )


CALLS = (
    ToolCall("call_1", "magic_function", '{"input": 3}'),
    ToolCall("call_2", "other", "{}"),
)


def text_chunks(usage=USAGE) -> list[ChatChunk]:
    return [
        ChatChunk(content="Hel"),
        ChatChunk(content="lo, "),
        ChatChunk(content="world."),
        ChatChunk(finish_reason="stop", usage=usage),
    ]


def tool_chunks(usage=USAGE, text=False) -> list[ChatChunk]:
    out = [ChatChunk(content="Let me check.")] if text else []
    out += [
        ChatChunk(tool_calls=(ToolCallDelta(0, "call_1", "magic_function", ""),)),
        ChatChunk(tool_calls=(ToolCallDelta(0, arguments='{"inp'),)),
        ChatChunk(tool_calls=(ToolCallDelta(0, arguments='ut": 3}'),)),
        ChatChunk(tool_calls=(ToolCallDelta(1, "call_2", "other", "{}"),)),
        ChatChunk(finish_reason="tool_calls", usage=usage),
    ]
    return out


def events(raw: bytes) -> list[tuple[str | None, bytes]]:
    """SSE frames as (event, data), as ``hyperion_core.http.sse_events`` reads them."""
    out = []
    for frame in raw.split(b"\n\n"):
        if not frame:
            continue
        event, data = None, []
        for line in frame.split(b"\n"):
            if line.startswith(b"event: "):
                event = line[7:].decode()
            elif line.startswith(b"data: "):
                data.append(line[6:])
        out.append((event, b"\n".join(data)))
    return out


def reassemble(parser, raw: bytes) -> dict[str, Any]:
    """Feed SSE bytes to one of our adapters' stream parsers; the answer it reads."""
    content, calls, finish, usage = "", {}, None, None
    for event, data in events(raw):
        chunk = parser.feed(event, data)
        if chunk is None:
            continue
        content += chunk.content
        for d in chunk.tool_calls:
            slot = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
            slot["id"] = slot["id"] or d.id
            slot["name"] = slot["name"] or d.name
            slot["arguments"] += d.arguments
        finish = chunk.finish_reason or finish
        usage = chunk.usage or usage
    assert parser.done
    tools = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items()))
    return {"content": content, "tool_calls": tools, "finish": finish, "usage": usage}


def target(wire: str) -> Target:
    base = {"openai": "http://up/v1", "anthropic": "http://up"}[wire]
    return Target(name="d1", route="r", kind=wire, wire=wire, model="m", base_url=base, api_key="sk-test")


OPENAI_ADAPTER = OpenAIAdapter(target("openai"), HttpClient())
ANTHROPIC_ADAPTER = AnthropicAdapter(target("anthropic"), HttpClient())


def openai_client(handler, **kw) -> openai.AsyncOpenAI:
    transport = httpx.MockTransport(handler)
    kw.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(
        api_key="hk-test.secret",
        base_url="http://gw/v1",
        http_client=httpx.AsyncClient(transport=transport),
        **kw,
    )


def anthropic_client(handler, **kw) -> anthropic.AsyncAnthropic:
    transport = httpx2.MockTransport(handler)
    kw.setdefault("max_retries", 0)
    return anthropic.AsyncAnthropic(
        api_key="hk-test.secret",
        base_url="http://gw",
        http_client=httpx2.AsyncClient(transport=transport),
        **kw,
    )


SSE_HEADERS = {"content-type": "text/event-stream"}
MSGS = [{"role": "user", "content": "hi"}]


# ===================================================================== OpenAI: requests


class TestOpenAIParse:
    def test_typed_fields_extra_and_stream_options(self):
        body = {
            "model": "chat",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
            "temperature": 0.2,
            "top_p": 0.9,
            "max_tokens": 50,
            "max_completion_tokens": 60,
            "stop": "END",
            "seed": 7,
            "n": 1,
            "tools": [TOOL],
            "tool_choice": "required",
            "response_format": {"type": "json_object"},
            "stream": True,
            "stream_options": {"include_usage": True},
            "logprobs": True,
            "top_logprobs": 2,
            "user": "u-1",
            "parallel_tool_calls": False,
            "frequency_penalty": None,  # an explicit null is "not given"
        }
        parsed = wo.parse_chat(orjson.dumps(body), request_id="req-x")
        r = parsed.request
        assert parsed.stream and parsed.include_usage
        assert r.route == "chat" and r.messages == body["messages"] and r.request_id == "req-x"
        assert (r.temperature, r.top_p, r.max_tokens, r.stop, r.seed, r.n) == (0.2, 0.9, 50, ["END"], 7, 1)
        assert (
            r.tools == [TOOL] and r.tool_choice == "required" and r.response_format == {"type": "json_object"}
        )
        assert r.extra == {
            "max_completion_tokens": 60,
            "logprobs": True,
            "top_logprobs": 2,
            "user": "u-1",
            "parallel_tool_calls": False,
        }

    def test_defaults(self):
        parsed = wo.parse_chat({"model": "chat", "messages": MSGS})
        assert not parsed.stream and not parsed.include_usage
        r = parsed.request
        assert r.stop is None and r.tools is None and r.extra == {} and r.max_tokens is None

    @pytest.mark.parametrize(
        "body, message, param, code",
        [
            (
                {"model": "chat", "messages": MSGS, "foo": 1},
                "Unrecognized request argument supplied: foo",
                None,
                None,
            ),
            (
                {"model": "chat", "messages": [{"role": "user", "content": "hi", "foo": 1}]},
                "Unknown parameter: 'messages[0].foo'.",
                "messages[0].foo",
                "unknown_parameter",
            ),
            (
                {"messages": MSGS},
                "Missing required parameter: 'model'.",
                "model",
                "missing_required_parameter",
            ),
            (
                {"model": "chat", "messages": MSGS, "temperature": "hot"},
                "Invalid type for 'temperature': expected a decimal, but got a string instead.",
                "temperature",
                "invalid_type",
            ),
            (
                {"model": "chat", "messages": [{"role": "wizard", "content": "hi"}]},
                None,
                "messages[0].role",
                "invalid_value",
            ),
            (
                {"model": "chat", "messages": [{"role": "tool", "content": "4", "tool_call_id": "x"}]},
                "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
                "'tool_calls'.",
                "messages[0].role",
                None,
            ),
            (
                {"model": "chat", "messages": []},
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty "
                "array instead.",
                "messages",
                "empty_array",
            ),
        ],
    )
    def test_refused_as_the_api_and_the_strict_mock_refuse(self, body, message, param, code):
        with pytest.raises(RequestBodyError) as info:
            wo.parse_chat(orjson.dumps(body))
        reply = wo.error_reply(info.value)
        assert reply.status == 400
        err = reply.payload["error"]
        assert err["type"] == "invalid_request_error" and err["param"] == param and err["code"] == code
        if message is not None:
            assert err["message"] == message
        issue = validate("openai.chat", body)
        if issue is not None:  # the strict mock renders the very same body
            assert mock_openai.invalid_body(issue) == (400, reply.payload)

    def test_not_json(self):
        with pytest.raises(RequestBodyError) as info:
            wo.parse_chat(b"{nope")
        assert "could not parse the JSON body" in wo.error_reply(info.value).payload["error"]["message"]
        with pytest.raises(RequestBodyError):
            wo.parse_chat(b"[1, 2]")

    def test_allow_lets_named_extras_through_and_still_checks_the_rest(self):
        body = {"model": "chat", "messages": MSGS, "top_k": 5, "repetition_penalty": 1.1}
        parsed = wo.parse_chat(body, allow={"top_k", "repetition_penalty"})
        assert parsed.request.extra == {"top_k": 5, "repetition_penalty": 1.1}
        with pytest.raises(RequestBodyError):
            wo.parse_chat({**body, "temperature": "x"}, allow={"top_k", "repetition_penalty"})
        assert wo.parse_chat({**body, "foo": 1}, strict=False).request.extra["foo"] == 1

    def test_embeddings(self):
        p = wo.parse_embeddings(
            b'{"model": "emb", "input": ["a", "b"], "dimensions": 8, "encoding_format": "base64"}'
        )
        assert (p.route, p.inputs, p.dimensions, p.encoding_format) == ("emb", ["a", "b"], 8, "base64")
        assert wo.parse_embeddings({"model": "emb", "input": "a"}).inputs == ["a"]
        with pytest.raises(RequestBodyError):
            wo.parse_embeddings({"model": "emb", "input": [1, 2, 3]})
        with pytest.raises(RequestBodyError) as info:
            wo.parse_embeddings({"model": "emb", "input": "a", "foo": 1})
        assert info.value.message == "Unrecognized request argument supplied: foo"


# ===================================================================== OpenAI: answers


class TestOpenAIEncode:
    @pytest.mark.parametrize(
        "resp",
        [response(), response(content=None, tool_calls=CALLS, finish="tool_calls"), response(finish=None)],
        ids=["text", "tools", "no-finish"],
    )
    def test_sdk_accepts_and_adapter_reads_back(self, resp):
        body = orjson.loads(wo.encode_chat_completion(resp, system_fingerprint="fp_1"))
        sdk = ChatCompletion.model_validate(body)
        assert sdk.choices[0].message.content == resp.content
        assert sdk.usage.prompt_tokens_details.cached_tokens == 100
        assert sdk.usage.completion_tokens_details.reasoning_tokens == 12
        assert sdk.system_fingerprint == "fp_1" and sdk.model == "gpt-4o-mini" and sdk.id == "chatcmpl-req-1"
        back = OPENAI_ADAPTER.parse_response(body)
        assert back.content == resp.content and back.tool_calls == resp.tool_calls
        assert back.finish_reason == (resp.finish_reason or "stop")
        assert back.usage == resp.usage

    def test_model_override_and_logprobs(self):
        logprobs = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}]}
        body = wo.chat_completion(response(), model="chat", logprobs=logprobs, created=5)
        sdk = ChatCompletion.model_validate(body)
        assert sdk.model == "chat" and sdk.created == 5 and sdk.choices[0].logprobs.content[0].token == "Hi"

    def test_unknown_finish_reason_is_one_the_sdk_takes(self):
        assert wo.chat_completion(response(finish="SAFETY_X"))["choices"][0]["finish_reason"] == "stop"
        tools = response(content=None, tool_calls=CALLS, finish=None)
        assert wo.chat_completion(tools)["choices"][0]["finish_reason"] == "tool_calls"


def _stream_kw(**kw):
    return {"id": "chatcmpl-1", "model": "chat", "created": 1, **kw}


class TestOpenAIStream:
    @pytest.mark.parametrize(
        "chunks", [text_chunks(), tool_chunks(), tool_chunks(text=True)], ids=["text", "tools", "both"]
    )
    @pytest.mark.parametrize("include_usage", [True, False])
    def test_chunks_validate_and_adapter_reads_back(self, chunks, include_usage):
        raw = wo.encode_stream(chunks, **_stream_kw(include_usage=include_usage))
        frames = events(raw)
        assert frames[-1] == (None, b"[DONE]")
        objs = [ChatCompletionChunk.model_validate(orjson.loads(d)) for _, d in frames[:-1]]
        assert objs[0].choices[0].delta.role == "assistant"
        assert all(o.choices[0].delta.role is None for o in objs[1:] if o.choices)
        finishes = [o.choices[0].finish_reason for o in objs if o.choices and o.choices[0].finish_reason]
        assert finishes == [chunks[-1].finish_reason]
        if include_usage:
            assert objs[-1].choices == [] and objs[-1].usage.prompt_tokens_details.cached_tokens == 100
        else:
            assert all(o.usage is None for o in objs)
        back = reassemble(OpenAIStreamParser(), raw)
        want_content = "".join(c.content for c in chunks)
        want_calls = tuple(CALLS) if any(c.tool_calls for c in chunks) else ()
        assert back["content"] == want_content and back["tool_calls"] == want_calls
        assert back["finish"] == chunks[-1].finish_reason
        assert back["usage"] == (USAGE if include_usage else Usage())

    def test_tool_call_without_id_gets_one(self):
        chunks = [
            ChatChunk(tool_calls=(ToolCallDelta(0, None, "f", "{}"),)),
            ChatChunk(finish_reason="tool_calls"),
        ]
        back = reassemble(OpenAIStreamParser(), wo.encode_stream(chunks, **_stream_kw()))
        assert back["tool_calls"][0].id and back["tool_calls"][0].name == "f"

    def test_empty_stream_still_has_role_finish_and_done(self):
        raw = wo.encode_stream(
            [ChatChunk(finish_reason="stop", usage=USAGE)], **_stream_kw(include_usage=True)
        )
        objs = [orjson.loads(d) for _, d in events(raw)[:-1]]
        assert objs[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert objs[1]["choices"][0]["finish_reason"] == "stop" and objs[2]["usage"]["prompt_tokens"] == 120

    async def test_openai_sdk_reads_the_stream(self):
        seen = []

        def handler(request: httpx.Request) -> httpx.Response:
            parsed = wo.parse_chat(request.content)  # a real client's body parses too
            seen.append(parsed)
            enc = wo.ChunkEncoder(
                id="chatcmpl-9", model=parsed.request.route, include_usage=parsed.include_usage
            )
            raw = b"".join(enc.chunk(c) for c in tool_chunks(text=True)) + enc.done()
            return httpx.Response(200, content=raw, headers=SSE_HEADERS)

        client = openai_client(handler)
        stream = await client.chat.completions.create(
            model="chat", messages=MSGS, tools=[TOOL], stream=True, stream_options={"include_usage": True}
        )
        got = [c async for c in stream]
        assert seen[0].stream and seen[0].include_usage and seen[0].request.tools == [TOOL]
        assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == "Let me check."
        assert got[-1].usage.total_tokens == 160
        strict = [
            {"type": "function", "function": {**TOOL["function"], "strict": True}},
            {
                "type": "function",
                "function": {"name": "other", "parameters": {"type": "object"}, "strict": True},
            },
        ]
        async with client.chat.completions.stream(model="chat", messages=MSGS, tools=strict) as s:
            final = await s.get_final_completion()
        msg = final.choices[0].message
        assert msg.content == "Let me check." and final.choices[0].finish_reason == "tool_calls"
        assert [(t.id, t.function.name, t.function.arguments) for t in msg.tool_calls] == [
            ("call_1", "magic_function", '{"input": 3}'),
            ("call_2", "other", "{}"),
        ]

    async def test_openai_sdk_reads_a_completion_embeddings_and_models(self):
        vectors = [[0.25, -0.5, 1.0], [0.0, 0.125, -1.0]]
        emb = EmbeddingResponse(vectors, "text-embedding-3-small", "d1", Usage(prompt_tokens=4), 0.0, (), 1.0)

        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/models"):
                return httpx.Response(200, content=wo.encode_models(["chat", "emb"]))
            if request.url.path.endswith("/embeddings"):
                p = wo.parse_embeddings(request.content)
                return httpx.Response(
                    200, content=wo.encode_embeddings(emb, model=p.route, encoding_format=p.encoding_format)
                )
            return httpx.Response(200, content=wo.encode_chat_completion(response(), model="chat"))

        client = openai_client(handler)
        done = await client.chat.completions.create(model="chat", messages=MSGS)
        assert done.choices[0].message.content == "Hello there." and done.usage.total_tokens == 160
        e = await client.embeddings.create(model="emb", input=["a", "b"])  # the SDK asks for base64
        assert [d.embedding for d in e.data] == vectors and e.usage.prompt_tokens == 4
        e = await client.embeddings.create(model="emb", input="a", encoding_format="float")
        assert e.data[0].embedding == vectors[0]
        assert [m.id async for m in client.models.list()] == ["chat", "emb"]

    def test_base64_embeddings_are_little_endian_float32(self):
        emb = EmbeddingResponse([[0.5, -2.0]], "m", "d1", Usage(prompt_tokens=1), 0.0, (), 1.0)
        data = wo.embeddings(emb, encoding_format="base64")["data"][0]["embedding"]
        assert struct.unpack("<2f", base64.b64decode(data)) == (0.5, -2.0)

    async def test_error_mid_stream_raises_in_the_sdk_and_our_parser(self):
        enc = wo.ChunkEncoder(**_stream_kw())
        cut = E.StreamInterruptedError("upstream died", route="chat", request_id="req-7")
        raw = enc.chunk(ChatChunk(content="Hel")) + enc.error(cut)
        client = openai_client(lambda r: httpx.Response(200, content=raw, headers=SSE_HEADERS))
        stream = await client.chat.completions.create(model="chat", messages=MSGS, stream=True)
        with pytest.raises(openai.APIError, match="upstream died"):
            async for _ in stream:
                pass
        with pytest.raises(E.ProviderError, match="req-7"):
            reassemble(OpenAIStreamParser(), raw)


# ===================================================================== Anthropic: requests

IMG = "iVBORw0KGgo="
PDF = "JVBERi0xLjQ="


class TestAnthropicParse:
    BODY = {
        "model": "claude",
        "max_tokens": 300,
        "system": "Be brief.",
        "temperature": 0.5,
        "top_k": 5,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
        "stream": True,
        "tools": [
            {"name": "magic_function", "description": "Magic.", "input_schema": {"type": "object"}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": IMG}},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "magic_function", "input": {"input": 3}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "5"},
                    {"type": "text", "text": "And now?"},
                ],
            },
        ],
    }

    def test_conversion_to_openai_format(self):
        parsed = wa.parse_messages(orjson.dumps(self.BODY))
        r = parsed.request
        assert parsed.stream and parsed.include_usage
        assert r.route == "claude" and r.max_tokens == 300 and r.temperature == 0.5 and r.stop == ["END"]
        assert r.extra == {"top_k": 5, "user": "u-1", "parallel_tool_calls": False}
        assert r.tool_choice == "required"
        assert r.tools[0] == {
            "type": "function",
            "function": {"name": "magic_function", "parameters": {"type": "object"}, "description": "Magic."},
        }
        assert r.tools[1] == self.BODY["tools"][1]  # a server tool passes as it is
        assert r.messages == [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{IMG}"}},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                    {
                        "type": "file",
                        "file": {
                            "filename": "document.pdf",
                            "file_data": f"data:application/pdf;base64,{PDF}",
                        },
                    },
                ],
            },
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "magic_function", "arguments": '{"input":3}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "5"},
            {"role": "user", "content": "And now?"},
        ]

    def test_the_anthropic_adapter_sends_the_request_back_unchanged(self):
        body = {k: v for k, v in self.BODY.items() if k not in ("tools", "tool_choice")}
        sent = ANTHROPIC_ADAPTER.build_body(wa.parse_messages(body).request, stream=True)
        assert sent["system"] == body["system"] and sent["stop_sequences"] == ["END"]
        assert sent["metadata"] == {"user_id": "u-1"} and sent["top_k"] == 5 and sent["max_tokens"] == 300
        assert sent["messages"] == body["messages"]

    def test_thinking_cache_control_and_text_documents(self):
        thinking = {"type": "thinking", "thinking": "Hmm.", "signature": "sig"}
        body = {
            "model": "claude",
            "max_tokens": 4000,
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "system": [{"type": "text", "text": "Long context.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                        }
                    ],
                },
                {
                    "role": "assistant",
                    "content": [thinking, {"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [{"type": "text", "text": "ok"}],
                        }
                    ],
                },
            ],
        }
        r = wa.parse_messages(body).request
        assert r.extra == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
        assert r.messages[0] == {"role": "system", "content": body["system"]}
        assert (
            r.messages[1]["content"][0]["file"]["file_data"]
            == "data:text/plain;base64," + base64.b64encode(b"notes").decode()
        )
        assert r.messages[2]["content"] == [thinking] and r.messages[2]["tool_calls"][0]["id"] == "t1"
        assert r.messages[3] == {"role": "tool", "tool_call_id": "t1", "content": "ok"}
        sent = ANTHROPIC_ADAPTER.build_body(r, stream=False)
        assert sent["thinking"] == body["thinking"] and sent["system"] == body["system"]
        assert sent["messages"][:2] == body["messages"][:2]
        # a text-only tool result comes back as its text (the same to the model)
        assert sent["messages"][2]["content"] == [
            {"type": "tool_result", "tool_use_id": "t1", "content": "ok"}
        ]

    @pytest.mark.parametrize(
        "choice, expected, parallel",
        [
            ({"type": "auto"}, "auto", None),
            ({"type": "none"}, "none", None),
            ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}, None),
            ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
        ],
    )
    def test_tool_choice(self, choice, expected, parallel):
        assert wa.convert_tool_choice(choice) == (expected, parallel)

    @pytest.mark.parametrize(
        "body, message",
        [
            (
                {"model": "c", "max_tokens": 5, "messages": MSGS, "foo": 1},
                "foo: Extra inputs are not permitted",
            ),
            ({"model": "c", "messages": MSGS}, "max_tokens: Field required"),
            (
                {"model": "c", "max_tokens": "x", "messages": MSGS},
                "max_tokens: Input should be a valid integer",
            ),
            ({"model": "c", "max_tokens": 5, "messages": []}, "messages: at least one message is required"),
            (
                {
                    "model": "c",
                    "max_tokens": 5,
                    "messages": MSGS,
                    "thinking": {"type": "enabled", "budget_tokens": 2000},
                },
                "`max_tokens` must be greater than `thinking.budget_tokens`.",
            ),
        ],
    )
    def test_refused_as_the_api_and_the_strict_mock_refuse(self, body, message):
        with pytest.raises(RequestBodyError) as info:
            wa.parse_messages(body)
        reply = wa.error_reply(info.value)
        assert reply.status == 400
        assert reply.payload == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": message},
        }
        issue = validate("anthropic.messages", body)
        if issue is not None:
            assert mock_anthropic.invalid_body(issue)[1]["error"] == reply.payload["error"]


# ===================================================================== Anthropic: answers


class TestAnthropicEncode:
    @pytest.mark.parametrize(
        "resp",
        [
            response(usage=A_USAGE),
            response(content="Let me check.", tool_calls=CALLS, finish="tool_calls", usage=A_USAGE),
            response(content="cut", finish="length", usage=A_USAGE),
        ],
        ids=["text", "tools", "length"],
    )
    def test_sdk_accepts_and_adapter_reads_back(self, resp):
        body = orjson.loads(wa.encode_message(resp, model="claude"))
        sdk = AnthropicMessage.model_validate(body)
        assert sdk.model == "claude" and sdk.usage.cache_read_input_tokens == 80
        assert sdk.usage.input_tokens == 10 and sdk.usage.cache_creation_input_tokens == 30
        back = ANTHROPIC_ADAPTER.parse_response(body)
        assert back.content == resp.content and back.finish_reason == resp.finish_reason
        assert back.tool_calls == tuple(
            ToolCall(t.id, t.name, orjson.dumps(orjson.loads(t.arguments)).decode())
            for t in CALLS[: len(resp.tool_calls)]
        )
        assert back.usage == resp.usage

    def test_reasoning_tokens_are_thinking_tokens(self):
        body = wa.message(response(usage=USAGE))
        assert AnthropicMessage.model_validate(body).usage.output_tokens_details.thinking_tokens == 12

    @pytest.mark.parametrize(
        "chunks",
        [text_chunks(A_USAGE), tool_chunks(A_USAGE), tool_chunks(A_USAGE, text=True)],
        ids=["text", "tools", "both"],
    )
    def test_events_validate_and_adapter_reads_back(self, chunks):
        raw = wa.encode_stream(chunks, id="msg_1", model="claude")
        frames = events(raw)
        adapter = pydantic.TypeAdapter(RawMessageStreamEvent)
        for name, data in frames:
            assert adapter.validate_python(orjson.loads(data)).type == name
        names = [n for n, _ in frames]
        assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
        # blocks are sequential: each start is stopped before the next one starts
        opened = [n for n in names if n in ("content_block_start", "content_block_stop")]
        assert opened == ["content_block_start", "content_block_stop"] * (len(opened) // 2)
        back = reassemble(AnthropicStreamParser(), raw)
        want_calls = (
            tuple(ToolCall(t.id, t.name, t.arguments) for t in CALLS)
            if chunks[-1].finish_reason == "tool_calls"
            else ()
        )
        assert back["content"] == "".join(c.content for c in chunks) and back["tool_calls"] == want_calls
        assert back["finish"] == chunks[-1].finish_reason and back["usage"] == A_USAGE

    async def test_anthropic_sdk_reads_the_stream_and_the_message(self):
        seen = []

        def handler(request: httpx2.Request) -> httpx2.Response:
            parsed = wa.parse_messages(request.content)
            seen.append(parsed)
            if not parsed.stream:
                return httpx2.Response(
                    200, content=wa.encode_message(response(usage=A_USAGE), model="claude")
                )
            raw = wa.encode_stream(tool_chunks(A_USAGE, text=True), id="msg_9", model=parsed.request.route)
            return httpx2.Response(200, content=raw, headers=SSE_HEADERS)

        client = anthropic_client(handler)
        tools = [{"name": "magic_function", "input_schema": {"type": "object"}}]
        async with client.messages.stream(model="claude", max_tokens=100, messages=MSGS, tools=tools) as s:
            texts = [t async for t in s.text_stream]
            final = await s.get_final_message()
        assert "".join(texts) == "Let me check."
        assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
        assert final.content[1].input == {"input": 3} and final.content[2].input == {}
        assert final.stop_reason == "tool_use" and final.usage.input_tokens == 10
        assert final.usage.cache_read_input_tokens == 80 and final.usage.output_tokens == 40
        done = await client.messages.create(model="claude", max_tokens=100, messages=MSGS)
        assert done.content[0].text == "Hello there." and done.stop_reason == "end_turn"
        assert seen[0].stream and seen[0].request.max_tokens == 100

    async def test_error_mid_stream_raises_in_the_sdk_and_our_parser(self):
        enc = wa.EventEncoder(id="msg_1", model="claude")
        raw = enc.chunk(ChatChunk(content="Hel")) + enc.error(
            E.StreamInterruptedError("upstream died", request_id="req-7")
        )
        client = anthropic_client(lambda r: httpx2.Response(200, content=raw, headers=SSE_HEADERS))
        with pytest.raises(anthropic.APIStatusError, match="upstream died"):
            async with client.messages.stream(model="claude", max_tokens=10, messages=MSGS) as s:
                async for _ in s:
                    pass
        with pytest.raises(E.ProviderError, match="req-7"):
            reassemble(AnthropicStreamParser(), raw)


# ===================================================================== errors


def _subclasses(cls: type) -> set[type]:
    out: set[type] = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _subclasses(sub)
    return out


#: every HyperionError class defined in hyperion_core (imported above: errors, audit, embedders, redis, wire)
CORE_ERRORS = sorted(
    {c for c in _subclasses(E.HyperionError) if c.__module__.startswith("hyperion_core.")}
    | {E.HyperionError},
    key=lambda c: c.__name__,
)


ANTHROPIC_TYPES = {
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "timeout_error",
    "overloaded_error",
}


def make(cls: type[E.HyperionError], message: str = "boom", **kw) -> E.HyperionError:
    try:
        err = cls(message, route="chat", request_id="req-42", **kw)
    except TypeError:
        err = cls(message)
        err.route, err.request_id = "chat", "req-42"
    return err


def test_the_error_tree_is_still_found():
    names = {c.__name__ for c in CORE_ERRORS}
    assert {"RouteNotFoundError", "BudgetExceededError", "AuditError", "RequestBodyError"} <= names


@pytest.mark.parametrize("cls", CORE_ERRORS, ids=lambda c: c.__name__)
def test_every_error_class_has_its_own_entry_on_both_wires(cls):
    """Fails when a new HyperionError subclass is added without deciding its status on each wire."""
    assert cls.__name__ in wo.ERRORS, f"add {cls.__name__} to hyperion_core.wire.openai.ERRORS"
    assert cls.__name__ in wa.ERRORS, f"add {cls.__name__} to hyperion_core.wire.anthropic.ERRORS"


def test_tables_have_no_stale_entries():
    names = {c.__name__ for c in CORE_ERRORS}
    assert set(wo.ERRORS) <= names and set(wa.ERRORS) <= names


@pytest.mark.parametrize("cls", CORE_ERRORS, ids=lambda c: c.__name__)
def test_every_error_renders_a_wire_body(cls):
    err = make(cls, "went wrong with sk-abcdefghijklmnop1234 in hand")
    o, a = wo.error_reply(err), wa.error_reply(err)
    for reply in (o, a):
        assert isinstance(reply, ErrorReply) and 400 <= reply.status <= 599
        assert "sk-abcdefghijklmnop" not in reply.content.decode()
    assert set(o.payload) == {"error"} and set(o.payload["error"]) == {"message", "type", "param", "code"}
    assert a.payload["type"] == "error" and set(a.payload["error"]) == {"type", "message"}
    assert a.payload["error"]["type"] in ANTHROPIC_TYPES
    if cls is not RequestBodyError:
        for message in (o.payload["error"]["message"], a.payload["error"]["message"]):
            assert "route: chat" in message and "request id: req-42" in message
    assert o.headers.get("x-request-id") == "req-42" and a.headers.get("request-id") == "req-42"


#: Hyperion error -> what our own adapters make of the reply (error_for_status), per wire. Where the
#: direction is meaningful (an upstream kind passed on) it is the same class; a gateway-side failure
#: (upstream credentials, a cut stream, every deployment failing) is an unavailable upstream one hop up.
BACK_OPENAI = {
    "HyperionError": E.ProviderUnavailableError,
    "ConfigError": E.ProviderUnavailableError,
    "EmbeddingsExtraMissingError": E.ProviderUnavailableError,
    "EmbedderIntegrityError": E.ProviderUnavailableError,
    "AuditError": E.ProviderUnavailableError,
    "RedisServerError": E.ProviderUnavailableError,
    "RequestError": E.BadRequestError,
    "RouteNotFoundError": E.NotFoundError,
    "InvalidRequestError": E.BadRequestError,
    "RequestBodyError": E.BadRequestError,
    "AccessError": E.AuthenticationError,
    "InvalidKeyError": E.AuthenticationError,
    "KeyRevokedError": E.AuthenticationError,
    "KeyExpiredError": E.AuthenticationError,
    "PermissionDeniedError": E.AuthenticationError,
    "BudgetExceededError": E.RateLimitError,
    "RateLimitedError": E.RateLimitError,
    "GovernanceStoreError": E.ProviderUnavailableError,
    "ProviderError": E.ProviderUnavailableError,
    "RateLimitError": E.RateLimitError,
    "ProviderUnavailableError": E.ProviderUnavailableError,
    "ProviderTimeoutError": E.ProviderTimeoutError,
    "FirstTokenTimeoutError": E.ProviderTimeoutError,
    "ProviderConnectionError": E.ProviderUnavailableError,
    "MalformedResponseError": E.ProviderUnavailableError,
    "StreamCutError": E.ProviderUnavailableError,
    "AuthenticationError": E.ProviderUnavailableError,
    "NotFoundError": E.ProviderUnavailableError,
    "BadRequestError": E.BadRequestError,
    "ContextWindowExceededError": E.ContextWindowExceededError,
    "ContentPolicyError": E.ContentPolicyError,
    "GuardrailBlockedError": E.ContentPolicyError,
    "RoutingError": E.ProviderUnavailableError,
    "AllDeploymentsFailedError": E.ProviderUnavailableError,
    "NoHealthyDeploymentError": E.ProviderUnavailableError,
    "DeadlineExceededError": E.ProviderTimeoutError,
    "StreamInterruptedError": E.ProviderUnavailableError,
}
BACK_ANTHROPIC = {**BACK_OPENAI, "BudgetExceededError": E.ProviderError, "GuardrailBlockedError": E.BadRequestError}
SAME_CLASS = (
    E.RateLimitError,
    E.ProviderUnavailableError,
    E.ProviderTimeoutError,
    E.BadRequestError,
    E.ContextWindowExceededError,
    E.ContentPolicyError,
)


@pytest.mark.parametrize("cls", CORE_ERRORS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_our_adapters_read_the_reply_back(cls, wire):
    err = make(cls)
    codec, adapter, back = (
        (wo, OPENAI_ADAPTER, BACK_OPENAI) if wire == "openai" else (wa, ANTHROPIC_ADAPTER, BACK_ANTHROPIC)
    )
    reply = codec.error_reply(err)
    got = adapter.parse_error(reply.status, reply.headers, reply.content)
    assert type(got) is back[cls.__name__]
    if cls in SAME_CLASS:
        assert type(got) is cls


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_retry_after_survives_the_round_trip(wire):
    codec, adapter = (wo, OPENAI_ADAPTER) if wire == "openai" else (wa, ANTHROPIC_ADAPTER)
    for err in (
        E.RateLimitedError("slow down", limit_name="key:rpm", retry_after=1.25, route="chat"),
        E.RateLimitError("upstream 429", status=429, retry_after=3.0),
    ):
        reply = codec.error_reply(err)
        assert reply.status == 429 and reply.headers["retry-after"] == str(int(err.retry_after + 0.999))
        assert adapter.parse_error(reply.status, reply.headers, reply.content).retry_after == err.retry_after


def test_openai_statuses_and_codes():
    cases = {
        E.RouteNotFoundError("unknown route 'x'"): (404, "model_not_found"),
        E.InvalidKeyError("bad key"): (401, "invalid_api_key"),
        E.PermissionDeniedError("no"): (403, "permission_denied"),
        E.BudgetExceededError("team budget $5"): (429, "insufficient_quota"),
        E.RateLimitedError("slow", limit_name="key:tpm", retry_after=1): (429, "rate_limit_exceeded"),
        E.ContextWindowExceededError("too long", status=400): (400, "context_length_exceeded"),
        E.DeadlineExceededError("late"): (504, "timeout"),
        E.GovernanceStoreError("redis down"): (503, "service_unavailable"),
    }
    for err, (status, code) in cases.items():
        reply = wo.error_reply(err)
        assert (reply.status, reply.payload["error"]["code"]) == (status, code), err
    assert (
        wo.error_reply(E.RateLimitedError("slow", limit_name="key:tpm")).payload["error"]["type"] == "tokens"
    )
    assert wo.error_reply(E.ContextWindowExceededError("x")).payload["error"]["param"] == "messages"


def test_budget_refusal_is_not_retried_like_a_rate_limit():
    budget = E.BudgetExceededError("team budget $5.00", budget="team:a", resets_at=1e10)
    for codec, status in ((wo, 429), (wa, 402)):
        reply = codec.error_reply(budget)
        assert reply.status == status and reply.headers["x-should-retry"] == "false"
        assert "retry-after" not in reply.headers
    assert "x-should-retry" not in wo.error_reply(E.RateLimitedError("slow", retry_after=1)).headers


def test_every_deployment_failing_takes_the_status_of_the_last_failure():
    last = E.RateLimitError("upstream 429", status=429, retry_after=2.0)
    err = E.AllDeploymentsFailedError("all deployments of route 'chat' failed", route="chat")
    err.__cause__ = last
    for codec in (wo, wa):
        reply = codec.error_reply(err)
        assert reply.status == 429 and reply.headers["retry-after"] == "2"
    err.__cause__ = E.ProviderUnavailableError("upstream 503", status=503)
    assert wo.error_reply(err).status == 503 and wa.error_reply(err).status == 529
    assert wo.error_reply(E.NoHealthyDeploymentError("all open")).status == 503


def test_upstream_credentials_are_not_the_callers_problem_and_not_quoted():
    err = E.AuthenticationError("upstream 401: Incorrect API key provided: sk-pro****abcd", status=401)
    for codec in (wo, wa):
        reply = codec.error_reply(err)
        assert reply.status == 502 and "sk-" not in reply.content.decode()
        assert "gateway" in reply.content.decode() and reply.headers["x-should-retry"] == "false"


def test_non_hyperion_exceptions_are_a_bare_500():
    for codec in (wo, wa):
        reply = codec.error_reply(RuntimeError("secret internals sk-abcdefghijklmnop"))
        assert reply.status == 500 and "internals" not in reply.content.decode()


OPENAI_SDK_ERRORS = [
    (E.InvalidRequestError("bad"), openai.BadRequestError),
    (E.InvalidKeyError("who?"), openai.AuthenticationError),
    (E.PermissionDeniedError("no"), openai.PermissionDeniedError),
    (E.RouteNotFoundError("unknown route 'x'"), openai.NotFoundError),
    (E.RateLimitedError("slow", retry_after=0.01), openai.RateLimitError),
    (E.BudgetExceededError("budget"), openai.RateLimitError),
    (E.ProviderUnavailableError("down"), openai.InternalServerError),
    (E.DeadlineExceededError("late"), openai.InternalServerError),
]


@pytest.mark.parametrize(
    "err, sdk_cls", OPENAI_SDK_ERRORS, ids=lambda x: getattr(x, "__name__", type(x).__name__)
)
async def test_openai_sdk_raises_its_own_class(err, sdk_cls):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        reply = wo.error_reply(err)
        return httpx.Response(reply.status, content=reply.content, headers=reply.headers)

    client = openai_client(handler, max_retries=1)
    with pytest.raises(sdk_cls) as info:
        await client.chat.completions.create(model="chat", messages=MSGS)
    assert info.value.body["message"].startswith(err.message)
    retried = isinstance(err, (E.RateLimitedError, E.ProviderUnavailableError, E.DeadlineExceededError))
    assert len(calls) == (
        2 if retried else 1
    )  # a budget refusal is not retried; a rate limit is, after 10 ms


ANTHROPIC_SDK_ERRORS = [
    (E.InvalidRequestError("bad"), anthropic.BadRequestError),
    (E.InvalidKeyError("who?"), anthropic.AuthenticationError),
    (E.PermissionDeniedError("no"), anthropic.PermissionDeniedError),
    (E.RouteNotFoundError("unknown route 'x'"), anthropic.NotFoundError),
    (E.RateLimitedError("slow", retry_after=0.01), anthropic.RateLimitError),
    (E.BudgetExceededError("budget"), anthropic.APIStatusError),
    (E.NoHealthyDeploymentError("all open"), anthropic.InternalServerError),
    (E.DeadlineExceededError("late"), anthropic.InternalServerError),
]


@pytest.mark.parametrize(
    "err, sdk_cls", ANTHROPIC_SDK_ERRORS, ids=lambda x: getattr(x, "__name__", type(x).__name__)
)
async def test_anthropic_sdk_raises_its_own_class(err, sdk_cls):
    calls = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request)
        reply = wa.error_reply(err)
        return httpx2.Response(reply.status, content=reply.content, headers=reply.headers)

    client = anthropic_client(handler, max_retries=1)
    with pytest.raises(sdk_cls) as info:
        await client.messages.create(model="chat", max_tokens=5, messages=MSGS)
    assert info.value.status_code == wa.error_reply(err).status
    assert info.value.body["error"]["message"].startswith(err.message)
    retried = isinstance(err, (E.RateLimitedError, E.NoHealthyDeploymentError, E.DeadlineExceededError))
    assert len(calls) == (2 if retried else 1)
