"""The mock provider over real HTTP: the openai SDK, raw httpx for Anthropic/Gemini, and litellm."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time

import httpx
import jsonschema
import openai
import orjson
import pytest

from hyperion_core.mock_provider import MockProvider, MockProviderClient, MockProviderError
from hyperion_core.mock_provider.content import answer_for, count_tokens, word_chunks

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}
MAGIC_TOOL = {
    "type": "function",
    "function": {
        "name": "magic_function",
        "description": "Applies magic.",
        "parameters": {"type": "object", "properties": {"input": {"type": "integer"}}, "required": ["input"]},
    },
}
MAGIC_PROMPT = "What is the value of magic_function(3)? Use the tool."


@pytest.fixture(scope="module")
def provider():
    with MockProvider() as mock:
        yield mock


@pytest.fixture(autouse=True)
def _clean(provider):
    provider.reset()
    yield
    provider.reset()


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def oai(provider: MockProvider, dep: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=provider.base_url(dep, "openai"), api_key="sk-test", max_retries=0)


def chat_request(
    http: httpx.AsyncClient,
    provider: MockProvider,
    wire: str,
    dep: str,
    prompt: str | list | None = None,
    *,
    stream: bool = False,
    key: str | None = "sk-test",
    **extra,
) -> httpx.Request:
    """A raw chat request in ``wire``'s format; ``prompt`` is a user text or a list of (role, text) turns."""
    turns = [("user", prompt)] if isinstance(prompt, str) else prompt or [("user", "hello")]
    base = provider.base_url(dep, wire)
    if wire == "openai":
        url, headers = f"{base}/chat/completions", {"Authorization": f"Bearer {key}"} if key else {}
        body = {
            "model": MODELS[wire],
            "messages": [{"role": r, "content": t} for r, t in turns],
            "stream": stream,
        }
    elif wire == "anthropic":
        url, headers = f"{base}/v1/messages", {"x-api-key": key} if key else {}
        body = {
            "model": MODELS[wire],
            "max_tokens": 1024,
            "stream": stream,
            "messages": [{"role": r, "content": t} for r, t in turns],
        }
    else:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        url, headers = f"{base}/models/{MODELS[wire]}:{method}", {"x-goog-api-key": key} if key else {}
        body = {
            "contents": [
                {"role": "model" if r == "assistant" else r, "parts": [{"text": t}]} for r, t in turns
            ]
        }
    return http.build_request("POST", url, json={**body, **extra}, headers=headers)


async def call(
    http: httpx.AsyncClient, provider: MockProvider, wire: str, dep: str, prompt=None, **kw
) -> httpx.Response:
    return await http.send(chat_request(http, provider, wire, dep, prompt, **kw))


def sse_payloads(raw: bytes | str) -> list[str]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return [line[6:].strip() for line in text.splitlines() if line.startswith("data: ")]


def stream_text(wire: str, raw: bytes | str) -> str:
    """The assistant text carried by a raw SSE body of ``wire`` (ignores unparsable frames)."""
    out = []
    for payload in sse_payloads(raw):
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if wire == "openai":
            out += [c["delta"].get("content") or "" for c in obj.get("choices", [])]
        elif wire == "anthropic":
            out.append(obj.get("delta", {}).get("text", "") if obj["type"] == "content_block_delta" else "")
        else:
            out += [p.get("text", "") for c in obj.get("candidates", []) for p in c["content"]["parts"]]
    return "".join(out)


async def read_cut_stream(http: httpx.AsyncClient, request: httpx.Request) -> bytes:
    received = b""
    with pytest.raises(httpx.RemoteProtocolError):
        response = await http.send(request, stream=True)
        async for chunk in response.aiter_bytes():
            received += chunk
    return received


def reply_text(wire: str, body: dict) -> str:
    if wire == "openai":
        return body["choices"][0]["message"]["content"]
    if wire == "anthropic":
        return "".join(b.get("text", "") for b in body["content"])
    return "".join(p.get("text", "") for p in body["candidates"][0]["content"]["parts"])


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


# -- lifecycle ---------------------------------------------------------------------------------


def test_start_is_fast_picks_free_ports_and_stops():
    started = time.perf_counter()
    one, two = MockProvider().start(), MockProvider().start()
    assert time.perf_counter() - started < 3.0  # two servers, no fixed waits (a loaded CI machine is slow)
    assert one.port > 0 and two.port > 0 and one.port != two.port
    assert one.url == f"http://127.0.0.1:{one.port}"
    assert httpx.get(f"{one.url}/_mock/health").json() == {"status": "ok"}
    one.stop()
    two.stop()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", one.port), timeout=1):
        pass


def test_base_urls(provider):
    root = provider.url
    assert provider.base_url("d", "openai") == f"{root}/d/v1"
    assert provider.base_url("d", "anthropic") == f"{root}/d"
    assert provider.base_url("d", "gemini") == f"{root}/d/v1beta"
    assert provider.base_url() == f"{root}/default/v1"
    with pytest.raises(ValueError):
        provider.base_url("d", "cohere")


# -- deterministic content (openai SDK) ----------------------------------------------------------


async def test_openai_sdk_content_is_deterministic_with_usage(provider):
    client = oai(provider, "det")
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Tell me about Paris"},
    ]
    first = await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    again = await oai(provider, "other").chat.completions.create(model="gpt-4.1", messages=messages)
    different = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[messages[1] | {"content": "Tell me about Rome"}]
    )
    expected = answer_for("Tell me about Paris")
    assert first.choices[0].message.content == expected == again.choices[0].message.content
    assert expected.startswith("Mock answer to: Tell me about Paris. ") and count_tokens(expected) == 27
    assert different.choices[0].message.content == answer_for("Tell me about Rome") != expected
    assert first.choices[0].finish_reason == "stop" and first.object == "chat.completion"
    assert first.usage.prompt_tokens == (3 + 3) + (4 + 3)  # words + 3 per message
    assert first.usage.completion_tokens == 27 and first.usage.total_tokens == 40
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert first.usage.completion_tokens_details.reasoning_tokens == 0


