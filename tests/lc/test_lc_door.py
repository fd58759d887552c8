"""Issue 9 §2, the LangChain door: ChatOpenAI's constructor surface, typed errors after failover,
init_chat_model / create_agent, the route's profile, what LangSmith and response_metadata see, offline
token counts, and HyperionShadow around an agent's model."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.exceptions import ModelAPIError, ModelRateLimitError, ModelTimeoutError
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool
from lc_support import chat_config
from pydantic import BaseModel

from hyperion_core import (
    AllDeploymentsFailedError,
    ConfigError,
    Gateway,
    InvalidRequestError,
    ProviderUnavailableError,
    RateLimitError,
)
from hyperion_lc import HyperionChat, HyperionShadow
from hyperion_lc.errors import HyperionConfigError


class Joke(BaseModel):
    setup: str
    punchline: str


class Spy:
    """Wraps a gateway's acomplete to keep the ChatRequests that reached it."""

    def __init__(self, gw: Gateway) -> None:
        self.requests: list[Any] = []
        inner = gw.acomplete

        async def acomplete(req: Any, *a: Any, **kw: Any) -> Any:
            self.requests.append(req)
            return await inner(req, *a, **kw)

        gw.acomplete = acomplete  # type: ignore[method-assign]


# -- ChatOpenAI's constructor surface ----------------------------------------------------------------


def test_unknown_and_wrong_arguments_are_refused_at_construction_naming_them():
    with pytest.raises(HyperionConfigError, match=r"temprature.*did you mean 'temperature'") as ei:
        HyperionChat(model="chat", config={}, temprature=0.2)
    assert isinstance(ei.value, ConfigError) and "extra_body" in str(ei.value)
    with pytest.raises(HyperionConfigError, match=r"base_url: .*providers.<name>.base_url"):
        HyperionChat(model="chat", config={}, base_url="https://api.openai.com/v1")
    with pytest.raises(HyperionConfigError, match=r"openai_api_key: .*virtual_key"):
        HyperionChat(model="chat", config={}, openai_api_key="sk-real")
    with pytest.raises(HyperionConfigError, match=r"use_responses_api: .*Responses API"):
        HyperionChat(model="chat", config={}, use_responses_api=True)
    with pytest.raises(HyperionConfigError, match=r"model_kwargs: frobnicate"):
        HyperionChat(model="chat", config={}, model_kwargs={"frobnicate": 1})
    with pytest.raises(HyperionConfigError, match=r"reasoning_effort: 'extreme'"):
        HyperionChat(model="chat", config={}, reasoning_effort="extreme")
    with pytest.raises(HyperionConfigError) as ei:  # several at once: every one is named
        HyperionChat(model="chat", config={}, foo=1, bar=2)
    assert ei.value.problems[0].startswith("foo:") and ei.value.problems[1].startswith("bar:")
    # the defaults of refused-when-true options are fine (ChatOpenAI users pass them explicitly)
    HyperionChat(model="chat", config={}, use_responses_api=False)


def test_client_options_never_reach_the_request_and_openai_params_do_under_their_names(make_config):
    llm = HyperionChat(
        model="chat",
        config=make_config("door-surface"),
        # client options: accepted, never sent
        stream_usage=True,
        default_headers={"X-Team": "web"},
        default_query={"a": "b"},
        organization="org-1",
        http_client=object(),
        http_async_client=object(),
        tiktoken_model_name="gpt-4o",
        include_response_headers=True,
        # OpenAI request parameters
        frequency_penalty=0.5,
        presence_penalty=0.1,
        logprobs=True,
        top_logprobs=2,
        service_tier="auto",
        store=False,
        reasoning_effort="low",
        max_completion_tokens=64,
        user="u-1",
        extra_body={"top_k": 5, "guided_choice": ["a", "b"]},
        model_kwargs={"parallel_tool_calls": False, "metadata": {"run": "1"}},
    )
    req = llm._prepare([HumanMessage("hi")], None, {})
    assert req.max_tokens == 64
    assert req.extra == {
        "frequency_penalty": 0.5,
        "presence_penalty": 0.1,
        "logprobs": True,
        "top_logprobs": 2,
        "service_tier": "auto",
        "store": False,
        "reasoning_effort": "low",
        "user": "u-1",
        "parallel_tool_calls": False,
        "metadata": {"run": "1"},
        "top_k": 5,
        "guided_choice": ["a", "b"],
    }
    assert req.metadata == {}  # the provider's metadata is not the request's
    # ChatOpenAI's reasoning={"effort": ...} spelling; call-time overrides; disabled_params
    llm2 = HyperionChat(
        model="chat",
        config=make_config("door-surface"),
        reasoning={"effort": "high", "summary": "auto"},
        disabled_params={"service_tier": None},
        service_tier="flex",
        max_tokens=10,
    )
    req2 = llm2._prepare(
        [HumanMessage("hi")], None, {"max_completion_tokens": 20, "extra_body": {"top_k": 1}}
    )
    assert req2.extra == {"reasoning_effort": "high", "top_k": 1} and req2.max_tokens == 20
    with pytest.raises(InvalidRequestError, match=r"frequency_penality.*did you mean 'frequency_penalty'"):
        llm._prepare([HumanMessage("hi")], None, {"frequency_penality": 1})
    with pytest.raises(InvalidRequestError, match="base_url"):
        llm._prepare([HumanMessage("hi")], None, {"base_url": "http://elsewhere"})


