"""Config validation: every error names its place and, where possible, the fix."""

from __future__ import annotations

import pytest

from hyperion_core import ConfigError, Gateway, GatewayConfig


def _cfg(**route):
    route.setdefault("deployments", [{"model": "openai/gpt-4o-mini"}])
    return {"routes": {"chat": route}}


def _problems(data, **kw) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        GatewayConfig.load(data, **kw)
    return ei.value.problems


def test_minimal_config_loads_with_documented_defaults():
    cfg = GatewayConfig.load(_cfg())
    route = cfg.routes["chat"]
    assert route.strategy == "failover"
    assert route.timeout == 60.0
    assert route.retry.attempts == 1
    assert route.breaker.failure_threshold == 5
    assert route.deployments[0].id == "openai/gpt-4o-mini"


def test_unknown_provider_names_place_and_suggestion():
    data = _cfg(deployments=[{"model": "openai/gpt-4o"}, {"model": "opnai/gpt-4o"}])
    assert _problems(data) == ["routes.chat.deployments[1].model: unknown provider 'opnai' (did you mean 'openai'?)"]


def test_declared_provider_is_suggested():
    data = {"providers": {"primary": {"kind": "openai"}}, **_cfg(deployments=[{"model": "primry/gpt-4o"}])}
    assert "did you mean 'primary'?" in _problems(data)[0]


def test_long_tail_provider_is_accepted_through_litellm():
    cfg = GatewayConfig.load(_cfg(deployments=[{"model": "bedrock/anthropic.claude-3-haiku"}]))
    assert cfg.routes["chat"].deployments[0].provider == "bedrock"


def test_unknown_key_rejected_with_suggestion():
    data = _cfg(deployments=[{"model": "openai/gpt-4o", "wieght": 2}])
    assert _problems(data) == ["routes.chat.deployments[0].wieght: unknown key 'wieght' (did you mean 'weight'?)"]


def test_top_level_unknown_key_rejected():
    assert _problems({**_cfg(), "routs": {}})[0].startswith("routs: unknown key 'routs'")


def test_bad_strategy_lists_choices():
    (p,) = _problems(_cfg(strategy="fastest"))
    assert p.startswith("routes.chat.strategy:") and "'lowest_latency'" in p and "'fastest'" in p


def test_model_without_provider_prefix():
    (p,) = _problems(_cfg(deployments=[{"model": "gpt-4o"}]))
    assert p.startswith("routes.chat.deployments[0].model:") and "'<provider>/<model>'" in p


def test_negative_and_zero_numbers_rejected():
    probs = _problems(_cfg(timeout=0, retry={"attempts": -1}, breaker={"failure_threshold": 0}))
    joined = "\n".join(probs)
    assert "routes.chat.timeout:" in joined
    assert "routes.chat.retry.attempts:" in joined
    assert "routes.chat.breaker.failure_threshold:" in joined


def test_all_problems_reported_at_once():
    data = _cfg(strategy="nope", deployments=[{"model": "x/y"}, {"model": "openai/a", "name": "n"}, {"model": "openai/b", "name": "n"}])
    # schema errors are reported first (cross-references are checked once the shape is right)
    assert len(_problems(data)) == 1
    data["routes"]["chat"]["strategy"] = "failover"
    probs = _problems(data)
    assert any("unknown provider 'x'" in p for p in probs)
    assert any("duplicate deployment 'n'" in p for p in probs)


def test_env_interpolation_and_missing_variable():
    data = {
        "providers": {"p": {"kind": "openai", "api_key": "${MY_KEY}", "base_url": "${BASE:-http://h/v1}"}},
        **_cfg(deployments=[{"model": "p/gpt-4o"}]),
    }
    cfg = GatewayConfig.load(data, env={"MY_KEY": "sk-123"})
    assert cfg.providers["p"].api_key.get_secret_value() == "sk-123"
    assert cfg.providers["p"].base_url == "http://h/v1"
    assert "sk-123" not in repr(cfg)  # secrets never reach reprs / logs
    (p,) = _problems(data, env={})
    assert p.startswith("providers.p.api_key: environment variable MY_KEY is not set")


def test_context_window_fallback_must_exist():
    (p,) = _problems(_cfg(context_window_fallback="bigg"))
    assert p == "routes.chat.context_window_fallback: unknown route 'bigg'"


def test_native_adapter_forced_on_long_tail_provider():
    (p,) = _problems(_cfg(deployments=[{"model": "bedrock/x", "adapter": "native"}]))
    assert "has no native adapter" in p


