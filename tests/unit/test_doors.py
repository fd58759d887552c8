"""The door kit (hyperion_core/doors.py): one usage parser per wire, cache provenance, gateway references."""

from __future__ import annotations

import pytest

from hyperion_core import ConfigError, Gateway
from hyperion_core.doors import (
    CACHE_KEY,
    GatewayRef,
    cache_info_dict,
    cache_info_from,
    check_source,
    estimated_usage,
    usage_from,
    wire_of,
)
from hyperion_core.types import CacheInfo, ChatRequest, Usage


def test_one_parser_per_wire_for_dicts_and_sdk_objects():
    from anthropic.types import Usage as AnthropicUsage
    from openai.types import CompletionUsage

    openai = {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140,
              "prompt_tokens_details": {"cached_tokens": 60}, "completion_tokens_details": {"reasoning_tokens": 10}}
    want = Usage(100, 40, cached_prompt_tokens=60, reasoning_tokens=10)
    assert usage_from(openai) == want
    assert usage_from(CompletionUsage.model_validate(openai)) == want  # the SDK's object, as LlamaIndex hands it
    # Anthropic counts cache reads and writes outside input_tokens; the gateway's prompt total includes them
    anthropic = {"input_tokens": 40, "output_tokens": 40, "cache_read_input_tokens": 50, "cache_creation_input_tokens": 10}
    want_a = Usage(100, 40, cached_prompt_tokens=50, cache_write_tokens=10)
    assert wire_of(anthropic) == "anthropic" and usage_from(anthropic) == want_a
    assert usage_from(AnthropicUsage.model_validate(anthropic)) == want_a
    gemini = {"promptTokenCount": 100, "candidatesTokenCount": 30, "thoughtsTokenCount": 10, "cachedContentTokenCount": 60}
    assert usage_from(gemini) == Usage(100, 40, cached_prompt_tokens=60, reasoning_tokens=10)
    # LangChain's usage_metadata: input already includes cache reads and writes
    lc = {"input_tokens": 100, "output_tokens": 40, "total_tokens": 140,
          "input_token_details": {"cache_read": 50, "cache_creation": 10}, "output_token_details": {"reasoning": 10}}
    assert wire_of(lc) == "langchain"
    assert usage_from(lc) == Usage(100, 40, cached_prompt_tokens=50, cache_write_tokens=10, reasoning_tokens=10)
    assert usage_from(None) is None and usage_from({"foo": 1}) is None and usage_from(3) is None


def test_estimated_usage_and_cache_provenance_round_trip():
    req = ChatRequest(route="r", messages=[{"role": "user", "content": "x" * 40}])
    u = estimated_usage(req, "y" * 9)
    assert u.completion_tokens == 3 and u.prompt_tokens > 10
    assert estimated_usage(req, None).completion_tokens == 0
    info = CacheInfo(tier="semantic", age_s=1.23456, similarity=0.93, guards=("entities",), tokens_saved=12,
                     cost_saved=0.002, source_deployment="openai-primary")
    d = cache_info_dict(info)
    assert cache_info_from({CACHE_KEY: d}) == CacheInfo("semantic", 1.235, 0.93, ("entities",), 12, 0.002, "openai-primary")
    assert cache_info_from(d) is not None
    assert cache_info_from({CACHE_KEY: None}) is None and cache_info_from({"model_name": "x"}) is None


def test_gateway_reference_checks_early_and_builds_late(monkeypatch):
    monkeypatch.delenv("HYPERION_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="needs a gateway"):
        GatewayRef(who="X")
    with pytest.raises(ConfigError, match="not both"):
        check_source(object(), {"routes": {}}, "X")
    with pytest.raises(ConfigError, match="must be a hyperion_core.Gateway"):
        check_source(object(), None, "X")
    with pytest.raises(ConfigError, match="expected a path"):
        GatewayRef(config=42, who="X")
    from hyperion_core import registry as reg_mod

    reg = reg_mod.GatewayRegistry()
    monkeypatch.setattr(reg_mod, "registry", reg)
    cfg = {"routes": {"chat": {"deployments": [{"model": "openai/gpt-4o-mini"}]}}}
    ref = GatewayRef(config=cfg, who="X")
    assert ref.resolved is None and len(reg) == 0  # nothing built by the constructor
    gw = ref.get()
    assert isinstance(gw, Gateway) and ref.get() is gw and GatewayRef(config=dict(cfg)).get() is gw
    assert reg.clear() == [gw] and len(reg) == 0
    gw.close()
