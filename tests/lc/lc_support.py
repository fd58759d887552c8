"""Shared helpers of the LangChain-door tests (a plain module: tests/lc has no package)."""

from __future__ import annotations

from typing import Any


def chat_config(
    mock: Any, prefix: str, *, extra_routes: dict[str, Any] | None = None, **top: Any
) -> dict[str, Any]:
    """A gateway config whose route ``chat`` fails over from an OpenAI-wire primary to an
    Anthropic-wire backup, both on the mock provider (mock deployments ``<prefix>-primary`` and
    ``<prefix>-backup``, so faults stay local to the test that sets them)."""
    return {
        "providers": {
            "primary": {
                "kind": "openai",
                "api_key": "sk-mock",
                "base_url": mock.base_url(f"{prefix}-primary", "openai"),
            },
            "backup": {
                "kind": "anthropic",
                "api_key": "sk-ant-mock",
                "base_url": mock.base_url(f"{prefix}-backup", "anthropic"),
            },
        },
        "routes": {
            "chat": {
                "deployments": [
                    {"model": "primary/gpt-4o-mini", "name": "openai-primary"},
                    {"model": "backup/claude-haiku-4-5", "name": "anthropic-backup"},
                ],
                "retry": {"attempts": 0},
                "breaker": {"failure_threshold": 1000},
            },
            **(extra_routes or {}),
        },
        **top,
    }
