"""One :class:`~hyperion_core.Gateway` per configuration, shared by every LlamaIndex object built from it.

Building ``HyperionLLM(model="chat", config="hyperion.yaml")`` in a loop must not build a gateway (its
connection pool, stores, audit writer) each time (STYLE 9). Objects resolve their gateway lazily, on
first use, through :func:`shared_gateway`: a cache keyed by the configuration — a file's resolved path,
a mapping's content, a ``GatewayConfig`` object's identity. Constructors never touch it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import orjson

from hyperion_core import Gateway, GatewayConfig
from hyperion_core.errors import ConfigError

T = TypeVar("T")

#: environment variable naming the config file used when neither ``config=`` nor ``gateway=`` is given
CONFIG_ENV = "HYPERION_CONFIG"


class _Shared:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gateways: dict[str, tuple[Any, Gateway]] = {}

    def get(self, config: Any) -> Gateway:
        key = _key(config)
        hit = self._gateways.get(key)
        if hit is not None:
            return hit[1]
        with self._lock:
            hit = self._gateways.get(key)
            if hit is None:
                hit = (config, Gateway(config))  # keeps ``config`` alive so an id-based key stays unique
                self._gateways[key] = hit
        return hit[1]

    def clear(self) -> list[Gateway]:
        with self._lock:
            gws = [gw for _, gw in self._gateways.values()]
            self._gateways.clear()
        return gws

    def __len__(self) -> int:
        return len(self._gateways)


_SHARED = _Shared()


def _key(config: Any) -> str:
    if isinstance(config, (str, os.PathLike)):
        return "path:" + str(Path(config).resolve())
    if isinstance(config, GatewayConfig):
        return f"object:{id(config)}"
    if isinstance(config, Mapping):
        blob = orjson.dumps(config, option=orjson.OPT_SORT_KEYS, default=repr)
        return "mapping:" + hashlib.sha256(blob).hexdigest()
    raise ConfigError(
        f"config: expected a path, a mapping or a GatewayConfig, got {type(config).__name__}"
    )


def shared_gateway(config: Any) -> Gateway:
    """The gateway for ``config`` (built on first use, then shared)."""
    return _SHARED.get(config)


def resolve_gateway(gateway: Gateway | None, config: Any, who: str) -> Gateway:
    if gateway is not None:
        return gateway
    if config is None:
        config = os.environ.get(CONFIG_ENV)
        if not config:
            raise ConfigError(
                f"{who} needs a gateway: pass config='hyperion.yaml' (a path, a mapping or a GatewayConfig), "
                f"gateway=Gateway(...), or set {CONFIG_ENV}"
            )
    return shared_gateway(config)


def check_source(gateway: Any, config: Any, who: str) -> None:
    """Construction-time check, without building anything."""
    if gateway is not None and config is not None:
        raise ConfigError(f"{who}: pass config= or gateway=, not both")
    if gateway is not None and not isinstance(gateway, Gateway):
        raise ConfigError(f"{who}: gateway= must be a hyperion_core.Gateway, got {type(gateway).__name__}")
    if gateway is None and config is None and not os.environ.get(CONFIG_ENV):
        resolve_gateway(None, None, who)  # raises the readable error
    if config is not None:
        _key(config)  # a config of the wrong type fails here, not on first use


def run_sync(gw: Gateway, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the gateway's own background loop, where its sync twins (``complete``, ``embed``)
    run, so sync callers share one loop and one pool with them.

    Uses the gateway's private portal: the core has sync twins for ``acomplete``/``astream``/``aembed``
    but none for the external-call API (see the report for the proposed public ``Gateway.run_sync``)."""
    return gw._portal.call(coro)


def submit(gw: Gateway, coro: Coroutine[Any, Any, T]) -> Any:
    """Schedule ``coro`` on the gateway's background loop without waiting; returns a concurrent future."""
    import asyncio

    return asyncio.run_coroutine_threadsafe(coro, gw._portal.loop)


def clear_shared_gateways() -> list[Gateway]:
    """Forget every shared gateway (tests); returns them so the caller can close them."""
    return _SHARED.clear()


__all__ = ["shared_gateway", "resolve_gateway", "check_source", "run_sync", "submit", "clear_shared_gateways", "CONFIG_ENV"]