async def test_openai_sdk_stream_one_word_per_chunk_with_usage(provider):
    stream = await oai(provider, "s").chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Stream it"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    words = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(words) == answer_for("Stream it") and len(words) == count_tokens(answer_for("Stream it"))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(words)
    assert chunks[-1].usage.prompt_tokens == 2 + 3


async def test_openai_raw_stream_ends_with_done(provider, http):
    r = await call(http, provider, "openai", "raw", "Hi", stream=True)
    assert r.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(r.text)
    assert payloads[-1] == "[DONE]" and all("usage" not in orjson.loads(p) for p in payloads[:-1])
    r = await call(http, provider, "openai", "raw", "Hi", stream=True, stream_options={"include_usage": True})
    chunks = [orjson.loads(p) for p in sse_payloads(r.text)[:-1]]
    assert [c["usage"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)  # as OpenAI sends them
    assert chunks[-1]["usage"]["total_tokens"] == (1 + 3) + count_tokens(answer_for("Hi"))


@pytest.mark.parametrize("wire", list(MODELS))
async def test_max_tokens_truncates_with_length_finish(provider, http, wire):
    limit = {
        "openai": {"max_tokens": 4},
        "anthropic": {"max_tokens": 4},
        "gemini": {"generationConfig": {"maxOutputTokens": 4}},
    }[wire]
    body = (await call(http, provider, wire, "mt", "Count the words", **limit)).json()
    assert reply_text(wire, body) == "Mock answer to: Count"
    finish, tokens = {
        "openai": lambda b: (b["choices"][0]["finish_reason"], b["usage"]["completion_tokens"]),
        "anthropic": lambda b: (b["stop_reason"], b["usage"]["output_tokens"]),
        "gemini": lambda b: (b["candidates"][0]["finishReason"], b["usageMetadata"]["candidatesTokenCount"]),
    }[wire](body)
    assert finish == {"openai": "length", "anthropic": "max_tokens", "gemini": "MAX_TOKENS"}[wire]
    assert tokens == 4
    streamed = await call(http, provider, wire, "mt", "Count the words", stream=True, **limit)
    assert stream_text(wire, streamed.text) == "Mock answer to: Count"


async def test_max_completion_tokens_alias(provider):
    out = await oai(provider, "mct").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x y"}], max_completion_tokens=2
    )
    assert out.choices[0].message.content == "Mock answer" and out.choices[0].finish_reason == "length"


async def test_stop_sequences(provider, http):
    out = await oai(provider, "stop").chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "About Paris"}],
        stop=["Paris", "answer to"],
    )
    assert out.choices[0].message.content == "Mock " and out.choices[0].finish_reason == "stop"
    body = (await call(http, provider, "anthropic", "stop", "About Paris", stop_sequences=["Paris"])).json()
    assert body["content"][0]["text"] == "Mock answer to: About "
    assert body["stop_reason"] == "stop_sequence" and body["stop_sequence"] == "Paris"
    raw = await call(
        http, provider, "anthropic", "stop", "About Paris", stream=True, stop_sequences=["Paris"]
    )
    delta = [orjson.loads(p) for p in sse_payloads(raw.text) if '"message_delta"' in p][0]
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "Paris"}
    gem = (
        await call(
            http, provider, "gemini", "stop", "About Paris", generationConfig={"stopSequences": ["Paris"]}
        )
    ).json()
    assert (
        reply_text("gemini", gem) == "Mock answer to: About "
        and gem["candidates"][0]["finishReason"] == "STOP"
    )


# -- tool calls and structured output -------------------------------------------------------------


async def test_openai_tool_call_with_synthesised_arguments_then_result(provider):
    client = oai(provider, "tools")
    messages = [{"role": "user", "content": MAGIC_PROMPT}]
    out = await client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[MAGIC_TOOL])
    call_ = out.choices[0].message.tool_calls[0]
    assert out.choices[0].finish_reason == "tool_calls" and out.choices[0].message.content is None
    assert call_.function.name == "magic_function" and call_.function.arguments == '{"input":3}'
    assert call_.id.startswith("call_")
    follow = messages + [
        out.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call_.id, "content": "42"},
    ]
    result = await client.chat.completions.create(model="gpt-4o-mini", messages=follow, tools=[MAGIC_TOOL])
    assert (
        result.choices[0].message.content == "Tool result: 42" and result.choices[0].finish_reason == "stop"
    )
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=[MAGIC_TOOL], stream=True
    )
    args, names = "", []
    async for chunk in stream:
        for tc in chunk.choices[0].delta.tool_calls or () if chunk.choices else ():
            names += [tc.function.name] if tc.function.name else []
            args += tc.function.arguments or ""
    assert names == ["magic_function"] and orjson.loads(args) == {"input": 3}


async def test_tool_choice_forcing_and_none(provider):
    client = oai(provider, "choice")
    other = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["c", "f"]},
                    "days": {"type": "number"},
                    "exact": {"type": "boolean"},
                },
            },
        },
    }
    messages = [{"role": "user", "content": "Weather in Lisbon for 5 days"}]
    auto = await client.chat.completions.create(model="m", messages=messages, tools=[other])
    assert auto.choices[0].message.tool_calls is None and auto.choices[0].message.content == answer_for(
        messages[0]["content"]
    )
    forced = await client.chat.completions.create(
        model="m", messages=messages, tools=[MAGIC_TOOL, other], tool_choice="required"
    )
    assert forced.choices[0].message.tool_calls[0].function.name == "magic_function"
    named = await client.chat.completions.create(
        model="m",
        messages=messages,
        tools=[MAGIC_TOOL, other],
        tool_choice={"type": "function", "function": {"name": "lookup"}},
    )
    tc = named.choices[0].message.tool_calls[0]
    assert tc.function.name == "lookup"
    assert orjson.loads(tc.function.arguments) == {"city": "Lisbon", "unit": "c", "days": 5, "exact": True}
    none = await client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": MAGIC_PROMPT}],
        tools=[MAGIC_TOOL],
        tool_choice="none",
    )
    assert none.choices[0].message.tool_calls is None and none.choices[0].message.content == answer_for(
        MAGIC_PROMPT
    )


