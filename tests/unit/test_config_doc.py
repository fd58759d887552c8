"""The settings reference is generated from the config models: README cannot drift from the code."""

from __future__ import annotations

import typing
from pathlib import Path

from pydantic import BaseModel

from hyperion_core.config import GatewayConfig
from hyperion_core.config_doc import END, START, render_into, rows, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def _leaf_count(model: type[BaseModel]) -> int:
    from hyperion_core.config_doc import _model_of

    hints = typing.get_type_hints(model)
    n = 0
    for name, field in model.model_fields.items():
        sub, _ = _model_of(hints.get(name, field.annotation))
        n += _leaf_count(sub) if sub is not None else 1
    return n


def test_readme_settings_table_is_current():
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text
    assert render_into(text) == text, "README's settings table is stale: run `hyperion config-doc --write README.md`"


def test_every_setting_has_a_row_and_a_meaning():
    table = rows()
    leaves = [r for r in table if r[1] != "section" and not r[1].startswith("list of section") and r[1] != "mapping"
              or r[0].endswith((".headers", ".params", ".litellm_params", ".guards", ".type_actions", "guardrails.teams",
                                "guardrails.keys"))]
    assert len(leaves) >= _leaf_count(GatewayConfig) - 1  # every leaf setting is listed
    undocumented = [path for path, _, _, doc in table if not doc]
    assert undocumented == [], f"add a '#:' comment above these fields: {undocumented}"


def test_the_table_shows_what_the_issue_found_missing():
    t = settings_table()
    for key in ("cache.vector_index", "cache.hnsw_ef_runtime", "cache.outage_backoff", "cache.max_connections",
                "routes.<name>.default_max_tokens", "routes.<name>.deployments[].function_calling"):
        assert f"| `{key}` |" in t
    assert "| `routes.<name>.cache.semantic.threshold` | number (>= 0, <= 2) | unset |" in t
    assert "MiniLM 0.15" in t  # the default threshold named where it is documented


def test_a_stale_block_is_rewritten_and_a_missing_one_is_a_clear_error():
    stale = f"intro\n{START}\n| old | table |\n{END}\noutro\n"
    fresh = render_into(stale)
    assert fresh.startswith("intro\n") and fresh.endswith("outro\n") and "| old | table |" not in fresh
    import pytest

    with pytest.raises(ValueError, match="no settings block"):
        render_into("no markers here")
