"""Pure wire-format tests of the native adapters: no sockets, no event loop."""

from __future__ import annotations

import orjson
import pytest

from hyperion_core.errors import (
    AuthenticationError,
    BadRequestError,
    ContentPolicyError,
    ContextWindowExceededError,
    InvalidRequestError,
    NotFoundError,
    ProviderUnavailableError,
    RateLimitError,
)
from hyperion_core.http import HttpClient
from hyperion_core.pricing import Price
from hyperion_core.providers import params as P
from hyperion_core.providers.anthropic import (
    AnthropicAdapter,
    AnthropicStreamParser,
    JsonToolUnwrapper,
    unwrap_json_answer,
)
from hyperion_core.providers.base import Target
from hyperion_core.providers.gemini import GeminiAdapter, GeminiStreamParser
from hyperion_core.providers.openai import OpenAIAdapter
from hyperion_core.providers.params import JSON_TOOL
from hyperion_core.types import ChatChunk, ChatRequest, ToolCall, ToolCallDelta, Usage

TOOL = {
    "type": "function",
    "function": {
        "name": "magic_function",
        "description": "Applies a magic function to an input.",
        "parameters": {
            "type": "object",
            "properties": {"input": {"type": "integer"}},
            "required": ["input"],
            "additionalProperties": False,
        },
    },
}
TOOL_TURN = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the value of magic_function(3)? Use the tool."},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "magic_function", "arguments": '{"input": 3}'},
            },
            {"id": "toolu_2", "type": "function", "function": {"name": "other", "arguments": "{}"}},
        ],
    },
    {"role": "tool", "tool_call_id": "toolu_1", "content": "5"},
    {"role": "tool", "tool_call_id": "toolu_2", "content": '{"ok": true}'},
    {"role": "user", "content": "Thanks. And now?"},
]
PNG = "data:image/png;base64,iVBORw0KGgo="


def target(wire: str, **kw) -> Target:
    base = {"openai": "http://mock/d1/v1", "anthropic": "http://mock/d1", "gemini": "http://mock/d1/v1beta"}[
        wire
    ]
    model = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}[wire]
    args = dict(name="d1", route="r", kind=wire, wire=wire, model=model, base_url=base, api_key="sk-test")
    args.update(kw)
    return Target(**args)


def anthropic(**kw) -> AnthropicAdapter:
    return AnthropicAdapter(target("anthropic", **kw), HttpClient())


def gemini(**kw) -> GeminiAdapter:
    return GeminiAdapter(target("gemini", **kw), HttpClient())


def req(messages, **kw) -> ChatRequest:
    return ChatRequest(route="r", messages=messages, **kw)


def sse(events: list[tuple[str | None, dict]]) -> list[tuple[str | None, bytes]]:
    return [(name, orjson.dumps(obj)) for name, obj in events]


def run(parser, events) -> list[ChatChunk]:
    out = []
    for name, data in events:
        chunk = parser.feed(name, data)
        if chunk is not None:
            out.append(chunk)
    return out


def content_of(chunks: list[ChatChunk]) -> str:
    return "".join(c.content for c in chunks)


def tool_calls_of(chunks: list[ChatChunk]) -> dict[int, dict]:
    calls: dict[int, dict] = {}
    for c in chunks:
        for d in c.tool_calls:
            slot = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
            slot["id"] = slot["id"] or d.id
            slot["name"] = slot["name"] or d.name
            slot["arguments"] += d.arguments
    return calls


# ============================================================ Anthropic: request