async def test_anthropic_tool_use_json_and_stream(provider, http):
    tools = [{"name": "magic_function", "input_schema": MAGIC_TOOL["function"]["parameters"]}]
    body = (await call(http, provider, "anthropic", "atools", MAGIC_PROMPT, tools=tools)).json()
    assert body["stop_reason"] == "tool_use"
    assert body["content"] == [
        {"type": "tool_use", "id": body["content"][0]["id"], "name": "magic_function", "input": {"input": 3}}
    ]
    raw = await call(http, provider, "anthropic", "atools", MAGIC_PROMPT, stream=True, tools=tools)
    events = [orjson.loads(p) for p in sse_payloads(raw.text)]
    start = next(e for e in events if e["type"] == "content_block_start")
    assert start["content_block"]["type"] == "tool_use" and start["content_block"]["name"] == "magic_function"
    partial = "".join(e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta")
    assert orjson.loads(partial) == {"input": 3}
    assert events[-2]["delta"]["stop_reason"] == "tool_use" and events[-1]["type"] == "message_stop"
    tool_id = body["content"][0]["id"]
    turns = [
        {"role": "user", "content": MAGIC_PROMPT},
        {"role": "assistant", "content": body["content"]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": tool_id, "content": [{"type": "text", "text": "42"}]}
            ],
        },
    ]
    result = await http.post(
        f"{provider.base_url('atools', 'anthropic')}/v1/messages",
        headers={"x-api-key": "k"},
        json={"model": "claude", "max_tokens": 100, "messages": turns, "tools": tools},
    )
    assert result.json()["content"] == [{"type": "text", "text": "Tool result: 42"}]


async def test_gemini_function_call_and_response(provider, http):
    tools = [
        {
            "functionDeclarations": [
                {
                    "name": "magic_function",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {"input": {"type": "INTEGER"}},
                        "required": ["input"],
                    },
                }
            ]
        }
    ]
    body = (await call(http, provider, "gemini", "gtools", MAGIC_PROMPT, tools=tools)).json()
    assert body["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "magic_function", "args": {"input": 3}}}
    ]
    assert body["candidates"][0]["finishReason"] == "STOP"
    contents = [
        {"role": "user", "parts": [{"text": MAGIC_PROMPT}]},
        {"role": "model", "parts": body["candidates"][0]["content"]["parts"]},
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "magic_function", "response": {"result": "42"}}}],
        },
    ]
    url = f"{provider.base_url('gtools', 'gemini')}/models/gemini-2.5-flash:generateContent"
    result = await http.post(
        url, headers={"x-goog-api-key": "k"}, json={"contents": contents, "tools": tools}
    )
    assert reply_text("gemini", result.json()) == "Tool result: 42"


async def test_structured_output(provider, http):
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "city": {"type": "string"},
            "temperature": {"type": "number", "minimum": -50, "maximum": 60},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "ok": {"type": "boolean"},
            "loc": {"$ref": "#/$defs/Loc"},
            "note": {"anyOf": [{"type": "null"}, {"type": "string"}]},
        },
        "required": ["city", "temperature", "unit", "tags", "ok", "loc", "note"],
        "$defs": {
            "Loc": {
                "type": "object",
                "properties": {"lat": {"type": "number"}, "lon": {"type": "integer"}},
                "required": ["lat", "lon"],
                "additionalProperties": False,
            }
        },
    }
    prompt = "The weather in Paris is 21 degrees"
    out = await oai(provider, "json").chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": prompt}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": schema, "strict": True},
        },
    )
    data = orjson.loads(out.choices[0].message.content)
    jsonschema.validate(data, schema)
    assert (
        data["city"] == "Paris"
        and data["temperature"] == 21
        and data["unit"] == "celsius"
        and len(data["tags"]) == 2
    )
    obj = await oai(provider, "json").chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": prompt}],
        response_format={"type": "json_object"},
    )
    assert orjson.loads(obj.choices[0].message.content) == {"answer": answer_for(prompt)}
    gem_schema = {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING"}, "n": {"type": "INTEGER"}},
        "required": ["city", "n"],
    }
    gem = await call(
        http,
        provider,
        "gemini",
        "json",
        prompt,
        generationConfig={"responseMimeType": "application/json", "responseSchema": gem_schema},
    )
    assert orjson.loads(reply_text("gemini", gem.json())) == {"city": "Paris", "n": 21}


# -- continuation (stream resume) ----------------------------------------------------------------


async def test_cut_stream_resumes_elsewhere_and_splices_exactly(provider, http):
    prompt = "Explain circuit breakers"
    full = answer_for(prompt)
    provider.fault("primary", cut_after_chunks=6)
    request = http.build_request(
        "POST",
        f"{provider.base_url('primary')}/chat/completions",
        headers={"Authorization": "Bearer k"},
        json={"model": "m", "stream": True, "messages": [{"role": "user", "content": prompt}]},
    )
    head = stream_text("openai", await read_cut_stream(http, request))
    assert head == "".join(word_chunks(full)[:6]) and head != full
    # Anthropic-style prefill on another deployment, streamed
    resumed = await call(
        http, provider, "anthropic", "secondary", [("user", prompt), ("assistant", head)], stream=True
    )
    assert head + stream_text("anthropic", resumed.text) == full
    # OpenAI-style: assistant turn followed by "continue"
    cont = await call(
        http,
        provider,
        "openai",
        "secondary",
        [("user", prompt), ("assistant", head), ("user", "Please CONTINUE.")],
    )
    assert head + reply_text("openai", cont.json()) == full
    # Gemini: trailing model turn
    gem = await call(http, provider, "gemini", "secondary", [("user", prompt), ("model", head)])
    assert head + reply_text("gemini", gem.json()) == full
    # a prefill that is not a prefix of the answer gets the full answer; a plain follow-up is a new prompt
    other = await call(
        http, provider, "openai", "secondary", [("user", prompt), ("assistant", "Something else")]
    )
    assert reply_text("openai", other.json()) == full
    fresh = await call(
        http, provider, "openai", "secondary", [("user", prompt), ("assistant", head), ("user", "Why?")]
    )
    assert reply_text("openai", fresh.json()) == answer_for("Why?")