def test_openai_only_parameters_survive_failover_to_the_anthropic_wire(make_config, mock):
    """The door sends OpenAI names; the Anthropic adapter translates or drops them (the strict mock
    rejects unknown fields, as the real API does)."""
    gw = Gateway(make_config("door-anth"))
    mock.fault("door-anth-primary", kind="unavailable")
    llm = HyperionChat(
        model="chat",
        gateway=gw,
        stream_usage=True,
        default_headers={"X-A": "1"},
        frequency_penalty=0.3,
        logprobs=True,
        top_logprobs=1,
        service_tier="auto",
        reasoning_effort="low",
        max_completion_tokens=200,
    )
    msg = llm.bind_tools([Joke], parallel_tool_calls=False).invoke("hello there")
    assert msg.response_metadata["deployment"] == "anthropic-backup"
    assert msg.response_metadata["model_provider"] == "anthropic"
    gw.close()


# -- typed errors after failover ---------------------------------------------------------------------


def test_a_rate_limited_route_raises_the_rate_limit_class_and_with_fallbacks_falls_back(make_config, mock):
    gw = Gateway(make_config("door-429"))
    mock.fault("door-429-primary", kind="rate_limit")
    mock.fault("door-429-backup", kind="rate_limit")
    llm = HyperionChat(model="chat", gateway=gw)
    with pytest.raises(ModelRateLimitError) as ei:
        llm.invoke("hi")
    err = ei.value
    assert isinstance(err, RateLimitError) and isinstance(err, AllDeploymentsFailedError)  # both trees
    assert [a.error_class for a in err.attempts] == ["RateLimitError", "RateLimitError"] and err.status == 429
    assert type(err).__name__ == "HyperionRateLimitError" and err.route == "chat"
    # the README's example: fall back on a rate limit only
    backup = GenericFakeChatModel(messages=iter([AIMessage("from the fallback")]))
    chain = llm.with_fallbacks([backup], exceptions_to_handle=(ModelRateLimitError,))
    assert chain.invoke("hi").content == "from the fallback"
    gw.close()


async def test_the_last_attempt_decides_the_class_for_streams_too(make_config, mock):
    gw = Gateway(make_config("door-mixed"))
    mock.fault("door-mixed-primary", kind="rate_limit")
    mock.fault("door-mixed-backup", kind="unavailable")
    llm = HyperionChat(model="chat", gateway=gw)
    with pytest.raises(ModelAPIError) as ei:
        async for _ in llm.astream("hi"):
            pass
    assert isinstance(ei.value, ProviderUnavailableError) and isinstance(ei.value, AllDeploymentsFailedError)
    assert not isinstance(ei.value, ModelRateLimitError) and len(ei.value.attempts) == 2
    mock.clear_faults("door-mixed-backup")
    mock.fault("door-mixed-backup", status=504)  # a gateway timeout upstream this time
    with pytest.raises(ModelTimeoutError):
        await HyperionChat(model="chat", gateway=gw, timeout=30).ainvoke("again")
    await gw.aclose()


# -- init_chat_model / create_agent --------------------------------------------------------------------


@pytest.fixture
def config_file(mock, tmp_path, monkeypatch):
    import yaml

    path = tmp_path / "hyperion.yaml"
    path.write_text(yaml.safe_dump(chat_config(mock, "door-init")))
    monkeypatch.setenv("HYPERION_CONFIG", str(path))
    return path