class TestAnthropicRequest:
    def test_url_and_headers(self):
        a = anthropic(headers={"x-extra": "1"})
        assert a.url(False) == "http://mock/d1/v1/messages" == a.url(True)
        assert a._headers["x-api-key"] == "sk-test"
        assert a._headers["anthropic-version"] == "2023-06-01"
        assert a._headers["x-extra"] == "1"
        assert "authorization" not in a._headers
        assert anthropic(base_url="http://h/v1").url(False) == "http://h/v1/messages"

    def test_system_and_developer_go_top_level(self):
        body = anthropic().build_body(
            req(
                [
                    {"role": "system", "content": "A"},
                    {"role": "developer", "content": "B"},
                    {"role": "user", "content": "hi"},
                ]
            ),
            False,
        )
        assert body["system"] == "A\n\nB"
        assert body["messages"] == [{"role": "user", "content": "hi"}]
        assert body["model"] == "claude-haiku-4-5"
        assert "stream" not in body

    def test_system_with_cache_control_stays_blocks(self):
        sys_msg = {
            "role": "system",
            "content": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
        }
        body = anthropic().build_body(req([sys_msg, {"role": "user", "content": "hi"}]), False)
        assert body["system"] == [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}]

    def test_tool_round_trip_conversion(self):
        body = anthropic().build_body(req(TOOL_TURN, tools=[TOOL], tool_choice="auto"), False)
        msgs = body["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
        assert msgs[1]["content"] == [
            {"type": "tool_use", "id": "toolu_1", "name": "magic_function", "input": {"input": 3}},
            {"type": "tool_use", "id": "toolu_2", "name": "other", "input": {}},
        ]
        # both tool results and the following user text merged into one user turn
        assert msgs[2]["content"] == [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "5"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": '{"ok": true}'},
            {"type": "text", "text": "Thanks. And now?"},
        ]
        assert body["tools"] == [
            {
                "name": "magic_function",
                "input_schema": TOOL["function"]["parameters"],
                "description": "Applies a magic function to an input.",
            }
        ]
        assert body["tool_choice"] == {"type": "auto"}

    def test_tool_results_come_first_in_a_merged_user_turn(self):
        msgs = [
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "user", "content": "also this"},
            {"role": "tool", "tool_call_id": "t1", "content": "r"},
        ]
        content = anthropic().build_body(req(msgs), False)["messages"][1]["content"]
        assert [b["type"] for b in content] == ["tool_result", "text"]

    def test_assistant_text_and_tool_calls(self):
        msgs = [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a": [1]}'}}
                ],
            },
        ]
        body = anthropic().build_body(req(msgs), False)
        assert body["messages"][1]["content"] == [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1]}},
        ]

    def test_bad_tool_arguments_are_an_invalid_request(self):
        msgs = [
            {
                "role": "assistant",
                "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{nope"}}],
            }
        ]
        with pytest.raises(InvalidRequestError, match="not JSON"):
            anthropic().build_body(req(msgs), False)

    def test_consecutive_same_role_messages_merge(self):
        body = anthropic().build_body(
            req(
                [
                    {"role": "user", "content": "a"},
                    {"role": "user", "content": "b"},
                    {"role": "assistant", "content": ""},
                ]
            ),
            False,
        )
        assert body["messages"] == [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
        ]

    def test_content_parts_and_images(self):
        parts = [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": PNG}},
            {"type": "image_url", "image_url": {"url": "https://x/y.jpg"}},
        ]
        body = anthropic().build_body(req([{"role": "user", "content": parts}]), False)
        assert body["messages"][0]["content"] == [
            {"type": "text", "text": "what is this?"},
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
            },
            {"type": "image", "source": {"type": "url", "url": "https://x/y.jpg"}},
        ]

    def test_tool_result_with_parts(self):
        msgs = [{"role": "tool", "tool_call_id": "t", "content": [{"type": "text", "text": "r"}]}]
        body = anthropic().build_body(req(msgs), False)
        assert body["messages"][0]["content"][0]["content"] == [{"type": "text", "text": "r"}]

    def test_unknown_role_rejected(self):
        with pytest.raises(InvalidRequestError):
            anthropic().build_body(req([{"role": "wizard", "content": "x"}]), False)

    @pytest.mark.parametrize(
        "choice,expected",
        [
            ("auto", {"type": "auto"}),
            ("required", {"type": "any"}),
            ("none", {"type": "none"}),
            (
                {"type": "function", "function": {"name": "magic_function"}},
                {"type": "tool", "name": "magic_function"},
            ),
        ],
    )
    def test_tool_choice(self, choice, expected):
        body = anthropic().build_body(
            req([{"role": "user", "content": "x"}], tools=[TOOL], tool_choice=choice), False
        )
        assert body["tool_choice"] == expected

    def test_max_tokens_precedence(self):
        m = [{"role": "user", "content": "x"}]
        assert anthropic().build_body(req(m, max_tokens=10), False)["max_tokens"] == 10
        assert anthropic(params={"max_tokens": 20}).build_body(req(m), False)["max_tokens"] == 20
        assert anthropic(params={"max_tokens": 20}).build_body(req(m, max_tokens=5), False)["max_tokens"] == 5
        assert anthropic(price=Price(max_output_tokens=1000)).build_body(req(m), False)["max_tokens"] == 1000
        assert anthropic(price=Price(max_output_tokens=64000)).build_body(req(m), False)["max_tokens"] == 4096
        assert anthropic().build_body(req(m), False)["max_tokens"] == 4096

    def test_sampling_stop_extra_and_stream(self):
        body = anthropic(params={"top_k": 5}).build_body(
            req(
                [{"role": "user", "content": "x"}],
                temperature=0.2,
                top_p=0.9,
                stop=["END"],
                seed=7,
                n=1,
                extra={"metadata": {"user_id": "u"}, "temperature": 0.5},
            ),
            True,
        )
        assert body["top_p"] == 0.9 and body["top_k"] == 5
        assert body["temperature"] == 0.5  # extra is merged last
        assert body["stop_sequences"] == ["END"]
        assert "stop" not in body and "seed" not in body and "n" not in body
        assert body["metadata"] == {"user_id": "u"}
        assert body["stream"] is True

    def test_response_format_json_schema_is_a_forced_tool(self):
        schema = {"type": "object", "properties": {"a": {"type": "string"}}}
        fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
        body = anthropic().build_body(req([{"role": "user", "content": "x"}], response_format=fmt), False)
        assert body["tools"] == [
            {"name": JSON_TOOL, "description": "Answer with the x JSON object.", "input_schema": schema}
        ]
        assert body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
        assert "output_config" not in body and "response_format" not in body
        body = anthropic().build_body(
            req([{"role": "user", "content": "x"}], response_format={"type": "text"}), False
        )
        assert "tools" not in body and "tool_choice" not in body


