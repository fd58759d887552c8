"""``POST /v1/completions`` (the OpenAI legacy Completions API) through ``hyperion serve`` with the
official openai SDK: JSON and SSE (with the usage chunk), the API's 16-token default, stop sequences,
and the API's 400 body for what a chat route cannot honour."""

from __future__ import annotations

import httpx
import openai
import pytest
from test_server import Env, config

from hyperion_core.server import create_app
from hyperion_core.server.testing import ServerThread


@pytest.fixture
def env(mock, tmp_path):
    app = create_app(config(mock, "cmpl", tmp_path))
    srv = ServerThread(app).start()
    yield Env(srv, app.state.gateway)
    srv.stop()


def test_a_completion_with_the_openai_sdk(env, mock):
    client = env.oai(env.key(), max_retries=0)
    long = "Please write a long answer about gateways " * 5
    raw = client.completions.with_raw_response.create(model="solo", prompt=long, temperature=0)
    resp = raw.parse()
    assert resp.object == "text_completion" and resp.id.startswith("cmpl-") and resp.model == "solo"
    assert resp.choices[0].text and resp.choices[0].finish_reason == "length"  # the API's 16-token default
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    assert raw.headers["x-hyperion-route"] == "solo" and float(raw.headers["x-hyperion-cost"]) > 0
    assert resp.usage.completion_tokens == 16
    assert mock.stats()["cmpl"]["last_messages"] == [["user", long]]  # one user message upstream
    short = client.completions.create(model="solo", prompt="Say hello", max_tokens=200, stop=["zzz"])
    assert short.choices[0].finish_reason == "stop" and short.usage.completion_tokens < 200


def test_a_streamed_completion_with_usage(env):
    client = env.oai(env.key(), max_retries=0)
    chunks = list(client.completions.create(model="solo", prompt=["Tell me a story"], max_tokens=50, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text
    assert all(c.object == "text_completion" for c in chunks)
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize(("body", "param"), [
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": "x", "echo": True}, "echo"),
    ({"prompt": "x", "best_of": 3}, "best_of"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "temperature": "hot"}, "temperature"),
    ({"prompt": "x", "frobnicate": 1}, "frobnicate"),
    ({}, "prompt"),
])
def test_what_a_chat_route_cannot_honour_is_the_apis_400(env, mock, body, param):
    before = mock.stats().get("cmpl", {}).get("requests", 0)
    r = httpx.post(env.url + "/v1/completions", json={"model": "solo", **body},
                   headers={"authorization": f"Bearer {env.key()}"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param and param in err["message"]
    assert mock.stats().get("cmpl", {}).get("requests", 0) == before  # nothing went upstream


def test_sdk_errors_keep_their_classes(env):
    with pytest.raises(openai.NotFoundError):
        env.oai(env.key(), max_retries=0).completions.create(model="nope", prompt="x")
    with pytest.raises(openai.AuthenticationError):
        env.oai("hk-not-a-key", max_retries=0).completions.create(model="solo", prompt="x")
