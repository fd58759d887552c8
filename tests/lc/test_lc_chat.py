"""HyperionChat beyond the standard suite: failover and cache in response_metadata and events, the
two-parent errors, with_fallbacks, budget refusals, secrets, construction cost, conversions."""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelAuthenticationError,
    ModelError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelTimeoutError,
)
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.load import dumpd, dumps, load
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

import hyperion_core
import hyperion_lc
from hyperion_core import (
    AllDeploymentsFailedError,
    BudgetExceededError,
    ContextWindowExceededError,
    DeadlineExceededError,
    Gateway,
    HyperionError,
    InvalidKeyError,
    RateLimitedError,
    RouteNotFoundError,
)
from hyperion_core.mock_provider import answer_for
from hyperion_lc import HyperionChat
from hyperion_lc import errors as lce
from hyperion_lc.events import AdmissionRefused, CacheHitEvent, FailoverAttempt, RequestFailed, RouteDecision


class Events(BaseCallbackHandler):
    """Collects Hyperion's custom events (and the chat-model start payloads)."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.starts: list[dict[str, Any]] = []

    def on_custom_event(self, name: str, data: Any, **kw: Any) -> None:
        self.events.append(data)

    def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
        self.starts.append({"serialized": serialized, **kw})

    def of(self, cls: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


def governed(mock, prefix: str, tmp_path, **gov: Any) -> dict[str, Any]:
    from lc_support import chat_config

    return chat_config(
        mock,
        prefix,
        keys={"required": True, "store": "memory"},
        governance=gov or {},
        audit={"sink": f"sqlite:///{tmp_path}/audit-{prefix}.db"},
    )


# -- failover, cache and events ----------------------------------------------------------------------


def test_failover_is_visible_in_response_metadata_and_events(make_config, mock):
    gw = Gateway(make_config("lc-fo"))
    llm = HyperionChat(model="chat", gateway=gw)
    mock.fault("lc-fo-primary", kind="unavailable")  # the primary is down for the whole test
    handler = Events()
    msg = llm.invoke("Where is the answer from?", config={"callbacks": [handler]})
    assert msg.content == answer_for("Where is the answer from?")
    meta = msg.response_metadata
    assert meta["deployment"] == "anthropic-backup" and meta["model_name"] == "claude-haiku-4-5"
    assert [(a["deployment"], a["outcome"], a["status"]) for a in meta["attempts"]] == [
        ("openai-primary", "error", 503),
        ("anthropic-backup", "ok", None),
    ]
    assert meta["cost"] > 0 and meta["cache_tier"] is None and meta["route"] == "chat"
    (fo,) = handler.of(FailoverAttempt)
    assert (
        fo.deployment == "openai-primary"
        and fo.error_class == "ProviderUnavailableError"
        and fo.status == 503
    )
    (rd,) = handler.of(RouteDecision)
    assert rd.deployment == "anthropic-backup" and rd.failed_over and len(rd.attempts) == 2
    assert rd.to_dict()["event"] == "hyperion.route"

    # streamed: failover before the first chunk is free; the last chunk carries usage and metadata
    chunks = list(llm.stream("Stream it", config={"callbacks": [handler]}))
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert full.content == answer_for("Stream it") and len(chunks) > 5
    assert chunks[-1].chunk_position == "last" and chunks[-1].usage_metadata["output_tokens"] > 0
    assert sum(1 for c in chunks if c.usage_metadata) == 1  # input tokens counted once
    assert full.response_metadata["deployment"] == "anthropic-backup"
    assert full.response_metadata["ttft_ms"] is not None
    assert len(handler.of(RouteDecision)) == 2
    gw.close()


async def test_async_paths_and_astream_events_carry_the_same_records(make_config, mock):
    gw = Gateway(make_config("lc-afo"))
    llm = HyperionChat(model="chat", gateway=gw)
    mock.fault("lc-afo-primary", kind="server_error", times=1)
    handler = Events()
    msg = await llm.ainvoke("async hello", config={"callbacks": [handler]})
    assert msg.response_metadata["deployment"] == "anthropic-backup"
    assert [type(e) for e in handler.events] == [FailoverAttempt, RouteDecision]
    # astream_events shows them as on_custom_event with the typed record as data
    mock.fault("lc-afo-primary", kind="server_error", times=1)
    seen = [
        ev
        async for ev in llm.astream_events("async stream", version="v2")
        if ev["event"] == "on_custom_event"
    ]
    assert [ev["name"] for ev in seen] == ["hyperion.failover", "hyperion.route"]
    assert isinstance(seen[1]["data"], RouteDecision) and seen[1]["data"].deployment == "anthropic-backup"
    await gw.aclose()


async def test_cache_hit_is_free_and_reported(make_config, mock):
    cfg = make_config("lc-cache")
    cfg["routes"]["chat"]["cache"] = {"scope": "shared"}
    gw = Gateway(cfg)
    llm = HyperionChat(model="chat", gateway=gw, temperature=0)
    first = await llm.ainvoke("cache this answer")
    handler = Events()
    again = await llm.ainvoke("cache this answer", config={"callbacks": [handler]})
    assert again.content == first.content
    assert again.response_metadata["cache_tier"] == "l1" and again.response_metadata["cost"] == 0
    assert again.response_metadata["cache"]["cost_saved"] == pytest.approx(first.response_metadata["cost"])
    (hit,) = handler.of(CacheHitEvent)
    assert hit.tier == "l1" and hit.cost_saved > 0
    assert handler.of(RouteDecision)[0].cache_tier == "l1"
    assert mock.stats()["lc-cache-primary"]["requests"] == 1  # one upstream call for two answers
    # a per-call cache control passes through
    fresh = await llm.ainvoke("cache this answer", cache_control=hyperion_core.CacheControl(no_cache=True))
    assert fresh.response_metadata["cache_tier"] is None
    await gw.aclose()


# -- errors --------------------------------------------------------------------------------------------


def test_every_hyperion_error_has_a_two_parent_twin():
    core = [getattr(hyperion_core.errors, n) for n in hyperion_core.errors.__all__]
    core = [c for c in core if isinstance(c, type) and issubclass(c, HyperionError)]
    assert len(core) == 32
    for cls in core:
        twin = lce.TWINS[cls]
        assert issubclass(twin, cls) and issubclass(twin, ModelError), cls
        assert getattr(hyperion_lc, twin.__name__) is twin  # exported
    # subclasses defined elsewhere get a twin made on first use, with their nearest base's parent
    from hyperion_core.audit.record import AuditError

    made = lce.twin_class(AuditError)
    assert (
        issubclass(made, AuditError) and issubclass(made, ModelError) and lce.twin_class(AuditError) is made
    )
    # conversion keeps message, context and pickles
    import pickle

    err = RateLimitedError("over rpm 3", retry_after=2.5, limit_name="rpm", route="chat", request_id="r1")
    lc = lce.to_langchain_error(err)
    assert isinstance(lc, RateLimitedError) and isinstance(lc, ModelRateLimitError) and lc.is_retryable
    assert (str(lc), lc.retry_after, lc.route, lc.request_id) == (str(err), 2.5, "chat", "r1")
    back = pickle.loads(pickle.dumps(lc))
    assert type(back) is type(lc) and back.retry_after == 2.5
    assert not lce.to_langchain_error(BudgetExceededError("no", budget="b")).is_retryable


def test_errors_are_caught_as_hyperion_and_langchain_errors(make_config, mock):
    cfg = make_config(
        "lc-err",
        extra_routes={
            "solo": {
                "deployments": [{"model": "primary/gpt-4o-mini"}],
                "retry": {"attempts": 0},
                "timeout": 0.3,
            }
        },
    )
    gw = Gateway(cfg)
    mock.fault("lc-err-primary", kind="rate_limit")
    mock.fault("lc-err-backup", kind="overloaded")
    handler = Events()
    with pytest.raises(AllDeploymentsFailedError) as ei:
        HyperionChat(model="chat", gateway=gw).invoke("hi", config={"callbacks": [handler]})
    assert isinstance(ei.value, ModelAPIError) and ei.value.is_retryable
    assert [a.error_class for a in ei.value.attempts] == ["RateLimitError", "ProviderUnavailableError"]
    (failed,) = handler.of(RequestFailed)
    assert failed.error_class == "AllDeploymentsFailedError"
    assert len(handler.of(FailoverAttempt)) == 2
    mock.clear_faults()

    with pytest.raises(ModelNotFoundError) as ei:
        HyperionChat(model="chta", gateway=gw).invoke("hi")
    assert isinstance(ei.value, RouteNotFoundError) and "did you mean 'chat'" in str(ei.value)

    mock.fault("lc-err-primary", kind="context_window", times=1)
    with pytest.raises(ContextOverflowError) as ei:
        HyperionChat(model="solo", gateway=gw).invoke("too long")
    assert isinstance(ei.value, ContextWindowExceededError)

    mock.fault("lc-err-primary", hang=True, hang_s=2, times=1)
    t0 = time.perf_counter()
    with pytest.raises(ModelTimeoutError) as ei:
        HyperionChat(model="solo", gateway=gw, timeout=0.25, max_retries=5).invoke("slow")
    assert isinstance(ei.value, DeadlineExceededError) and time.perf_counter() - t0 < 1.5
    gw.close()


async def test_budget_refusal_rate_limit_and_keys(mock, tmp_path):
    cfg = governed(
        mock, "lc-gov", tmp_path, budgets=[{"scope": "key", "period": "daily", "limit_usd": 0.0003}]
    )
    gw = Gateway(cfg)
    key, rec = await gw.keys.create("svc", team="ml")
    llm = HyperionChat(model="chat", gateway=gw, virtual_key=key, max_tokens=20)
    handler = Events()
    answered, refused = 0, None
    for i in range(40):
        try:
            await llm.ainvoke(f"spend {i}", config={"callbacks": [handler]})
            answered += 1
        except BudgetExceededError as exc:
            refused = exc
            break
    assert answered >= 1 and refused is not None
    assert isinstance(refused, ModelError) and not refused.is_retryable and refused.budget
    (ev,) = handler.of(AdmissionRefused)
    assert (
        ev.reason == "budget_exceeded"
        and ev.budget == refused.budget
        and ev.limit_usd == pytest.approx(0.0003)
    )
    assert mock.stats()["lc-gov-primary"]["requests"] == answered  # the refused call never went upstream
    outcomes = [e.outcome for e in reversed(await gw.audit.query(limit=50))]
    assert outcomes == ["ok"] * answered + ["budget_exceeded"]
    assert all(e.key_id == rec.key_id for e in await gw.audit.query(limit=50))

    with pytest.raises(ModelAuthenticationError) as ei:
        await HyperionChat(model="chat", gateway=gw, api_key="hk-nope.nope").ainvoke("who am I")
    assert isinstance(ei.value, InvalidKeyError)
    await gw.aclose()

    gw2 = Gateway(governed(mock, "lc-rpm", tmp_path, rate_limits=[{"scope": "key", "rpm": 2}]))
    key2, _ = await gw2.keys.create("r")
    llm2 = HyperionChat(model="chat", gateway=gw2, virtual_key=key2)
    await llm2.ainvoke("one")
    await llm2.ainvoke("two")
    with pytest.raises(ModelRateLimitError) as ei:
        await llm2.ainvoke("three")
    assert isinstance(ei.value, RateLimitedError) and ei.value.retry_after > 0
    await gw2.aclose()


async def test_with_fallbacks_acts_on_the_two_parent_errors(mock, tmp_path):
    gw = Gateway(governed(mock, "lc-fb", tmp_path, rate_limits=[{"scope": "key", "rpm": 1}]))
    key, _ = await gw.keys.create("fb")
    fallback = GenericFakeChatModel(messages=iter([AIMessage("from the fallback")] * 3))
    limited = HyperionChat(model="chat", gateway=gw, virtual_key=key)
    by_langchain = limited.with_fallbacks([fallback], exceptions_to_handle=(ModelRateLimitError,))
    by_hyperion = limited.with_fallbacks([fallback], exceptions_to_handle=(RateLimitedError,))
    first = await by_langchain.ainvoke("first")
    assert first.response_metadata["deployment"] == "openai-primary"
    assert (await by_langchain.ainvoke("second")).content == "from the fallback"
    assert (await by_hyperion.ainvoke("third")).content == "from the fallback"
    # an error the fallback is not declared for still surfaces
    only_budget = limited.with_fallbacks([fallback], exceptions_to_handle=(BudgetExceededError,))
    with pytest.raises(RateLimitedError):
        await only_budget.ainvoke("fourth")
    # and in a chain, the same
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | by_langchain | StrOutputParser()
    assert await chain.ainvoke({"q": "fifth"}) == "from the fallback"
    await gw.aclose()


# -- construction, secrets, parameters --------------------------------------------------------------


def test_construction_is_cheap_and_shares_one_gateway(make_config, monkeypatch):
    reg = hyperion_lc.GatewayRegistry()
    monkeypatch.setattr("hyperion_core.registry.registry", reg)  # where every door resolves gateways
    cfg = make_config("lc-init")
    t0 = time.perf_counter()
    models = [HyperionChat(model="chat", config=cfg, temperature=0.1 * (i % 3)) for i in range(500)]
    per_model_ms = (time.perf_counter() - t0) * 1000 / 500
    assert per_model_ms < 1.0  # measured ~0.01 ms; ChatAnthropic's test_init_time is the reference
    assert len(reg) == 0  # nothing built until the first call
    gws = {id(m.gateway_instance) for m in models[:50]}
    assert len(gws) == 1 and len(reg) == 1  # equal configs share one gateway (pool, loop, stores)
    same = HyperionChat(model="chat", config=json.loads(json.dumps(cfg)))  # an equal, separate dict
    assert same.gateway_instance is models[0].gateway_instance
    path_a = HyperionChat(model="chat", config="examples/hyperion.yaml")
    path_b = HyperionChat(model="chat", config="./examples/../examples/hyperion.yaml")
    assert path_a.gateway_instance is path_b.gateway_instance and len(reg) == 2
    gc = hyperion_core.GatewayConfig.load(cfg)
    assert (
        HyperionChat(model="chat", config=gc).gateway_instance
        is HyperionChat(model="chat", config=gc).gateway_instance
    )
    reg.close()
    assert len(reg) == 0


def test_route_profile_is_computed_once_per_config_and_route(monkeypatch, tmp_path):
    """STYLE 9: building HyperionChat in a loop reads the route's profile from a cache (LangChain's
    test_init_time went from ~0.12 to ~1.2 ms when every instance recomputed it); an edited config
    file is read again."""
    import shutil

    from hyperion_lc import _route_info

    calls: list[str] = []
    real = _route_info.route_info
    monkeypatch.setattr(_route_info, "route_info", lambda cfg, route: calls.append(route) or real(cfg, route))
    path = tmp_path / "hyperion.yaml"
    shutil.copy("examples/hyperion.yaml", path)
    models = [HyperionChat(model="chat", config=str(path), temperature=0.1) for _ in range(50)]
    assert len(calls) == 1
    assert all(m.profile == models[0].profile for m in models) and models[0].profile["tool_calling"] is True
    models[0].profile["image_inputs"] = "mutated"  # each model owns its copy
    assert HyperionChat(model="chat", config=str(path)).profile["image_inputs"] is True
    assert len(calls) == 1
    assert [t.name for t in models[0].route_targets()][0] == "openai-primary" and len(calls) == 1
    # a GatewayConfig object and a Gateway are keyed by identity: computed once each
    gc = hyperion_core.GatewayConfig.from_file(path)
    for _ in range(10):
        HyperionChat(model="chat", config=gc)
    assert len(calls) == 2
    # an edited file is parsed again (its mtime changed)
    text = path.read_text()
    path.write_text(text + "\n# edited\n")
    import os

    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    HyperionChat(model="chat", config=str(path))
    assert len(calls) == 3
    # the unknown-key warning still fires for a profile the caller passes
    with pytest.warns(UserWarning, match="Unrecognized keys"):
        HyperionChat(model="chat", config=str(path), profile={"not_a_key": True})


def test_the_virtual_key_never_leaks(make_config, mock):
    secret = "hk-abc123.s3cr3t-virtual-key-value"
    cfg = make_config("lc-secret")
    cfg["providers"]["primary"]["api_key"] = "sk-provider-secret-999"
    cfg["keys"] = {"store": "memory"}
    llm = HyperionChat(model="chat", config=cfg, virtual_key=secret)
    assert llm.virtual_key.get_secret_value() == secret
    assert HyperionChat(model="chat", config=cfg, api_key=secret).virtual_key.get_secret_value() == secret
    texts = [
        repr(llm),
        str(llm),
        json.dumps(dumpd(llm)),
        dumps(llm),
        str(llm.model_dump()),
        str(llm._get_invocation_params()),
        str(llm._get_ls_params()),
        str(llm.asdict()),
    ]
    for text in texts:
        assert secret not in text and "sk-provider-secret-999" not in text
    # what a tracer receives at run start: serialized model, invocation params, metadata
    handler = Events()
    with pytest.raises(InvalidKeyError):  # the gateway has no such key: the call is refused ...
        llm.invoke("hello", config={"callbacks": [handler]})
    (start,) = handler.starts  # ... but the run started, and its payload holds no secret
    assert secret not in json.dumps(start, default=str) and "sk-provider-secret-999" not in json.dumps(
        start, default=str
    )
    # LangSmith sees the provider and model that serve the route (its first deployment), and the route
    assert (
        start["metadata"]["ls_provider"] == "openai" and start["metadata"]["ls_model_name"] == "gpt-4o-mini"
    )
    assert start["metadata"]["ls_hyperion_route"] == "chat"


def test_serialisation_round_trip(monkeypatch):
    llm = HyperionChat(model="chat", config="examples/hyperion.yaml", virtual_key="hk-x.y", temperature=0.3)
    monkeypatch.setenv("HYPERION_VIRTUAL_KEY", "hk-from-env.z")
    back = load(
        dumpd(llm), valid_namespaces=["hyperion_lc"], allowed_objects=[HyperionChat], secrets_from_env=True
    )
    assert isinstance(back, HyperionChat) and back.asdict() == llm.asdict()
    assert back.config == "examples/hyperion.yaml" and back.virtual_key.get_secret_value() == "hk-from-env.z"
    # a dict config (which may carry provider keys) is never serialised
    assert "config" not in dumpd(HyperionChat(model="chat", config={"routes": {}}))["kwargs"]


def test_parameters_ls_params_and_request_building(make_config):
    cfg = make_config(
        "lc-params", extra_routes={"claude": {"deployments": [{"model": "backup/claude-haiku-4-5"}]}}
    )
    llm = HyperionChat(
        model_name="chat",
        config=cfg,
        max_tokens=50,
        stop="END",
        temperature=0.2,
        timeout=7,
        max_retries=3,
        model_kwargs={"logprobs": True},
    )
    ls = llm._get_ls_params()
    assert ls == {
        "ls_provider": "openai",
        "ls_model_type": "chat",
        "ls_model_name": "gpt-4o-mini",
        "ls_hyperion_route": "chat",
        "ls_temperature": 0.2,
        "ls_max_tokens": 50,
        "ls_stop": ["END"],
    }
    assert llm._get_ls_params(model="claude")["ls_provider"] == "anthropic"
    assert llm._get_ls_params(model="claude")["ls_model_name"] == "claude-haiku-4-5"
    assert llm._get_ls_params(model="no-such-route")["ls_model_name"] == "no-such-route"
    req = llm._prepare(
        [HumanMessage("hi")], None, {"model": "other", "temperature": 0, "parallel_tool_calls": False}
    )
    assert (req.route, req.temperature, req.max_tokens, req.stop, req.timeout) == ("other", 0, 50, ["END"], 7)
    assert req.extra == {"logprobs": True, "parallel_tool_calls": False}
    with pytest.raises(
        hyperion_core.InvalidRequestError, match="constructor argument"
    ):  # secrets stay out of call kwargs
        llm._prepare([HumanMessage("hi")], None, {"virtual_key": "hk-a.b"})
    with pytest.raises(HyperionError, match="n=1"):
        HyperionChat(model="chat", config={}, n=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HyperionChat(model="chat", config={}, n=1, streaming=True, request_timeout=3, stop_sequences=["x"])


def test_message_conversion_covers_multimodal_tools_and_anthropic_blocks():
    from hyperion_lc._convert import format_tool_choice, to_openai_messages

    msgs = to_openai_messages(
        [
            SystemMessage("be brief"),
            HumanMessage(
                [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image", "base64": "iVBORw0KGgo=", "mime_type": "image/png"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
                name="ana",
            ),
            AIMessage(
                [
                    {"type": "text", "text": "let me check"},
                    {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": "cat"}},
                ],
                tool_calls=[{"name": "lookup", "args": {"q": "cat"}, "id": "t1", "type": "tool_call"}],
            ),
            ToolMessage("a cat", tool_call_id="t1"),
        ]
    )
    assert msgs[0] == {"role": "system", "content": "be brief"}
    assert msgs[1]["role"] == "user" and msgs[1]["name"] == "ana"
    assert msgs[1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
    }
    assert msgs[1]["content"][2]["image_url"]["url"] == "https://example.com/cat.png"
    assert msgs[2]["content"] == "let me check"
    assert msgs[2]["tool_calls"][0]["function"] == {"name": "lookup", "arguments": '{"q": "cat"}'}
    assert msgs[3] == {"role": "tool", "tool_call_id": "t1", "content": "a cat"}
    assert format_tool_choice("any", ["f"]) == "required" and format_tool_choice(True, []) == "required"
    assert format_tool_choice("f", ["f"]) == {"type": "function", "function": {"name": "f"}}
    assert format_tool_choice("auto", ["f"]) == "auto" and format_tool_choice(None, ["f"]) is None
    with pytest.raises(ValueError, match="not one of the bound tools"):
        format_tool_choice("g", ["f"])


async def test_stream_interrupted_and_cancelled_streams(make_config, mock):
    cfg = make_config("lc-cut")
    gw = Gateway(cfg)
    llm = HyperionChat(model="chat", gateway=gw)
    mock.fault("lc-cut-primary", cut_after_chunks=3, times=1)
    got = []
    with pytest.raises(ModelAPIError) as ei:
        async for c in llm.astream("a long story about streams"):
            got.append(c)
    assert isinstance(ei.value, hyperion_core.StreamInterruptedError) and ei.value.delivered_chunks >= 3
    assert len(got) >= 3 and answer_for("a long story about streams").startswith(
        "".join(c.content for c in got)
    )
    # a caller that stops reading early closes the gateway stream (no dangling upstream)
    agen = llm.astream("another long story")
    async for _ in agen:
        break
    await agen.aclose()
    resumed_cfg = make_config("lc-resume")
    resumed_cfg["routes"]["chat"]["stream_resume"] = True
    gw2 = Gateway(resumed_cfg)
    mock.fault("lc-resume-primary", cut_after_chunks=4, times=1)
    full = None
    async for c in HyperionChat(model="chat", gateway=gw2).astream("resume me please"):
        full = c if full is None else full + c
    assert full.content == answer_for("resume me please")
    assert full.response_metadata["resumed_by"] == ["anthropic-backup"]
    await gw.aclose()
    await gw2.aclose()


def test_public_api_is_exported_and_sync_async_pairs_match():
    import inspect

    from hyperion_lc import cache, callbacks, chat_models, events, shadow

    for name in hyperion_lc.__all__:
        assert getattr(hyperion_lc, name) is not None, name
    for mod in (chat_models, callbacks, cache, shadow, events):
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isclass(obj) and not name.startswith("_") and mod is not events:
                assert name in hyperion_lc.__all__ or name in ("ShadowRecord", "SideResult"), name
    # every sync entry point has its async twin with the same parameters
    pairs = [
        (HyperionChat, "_generate", "_agenerate"),
        (HyperionChat, "_stream", "_astream"),
        (HyperionChat, "stream", "astream"),
        (HyperionChat, "invoke", "ainvoke"),
        (hyperion_lc.HyperionCache, "lookup", "alookup"),
        (hyperion_lc.HyperionCache, "update", "aupdate"),
        (hyperion_lc.HyperionShadow, "invoke", "ainvoke"),
        (hyperion_lc.HyperionShadow, "stream", "astream"),
        (hyperion_lc.HyperionShadow, "drain", "adrain"),
    ]
    for cls, sync, asyn in pairs:
        assert list(inspect.signature(getattr(cls, sync)).parameters) == list(
            inspect.signature(getattr(cls, asyn)).parameters
        ), (cls, sync)
    handler_methods = (
        "on_chat_model_start",
        "on_llm_start",
        "on_llm_new_token",
        "on_llm_end",
        "on_llm_error",
    )
    for m in handler_methods:
        s = inspect.signature(getattr(hyperion_lc.HyperionCallbackHandler, m))
        a = inspect.signature(getattr(hyperion_lc.AsyncHyperionCallbackHandler, m))
        assert s.parameters.keys() == a.parameters.keys(), m
        assert inspect.iscoroutinefunction(getattr(hyperion_lc.AsyncHyperionCallbackHandler, m))


def test_response_metadata_carries_the_providers_provenance(make_config, mock):
    """response_metadata has ChatOpenAI's provenance keys (model_name, model_provider, id, finish_reason,
    system_fingerprint) from the provider's own response, and the model's reasoning when it sent some
    (an Anthropic thinking block here), built from the core's events.provenance."""
    cfg = make_config(
        "lc-prov", extra_routes={"thinker": {"deployments": [{"model": "backup/claude-haiku-4-5"}]}}
    )
    msg = HyperionChat(model="chat", config=cfg).invoke("who answered?")
    meta = msg.response_metadata
    assert meta["model_name"] == "gpt-4o-mini" and meta["model_provider"] == "openai"
    assert meta["id"].startswith("chatcmpl-") and msg.id == meta["id"]  # the provider's id, as ChatOpenAI
    assert meta["system_fingerprint"] == "fp_mock" and meta["finish_reason"] == "stop"
    assert "reasoning" not in meta and "logprobs" not in meta  # only what the provider sent
    thinker = HyperionChat(model="thinker", config=cfg, reasoning_effort="low", max_tokens=3000)
    out = thinker.invoke("think about this")
    meta = out.response_metadata
    assert meta["id"].startswith("msg_") and meta["model_provider"] == "anthropic"
    assert meta["reasoning"].startswith("Mock thinking:") and out.content.startswith("Mock answer to: think")
    assert out.additional_kwargs["reasoning_content"] == meta["reasoning"]