# ============================================================ Anthropic: response


def anthropic_message(content, stop="end_turn", usage=None):
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5-20251001",
        "content": content,
        "stop_reason": stop,
        "usage": usage or {"input_tokens": 10, "output_tokens": 5},
    }


class TestAnthropicResponse:
    def test_text_joined(self):
        r = anthropic().parse_response(
            anthropic_message(
                [
                    {"type": "text", "text": "Hello "},
                    {"type": "thinking", "thinking": "hm"},
                    {"type": "text", "text": "world"},
                ]
            )
        )
        assert r.content == "Hello world"
        assert r.tool_calls == ()
        assert r.finish_reason == "stop"
        assert r.model == "claude-haiku-4-5-20251001" and r.id == "msg_1"

    def test_tool_use(self):
        r = anthropic().parse_response(
            anthropic_message(
                [{"type": "tool_use", "id": "toolu_9", "name": "magic_function", "input": {"input": 3}}],
                stop="tool_use",
            )
        )
        assert r.content is None
        assert r.tool_calls == (ToolCall("toolu_9", "magic_function", '{"input":3}'),)
        assert orjson.loads(r.tool_calls[0].arguments) == {"input": 3}
        assert r.finish_reason == "tool_calls"

    def test_usage_includes_cache_reads_and_writes(self):
        r = anthropic().parse_response(
            anthropic_message(
                [{"type": "text", "text": "x"}],
                usage={
                    "input_tokens": 10,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 50,
                    "output_tokens": 7,
                },
            )
        )
        assert r.usage == Usage(
            prompt_tokens=160, completion_tokens=7, cached_prompt_tokens=100, cache_write_tokens=50
        )

    @pytest.mark.parametrize(
        "stop,finish",
        [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            (None, None),
        ],
    )
    def test_finish_reasons(self, stop, finish):
        assert anthropic().parse_response(anthropic_message([], stop=stop)).finish_reason == finish


# ============================================================ Anthropic: stream


def anthropic_stream(blocks_events, stop="end_turn", usage_start=None, output_tokens=12, terminal=True):
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "model": "claude",
                    "content": [],
                    "usage": usage_start
                    or {"input_tokens": 20, "cache_read_input_tokens": 5, "output_tokens": 1},
                },
            },
        ),
        ("ping", {"type": "ping"}),
        *blocks_events,
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop},
                "usage": {"output_tokens": output_tokens},
            },
        ),
    ]
    if terminal:
        events.append(("message_stop", {"type": "message_stop"}))
    return sse(events)


def text_block(index, words):
    ev = [
        (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
        )
    ]
    ev += [
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": w}},
        )
        for w in words
    ]
    ev.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return ev


def tool_block(index, tool_id, name, pieces):
    ev = [
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}},
            },
        )
    ]
    ev += [
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": p},
            },
        )
        for p in pieces
    ]
    ev.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return ev


class TestAnthropicStream:
    def test_text_stream(self):
        p = AnthropicStreamParser()
        chunks = run(p, anthropic_stream(text_block(0, ["Hello", " world"])))
        assert p.done
        assert content_of(chunks) == "Hello world"
        last = chunks[-1]
        assert last.finish_reason == "stop"
        assert last.usage == Usage(prompt_tokens=25, completion_tokens=12, cached_prompt_tokens=5)
        assert all(c.finish_reason is None for c in chunks[:-1])

    def test_tool_stream_indexes_count_tool_calls_only(self):
        p = AnthropicStreamParser()
        events = anthropic_stream(
            text_block(0, ["Sure."])
            + tool_block(1, "toolu_a", "magic_function", ['{"inp', 'ut": 3}'])
            + tool_block(2, "toolu_b", "other", ["", "{}"]),
            stop="tool_use",
        )
        chunks = run(p, events)
        assert p.done and chunks[-1].finish_reason == "tool_calls"
        calls = tool_calls_of(chunks)
        assert calls == {
            0: {"id": "toolu_a", "name": "magic_function", "arguments": '{"input": 3}'},
            1: {"id": "toolu_b", "name": "other", "arguments": "{}"},
        }
        firsts = [c.tool_calls[0] for c in chunks if c.tool_calls and c.tool_calls[0].id]
        assert [(d.index, d.id) for d in firsts] == [(0, "toolu_a"), (1, "toolu_b")]
        assert content_of(chunks) == "Sure."

    def test_message_delta_usage_overrides_start(self):
        p = AnthropicStreamParser()
        events = anthropic_stream(text_block(0, ["x"]))
        # newer API versions repeat the input side in message_delta
        delta = orjson.loads(events[-2][1])
        delta["usage"] = {"input_tokens": 30, "cache_creation_input_tokens": 4, "output_tokens": 9}
        events[-2] = ("message_delta", orjson.dumps(delta))
        last = run(p, events)[-1]
        assert last.usage == Usage(
            prompt_tokens=39, completion_tokens=9, cached_prompt_tokens=5, cache_write_tokens=4
        )

    def test_cut_stream_is_not_done(self):
        p = AnthropicStreamParser()
        events = anthropic_stream(text_block(0, ["a", "b", "c"]), terminal=False)[:5]
        chunks = run(p, events)
        assert not p.done
        assert all(c.finish_reason is None for c in chunks)

    def test_message_delta_without_stop_is_not_done(self):
        p = AnthropicStreamParser()
        run(p, anthropic_stream(text_block(0, ["a"]), terminal=False))
        assert not p.done

    def test_malformed_event_raises_value_error(self):
        # the shared flow turns parser ValueErrors into MalformedResponseError
        p = AnthropicStreamParser()
        with pytest.raises(ValueError):
            p.feed(
                "content_block_delta",
                b'{"type": "content_block_delta", "index": 0, "delta": {"type": "text_de',
            )

    def test_unknown_events_and_thinking_are_ignored(self):
        p = AnthropicStreamParser()
        assert p.feed("future_event", b'{"type": "future_event"}') is None
        assert (
            p.feed(
                None,
                b'{"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "x"}}',
            )
            is None
        )

    @pytest.mark.parametrize(
        "etype,cls",
        [
            ("overloaded_error", ProviderUnavailableError),
            ("rate_limit_error", RateLimitError),
            ("api_error", ProviderUnavailableError),
            ("invalid_request_error", BadRequestError),
        ],
    )
    def test_error_event(self, etype, cls):
        p = AnthropicStreamParser()
        data = orjson.dumps({"type": "error", "error": {"type": etype, "message": "boom"}})
        with pytest.raises(cls) as info:
            p.feed("error", data)
        assert info.value.provider_code == etype
        assert not p.done


