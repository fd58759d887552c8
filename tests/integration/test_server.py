"""``hyperion serve`` over real HTTP: a real uvicorn server on a loopback port (in a thread of this
process), called with the official openai and anthropic SDKs, LangChain's ChatOpenAI and LlamaIndex's
OpenAILike, in front of the mock provider."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import anthropic
import httpx
import openai
import pytest

from hyperion_core import Gateway
from hyperion_core.server import ServerSettings, create_app
from hyperion_core.server.testing import ServerThread


def config(mock, dep: str, tmp_path, **extra) -> dict:
    cfg = {
        "providers": {
            "p": {"kind": "openai", "api_key": "sk-upstream-secret", "base_url": mock.base_url(dep, "openai")},
            "q": {"kind": "anthropic", "api_key": "sk-ant-upstream", "base_url": mock.base_url(f"{dep}-b", "anthropic")},
            "e": {"kind": "openai", "api_key": "sk-upstream-secret", "base_url": mock.base_url(f"{dep}-e", "openai")},
        },
        "routes": {
            "chat": {"deployments": [{"model": "p/gpt-4o-mini"}, {"model": "q/claude-3-5-haiku-latest"}],
                     "retry": {"attempts": 0}},
            "solo": {"deployments": [{"model": "p/gpt-4o-mini"}], "retry": {"attempts": 0}},
            "emb": {"kind": "embedding", "deployments": [{"model": "e/text-embedding-3-small"}]},
        },
        "keys": {"store": "memory"},
        "audit": {"sink": f"sqlite:///{tmp_path}/audit-{dep}.db"},
        "governance": {"budgets": [{"scope": "team", "id": "poor", "period": "daily", "limit_usd": 0.00001}],
                       "rate_limits": [{"scope": "team", "id": "slow", "rpm": 1}]},
    }
    for k, v in extra.items():
        cfg[k] = v
    return cfg


class Env:
    def __init__(self, srv: ServerThread, gw: Gateway) -> None:
        self.srv, self.gw, self.url = srv, gw, srv.url

    def key(self, name: str = "k", **kw) -> str:
        key, _ = self.srv.call(self.gw.keys.create(name, **kw))
        return key

    def oai(self, key: str, **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, **kw)

    def audit(self, **filters):
        async def go():
            await self.gw.audit.aflush()
            return await self.gw.audit.query(**filters)

        return self.srv.call(go())


@pytest.fixture
def env(mock, tmp_path, request):
    dep = request.node.name[-24:].replace("[", "-").replace("]", "")
    app = create_app(config(mock, f"s-{dep}", tmp_path))  # the app owns its gateway: closed on shutdown
    srv = ServerThread(app).start()
    e = Env(srv, app.state.gateway)
    e.dep = f"s-{dep}"
    yield e
    srv.stop()


def test_chat_json_with_hyperion_headers(env):
    key = env.key()
    client = env.oai(key)
    raw = client.chat.completions.with_raw_response.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    resp = raw.parse()
    assert resp.choices[0].message.content
    assert resp.model == "chat" and resp.usage.total_tokens > 0
    h = raw.headers
    assert h["x-hyperion-route"] == "chat"
    assert h["x-hyperion-deployment"]
    assert h["x-hyperion-attempts"] == "1"
    assert h["x-hyperion-cache"] == "miss"
    assert float(h["x-hyperion-cost"]) > 0
    assert h["x-hyperion-request-id"].startswith("req-") and raw.request_id == h["x-hyperion-request-id"]
    (event,) = env.audit(request_id=h["x-hyperion-request-id"])
    assert event.outcome == "ok" and event.key_id


def test_stream_with_include_usage(env):
    key = env.key()
    stream = env.oai(key).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "tell me a story"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)


def test_tools_and_structured_output(env, mock):
    key = env.key()
    mock.script("magic_function", tool_calls=[{"name": "magic_function", "arguments": {"input": 3}}])
    tools = [{"type": "function", "function": {"name": "magic_function", "description": "magic",
                                                "parameters": {"type": "object", "properties": {"input": {"type": "integer"}},
                                                               "required": ["input"]}}}]
    client = env.oai(key)
    resp = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "What is the value of magic_function(3)? Use the tool."}],
        tools=tools,
    )
    call = resp.choices[0].message.tool_calls[0]
    assert resp.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "magic_function" and json.loads(call.function.arguments) == {"input": 3}
    # the same, streamed
    stream = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "What is the value of magic_function(3)? Use the tool."}],
        tools=tools, stream=True,
    )
    args = "".join(tc.function.arguments or "" for c in stream if c.choices for tc in (c.choices[0].delta.tool_calls or ()))
    assert json.loads(args) == {"input": 3}
    # json_schema response_format: an answer valid against the schema
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}
    resp = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "a city"}],
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema, "strict": True}},
    )
    assert isinstance(json.loads(resp.choices[0].message.content)["city"], str)


def test_embeddings_and_models(env):
    admin_key = env.key("adm", roles=["admin"])
    narrow = env.key("narrow", routes=["solo"])
    client = env.oai(admin_key)
    emb = client.embeddings.create(model="emb", input=["one", "two"])  # the SDK asks for base64
    assert len(emb.data) == 2 and len(emb.data[0].embedding) > 8
    emb = client.embeddings.create(model="emb", input="one", encoding_format="float")
    assert isinstance(emb.data[0].embedding[0], float)
    assert sorted(m.id for m in client.models.list()) == ["chat", "emb", "solo"]
    assert [m.id for m in env.oai(narrow).models.list()] == ["solo"]


def test_errors_are_the_sdks_own_exception_classes(env, mock):
    key = env.key()
    client = env.oai(key, max_retries=0)
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.AuthenticationError):
        env.oai("hk-nope.secret").chat.completions.create(model="chat", messages=msgs)
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="no-such-route", messages=msgs)
    text = nf.value.message
    assert "no-such-route" in text and "solo" not in text and "emb" not in text  # no route listing
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="chat", messages=[])
    with pytest.raises(openai.PermissionDeniedError):
        env.oai(env.key("narrow", routes=["solo"]), max_retries=0).chat.completions.create(model="chat", messages=msgs)
    mock.fault(env.dep, status=503, times=10)
    mock.fault(f"{env.dep}-b", status=503, times=10)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="chat", messages=msgs)


def test_missing_and_revoked_keys_are_401(env):
    r = httpx.post(env.url + "/v1/chat/completions", json={"model": "chat", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 401 and "missing virtual key" in r.json()["error"]["message"]
    key = env.key()
    key_id = key.split(".")[0][3:]
    env.srv.call(env.gw.keys.revoke(key_id))
    with pytest.raises(openai.AuthenticationError) as info:
        env.oai(key, max_retries=0).chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
    assert "revoked" in info.value.message and key.split(".")[1] not in info.value.message


def test_rate_limit_retry_after_is_honoured_and_budget_refusal_is_not_retried(env):
    msgs = [{"role": "user", "content": "hi"}]
    limited = env.key("slow", team="slow")
    seen: list[httpx.Request] = []
    http = httpx.Client(event_hooks={"request": [seen.append]})
    client = env.oai(limited, max_retries=1, http_client=http)
    client.chat.completions.create(model="chat", messages=msgs)  # the one request per minute
    seen.clear()
    raw = httpx.post(env.url + "/v1/chat/completions", json={"model": "chat", "messages": msgs},
                     headers={"authorization": f"Bearer {limited}"})
    assert raw.status_code == 429 and int(raw.headers["retry-after"]) >= 1 and "retry-after-ms" in raw.headers
    with pytest.raises(openai.RateLimitError) as info:
        env.oai(limited, max_retries=0).chat.completions.create(model="chat", messages=msgs)
    assert info.value.code == "rate_limit_exceeded"
    poor = env.key("poor", team="poor")
    seen.clear()
    with pytest.raises(openai.RateLimitError) as info:
        env.oai(poor, max_retries=3, http_client=http).chat.completions.create(model="chat", messages=msgs, max_tokens=50)
    assert info.value.code == "insufficient_quota" and len(seen) == 1  # never retried
    assert info.value.response.headers["x-should-retry"] == "false"


def test_the_sdk_waits_the_retry_after_of_an_upstream_429(env, mock):
    mock.fault(env.dep, kind="rate_limit", retry_after=1, times=1)
    seen: list[httpx.Request] = []
    client = env.oai(env.key(), max_retries=1, http_client=httpx.Client(event_hooks={"request": [seen.append]}))
    started = time.monotonic()
    resp = client.chat.completions.create(model="solo", messages=[{"role": "user", "content": "hi"}])
    assert resp.choices[0].message.content and len(seen) == 2
    assert time.monotonic() - started >= 0.95  # it slept the server's Retry-After (1 s) before retrying


def test_anthropic_sdk_messages_and_stream(env, mock):
    key = env.key()
    client = anthropic.Anthropic(base_url=env.url, api_key=key, max_retries=0)
    msg = client.messages.create(model="chat", max_tokens=64, messages=[{"role": "user", "content": "hello"}])
    assert msg.content[0].type == "text" and msg.content[0].text and msg.usage.output_tokens > 0
    assert msg.stop_reason == "end_turn"
    with client.messages.stream(model="chat", max_tokens=64, messages=[{"role": "user", "content": "a story"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text and final.usage.output_tokens > 0
    mock.script("weather", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    msg = client.messages.create(
        model="chat", max_tokens=64, messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[{"name": "get_weather", "description": "w", "input_schema": {"type": "object",
                "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
    )
    assert msg.stop_reason == "tool_use" and msg.content[-1].input == {"city": "Paris"}
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=env.url, api_key="hk-x.y", max_retries=0).messages.create(
            model="chat", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    poor = env.key("poor2", team="poor")
    with pytest.raises(anthropic.APIStatusError) as info:
        anthropic.Anthropic(base_url=env.url, api_key=poor, max_retries=2).messages.create(
            model="chat", max_tokens=50, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 402
    r = httpx.post(env.url + "/v1/messages", json={"model": "chat", "max_tokens": 5, "messages": []},
                   headers={"x-api-key": key})
    assert r.status_code == 400 and r.json()["type"] == "error"  # no anthropic-version header


def test_langchain_chat_openai_and_llamaindex_openai_like(env, mock):
    from langchain_openai import ChatOpenAI
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai_like import OpenAILike

    key = env.key()
    llm = ChatOpenAI(model="chat", base_url=env.url + "/v1", api_key=key, max_retries=0)
    out = llm.invoke("hello there")
    assert out.content and out.usage_metadata["total_tokens"] > 0
    assert "".join(c.content for c in llm.stream("stream please"))
    mock.script("magic_function", tool_calls=[{"name": "magic_function", "arguments": {"input": 3}}])

    def magic_function(input: int) -> int:
        """Applies a magic function to an input."""
        return input + 2

    msg = llm.bind_tools([magic_function]).invoke("What is the value of magic_function(3)? Use the tool.")
    assert msg.tool_calls[0]["name"] == "magic_function" and msg.tool_calls[0]["args"] == {"input": 3}
    li = OpenAILike(model="chat", api_base=env.url + "/v1", api_key=key, is_chat_model=True, max_retries=0)
    assert li.chat([ChatMessage(role="user", content="hi")]).message.content
    assert "".join(r.delta or "" for r in li.stream_chat([ChatMessage(role="user", content="stream")]))


def test_client_disconnect_mid_stream_cancels_upstream_and_bills_what_was_streamed(env, mock):
    key = env.key()
    mock.fault(env.dep, chunk_delay_ms=50)
    body = json.dumps({"model": "solo", "stream": True, "max_tokens": 400,
                       "messages": [{"role": "user", "content": "write a long essay " * 5}]}).encode()
    sock = socket.create_connection(("127.0.0.1", env.srv.port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 + f"authorization: Bearer {key}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
    got = b""
    while got.count(b"data: ") < 3:
        got += sock.recv(65536)
    assert b"200 OK" in got.split(b"\r\n", 1)[0]
    sock.close()
    deadline = time.monotonic() + 60
    events = []
    while time.monotonic() < deadline:
        events = env.audit(route="solo")
        if events:
            break
        time.sleep(0.05)
    (event,) = events
    assert event.outcome == "cancelled"
    assert event.cost > 0 and event.completion_tokens > 0 and event.delivered_chunks >= 2
    full = env.oai(key).chat.completions.create(model="solo", max_tokens=400,
                                                messages=[{"role": "user", "content": "write a long essay " * 5}])
    assert event.completion_tokens < full.usage.completion_tokens  # billed for what was generated
    spend = env.srv.call(env.gw.spend_report("key"))
    assert sum(r.requests for r in spend) == 2


def test_body_limit_and_bad_json(mock, tmp_path):
    app = create_app(config(mock, "s-limits", tmp_path), ServerSettings(max_body_bytes=10_000))
    gw = app.state.gateway
    with ServerThread(app) as srv:
        key, _ = srv.call(gw.keys.create("k"))
        h = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        big = {"model": "chat", "messages": [{"role": "user", "content": "x" * 20_000}]}
        r = httpx.post(srv.url + "/v1/chat/completions", json=big, headers=h)
        assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"
        r = httpx.post(srv.url + "/v1/chat/completions", content=b"{not json", headers=h)
        assert r.status_code == 400 and "parse the JSON" in r.json()["error"]["message"]
        r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "chat", "messages": "nope"}, headers=h)
        assert r.status_code == 400
        r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "chat", "messages": [{"role": "user", "content": "ok"}]},
                       headers=h)
        assert r.status_code == 200  # the worker keeps serving
        assert "sk-upstream-secret" not in r.text


def test_health_and_readiness(env, mock):
    assert httpx.get(env.url + "/healthz").json() == {"status": "ok"}
    r = httpx.get(env.url + "/readyz")
    assert r.status_code == 200 and r.json()["checks"]["routes"]["solo"] == "ok"
    mock.fault(env.dep, status=500)
    client = env.oai(env.key(), max_retries=0)
    for _ in range(10):  # the default breaker opens after a few consecutive failures
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="solo", messages=[{"role": "user", "content": "x"}])
        if httpx.get(env.url + "/readyz").status_code == 503:
            break
    r = httpx.get(env.url + "/readyz")
    assert r.status_code == 503 and "breaker is open" in r.json()["checks"]["routes"]["solo"]


async def test_async_openai_client_concurrent_streams(env):
    key = env.key()
    client = openai.AsyncOpenAI(base_url=env.url + "/v1", api_key=key)

    async def one(i: int) -> str:
        s = await client.chat.completions.create(model="chat", stream=True,
                                                 messages=[{"role": "user", "content": f"story {i}"}])
        return "".join([c.choices[0].delta.content or "" async for c in s if c.choices])

    texts = await asyncio.gather(*(one(i) for i in range(8)))
    assert all(texts)
    await client.close()


def test_a_stream_cut_after_its_first_chunk_ends_with_the_wires_error_event(env, mock):
    key = env.key()
    mock.fault(env.dep, cut_after_chunks=3)
    stream = env.oai(key, max_retries=0).chat.completions.create(
        model="solo", messages=[{"role": "user", "content": "a long story please"}], stream=True)
    got = []
    with pytest.raises(openai.APIError) as info:
        for c in stream:
            got.append(c)
    assert got and "stream_interrupted" in str(info.value.body) + str(info.value.code)
    (event,) = env.audit(route="solo")
    assert event.outcome == "error" and event.error_class == "StreamInterruptedError"
    mock.fault(f"{env.dep}-b", cut_after_chunks=2)
    client = anthropic.Anthropic(base_url=env.url, api_key=key, max_retries=0)
    mock.fault(env.dep, status=500, times=1)  # the Anthropic deployment answers, then is cut
    with pytest.raises(anthropic.APIError):
        with client.messages.stream(model="chat", max_tokens=64, messages=[{"role": "user", "content": "x y z"}]) as s:
            "".join(s.text_stream)


def test_a_slow_body_is_answered_408_and_the_worker_keeps_serving(mock, tmp_path):
    app = create_app(config(mock, "s-slow", tmp_path), ServerSettings(body_timeout_s=0.5))
    with ServerThread(app) as srv:
        key, _ = srv.call(app.state.gateway.keys.create("k"))
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.settimeout(60)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     + f"authorization: Bearer {key}\r\ncontent-length: 500\r\n\r\n".encode() + b'{"model": ')
        reply = b""
        while b"\r\n\r\n" not in reply:
            piece = sock.recv(65536)
            if not piece:
                break
            reply += piece
        sock.close()
        assert reply.startswith(b"HTTP/1.1 408")
        ok = httpx.post(srv.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                        json={"model": "chat", "messages": [{"role": "user", "content": "still there?"}]})
        assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]


def test_demo_serve_runs_every_step():
    import io

    from hyperion_core.server.demo import run

    out = io.StringIO()
    assert run(out=out) == 0, out.getvalue()
    text = out.getvalue()
    assert "FAILED" not in text and "insufficient_quota" in text and "answered by anthropic-backup" in text