# -- embeddings ----------------------------------------------------------------------------------


async def test_embeddings_openai_and_gemini(provider, http):
    client = oai(provider, "emb")
    texts = ["the cat sat on the mat", "the cat sat on a mat", "quantum chromodynamics lecture notes"]
    out = await client.embeddings.create(model="text-embedding-3-small", input=texts)
    vecs = [d.embedding for d in out.data]
    assert [d.index for d in out.data] == [0, 1, 2] and all(len(v) == 256 for v in vecs)
    assert all(abs(math.fsum(x * x for x in v) - 1) < 1e-5 for v in vecs)
    assert cosine(vecs[0], vecs[1]) > 0.6 > 0.2 > abs(cosine(vecs[0], vecs[2]))
    assert out.usage.prompt_tokens == sum(count_tokens(t) for t in texts) == 16
    raw = (
        await http.post(
            f"{provider.base_url('emb')}/embeddings",
            headers={"Authorization": "Bearer k"},
            json={"model": "e", "input": texts[0], "encoding_format": "float"},
        )
    ).json()
    assert raw["data"][0]["embedding"] == pytest.approx(vecs[0], abs=1e-6)  # SDK decoded base64 float32
    small = await client.embeddings.create(model="e", input="the cat", dimensions=64)
    assert len(small.data[0].embedding) == 64
    base = provider.base_url("emb", "gemini")
    one = await http.post(
        f"{base}/models/text-embedding-004:embedContent",
        headers={"x-goog-api-key": "k"},
        json={"content": {"parts": [{"text": texts[0]}]}},
    )
    assert one.json()["embedding"]["values"] == pytest.approx(vecs[0], abs=1e-6)
    batch = await http.post(
        f"{base}/models/text-embedding-004:batchEmbedContents",
        headers={"x-goog-api-key": "k"},
        json={"requests": [{"content": {"parts": [{"text": t}]}, "outputDimensionality": 32} for t in texts]},
    )
    values = [e["values"] for e in batch.json()["embeddings"]]
    assert len(values) == 3 and all(len(v) == 32 for v in values)
    assert provider.stats()["emb"]["by_endpoint"] == {"embeddings": 5}


# -- auth and error formats ----------------------------------------------------------------------


@pytest.mark.parametrize("wire", list(MODELS))
async def test_auth_errors_in_wire_format(provider, http, wire):
    for key in (None, "bad-key"):
        r = await call(http, provider, wire, "auth", "hi", key=key)
        assert r.status_code == 401
        err = r.json()
        kind = {
            "openai": lambda e: e["error"]["code"],
            "anthropic": lambda e: e["error"]["type"],
            "gemini": lambda e: e["error"]["status"],
        }[wire](err)
        assert (
            kind
            == {
                "openai": "invalid_api_key",
                "anthropic": "authentication_error",
                "gemini": "UNAUTHENTICATED",
            }[wire]
        )
    if wire == "gemini":  # the ?key= query parameter is accepted instead of x-goog-api-key
        ok = await http.post(
            f"{provider.base_url('auth', 'gemini')}/models/g:generateContent?key=good",
            json={"contents": [{"parts": [{"text": "hi"}]}]},
        )
        assert ok.status_code == 200


# fmt: off
ERRORS = {  # kind -> {wire: (status, identifier)}
    "rate_limit": {"openai": (429, "rate_limit_exceeded"), "anthropic": (429, "rate_limit_error"), "gemini": (429, "RESOURCE_EXHAUSTED")},
    "server_error": {"openai": (500, "server_error"), "anthropic": (500, "api_error"), "gemini": (500, "INTERNAL")},
    "overloaded": {"openai": (503, "server_error"), "anthropic": (529, "overloaded_error"), "gemini": (503, "UNAVAILABLE")},
    "unavailable": {"openai": (503, "server_error"), "anthropic": (503, "api_error"), "gemini": (503, "UNAVAILABLE")},
    "context_window": {"openai": (400, "context_length_exceeded"), "anthropic": (400, "invalid_request_error"),
                       "gemini": (400, "INVALID_ARGUMENT")},
    "content_policy": {"openai": (400, "content_policy_violation"), "anthropic": (400, "invalid_request_error"),
                       "gemini": (400, "INVALID_ARGUMENT")},
    "auth": {"openai": (401, "invalid_api_key"), "anthropic": (401, "authentication_error"), "gemini": (401, "UNAUTHENTICATED")},
    "bad_request": {"openai": (400, "invalid_request_error"), "anthropic": (400, "invalid_request_error"),
                    "gemini": (400, "INVALID_ARGUMENT")},
    "not_found": {"openai": (404, "model_not_found"), "anthropic": (404, "not_found_error"), "gemini": (404, "NOT_FOUND")},
}
# fmt: on


@pytest.mark.parametrize("wire", list(MODELS))
async def test_every_error_kind_in_wire_format(provider, http, wire):
    for kind, expected in ERRORS.items():
        provider.fault(f"err-{kind}", kind=kind)
        r = await call(http, provider, wire, f"err-{kind}", "one two three")
        err = r.json()["error"]
        ident = {
            "openai": err.get("code") or err.get("type"),
            "anthropic": err.get("type"),
            "gemini": err.get("status"),
        }[wire]
        assert (r.status_code, ident) == expected[wire], kind
        if wire == "anthropic":
            assert r.json()["type"] == "error"
        if wire == "gemini":
            assert err["code"] == r.status_code
    assert "retry-after" not in r.headers
    ctx = (await call(http, provider, wire, "err-context_window", "one two three")).json()
    message = ctx["error"]["message"]
    if wire == "anthropic":
        assert message == "prompt is too long: 200006 tokens > 200000 maximum"
    elif wire == "openai":
        assert ctx["error"]["param"] == "messages" and "maximum context length" in message
    else:
        assert "exceeds the maximum number of tokens allowed" in message