def test_init_chat_model_builds_hyperion_chat(config_file):
    from langchain.chat_models import init_chat_model

    llm = init_chat_model("hyperion:chat", temperature=0)
    assert isinstance(llm, HyperionChat) and llm.model == "chat" and llm.temperature == 0
    assert llm.invoke("hello init").response_metadata["route"] == "chat"
    assert isinstance(
        init_chat_model("chat", model_provider="hyperion", config=str(config_file)), HyperionChat
    )
    configurable = init_chat_model(configurable_fields=("model", "model_provider"))
    out = configurable.invoke("hi", config={"configurable": {"model": "chat", "model_provider": "hyperion"}})
    assert out.response_metadata["route"] == "chat"


def test_create_agent_with_a_hyperion_model_string(config_file, mock):
    from langchain.agents import create_agent

    @tool
    def get_weather(location: str) -> str:
        """The weather at a place."""
        return "sunny, 21C"

    mock.script(
        r"What is the weather in San Francisco",
        times=1,
        tool_calls=[{"name": "get_weather", "arguments": {"location": "San Francisco"}}],
    )
    agent = create_agent(model="hyperion:chat", tools=[get_weather])
    out = agent.invoke({"messages": [HumanMessage("What is the weather in San Francisco?")]})
    assert [m.type for m in out["messages"]] == ["human", "ai", "tool", "ai"]
    assert out["messages"][2].content == "sunny, 21C"


def test_profile_and_structured_output_strategy_match_chatopenai(make_config, mock):
    from langchain.agents import create_agent
    from langchain.agents.factory import _supports_provider_strategy
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_openai import ChatOpenAI

    cfg = make_config("door-profile")
    llm = HyperionChat(model="chat", config=cfg)
    p = llm.profile
    assert p["structured_output"] is True and p["tool_calling"] is True
    assert p["max_input_tokens"] == 128_000  # the smaller window of gpt-4o-mini and claude-haiku-4-5
    assert p["max_output_tokens"] == 16_384
    openai = ChatOpenAI(model="gpt-4o-mini", api_key="sk-x")
    assert _supports_provider_strategy(llm) == _supports_provider_strategy(openai) is True

    class Params(BaseCallbackHandler):
        def __init__(self) -> None:
            self.params: list[dict[str, Any]] = []

        def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
            self.params.append(kw["invocation_params"])

    seen = Params()
    agent = create_agent(model=llm, response_format=Joke)
    out = agent.invoke({"messages": [HumanMessage("Tell me a joke")]}, config={"callbacks": [seen]})
    assert isinstance(out["structured_response"], Joke)
    assert (
        seen.params[0]["response_format"]["type"] == "json_schema"
    )  # the provider strategy, as with ChatOpenAI
    # a route with a deployment the model map knows nothing about claims nothing about it
    cfg["providers"]["local"] = {"kind": "vllm", "base_url": mock.base_url("door-profile-local", "openai")}
    cfg["routes"]["chat"]["deployments"].append({"model": "local/my-finetune"})
    assert "structured_output" not in HyperionChat(model="chat", config=cfg).profile


def test_response_metadata_and_langsmith_params_name_the_real_provider(make_config, mock):
    gw = Gateway(make_config("door-meta"))
    llm = HyperionChat(model="chat", gateway=gw)
    meta = llm.invoke("hello meta").response_metadata
    assert (meta["model_provider"], meta["model_name"], meta["finish_reason"]) == (
        "openai",
        "gpt-4o-mini",
        "stop",
    )
    ls = llm._get_ls_params()
    assert (ls["ls_provider"], ls["ls_model_name"]) == ("openai", "gpt-4o-mini")
    mock.fault("door-meta-primary", kind="unavailable")
    full = None
    for chunk in llm.stream("hello again"):
        full = chunk if full is None else full + chunk
    assert full.response_metadata["model_provider"] == "anthropic"
    assert full.response_metadata["model_name"] == "claude-haiku-4-5"
    gw.close()


# -- token counting --------------------------------------------------------------------------------


