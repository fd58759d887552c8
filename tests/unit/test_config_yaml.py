"""YAML configs that would silently change or hang: duplicate keys, alias bombs, non-finite numbers."""

from __future__ import annotations

import pytest

from hyperion_core import ConfigError, Gateway, GatewayConfig
from hyperion_core.cli import main

BASE = """
providers:
  p: {kind: openai, api_key: k}
routes:
  chat:
    deployments: [{model: p/gpt-4o-mini}]
"""


def write(tmp_path, text: str):
    path = tmp_path / "hyperion.yaml"
    path.write_text(text)
    return path


def test_a_second_governance_block_is_refused_not_silently_winning(tmp_path, capsys):
    """Field trial: a second `governance:` block dropped every budget and `hyperion check` said OK."""
    path = write(tmp_path, BASE + """
governance:
  budgets: [{scope: team, period: daily, limit_usd: 5}]
governance:
  rate_limits: [{scope: key, rpm: 10}]
""")
    with pytest.raises(ConfigError, match=r"hyperion.yaml:\d+:1: .*key 'governance' appears twice \(first at line 8\)"):
        GatewayConfig.from_file(path)
    assert main(["check", str(path)]) == 2
    assert "appears twice" in capsys.readouterr().err


def test_duplicate_keys_are_refused_at_any_depth(tmp_path):
    path = write(tmp_path, BASE + "    timeout: 10\n    timeout: 20\n")
    with pytest.raises(ConfigError, match="key 'timeout' appears twice"):
        GatewayConfig.from_file(path)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 12)]  # 9^12 values
    path = write(tmp_path, BASE + "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="expands to more than 100,000 values"):
        GatewayConfig.from_file(path)
    recursive = write(tmp_path, BASE + "x: &a [*a]\n")
    with pytest.raises(ConfigError, match="recursive"):
        GatewayConfig.from_file(recursive)


def test_aliases_within_reason_still_work(tmp_path):
    path = write(tmp_path, """
providers:
  p: {kind: openai, api_key: k}
routes:
  a: {deployments: [{model: p/gpt-4o-mini}], retry: &retry {attempts: 2, backoff_base: 0.1}}
  b: {deployments: [{model: p/gpt-4o}], retry: *retry}
""")
    cfg = GatewayConfig.from_file(path)
    assert cfg.routes["a"].retry == cfg.routes["b"].retry and cfg.routes["b"].retry.attempts == 2


@pytest.mark.parametrize("bad", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_are_refused_everywhere(tmp_path, bad):
    path = write(tmp_path, BASE + f"""
governance:
  budgets: [{{scope: team, period: daily, limit_usd: {bad}}}]
""")
    with pytest.raises(ConfigError, match=r"governance.budgets\[0\].limit_usd"):
        GatewayConfig.from_file(path)
    with pytest.raises(ConfigError, match=r"routes.chat.timeout"):
        Gateway({"providers": {"p": {"kind": "openai", "api_key": "k"}},
                 "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini"}], "timeout": float(bad.replace(".", ""))}}})