# ============================================================ Anthropic: errors


class TestAnthropicErrors:
    @pytest.mark.parametrize(
        "status,etype,message,cls",
        [
            (529, "overloaded_error", "Overloaded", ProviderUnavailableError),
            (429, "rate_limit_error", "slow down", RateLimitError),
            (
                400,
                "invalid_request_error",
                "prompt is too long: 210000 tokens > 200000 maximum",
                ContextWindowExceededError,
            ),
            (400, "invalid_request_error", "Output blocked by content filtering policy", ContentPolicyError),
            (400, "invalid_request_error", "Invalid request", BadRequestError),
            (401, "authentication_error", "invalid x-api-key", AuthenticationError),
            (404, "not_found_error", "model: nope", NotFoundError),
        ],
    )
    def test_parse_error(self, status, etype, message, cls):
        raw = orjson.dumps({"type": "error", "error": {"type": etype, "message": message}})
        err = anthropic().parse_error(status, {"retry-after": "3"}, raw)
        assert type(err) is cls
        assert err.status == status and err.provider_code == etype and message in err.message
        assert err.retry_after == 3.0 and err.deployment == "d1" and err.route == "r"

    def test_error_details_of_non_json(self):
        assert anthropic().error_details("<html>bad gateway</html>") == ("<html>bad gateway</html>", None)
        err = anthropic().parse_error(502, {}, b"<html>bad gateway</html>")
        assert type(err) is ProviderUnavailableError


# ============================================================ Gemini: request


