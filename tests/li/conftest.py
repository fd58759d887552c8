"""Fixtures for the LlamaIndex integration: gateway configs against the session's mock provider."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from llama_index.core import Settings
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler

_ids = itertools.count()


@dataclass
class Setup:
    config: dict[str, Any]
    #: the mock deployment (path prefix) behind each provider: ``primary``, ``backup``, ``embeddings``
    deps: dict[str, str]


@pytest.fixture
def li_config(mock, tmp_path) -> Callable[..., Setup]:
    """``li_config(governance=..., audit=True, cache=True)``: a gateway config with a ``chat`` route
    (OpenAI-wire primary, Anthropic-wire backup) and an ``embeddings`` route, on mock deployments unique
    to this call (so faults and stats are the test's own)."""

    def make(*, governance: dict | None = None, audit: bool = False, cache: bool = False,
             keys_store: str = "memory", required: bool = False) -> Setup:
        n = next(_ids)
        primary, backup, emb = f"li{n}-primary", f"li{n}-backup", f"li{n}-embed"
        cfg: dict[str, Any] = {
            "providers": {
                "primary": {"kind": "openai", "api_key": "sk-li-secret", "base_url": mock.base_url(primary, "openai")},
                "backup": {"kind": "anthropic", "api_key": "sk-ant-li", "base_url": mock.base_url(backup, "anthropic")},
                "embedder": {"kind": "openai", "api_key": "sk-li-secret", "base_url": mock.base_url(emb, "openai")},
            },
            "routes": {
                "chat": {
                    "deployments": [
                        {"model": "primary/gpt-4o-mini", "name": "primary"},
                        {"model": "backup/claude-haiku-4-5", "name": "backup"},
                    ],
                    "retry": {"attempts": 0},
                    "breaker": {"failure_threshold": 100},
                    **({"cache": {}} if cache else {}),
                },
                "embeddings": {"kind": "embedding", "deployments": [{"model": "embedder/text-embedding-3-small"}]},
            },
            "keys": {"store": keys_store, "required": required},
        }
        if governance is not None:
            cfg["governance"] = governance
        if audit:
            cfg["audit"] = {"sink": f"sqlite:///{tmp_path}/audit-{n}.db"}
        return Setup(cfg, {"primary": primary, "backup": backup, "embeddings": emb})

    return make


@pytest.fixture
def settings_guard() -> Iterator[None]:
    """Restore LlamaIndex's global ``Settings`` after a test that sets them."""
    saved = (Settings._llm, Settings._embed_model)
    yield
    Settings._llm, Settings._embed_model = saved


class Recorder(BaseEventHandler):
    """An event handler that keeps every event (what a user's own handler would see)."""

    events: list = []

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: Any, **kwargs: Any) -> None:
        self.events.append(event)

    def of(self, cls: type) -> list:
        return [e for e in self.events if isinstance(e, cls)]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder(events=[])
    root = get_dispatcher()
    root.add_event_handler(rec)
    yield rec
    root.event_handlers = [h for h in root.event_handlers if h is not rec]


@pytest.fixture(scope="session", autouse=True)
async def _close_shared_gateways() -> AsyncIterator[None]:
    """Close the gateways HyperionLLM / HyperionEmbedding shared during the session: their pool on the
    test loop (``aclose``) and their sync twins' background loop (``close``)."""
    yield
    from hyperion_li import clear_shared_gateways

    for gw in clear_shared_gateways():
        await gw.aclose()
        gw.close()
