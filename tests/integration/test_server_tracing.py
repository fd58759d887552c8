"""OpenTelemetry spans of ``hyperion serve`` (``server/tracing.py``), read back from the SDK's in-memory
exporter: one SERVER span per request with the GenAI attributes, a CLIENT child per attempt, the
incoming ``traceparent`` honoured, nothing when tracing is not configured."""

from __future__ import annotations

import httpx
import openai
import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402
from test_server import Env, config  # noqa: E402

from hyperion_core.server import create_app  # noqa: E402
from hyperion_core.server.testing import ServerThread  # noqa: E402


@pytest.fixture
def traced(mock, tmp_path, request):
    dep = request.node.name[-24:].replace("[", "-").replace("]", "")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(config(mock, f"t-{dep}", tmp_path), tracer_provider=provider)
    srv = ServerThread(app).start()
    e = Env(srv, app.state.gateway)
    e.dep, e.exporter = f"t-{dep}", exporter
    yield e
    srv.stop()


def spans(env, n):
    import time

    deadline = time.monotonic() + 5
    while len(env.exporter.get_finished_spans()) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return list(env.exporter.get_finished_spans())


def test_request_span_with_genai_attributes_and_an_attempt_child(traced):
    client = traced.oai(traced.key())
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=50, temperature=0.3)
    rid = raw.headers["x-hyperion-request-id"]
    got = spans(traced, 2)
    (root,) = [s for s in got if s.kind == SpanKind.SERVER]
    (child,) = [s for s in got if s.kind == SpanKind.CLIENT]
    a = root.attributes
    assert root.name == "chat chat"
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.system"] == "openai"
    assert a["gen_ai.request.model"] == "chat" and a["gen_ai.response.model"] == "gpt-4o-mini"
    assert a["gen_ai.request.max_tokens"] == 50 and a["gen_ai.request.temperature"] == 0.3
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["hyperion.route"] == "chat" and a["hyperion.deployment"] == raw.headers["x-hyperion-deployment"]
    assert a["hyperion.cache_tier"] == "miss" and a["hyperion.cost_usd"] > 0 and a["hyperion.request_id"] == rid
    assert a["hyperion.attempts"] == 1 and a["gen_ai.response.finish_reasons"] == ("stop",)
    assert child.parent.span_id == root.context.span_id and child.context.trace_id == root.context.trace_id
    assert child.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert child.attributes["hyperion.attempt.outcome"] == "ok"
    assert root.start_time <= child.start_time <= child.end_time <= root.end_time


def test_failover_is_two_attempt_children_and_traceparent_is_the_parent(traced, mock):
    mock.fault(traced.dep, kind="server_error", times=1)
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    r = httpx.post(traced.url + "/v1/chat/completions",
                   json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
                   headers={"authorization": f"Bearer {traced.key()}",
                            "traceparent": f"00-{trace_id}-b7ad6b7169203331-01"})
    assert r.status_code == 200
    got = spans(traced, 3)
    (root,) = [s for s in got if s.kind == SpanKind.SERVER]
    children = sorted((s for s in got if s.kind == SpanKind.CLIENT), key=lambda s: s.start_time)
    assert format(root.context.trace_id, "032x") == trace_id and root.parent.span_id == 0xB7AD6B7169203331
    assert [c.attributes["hyperion.attempt.outcome"] for c in children] == ["error", "ok"]
    assert children[0].status.status_code == StatusCode.ERROR and children[0].attributes["error.type"]
    assert [c.attributes["gen_ai.system"] for c in children] == ["openai", "anthropic"]
    assert root.attributes["gen_ai.system"] == "anthropic" and root.attributes["hyperion.attempts"] == 2


def test_streams_errors_and_embeddings_are_spans_too(traced):
    key = traced.key()
    client = traced.oai(key, max_retries=0)
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "story"}], stream=True) if c.choices)
    assert text
    (root,) = [s for s in spans(traced, 2) if s.kind == SpanKind.SERVER]
    assert root.attributes["gen_ai.usage.output_tokens"] > 0 and root.attributes["hyperion.deployment"]
    traced.exporter.clear()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    (err,) = spans(traced, 1)
    assert err.status.status_code == StatusCode.ERROR and err.attributes["error.type"] == "RouteNotFoundError"
    traced.exporter.clear()
    client.responses.create(model="chat", input="hi")
    client.embeddings.create(model="emb", input=["a", "b"])
    roots = [s for s in spans(traced, 4) if s.kind == SpanKind.SERVER]
    assert {s.attributes["hyperion.endpoint"] for s in roots} == {"responses", "embeddings"}
    (emb,) = [s for s in roots if s.attributes["hyperion.endpoint"] == "embeddings"]
    assert emb.attributes["gen_ai.operation.name"] == "embeddings" and emb.attributes["gen_ai.usage.input_tokens"] > 0


def test_no_tracing_unless_configured(mock, tmp_path, monkeypatch):
    monkeypatch.delenv("HYPERION_OTEL", raising=False)
    app = create_app(config(mock, "t-off", tmp_path))
    srv = ServerThread(app).start()
    try:
        assert app.state.door.tracing is None
    finally:
        srv.stop()


def test_serve_otel_flag_reaches_the_workers_settings(mock, tmp_path):
    """``hyperion serve --otel``: the flag becomes ``ServerSettings.otel``, survives the JSON hand-off
    to uvicorn's workers, and an app built from it traces through the global provider."""
    import dataclasses

    import orjson

    from hyperion_core.cli import build_parser, serve_settings
    from hyperion_core.errors import InvalidRequestError
    from hyperion_core.server.run import settings_from_json

    on = serve_settings(build_parser().parse_args(["serve", "--config", "x.yaml", "--otel"]))
    off = serve_settings(build_parser().parse_args(["serve", "--config", "x.yaml"]))
    assert on.otel and not off.otel
    sso = serve_settings(build_parser().parse_args(["serve", "--config", "x.yaml", "--oidc-issuer", "https://id.example",
                                                    "--oidc-audience", "gw", "--oidc-model-calls"]))
    assert sso.oidc_model_calls and sso.oidc.audience == "gw" and not on.oidc_model_calls
    assert settings_from_json(orjson.dumps(dataclasses.asdict(sso))).oidc_model_calls
    with pytest.raises(InvalidRequestError, match="--oidc-model-calls needs --oidc-issuer"):
        serve_settings(build_parser().parse_args(["serve", "--config", "x.yaml", "--oidc-model-calls"]))
    worker = settings_from_json(orjson.dumps(dataclasses.asdict(on)))
    assert worker.otel
    traced_app = create_app(config(mock, "otel-flag", tmp_path), worker)
    plain_app = create_app(config(mock, "otel-flag2", tmp_path), off)
    assert traced_app.state.door.tracing is not None and plain_app.state.door.tracing is None
    for app in (traced_app, plain_app):
        ServerThread(app).start().stop()  # the apps own their gateways: closed on shutdown