class TestGeminiRequest:
    def test_urls_and_headers(self):
        g = gemini()
        assert g.url(False) == "http://mock/d1/v1beta/models/gemini-2.5-flash:generateContent"
        assert g.url(True) == "http://mock/d1/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        assert g._headers["x-goog-api-key"] == "sk-test"
        assert "authorization" not in g._headers
        # the provider default base URL has no version: /v1beta is added
        g2 = gemini(base_url="https://generativelanguage.googleapis.com", model="models/gemini-2.0-flash")
        assert (
            g2.url(False)
            == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
        )

    def test_conversion(self):
        body = gemini().build_body(req(TOOL_TURN, tools=[TOOL], tool_choice="required"), False)
        assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        c = body["contents"]
        assert [t["role"] for t in c] == ["user", "model", "user"]
        assert c[1]["parts"] == [
            {"functionCall": {"name": "magic_function", "args": {"input": 3}}},
            {"functionCall": {"name": "other", "args": {}}},
        ]
        # names come from the assistant's earlier calls; JSON objects pass through, other text is wrapped
        assert c[2]["parts"] == [
            {"functionResponse": {"name": "magic_function", "response": {"content": "5"}}},
            {"functionResponse": {"name": "other", "response": {"ok": True}}},
            {"text": "Thanks. And now?"},
        ]
        decl = body["tools"][0]["functionDeclarations"][0]
        assert decl["name"] == "magic_function"
        assert decl["parameters"] == {
            "type": "object",
            "properties": {"input": {"type": "integer"}},
            "required": ["input"],
        }
        assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}

    def test_tool_result_without_a_call_is_invalid(self):
        with pytest.raises(InvalidRequestError):
            gemini().build_body(req([{"role": "tool", "tool_call_id": "x", "content": "1"}]), False)

    def test_parameterless_tool_has_no_parameters(self):
        t = {
            "type": "function",
            "function": {"name": "now", "parameters": {"type": "object", "properties": {}}},
        }
        body = gemini().build_body(req([{"role": "user", "content": "x"}], tools=[t]), False)
        assert body["tools"] == [{"functionDeclarations": [{"name": "now"}]}]

    @pytest.mark.parametrize(
        "choice,expected",
        [
            ("auto", {"mode": "AUTO"}),
            ("required", {"mode": "ANY"}),
            ("none", {"mode": "NONE"}),
            ({"type": "function", "function": {"name": "f"}}, {"mode": "ANY", "allowedFunctionNames": ["f"]}),
        ],
    )
    def test_tool_choice(self, choice, expected):
        body = gemini().build_body(
            req([{"role": "user", "content": "x"}], tools=[TOOL], tool_choice=choice), False
        )
        assert body["toolConfig"] == {"functionCallingConfig": expected}

    def test_generation_config(self):
        body = gemini(params={"top_k": 3}).build_body(
            req(
                [{"role": "user", "content": "x"}],
                temperature=0.1,
                top_p=0.8,
                max_tokens=50,
                stop=["END"],
                seed=4,
                n=2,
                extra={"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}, "safetySettings": []},
            ),
            False,
        )
        assert body["generationConfig"] == {
            "topK": 3,
            "temperature": 0.1,
            "topP": 0.8,
            "maxOutputTokens": 50,
            "stopSequences": ["END"],
            "seed": 4,
            "candidateCount": 2,
            "thinkingConfig": {"thinkingBudget": 0},
        }
        assert body["safetySettings"] == []

    def test_response_format(self):
        schema = {"type": "object", "properties": {"a": {"type": "string"}}}
        fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
        cfg = gemini().build_body(req([{"role": "user", "content": "x"}], response_format=fmt), False)[
            "generationConfig"
        ]
        assert cfg == {"responseMimeType": "application/json", "responseJsonSchema": schema}
        cfg = gemini().build_body(
            req([{"role": "user", "content": "x"}], response_format={"type": "json_object"}), False
        )["generationConfig"]
        assert cfg == {"responseMimeType": "application/json"}

    def test_images_and_merging(self):
        msgs = [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": PNG}},
                ],
            },
            {"role": "user", "content": "and"},
            {"role": "assistant", "content": "ok"},
        ]
        c = gemini().build_body(req(msgs), False)["contents"]
        assert c == [
            {
                "role": "user",
                "parts": [
                    {"text": "see"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                    {"text": "and"},
                ],
            },
            {"role": "model", "parts": [{"text": "ok"}]},
        ]


# ============================================================ Gemini: response / stream / errors


def gemini_body(parts, finish="STOP", usage=None):
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
        "usageMetadata": usage
        or {
            "promptTokenCount": 100,
            "candidatesTokenCount": 10,
            "thoughtsTokenCount": 30,
            "cachedContentTokenCount": 60,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r1",
    }


class TestGeminiResponse:
    def test_text_and_usage(self):
        r = gemini().parse_response(
            gemini_body([{"text": "thinking...", "thought": True}, {"text": "Hi "}, {"text": "there"}])
        )
        assert r.content == "Hi there" and r.finish_reason == "stop" and r.id == "r1"
        assert r.usage == Usage(
            prompt_tokens=100, completion_tokens=40, cached_prompt_tokens=60, reasoning_tokens=30
        )

    def test_function_calls_get_deterministic_ids(self):
        r = gemini().parse_response(
            gemini_body(
                [
                    {"functionCall": {"name": "magic_function", "args": {"input": 3}}},
                    {"functionCall": {"name": "g"}},
                ]
            )
        )
        assert r.finish_reason == "tool_calls" and r.content is None
        assert r.tool_calls == (
            ToolCall("call_0", "magic_function", '{"input":3}'),
            ToolCall("call_1", "g", "{}"),
        )

    @pytest.mark.parametrize(
        "reason,finish",
        [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
         ("BLOCKLIST", "content_filter"), ("PROHIBITED_CONTENT", "content_filter")],
    )  # fmt: skip
    def test_finish_reasons(self, reason, finish):
        assert gemini().parse_response(gemini_body([{"text": "x"}], finish=reason)).finish_reason == finish

    def test_blocked_prompt(self):
        r = gemini().parse_response(
            {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
        )
        assert r.content is None and r.finish_reason == "content_filter" and r.usage.prompt_tokens == 3

    def test_no_candidates_is_malformed(self):
        with pytest.raises(ValueError):
            gemini().parse_response({"usageMetadata": {}})


def gemini_frames(pieces, finish="STOP", usage=None):
    frames = [{"candidates": [{"content": {"role": "model", "parts": p}, "index": 0}]} for p in pieces]
    frames.append(
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": finish, "index": 0}
            ],
            "usageMetadata": usage
            or {"promptTokenCount": 8, "candidatesTokenCount": 3, "thoughtsTokenCount": 2},
        }
    )
    return [(None, orjson.dumps(f)) for f in frames]