def test_token_counts_never_load_a_tokenizer(monkeypatch):
    import langchain_core.language_models.base as lm_base

    def no_download(*a: Any, **k: Any) -> Any:
        raise AssertionError("tried to load a tokenizer")

    monkeypatch.setattr(lm_base, "get_tokenizer", no_download)
    llm = HyperionChat(model="chat", config={})
    assert llm.get_num_tokens("hello world, how are you today?") == 7
    msgs = [SystemMessage("be brief"), HumanMessage("what is the capital of France?")]
    n = llm.get_num_tokens_from_messages(msgs)
    assert n > llm.get_num_tokens("be brief what is the capital of France?")
    assert llm.get_num_tokens_from_messages(msgs, tools=[Joke]) > n


# -- HyperionShadow around an agent's model --------------------------------------------------------------


async def test_shadow_binds_tools_and_structured_output_on_both_sides(make_config, mock):
    from langchain.agents import create_agent

    cfg = make_config(
        "door-shadow",
        extra_routes={
            "candidate": {"deployments": [{"model": "backup/claude-haiku-4-5"}]},
        },
    )
    gw = Gateway(cfg)
    shadow = HyperionShadow(
        primary=HyperionChat(model="chat", gateway=gw), shadow=HyperionChat(model="candidate", gateway=gw)
    )

    @tool
    def lookup(q: str) -> str:
        """Look something up."""
        return "found it"

    mock.script(r"Look up the answer", times=2, tool_calls=[{"name": "lookup", "arguments": {"q": "answer"}}])
    agent = create_agent(model=shadow, tools=[lookup])
    out = await agent.ainvoke({"messages": [HumanMessage("Look up the answer")]})
    assert out["messages"][1].tool_calls[0]["name"] == "lookup" and out["messages"][2].content == "found it"
    structured = shadow.with_structured_output(Joke)
    joke = await structured.ainvoke("Tell me a joke")
    assert isinstance(joke, Joke)
    assert await shadow.adrain(5)
    records = shadow.records  # one report for the shadow and everything derived from it
    assert len(records) == 3 and all(r.shadow.status == "ok" for r in records)
    assert records[0].primary.text.startswith(" lookup(") or "lookup(" in records[0].primary.text
    assert json.loads(json.dumps(shadow.summary()))["records"] == 3
    await gw.aclose()


# -- structured output and files after failover to the Anthropic wire ---------------------------------------


def test_structured_output_and_files_after_failover_to_anthropic(make_config, mock):
    import base64

    from media import pdf, wav

    gw = Gateway(make_config("door-files"))
    mock.fault("door-files-primary", kind="unavailable")
    llm = HyperionChat(model="chat", gateway=gw)
    for method in ("json_schema", "function_calling"):
        joke = llm.with_structured_output(Joke, method=method).invoke("Tell me a joke")
        assert isinstance(joke, Joke), method
    raw = llm.with_structured_output(method="json_mode").invoke("Answer in JSON, please")
    assert isinstance(raw, dict)
    doc = base64.b64encode(pdf()).decode()
    msg = llm.invoke(
        [
            HumanMessage(
                [
                    {"type": "text", "text": "Summarize this document:"},
                    {"type": "file", "base64": doc, "mime_type": "application/pdf"},
                ]
            )
        ]
    )
    assert msg.response_metadata["deployment"] == "anthropic-backup"
    # Anthropic has no audio input: refused clearly, not sent
    with pytest.raises(InvalidRequestError, match="audio"):
        llm.invoke(
            [
                HumanMessage(
                    [
                        {"type": "text", "text": "Describe this audio:"},
                        {
                            "type": "audio",
                            "base64": base64.b64encode(wav()).decode(),
                            "mime_type": "audio/wav",
                        },
                    ]
                )
            ]
        )
    gw.close()


def test_tool_results_with_media_follow_in_a_user_message():
    from langchain_core.messages import ToolMessage

    from hyperion_lc._convert import to_openai_messages

    msgs = to_openai_messages(
        [
            HumanMessage("draw two"),
            AIMessage(
                "",
                tool_calls=[
                    {"name": "draw", "args": {}, "id": "a", "type": "tool_call"},
                    {"name": "draw", "args": {}, "id": "b", "type": "tool_call"},
                ],
            ),
            ToolMessage(
                [{"type": "image", "base64": "iVBORw0KGgo=", "mime_type": "image/png"}],
                tool_call_id="a",
                name="draw",
            ),
            ToolMessage("plain text", tool_call_id="b", name="draw"),
        ]
    )
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "tool", "user"]
    assert msgs[1]["content"] is None and "name" not in msgs[2]
    assert msgs[2]["content"][0]["type"] == "text" and msgs[3]["content"] == "plain text"
    assert msgs[4]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
    }