def test_from_file_yaml_errors(tmp_path):
    bad = tmp_path / "h.yaml"
    bad.write_text("routes:\n  chat: [unclosed\n")
    with pytest.raises(ConfigError, match=r"h.yaml:\d+:\d+: invalid YAML"):
        Gateway.from_file(bad)
    with pytest.raises(ConfigError, match="cannot read config file"):
        Gateway.from_file(tmp_path / "missing.yaml")


def test_example_config_is_valid():
    cfg = GatewayConfig.from_file("examples/hyperion.yaml", env={"HYPERION_MOCK_URL": "http://127.0.0.1:1"})
    assert "chat" in cfg.routes


# -- deployment capabilities: context_window / max_input_tokens, function_calling ------------------


def _dep(**fields):
    return _cfg(deployments=[{"model": "openai/acme-local-ft", **fields}])


def test_deployment_declares_window_and_function_calling():
    dep = GatewayConfig.load(_dep(context_window="32768", function_calling=False)).routes["chat"].deployments[0]
    # context_window is the familiar spelling of max_input_tokens (one setting, two names)
    assert dep.max_input_tokens == 32768 and dep.function_calling is False
    assert GatewayConfig.load(_dep(context_window=4096, max_input_tokens=4096)).routes["chat"].deployments[0].max_input_tokens == 4096
    assert GatewayConfig.load(_dep()).routes["chat"].deployments[0].function_calling is None  # unset: resolved later


@pytest.mark.parametrize(("fields", "problem"), [
    ({"context_window": 8000, "max_input_tokens": 4000},
     "routes.chat.deployments[0]: context_window and max_input_tokens are the same setting (the model's context "
     "window in tokens) and disagree (8000 vs 4000): keep one"),
    ({"context_window": 0}, "routes.chat.deployments[0]: context_window: must be a positive whole number of tokens, got 0"),
    ({"context_window": "lots"},
     "routes.chat.deployments[0]: context_window: must be a positive whole number of tokens, got 'lots'"),
    ({"context_window": True},
     "routes.chat.deployments[0]: context_window: must be a positive whole number of tokens, got True"),
    ({"max_input_tokens": -5}, "routes.chat.deployments[0].max_input_tokens: Input should be greater than 0"),
    ({"function_calling": "sometimes"},
     "routes.chat.deployments[0].function_calling: Input should be a valid boolean, unable to interpret input"),
    ({"context_windw": 5}, "routes.chat.deployments[0].context_windw: unknown key 'context_windw' "
                           "(did you mean 'context_window'?)"),
    ({"function_caling": True}, "routes.chat.deployments[0].function_caling: unknown key 'function_caling' "
                                "(did you mean 'function_calling'?)"),
])
def test_capability_fields_are_validated_with_clear_errors(fields, problem):
    assert _problems(_dep(**fields)) == [problem]


def test_function_calling_is_for_chat_routes():
    data = {"routes": {"emb": {"kind": "embedding", "deployments": [
        {"model": "openai/text-embedding-3-small", "function_calling": True}]}}}
    assert _problems(data) == [
        "routes.emb.deployments[0].function_calling: only chat routes call tools (route 'emb' is an embedding route)"]


def test_route_info_resolves_declared_then_map_then_default_without_a_gateway():
    from hyperion_core.capabilities import OPENAI_WIRE_WINDOW, route_info
    from hyperion_core.errors import RouteNotFoundError
    from hyperion_core.pricing import lookup

    cfg = GatewayConfig.load(_cfg(deployments=[
        {"model": "openai/gpt-4o-mini"},
        {"model": "openai/acme-local-ft"},  # unknown to litellm's map, OpenAI wire: defaults
        {"model": "bedrock/acme-unknown", "function_calling": True, "max_output_tokens": 1000},  # declared
    ]))
    info = route_info(cfg, "chat")
    mini, local, bedrock = info.deployments
    assert (mini.max_input_tokens, mini.max_input_tokens_source) == (lookup("openai", "gpt-4o-mini").max_input_tokens,
                                                                      "model_map")
    assert (local.max_input_tokens, local.function_calling, local.function_calling_source) == (
        OPENAI_WIRE_WINDOW, True, "default")
    assert (bedrock.max_input_tokens, bedrock.max_input_tokens_source, bedrock.function_calling_source) == (
        None, "unknown", "config")
    assert info.max_input_tokens == OPENAI_WIRE_WINDOW and info.max_output_tokens == 1000 and info.function_calling
    # an unknown long-tail model: no tools unless declared, and the whole route follows
    plain = GatewayConfig.load(_cfg(deployments=[{"model": "openai/gpt-4o-mini"}, {"model": "bedrock/acme-unknown"}]))
    assert route_info(plain, "chat").function_calling is False
    with pytest.raises(RouteNotFoundError, match="unknown route 'caht' \\(did you mean 'chat'\\?\\)"):
        route_info(cfg, "caht")