class TestGeminiStream:
    def test_text(self):
        p = GeminiStreamParser()
        chunks = run(p, gemini_frames([[{"text": "Hello"}], [{"text": " world"}]]))
        assert p.done and content_of(chunks) == "Hello world"
        assert chunks[-1].finish_reason == "stop"
        assert chunks[-1].usage == Usage(prompt_tokens=8, completion_tokens=5, reasoning_tokens=2)

    def test_tool_calls(self):
        p = GeminiStreamParser()
        chunks = run(
            p,
            gemini_frames(
                [
                    [{"functionCall": {"name": "magic_function", "args": {"input": 3}}}],
                    [{"functionCall": {"name": "g", "args": {}}}],
                ]
            ),
        )
        assert chunks[-1].finish_reason == "tool_calls"
        assert tool_calls_of(chunks) == {
            0: {"id": "call_0", "name": "magic_function", "arguments": '{"input":3}'},
            1: {"id": "call_1", "name": "g", "arguments": "{}"},
        }

    def test_final_frame_may_carry_text(self):
        p = GeminiStreamParser()
        frame = gemini_body([{"text": "all at once"}], finish="MAX_TOKENS")
        chunk = p.feed(None, orjson.dumps(frame))
        assert p.done and chunk.content == "all at once" and chunk.finish_reason == "length"

    def test_cut_stream_is_not_done(self):
        p = GeminiStreamParser()
        chunks = run(p, gemini_frames([[{"text": "a"}], [{"text": "b"}]])[:-1])
        assert not p.done and content_of(chunks) == "ab"

    def test_error_frame(self):
        p = GeminiStreamParser()
        with pytest.raises(ProviderUnavailableError):
            p.feed(None, b'{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}')

    def test_malformed_frame(self):
        with pytest.raises(ValueError):
            GeminiStreamParser().feed(None, b'{"candidates": [{"content": {"parts": [{"text": "brok')


class TestGeminiErrors:
    @pytest.mark.parametrize(
        "status,code,message,cls",
        [
            (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted", RateLimitError),
            (503, "UNAVAILABLE", "The model is overloaded.", ProviderUnavailableError),
            (400, "INVALID_ARGUMENT", "The input token count (2000000) exceeds the maximum number of tokens allowed (1048576).",
             ContextWindowExceededError),
            (400, "INVALID_ARGUMENT", "The request was blocked by safety filters", ContentPolicyError),
            (400, "INVALID_ARGUMENT", "Request contains an invalid argument.", BadRequestError),
            (401, "UNAUTHENTICATED", "API key not valid.", AuthenticationError),
            (404, "NOT_FOUND", "models/x is not found", NotFoundError),
        ],
    )  # fmt: skip
    def test_parse_error(self, status, code, message, cls):
        raw = orjson.dumps({"error": {"code": status, "message": message, "status": code}})
        err = gemini().parse_error(status, {}, raw)
        assert type(err) is cls and err.provider_code == code and err.status == status

    def test_list_wrapped_error(self):
        assert gemini().error_details([{"error": {"message": "m", "status": "S"}}]) == ("m", "S")


# ============================================================ OpenAI (reference)


class TestOpenAI:
    def test_stream_usage_after_finish(self):
        a = OpenAIAdapter(target("openai"), HttpClient())
        p = a.stream_parser()
        frames = [
            {"choices": [{"index": 0, "delta": {"content": "Hi"}}]},
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}
                            ]
                        },
                    }
                ]
            },
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            {
                "choices": [],
                "usage": {
                    "prompt_tokens": 4,
                    "completion_tokens": 2,
                    "prompt_tokens_details": {"cached_tokens": 1},
                },
            },
        ]
        chunks = run(p, [(None, orjson.dumps(f)) for f in frames])
        assert not p.done
        last = p.feed(None, b"[DONE]")
        assert p.done and last.finish_reason == "tool_calls"
        assert last.usage == Usage(prompt_tokens=4, completion_tokens=2, cached_prompt_tokens=1)
        assert chunks[1].tool_calls == (ToolCallDelta(index=0, id="c", name="f", arguments="{}"),)


# ============================================================ per-wire parameter translation

PDF = "data:application/pdf;base64,JVBERi0xLjQK"
USER = [{"role": "user", "content": "x"}]


def openai(**kw) -> OpenAIAdapter:
    return OpenAIAdapter(target("openai", **kw), HttpClient())


class TestOpenAIPassThrough:
    def test_openai_fields_are_sent_unchanged(self):
        extra = {
            "max_completion_tokens": 99,
            "reasoning_effort": "low",
            "parallel_tool_calls": False,
            "frequency_penalty": 0.5,
            "logprobs": True,
            "top_logprobs": 2,
            "user": "u-1",
            "service_tier": "flex",
        }
        body = openai().build_body(req(USER, seed=3, n=2, extra=extra), False)
        assert {k: body[k] for k in extra} == extra
        assert body["seed"] == 3 and body["n"] == 2


