"""Issue 9 §3, the LlamaIndex door: HyperionLLM's constructor surface (OpenAI's arguments accepted,
unknown ones refused by name), route capabilities for models litellm's map does not know (declared in
config or defaulted for OpenAI-wire kinds), and the instrumentation reserving the gated LLM's cap."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW
from llama_index.core.tools import FunctionTool
from llama_index.llms.openai_like import OpenAILike

from hyperion_core import ConfigError, Gateway
from hyperion_core.capabilities import OLLAMA_WINDOW, OPENAI_WIRE_WINDOW, route_info
from hyperion_core.pricing import lookup
from hyperion_core.tokens import prompt_tokens_bound
from hyperion_li import HyperionInstrumentation, HyperionLLM
from hyperion_li.instrumentation import max_tokens_of

pytestmark = [  # LlamaIndex's workflow engine inspects agents with inspect.getmembers (not ours)
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211"),
]


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def magic_function(input: int) -> int:
    """Applies a magic function to an input."""
    return input + 2


MAGIC = FunctionTool.from_defaults(fn=magic_function)


def spy(gw: Gateway) -> list[Any]:
    """Record every ChatRequest the LLM hands the gateway (the call itself still goes over HTTP)."""
    seen: list[Any] = []
    real = gw.acomplete

    async def acomplete(req: Any, *a: Any, **kw: Any) -> Any:
        seen.append(req)
        return await real(req, *a, **kw)

    gw.acomplete = acomplete  # type: ignore[method-assign]
    return seen


# -- constructor surface -----------------------------------------------------------------------


async def test_openai_constructor_arguments_are_real_fields_sent_by_their_openai_names(li_config, mock):
    setup = li_config()
    async with Gateway(setup.config) as gw:
        seen = spy(gw)
        llm = HyperionLLM(
            model="chat",
            gateway=gw,
            temperature=0.2,
            top_p=0.9,
            seed=7,
            max_retries=0,
            max_tokens=64,
            logprobs=True,
            top_logprobs=3,
            timeout=20,
            strict=True,
            context_window=32000,
            is_function_calling_model=False,
            is_chat_model=True,
            additional_kwargs={"user": "u-1"},
        )
        assert (llm.top_p, llm.seed, llm.max_retries, llm.logprobs, llm.top_logprobs) == (0.9, 7, 0, True, 3)
        md = llm.metadata  # the declared window and tool flag win over the route's
        assert md.context_window == 32000 and md.is_function_calling_model is False and md.num_output == 64

        resp = await llm.achat(user("hello there"))
        assert resp.raw["deployment"] == "primary"  # the call went over HTTP and was answered
    (req,) = seen
    assert (req.temperature, req.top_p, req.seed, req.max_retries, req.max_tokens, req.timeout) == (
        0.2,
        0.9,
        7,
        0,
        64,
        20,
    )
    assert req.extra == {"logprobs": True, "top_logprobs": 3, "user": "u-1"}

    # reasoning models' parameters reach the core by their OpenAI names too (each adapter translates them)
    reasoning = HyperionLLM(
        model="chat",
        config=setup.config,
        reasoning_effort="low",
        additional_kwargs={"max_completion_tokens": 50},
    )
    assert reasoning.reasoning_effort == "low"
    req = reasoning._prepare(user("think"), {})
    assert req.extra == {"reasoning_effort": "low", "max_completion_tokens": 50} and req.max_tokens is None


async def test_precedence_is_fields_then_additional_kwargs_then_the_call(li_config, mock):
    setup = li_config()
    async with Gateway(setup.config) as gw:
        seen = spy(gw)
        # a request field given in additional_kwargs used to collide with the field ("multiple values")
        llm = HyperionLLM(model="chat", gateway=gw, temperature=0.9, additional_kwargs={"temperature": 0.3})
        await llm.achat(user("one"))
        await llm.achat(user("two"), temperature=0.1, max_retries=1)
    assert [r.temperature for r in seen] == [0.3, 0.1]
    assert seen[1].max_retries == 1 and "max_retries" not in seen[1].extra


def test_strict_marks_tool_schemas(li_config):
    llm = HyperionLLM(model="chat", config=li_config().config, strict=True)
    (spec,) = llm._prepare_chat_with_tools([MAGIC], user_msg="hi")["tools"]
    assert (
        spec["function"]["strict"] is True and spec["function"]["parameters"]["additionalProperties"] is False
    )
    (spec,) = llm._prepare_chat_with_tools([MAGIC], user_msg="hi", strict=False)["tools"]
    assert "strict" not in spec["function"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": 5}, "HyperionLLM: unknown argument 'top_k' (did you mean 'top_p'?)"),
        (
            {"max_new_tokens": 5},
            "HyperionLLM: unknown argument 'max_new_tokens' (did you mean 'max_tokens'?)",
        ),
        (
            {"frobnicate": 1},
            "HyperionLLM: unknown argument 'frobnicate' (provider parameters go in additional_kwargs",
        ),
        ({"api_base": "http://x"}, "HyperionLLM: 'api_base' is a provider-client argument"),
        ({"api_key": "sk-x"}, "belong in the gateway config (providers.<name>: base_url, api_key, headers)"),
    ],
)
def test_unknown_constructor_arguments_are_refused_by_name(li_config, kwargs, message):
    with pytest.raises(ConfigError) as ei:
        HyperionLLM(model="chat", config=li_config().config, **kwargs)
    assert message in str(ei.value)


def test_invalid_values_and_completion_mode_are_refused(li_config):
    cfg = li_config().config
    with pytest.raises(ValueError, match="is_chat_model=False is not supported"):
        HyperionLLM(model="chat", config=cfg, is_chat_model=False)
    with pytest.raises(ValueError, match="reasoning_effort"):
        HyperionLLM(model="chat", config=cfg, reasoning_effort="extreme")
    with pytest.raises(ValueError, match="top_p"):
        HyperionLLM(model="chat", config=cfg, top_p=3)


# -- route capabilities ------------------------------------------------------------------------


def local_config(mock, tag: str, deployments: list[dict[str, Any]]) -> dict[str, Any]:
    """A route of deployments on mock providers: ``local`` (kind vllm), ``lab`` (kind anthropic)."""
    return {
        "providers": {
            "local": {
                "kind": "vllm",
                "api_key": "sk-vllm",
                "base_url": mock.base_url(f"{tag}-local", "openai"),
            },
            "lab": {
                "kind": "anthropic",
                "api_key": "sk-ant",
                "base_url": mock.base_url(f"{tag}-lab", "anthropic"),
            },
        },
        "routes": {"chat": {"deployments": deployments, "retry": {"attempts": 0}}},
    }


async def test_an_unknown_openai_compatible_model_runs_a_function_agent(mock):
    # a vLLM fine-tune litellm's map has never heard of: before, a 3,900-token window and no tools
    cfg = local_config(mock, "agent", [{"model": "local/acme/llama-3-support-ft", "name": "local"}])
    llm = HyperionLLM(model="chat", config=cfg)
    md = llm.metadata
    assert md.is_function_calling_model is True and md.context_window == OPENAI_WIRE_WINDOW

    mock.script("magic_function", tool_calls=[{"name": "magic_function", "arguments": {"input": 3}}], times=1)
    agent = FunctionAgent(tools=[MAGIC], llm=llm, system_prompt="Use the tools you are given.")
    handler = agent.run(user_msg="What is the value of magic_function(3)? Use the tool.")
    results = [ev async for ev in handler.stream_events() if isinstance(ev, ToolCallResult)]
    out = await handler
    (call,) = results
    assert call.tool_kwargs == {"input": 3} and call.tool_output.content == "5"
    assert out.response.content == "Tool result: 5"
    assert mock.stats()["agent-local"]["streams"] == 2  # both agent steps went over HTTP to the deployment


async def test_declared_window_and_function_calling_are_honoured(mock):
    cfg = local_config(
        mock,
        "declared",
        [
            {
                "model": "local/acme/llama-3-support-ft",
                "name": "a",
                "context_window": 32768,
                "function_calling": False,
            },
        ],
    )
    md = HyperionLLM(model="chat", config=cfg).metadata
    assert md.context_window == 32768 and md.is_function_calling_model is False
    with pytest.raises(ValueError, match="LLM must be a FunctionCallingLLM"):  # declared: no tools
        await FunctionAgent(tools=[MAGIC], llm=HyperionLLM(model="chat", config=cfg)).run(user_msg="hi")

    # the window is the smallest of the route's deployments, declared or known
    cfg["routes"]["chat"]["deployments"] = [
        {"model": "local/acme/llama-3-support-ft", "name": "a", "max_input_tokens": 20000},
        {"model": "lab/claude-haiku-4-5", "name": "b"},
    ]
    assert HyperionLLM(model="chat", config=cfg).metadata.context_window == 20000


async def test_one_unknown_deployment_no_longer_turns_tools_off_when_declared(mock):
    # an Anthropic-wire model the map does not know: no default, so the route's tools are off ...
    deployments = [
        {"model": "lab/claude-haiku-4-5", "name": "known"},
        {"model": "lab/claude-inhouse-7", "name": "new"},
    ]
    cfg = local_config(mock, "mixed", deployments)
    md = HyperionLLM(model="chat", config=cfg).metadata
    assert md.is_function_calling_model is False
    assert (
        md.context_window == lookup("anthropic", "claude-haiku-4-5").max_input_tokens
    )  # the unknown one is ignored
    # ... until the config says it calls tools (and how large its window is)
    deployments[1].update(function_calling=True, context_window=100_000)
    llm = HyperionLLM(model="chat", config=cfg)
    md = llm.metadata
    assert md.is_function_calling_model is True and md.context_window == 100_000
    mock.script("magic_function", tool_calls=[{"name": "magic_function", "arguments": {"input": 3}}], times=1)
    out = await FunctionAgent(tools=[MAGIC], llm=llm).run(user_msg="What is magic_function(3)? Use the tool.")
    assert out.response.content == "Tool result: 5" and out.raw["deployment"] == "known"


def test_route_info_is_the_door_neutral_source(mock):
    cfg = local_config(
        mock,
        "info",
        [
            {"model": "local/acme/llama-3-support-ft", "name": "vllm"},
            {"model": "ollama/qwen-local", "name": "ollama"},
            {"model": "openai/ft:gpt-4o-mini-2024-07-18:acme::abc123", "name": "fine-tune"},
            {"model": "lab/claude-inhouse-7", "name": "anthropic", "function_calling": True},
        ],
    )
    info = route_info(Gateway(cfg), "chat")
    by = {d.name: d for d in info.deployments}
    assert (by["vllm"].max_input_tokens, by["vllm"].function_calling) == (OPENAI_WIRE_WINDOW, True)
    assert by["vllm"].max_input_tokens_source == by["vllm"].function_calling_source == "default"
    assert by["ollama"].max_input_tokens == OLLAMA_WINDOW
    base = lookup("openai", "gpt-4o-mini-2024-07-18")  # a fine-tune has its base model's limits
    assert (by["fine-tune"].max_input_tokens, by["fine-tune"].function_calling) == (
        base.max_input_tokens,
        True,
    )
    assert by["fine-tune"].max_input_tokens_source == "model_map"
    assert by["anthropic"].max_input_tokens is None and by["anthropic"].function_calling_source == "config"
    assert info.max_input_tokens == OLLAMA_WINDOW and info.function_calling is True
    assert HyperionLLM(model="chat", config=cfg).metadata.context_window == OLLAMA_WINDOW
    del cfg["routes"]["chat"]["deployments"][:3]  # only the window-less one left: LlamaIndex's default
    assert HyperionLLM(model="chat", config=cfg).metadata.context_window == DEFAULT_CONTEXT_WINDOW


# -- instrumentation ---------------------------------------------------------------------------


def test_max_tokens_of_reads_the_llms_own_cap():
    def like(**kw: Any) -> OpenAILike:
        return OpenAILike(model="m", api_base="http://x", api_key="k", **kw)

    assert max_tokens_of(like()) is None
    assert max_tokens_of(like(max_tokens=77)) == 77
    # OpenAI sends additional_kwargs over its fields; max_completion_tokens is its newer name
    assert max_tokens_of(like(max_tokens=77, additional_kwargs={"max_completion_tokens": 55})) == 55
    assert max_tokens_of(like(additional_kwargs={"max_tokens": 12})) == 12


class ReservedProbe:
    """A rate limiter the gate wraps: it runs after admission and before the provider call, and
    records what the budget holds at that moment."""

    def __init__(self, gw: Gateway, key_id: str) -> None:
        self.gw, self.key_id = gw, key_id
        self.reserved: list[float] = []

    def acquire(self, num_tokens: int = 0) -> None:  # pragma: no cover - the test is async
        raise AssertionError("sync path not used here")

    async def async_acquire(self, num_tokens: int = 0) -> None:
        (status,) = await self.gw.governance.status({"key": self.key_id})
        self.reserved.append(status.reserved_usd)


@pytest.mark.parametrize(
    ("llm_kwargs", "cap"),
    [
        ({"max_tokens": 40}, 40),
        ({"max_tokens": 40, "additional_kwargs": {"max_completion_tokens": 25}}, 25),
        ({}, None),  # no cap: the model's own output limit
    ],
)
async def test_the_reservation_uses_the_gated_llms_max_tokens(li_config, mock, llm_kwargs, cap):
    setup = li_config(governance={"budgets": [{"scope": "key", "period": "daily", "limit_usd": 10}]})
    gw = Gateway(setup.config)
    key, rec = await gw.keys.create("capped")
    handler = HyperionInstrumentation(gw, virtual_key=key).attach()
    try:
        llm = OpenAILike(
            model="gpt-4o-mini",
            api_base=mock.base_url("ext-cap", "openai"),
            api_key="sk-ext",
            is_chat_model=True,
            max_retries=0,
            **llm_kwargs,
        )
        probe = ReservedProbe(gw, rec.key_id)
        llm.rate_limiter = probe
        messages = user("how much will this cost at most?")
        await llm.achat(messages)
        await handler.aflush()
    finally:
        handler.detach()
        await gw.aclose()
        gw.close()
    price = lookup("openai", "gpt-4o-mini")
    prompt = prompt_tokens_bound(  # the core's worst case for the prompt: gpt-4o-mini's own tokenizer
        gw.request("external:gpt-4o-mini", [{"role": "user", "content": messages[0].content}]), "gpt-4o-mini"
    )
    (reserved,) = probe.reserved
    assert reserved == pytest.approx(price.estimate(prompt, cap or price.max_output_tokens))