async def test_raw_status_and_custom_message(provider, http):
    provider.fault("raw", status=502, message="bad gateway upstream")
    r = await call(http, provider, "openai", "raw", "x")
    assert r.status_code == 502 and r.json()["error"] == {
        "message": "bad gateway upstream",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    r = await call(http, provider, "gemini", "raw", "x")
    assert r.status_code == 502 and r.json()["error"]["code"] == 502


async def test_rate_limit_retry_after_header_and_sdk_error(provider):
    provider.fault("rl", kind="rate_limit", retry_after=7)
    with pytest.raises(openai.RateLimitError) as info:
        await oai(provider, "rl").chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.response.headers["retry-after-ms"] == "7000"
    assert info.value.code == "rate_limit_exceeded"


async def test_invalid_request_body_is_a_400(provider, http):
    r = await http.post(
        f"{provider.base_url('b')}/chat/completions", headers={"Authorization": "Bearer k"}, content=b"{nope"
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = await http.post(
        f"{provider.base_url('b', 'anthropic')}/v1/messages", headers={"x-api-key": "k"}, json={"model": "c"}
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = await http.post(
        f"{provider.base_url('b', 'gemini')}/models/g:countTokens", headers={"x-goog-api-key": "k"}, json={}
    )
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"
    r = await call(http, provider, "anthropic", "b", "x", max_tokens="ten")
    assert r.status_code == 400 and "max_tokens" in r.json()["error"]["message"]


# -- transport faults ----------------------------------------------------------------------------


async def test_latency_only_delays_the_faulted_deployment(provider, http):
    provider.fault("slow", latency_ms=1500)
    started = time.perf_counter()
    slow = asyncio.create_task(call(http, provider, "openai", "slow", "x"))
    await asyncio.sleep(0.05)
    assert (await call(http, provider, "openai", "fast", "x")).status_code == 200
    assert not slow.done()  # the other deployment answered while the slow one still waits
    assert (await slow).status_code == 200
    assert time.perf_counter() - started >= 1.5


async def test_hang_times_out_client_while_server_keeps_serving(provider, http):
    provider.fault("hang", hang=True)

    async def hung() -> float:
        started = time.perf_counter()
        with pytest.raises(httpx.ReadTimeout):
            await http.post(
                f"{provider.base_url('hang')}/chat/completions",
                timeout=2.0,
                headers={"Authorization": "Bearer k"},
                json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
            )
        return time.perf_counter() - started

    task = asyncio.create_task(hung())
    await asyncio.sleep(0.05)
    ok = await call(http, provider, "openai", "alive", "still there?")
    assert ok.status_code == 200 and not task.done()  # answered while the hung request still waits
    assert await task >= 2.0
    assert provider.stats()["hang"]["hung"] == 1 and provider.stats()["hang"]["by_status"] == {}
    provider.clear_faults()
    provider.fault("hang-short", hang=True, hang_s=0.2)
    with pytest.raises(httpx.RemoteProtocolError):  # after hang_s the socket is dropped without a response
        await call(http, provider, "openai", "hang-short", "x")


@pytest.mark.parametrize("wire", list(MODELS))
async def test_cut_stream_has_no_terminal_event(provider, http, wire):
    provider.fault(f"cut-{wire}", cut_after_chunks=3)
    complete = await call(http, provider, wire, f"whole-{wire}", "Cut me", stream=True)
    request = chat_request(http, provider, wire, f"cut-{wire}", "Cut me", stream=True)
    received = (await read_cut_stream(http, request)).decode()
    assert stream_text(wire, received) == "".join(word_chunks(answer_for("Cut me"))[:3])
    terminal = {"openai": "[DONE]", "anthropic": "message_stop", "gemini": "finishReason"}[wire]
    assert terminal in complete.text and terminal not in received
    assert provider.stats()[f"cut-{wire}"]["streams_cut"] == 1
    # cutting after more chunks than the reply has: every word arrives, the finish never does
    provider.fault(f"cut-all-{wire}", cut_after_chunks=999)
    request = chat_request(http, provider, wire, f"cut-all-{wire}", "Cut me", stream=True)
    received = (await read_cut_stream(http, request)).decode()
    assert stream_text(wire, received) == answer_for("Cut me") and terminal not in received


async def test_cut_non_stream_body_and_sdk_sees_connection_error(provider, http):
    provider.fault("halfbody", cut_after_chunks=1)
    with pytest.raises(httpx.RemoteProtocolError):
        await call(http, provider, "anthropic", "halfbody", "x")
    with pytest.raises(openai.APIConnectionError):
        await oai(provider, "halfbody").chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    assert provider.stats()["halfbody"]["bodies_cut"] == 2


async def test_malformed_bodies_and_stream_frames(provider, http):
    provider.fault("junk", malformed=True)
    for wire in MODELS:
        r = await call(http, provider, wire, "junk", "x")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(r.content)
    raw = await call(http, provider, "openai", "junk", "Junk", stream=True)
    payloads = sse_payloads(raw.text)
    broken = []
    for p in payloads[:-1]:
        try:
            orjson.loads(p)
        except orjson.JSONDecodeError:
            broken.append(p)
    assert (
        len(broken) == 1
        and payloads[-1] == "[DONE]"
        and stream_text("openai", raw.text) == answer_for("Junk")
    )
    with pytest.raises((ValueError, openai.APIError)):  # openai 3.57 lets the JSONDecodeError through
        await oai(provider, "junk").chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    assert provider.stats()["junk"]["malformed"] == 5


async def test_chunk_delay_spaces_stream_chunks(provider, http):
    provider.fault("drip", chunk_delay_ms=40)
    started = time.perf_counter()
    r = await call(http, provider, "anthropic", "drip", "x", stream=True, max_tokens=5)
    assert time.perf_counter() - started >= 4 * 0.04
    assert stream_text("anthropic", r.text) == "".join(word_chunks(answer_for("x"))[:5])


async def test_times_expiry_and_model_filter(provider, http):
    provider.fault("twice", kind="server_error", times=2)
    statuses = [(await call(http, provider, "openai", "twice", "x")).status_code for _ in range(3)]
    assert statuses == [500, 500, 200] and provider.faults() == []
    provider.fault("models", model="gpt-4o", kind="rate_limit")
    assert (await call(http, provider, "openai", "models", "x")).status_code == 200  # gpt-4o-mini
    assert (await call(http, provider, "openai", "models", "x", model="gpt-4o")).status_code == 429


async def test_probability_is_seeded_and_reproducible(provider, http):
    async def pattern() -> list[int]:
        provider.clear_faults()
        provider.fault("flaky", kind="server_error", probability=0.5, seed=3)
        return [(await call(http, provider, "openai", "flaky", "x")).status_code for _ in range(30)]

    first, second = await pattern(), await pattern()
    assert first == second and 5 < first.count(500) < 25 and set(first) == {200, 500}


async def test_faults_are_isolated_per_deployment_and_first_match_wins(provider, http):
    provider.fault("iso-a", kind="rate_limit")
    provider.fault("*", kind="server_error", times=1)
    assert (await call(http, provider, "openai", "iso-a", "x")).status_code == 429
    assert (await call(http, provider, "openai", "iso-b", "x")).status_code == 500  # wildcard, once
    assert (await call(http, provider, "openai", "iso-b", "x")).status_code == 200
    assert (await call(http, provider, "openai", "iso-a", "x")).status_code == 429
    assert provider.clear_faults("iso-a") == 1
    assert (await call(http, provider, "openai", "iso-a", "x")).status_code == 200


async def test_cached_and_reasoning_tokens_in_usage(provider, http):
    provider.fault("*", cached_tokens=4, reasoning_tokens=3)
    words = count_tokens(answer_for("one two three"))
    assert words == 26
    o = (await call(http, provider, "openai", "cache", "one two three")).json()["usage"]
    assert o["prompt_tokens"] == 6 and o["prompt_tokens_details"]["cached_tokens"] == 4
    assert o["completion_tokens_details"]["reasoning_tokens"] == 3 and o["completion_tokens"] == words + 3
    a = (await call(http, provider, "anthropic", "cache", "one two three")).json()["usage"]
    assert (a["input_tokens"], a["cache_read_input_tokens"], a["output_tokens"]) == (2, 4, words + 3)
    raw = await call(http, provider, "anthropic", "cache", "one two three", stream=True)
    start = orjson.loads(sse_payloads(raw.text)[0])["message"]["usage"]
    assert start["cache_read_input_tokens"] == 4 and start["cache_creation_input_tokens"] == 0
    g = (await call(http, provider, "gemini", "cache", "one two three")).json()["usageMetadata"]
    assert g == {
        "promptTokenCount": 6,
        "candidatesTokenCount": words,
        "totalTokenCount": 6 + words + 3,
        "cachedContentTokenCount": 4,
        "thoughtsTokenCount": 3,
    }


# -- scripted rules, stats, other endpoints --------------------------------------------------------


async def test_scripted_rules(provider, http):
    provider.script(r"weather", content="Sunny.", deployment="rules", times=1)
    provider.script(r"^book", tool_calls=[{"name": "book_flight", "arguments": {"to": "OSL"}}])
    provider.script(r"status", json={"ok": True})
    assert reply_text(
        "openai", (await call(http, provider, "openai", "elsewhere", "weather")).json()
    ) == answer_for("weather")
    assert (
        reply_text("openai", (await call(http, provider, "openai", "rules", "The weather?")).json())
        == "Sunny."
    )
    assert reply_text(
        "openai", (await call(http, provider, "openai", "rules", "The weather?")).json()
    ) == answer_for("The weather?")
    booked = (await call(http, provider, "anthropic", "rules", "book it")).json()
    assert booked["content"][0]["name"] == "book_flight" and booked["content"][0]["input"] == {"to": "OSL"}
    status = await call(http, provider, "gemini", "rules", "status please", stream=True)
    assert orjson.loads(stream_text("gemini", status.text)) == {"ok": True}
    assert len(provider.rules()) == 2 and provider.clear_rules() == 2


async def test_stats_per_deployment(provider, http):
    provider.fault("stats", kind="rate_limit", times=1)
    await call(http, provider, "openai", "stats", "a b")  # 429
    await call(http, provider, "openai", "stats", "a b")
    await call(http, provider, "anthropic", "stats", "a b", stream=True)
    await call(http, provider, "gemini", "stats", "a b", key=None)  # 401
    await http.get(f"{provider.base_url('stats')}/models", headers={"Authorization": "Bearer k"})
    s = provider.stats()["stats"]
    assert s["requests"] == 5 and s["streams"] == 1 and s["faults_applied"] == 1
    assert s["by_endpoint"] == {"chat": 4, "models": 1}
    assert s["by_wire"] == {"openai": 3, "anthropic": 1, "gemini": 1}
    assert s["by_status"] == {"429": 1, "200": 3, "401": 1}
    assert s["prompt_tokens"] == 2 * 5 and s["completion_tokens"] == 2 * count_tokens(answer_for("a b"))
    assert "default" not in provider.stats()


async def test_models_and_unprefixed_default_routes(provider, http):
    models = (await http.get(f"{provider.url}/v1/models", headers={"Authorization": "Bearer k"})).json()
    assert models["object"] == "list" and "gpt-4o-mini" in [m["id"] for m in models["data"]]
    r = await http.post(
        f"{provider.url}/v1/messages",
        headers={"x-api-key": "k"},
        json={"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 200 and provider.stats()["default"]["by_endpoint"] == {"models": 1, "chat": 1}


async def test_gemini_json_array_streaming(provider, http):
    r = await http.post(
        f"{provider.base_url('arr', 'gemini')}/models/g:streamGenerateContent",
        headers={"x-goog-api-key": "k"},
        json={"contents": [{"parts": [{"text": "Array"}]}], "generationConfig": {"maxOutputTokens": 3}},
    )
    items = orjson.loads(r.content)
    assert r.headers["content-type"].startswith("application/json") and len(items) == 4
    assert (
        "".join(p["text"] for i in items for p in i["candidates"][0]["content"]["parts"]) == "Mock answer to:"
    )
    assert items[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS" and "usageMetadata" in items[-1]


def test_client_over_http(provider):
    client = MockProviderClient(provider.url)
    assert client.health() and client.base_url("x", "gemini") == provider.base_url("x", "gemini")
    fid = client.fault("remote", kind="overloaded", times=1)
    assert [f["id"] for f in provider.faults()] == [fid] and client.faults()[0]["kind"] == "overloaded"
    r = httpx.post(
        f"{provider.base_url('remote', 'anthropic')}/v1/messages",
        headers={"x-api-key": "k"},
        json={"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error"
    assert client.stats()["remote"]["by_status"] == {"529": 1}
    client.script("hello", content="Scripted!")
    assert client.rules()[0]["content"] == "Scripted!" and client.clear_rules() == 1
    client.fault("a", kind="auth")
    client.fault("b", kind="auth")
    assert client.clear_faults("a") == 1 and client.clear_faults() == 1
    with pytest.raises(MockProviderError, match="unknown fault kind"):
        client.fault("x", kind="explode")
    with pytest.raises(MockProviderError, match="unknown fault fields"):
        client.fault("x", colour="red")
    client.reset()
    assert client.stats() == {} and client.faults() == []


# -- litellm against all three wires ----------------------------------------------------------------


@pytest.fixture(scope="module")
def litellm():
    import litellm

    return litellm


LITELLM_MODELS = {
    "openai": "openai/gpt-4o-mini",
    "anthropic": "anthropic/claude-haiku-4-5",
    "gemini": "gemini/gemini-2.5-flash",
}


@pytest.mark.parametrize("wire", list(MODELS))
async def test_litellm_plain_stream_and_tool_call(provider, litellm, wire):
    kwargs = {
        "model": LITELLM_MODELS[wire],
        "api_base": provider.base_url(f"ll-{wire}", wire),
        "api_key": "sk-x",
        "max_retries": 0,
    }
    prompt = f"Hello from litellm over {wire}"
    plain = await litellm.acompletion(messages=[{"role": "user", "content": prompt}], **kwargs)
    assert plain.choices[0].message.content == answer_for(prompt) and plain.choices[0].finish_reason == "stop"
    assert plain.usage.prompt_tokens == count_tokens(prompt) + 3
    assert plain.usage.completion_tokens == count_tokens(answer_for(prompt))
    stream = await litellm.acompletion(
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
        **kwargs,
    )
    text, finishes = "", []
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finishes += [chunk.choices[0].finish_reason] if chunk.choices[0].finish_reason else []
    assert text == answer_for(prompt) and finishes[-1] == "stop"
    tooled = await litellm.acompletion(
        messages=[{"role": "user", "content": MAGIC_PROMPT}], tools=[MAGIC_TOOL], **kwargs
    )
    tc = tooled.choices[0].message.tool_calls[0]
    assert tooled.choices[0].finish_reason == "tool_calls"
    assert tc.function.name == "magic_function" and orjson.loads(tc.function.arguments) == {"input": 3}
    assert provider.stats()[f"ll-{wire}"]["by_status"] == {"200": 3}


@pytest.mark.parametrize("wire", list(MODELS))
async def test_litellm_maps_mock_errors(provider, litellm, wire):
    kwargs = {
        "model": LITELLM_MODELS[wire],
        "api_base": provider.base_url(f"lle-{wire}", wire),
        "api_key": "sk-x",
        "max_retries": 0,
        "messages": [{"role": "user", "content": "x"}],
    }
    provider.fault(f"lle-{wire}", kind="rate_limit", retry_after=1, times=1)
    with pytest.raises(litellm.RateLimitError):
        await litellm.acompletion(**kwargs)
    provider.fault(f"lle-{wire}", kind="context_window", times=1)
    with pytest.raises(litellm.ContextWindowExceededError):
        await litellm.acompletion(**kwargs)


# -- strict validation: a wrong body gets the real API's 400 ------------------------------------


async def test_openai_unknown_top_level_field_is_refused_as_openai_does(provider, http):
    r = await call(http, provider, "openai", "strict", "hi", foo=1)
    assert r.status_code == 400
    assert r.json() == {
        "error": {
            "message": "Unrecognized request argument supplied: foo",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    stats = provider.stats()["strict"]
    assert stats["refused"] == 1 and stats["last_refusal"] == "Unrecognized request argument supplied: foo"


async def test_openai_nested_and_type_errors_name_the_parameter(provider, http):
    client = oai(provider, "strict-oai")
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x", "colour": "red"}]
        )
    assert info.value.body == {
        "message": "Unknown parameter: 'messages[0].colour'.",
        "type": "invalid_request_error",
        "param": "messages[0].colour",
        "code": "unknown_parameter",
    }
    r = await call(http, provider, "openai", "strict", "hi", temperature="hot")
    err = r.json()["error"]
    assert r.status_code == 400 and err["param"] == "temperature" and err["code"] == "invalid_type"
    assert err["message"] == "Invalid type for 'temperature': expected a decimal, but got a string instead."
    r = await call(http, provider, "openai", "strict", [("wizard", "x")])
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0].role"
    assert r.json()["error"]["message"].startswith("Invalid value: 'wizard'. Supported values are:")
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    r = await http.post(
        f"{provider.base_url('strict')}/chat/completions", headers={"Authorization": "Bearer k"}, json=body
    )
    assert r.status_code == 200
    del body["model"]
    r = await http.post(
        f"{provider.base_url('strict')}/chat/completions", headers={"Authorization": "Bearer k"}, json=body
    )
    assert r.json()["error"]["message"] == "Missing required parameter: 'model'."


async def test_openai_tool_message_must_answer_a_tool_call(provider, http):
    turns = [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_9", "content": "5"}]
    r = await http.post(
        f"{provider.base_url('strict')}/chat/completions",
        headers={"Authorization": "Bearer k"},
        json={"model": "gpt-4o-mini", "messages": turns},
    )
    assert r.status_code == 400
    assert (
        "messages with role 'tool' must be a response to a preceeding message with 'tool_calls'"
        in (r.json()["error"]["message"])
    )


async def test_openai_embeddings_unknown_field_is_refused(provider):
    client = oai(provider, "strict-emb")
    with pytest.raises(openai.BadRequestError, match="Unrecognized request argument supplied: task_type"):
        await client.embeddings.create(
            model="text-embedding-3-small", input="x", extra_body={"task_type": "q"}
        )


async def test_anthropic_requires_max_tokens(provider, http):
    req = chat_request(http, provider, "anthropic", "strict", "hi")
    body = orjson.loads(req.content)
    del body["max_tokens"]
    r = await http.post(str(req.url), headers={"x-api-key": "k"}, json=body)
    assert r.status_code == 400
    assert r.json()["type"] == "error"
    assert r.json()["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}


@pytest.mark.parametrize(
    "field, value",
    [
        ("frequency_penalty", 0.5),
        ("logprobs", True),
        ("response_format", {"type": "json_object"}),
        ("n", 2),
        ("seed", 1),
        ("parallel_tool_calls", False),
    ],
)
async def test_anthropic_refuses_openai_only_fields(provider, http, field, value):
    r = await call(http, provider, "anthropic", "strict", "hi", **{field: value})
    assert r.status_code == 400
    assert r.json()["error"] == {
        "type": "invalid_request_error",
        "message": f"{field}: Extra inputs are not permitted",
    }


async def test_anthropic_types_blocks_and_tool_pairing(provider, http):
    r = await call(http, provider, "anthropic", "strict", "hi", temperature="warm")
    assert r.json()["error"]["message"] == "temperature: Input should be a valid number"
    r = await call(http, provider, "anthropic", "strict", "hi", messages="hello")
    assert r.json()["error"]["message"] == "messages: Input should be a valid list"
    r = await call(http, provider, "anthropic", "strict", "hi", tools=None)  # pydantic: null is not a list
    assert r.json()["error"]["message"] == "tools: Input should be a valid list"
    for wire in ("openai", "gemini"):  # there an explicit null on an optional field means "not given"
        assert (await call(http, provider, wire, "strict", "hi", tools=None)).status_code == 200
    bad_block = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    r = await call(http, provider, "anthropic", "strict", "hi", messages=bad_block)
    assert r.json()["error"]["message"].startswith(
        "messages.0.content.0: Input tag 'image_url' found using 'type' does not match any of the expected tags:"
    )
    stray = [
        {"role": "user", "content": "x"},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "5"}]},
    ]
    r = await call(http, provider, "anthropic", "strict", "hi", messages=stray)
    assert (
        r.status_code == 400
        and "unexpected `tool_use_id` found in `tool_result` blocks: toolu_1"
        in (r.json()["error"]["message"])
    )
    unanswered = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_2", "name": "f", "input": {}}]},
        {"role": "user", "content": "and?"},
    ]
    r = await call(http, provider, "anthropic", "strict", "hi", messages=unanswered)
    assert (
        r.status_code == 400
        and "`tool_use` ids were found without `tool_result` blocks" in (r.json()["error"]["message"])
    )
    r = await call(
        http, provider, "anthropic", "strict", "hi", thinking={"type": "enabled", "budget_tokens": 2048}
    )
    assert r.json()["error"]["message"] == "`max_tokens` must be greater than `thinking.budget_tokens`."
    ok = await call(
        http,
        provider,
        "anthropic",
        "strict",
        "hi",
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 2048},
    )
    assert ok.status_code == 200


async def test_gemini_unknown_fields_are_refused_as_gemini_does(provider, http):
    r = await call(http, provider, "gemini", "strict", "hi", foo=1)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == 400 and err["status"] == "INVALID_ARGUMENT"
    assert err["message"] == 'Invalid JSON payload received. Unknown name "foo": Cannot find field.'
    r = await call(http, provider, "gemini", "strict", "hi", generationConfig={"max_tokens": 5})
    assert r.json()["error"]["message"] == (
        "Invalid JSON payload received. Unknown name \"max_tokens\" at 'generation_config': Cannot find field."
    )
    r = await call(http, provider, "gemini", "strict", "hi", generationConfig={"temperature": "hot"})
    assert (
        r.json()["error"]["message"]
        == "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\""
    )
    both = {"maxOutputTokens": 5, "thinking_config": {"thinkingBudget": 0}, "responseMimeType": "text/plain"}
    r = await call(http, provider, "gemini", "strict", "hi", generationConfig=both)
    assert r.status_code == 200  # camelCase and snake_case spellings, as the REST API accepts


async def test_lenient_switch_accepts_what_strict_refuses(provider, http):
    odd = {"foo": 1, "frequency_penalty": 0.5}
    for wire in MODELS:
        assert (await call(http, provider, wire, "lenient", "hi", **odd)).status_code == 400
    provider.strict = False
    try:
        for wire in MODELS:
            r = await call(http, provider, wire, "lenient", "hi", **odd)
            assert r.status_code == 200, (wire, r.text)
    finally:
        provider.strict = True
    client = MockProviderClient(provider.url)
    assert client.strict() is True
    assert client.strict(False) is False and provider.strict is False
    assert (await call(http, provider, "anthropic", "lenient", "hi", seed=1)).status_code == 200
    assert client.strict(True) is True
    with MockProvider(strict=False) as lenient:
        r = await call(http, lenient, "openai", "x", "hi", foo=1)
        assert r.status_code == 200


def test_cli_has_a_lenient_flag():
    from hyperion_core.cli import build_parser

    assert build_parser().parse_args(["mock-provider", "--lenient"]).lenient is True
    assert build_parser().parse_args(["mock-provider"]).lenient is False


def test_shipped_wire_schemas_match_the_installed_sdks():
    from hyperion_core.mock_provider import _gen_schema

    shipped = _gen_schema.OUT.read_text()
    assert shipped == _gen_schema.render(_gen_schema.generate()), (
        "wire_schemas.json is stale: run python -m hyperion_core.mock_provider._gen_schema"
    )
    doc = orjson.loads(shipped)
    chat = doc["defs"][doc["endpoints"]["openai.chat"]]
    assert {"messages", "model"} <= set(chat["required"]) and "frequency_penalty" in chat["fields"]
    messages = doc["defs"][doc["endpoints"]["anthropic.messages"]]
    assert "max_tokens" in messages["required"] and "frequency_penalty" not in messages["fields"]