class TestAnthropicTranslation:
    def body(self, **kw):
        return anthropic().build_body(req(USER, **kw), False)

    def test_max_completion_tokens_is_the_cap_when_max_tokens_is_absent(self):
        assert self.body(extra={"max_completion_tokens": 77})["max_tokens"] == 77
        assert self.body(max_tokens=10, extra={"max_completion_tokens": 77})["max_tokens"] == 10
        assert "max_completion_tokens" not in self.body(extra={"max_completion_tokens": 77})

    @pytest.mark.parametrize(
        "effort, budget", [("minimal", 1024), ("low", 2048), ("medium", 8192), ("high", 16384)]
    )
    def test_reasoning_effort_becomes_a_thinking_budget_below_max_tokens(self, effort, budget):
        body = self.body(max_tokens=300, temperature=0.3, extra={"reasoning_effort": effort})
        assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
        assert body["max_tokens"] == budget + 300  # the caller's cap stays available for the answer
        assert "temperature" not in body and "reasoning_effort" not in body  # thinking allows no temperature
        big = self.body(max_tokens=budget + 5000, extra={"reasoning_effort": effort})
        assert big["max_tokens"] == budget + 5000

    def test_reasoning_effort_none_sends_no_thinking_and_bad_effort_is_refused(self):
        assert "thinking" not in self.body(extra={"reasoning_effort": "none"})
        with pytest.raises(InvalidRequestError, match="reasoning_effort 'extreme'"):
            self.body(extra={"reasoning_effort": "extreme"})

    def test_parallel_tool_calls_false_disables_parallel_tool_use(self):
        body = self.body(tools=[TOOL], extra={"parallel_tool_calls": False})
        assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
        body = self.body(tools=[TOOL], tool_choice="required", extra={"parallel_tool_calls": False})
        assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
        body = self.body(tools=[TOOL], extra={"parallel_tool_calls": True})
        assert "tool_choice" not in body and "parallel_tool_calls" not in body

    def test_user_becomes_metadata_user_id(self):
        assert self.body(extra={"user": "u-7"})["metadata"] == {"user_id": "u-7"}
        body = self.body(
            extra={"metadata": {"team": "t"}}
        )  # OpenAI stored-completion metadata: no equivalent
        assert "metadata" not in body

    def test_parameters_without_equivalent_are_dropped_with_a_debug_log(self, caplog):
        extra = {
            "frequency_penalty": 0.1,
            "presence_penalty": 0.1,
            "logprobs": True,
            "top_logprobs": 3,
            "logit_bias": {"1": 2},
            "service_tier": "flex",
            "store": True,
            "seed": 1,
        }
        with caplog.at_level("DEBUG", logger="hyperion.providers"):
            body = self.body(n=1, extra=extra)
        assert not set(extra) & set(body) and "n" not in body
        logged = caplog.text
        assert all(f"'{k}' dropped" in logged for k in extra) and "anthropic wire" in logged

    def test_n_above_one_is_refused(self):
        with pytest.raises(InvalidRequestError, match="n=2"):
            self.body(n=2)

    def test_json_object_and_schema_with_tools(self):
        body = self.body(response_format={"type": "json_object"})
        assert body["tools"][0]["name"] == JSON_TOOL and body["tools"][0]["input_schema"] == {
            "type": "object"
        }
        fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
        body = self.body(tools=[TOOL], response_format=fmt)
        assert [t["name"] for t in body["tools"]] == ["magic_function", JSON_TOOL]
        assert body["tool_choice"] == {
            "type": "any"
        }  # the model may call the caller's tool or answer in JSON

    def test_thinking_is_dropped_when_the_json_tool_is_forced(self):
        fmt = {"type": "json_object"}
        body = self.body(response_format=fmt, extra={"reasoning_effort": "high"})
        assert "thinking" not in body and body["tool_choice"]["type"] == "tool"

    def test_pdf_file_becomes_a_document_block_and_audio_is_refused(self):
        part = {"type": "file", "file": {"filename": "a.pdf", "file_data": PDF}}
        body = anthropic().build_body(req([{"role": "user", "content": [part]}]), False)
        assert body["messages"][0]["content"] == [
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"},
            }
        ]
        audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
        with pytest.raises(InvalidRequestError, match="no audio input"):
            anthropic().build_body(req([{"role": "user", "content": [audio]}]), False)
        with pytest.raises(InvalidRequestError, match="file_id"):
            anthropic().build_body(
                req([{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]), False
            )

    def test_json_tool_answer_is_unwrapped_into_content(self):
        data = anthropic_message(
            [{"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL, "input": {"a": "b"}}], stop="tool_use"
        )
        resp = unwrap_json_answer(anthropic().parse_response(data))
        assert resp.content == '{"a":"b"}' and resp.tool_calls == () and resp.finish_reason == "stop"

    def test_streamed_json_tool_answer_is_unwrapped_into_content(self):
        unwrap = JsonToolUnwrapper()
        chunks = [
            ChatChunk(tool_calls=(ToolCallDelta(index=0, id="toolu_1", name=JSON_TOOL, arguments=""),)),
            ChatChunk(tool_calls=(ToolCallDelta(index=0, arguments='{"a":'),)),
            ChatChunk(tool_calls=(ToolCallDelta(index=0, arguments='"b"}'),)),
            ChatChunk(finish_reason="tool_calls", usage=Usage()),
        ]
        out = [unwrap.feed(c) for c in chunks]
        assert "".join(c.content for c in out) == '{"a":"b"}'
        assert all(not c.tool_calls for c in out) and out[-1].finish_reason == "stop"


class TestGeminiTranslation:
    def cfg(self, **kw):
        return gemini().build_body(req(USER, **kw), False).get("generationConfig", {})

    def test_max_completion_tokens_and_reasoning_effort(self):
        assert self.cfg(extra={"max_completion_tokens": 64}) == {"maxOutputTokens": 64}
        assert self.cfg(max_tokens=8, extra={"max_completion_tokens": 64}) == {"maxOutputTokens": 8}
        assert self.cfg(extra={"reasoning_effort": "low"}) == {"thinkingConfig": {"thinkingBudget": 1024}}
        assert self.cfg(extra={"reasoning_effort": "none"}) == {"thinkingConfig": {"thinkingBudget": 0}}

    def test_openai_names_with_an_equivalent(self):
        extra = {"frequency_penalty": 0.2, "presence_penalty": 0.3, "logprobs": True, "top_logprobs": 2}
        assert self.cfg(extra=extra) == {
            "frequencyPenalty": 0.2,
            "presencePenalty": 0.3,
            "responseLogprobs": True,
            "logprobs": 2,
        }

    def test_parameters_without_equivalent_are_dropped_with_a_debug_log(self, caplog):
        extra = {"parallel_tool_calls": False, "user": "u", "logit_bias": {"1": 1}, "service_tier": "auto"}
        with caplog.at_level("DEBUG", logger="hyperion.providers"):
            body = gemini().build_body(req(USER, tools=[TOOL], extra=extra), False)
        assert not set(extra) & (set(body) | set(body.get("generationConfig", {})))
        assert all(f"'{k}' dropped" in caplog.text for k in extra) and "gemini wire" in caplog.text

    def test_service_tier_and_store(self):
        body = gemini().build_body(req(USER, extra={"service_tier": "default", "store": True}), False)
        assert body["serviceTier"] == "standard" and body["store"] is True
        assert gemini().build_body(req(USER, extra={"service_tier": "flex"}), False)["serviceTier"] == "flex"

    def test_file_and_audio_parts_become_inline_data(self):
        parts = [
            {"type": "file", "file": {"filename": "a.pdf", "file_data": PDF}},
            {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}},
        ]
        body = gemini().build_body(req([{"role": "user", "content": parts}]), False)
        assert body["contents"][0]["parts"] == [
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0xLjQK"}},
            {"inlineData": {"mimeType": "audio/mpeg", "data": "SUQz"}},
        ]


class TestTranslationTablesMatchTheWires:
    """The adapters' name tables agree with the SDK-derived schemas the strict mock enforces."""

    @pytest.fixture
    def schemas(self):
        from hyperion_core.mock_provider.strict import SCHEMA_FILE

        doc = orjson.loads(SCHEMA_FILE.read_bytes())
        return {ep: doc["defs"][name]["fields"] for ep, name in doc["endpoints"].items()} | {
            "gemini.generationConfig": doc["defs"]["gemini.GenerationConfig"]["fields"]
        }

    def test_openai_params_are_the_sdk_create_params(self, schemas):
        assert P.OPENAI_PARAMS == set(schemas["openai.chat"]) - {"model", "messages", "stream"}

    def test_anthropic_native_names_are_anthropic_fields(self, schemas):
        assert P.ANTHROPIC_NATIVE <= set(schemas["anthropic.messages"])
        assert not (P.ANTHROPIC_DROPPED & set(schemas["anthropic.messages"]))

    def test_gemini_names_are_gemini_fields(self, schemas):
        generation = set(schemas["gemini.generationConfig"])
        assert set(P.GEMINI_GENERATION.values()) <= generation and P.GEMINI_GENERATION_NATIVE <= generation
        assert P.GEMINI_TOP_LEVEL <= set(schemas["gemini.generateContent"])

    def test_every_openai_param_has_a_rule_on_each_translating_wire(self):
        handled = {
            "max_tokens",
            "max_completion_tokens",
            "reasoning_effort",
            "parallel_tool_calls",
            "user",
            "stop",
            "n",
        }
        handled |= {"tools", "tool_choice", "response_format"}  # typed request fields, converted apart
        anthropic_rules = handled | P.ANTHROPIC_NATIVE | P.ANTHROPIC_DROPPED
        gemini_rules = handled | set(P.GEMINI_GENERATION) | P.GEMINI_DROPPED | {"service_tier", "store"}
        assert P.OPENAI_PARAMS - anthropic_rules == set()
        assert P.OPENAI_PARAMS - gemini_rules == set()
