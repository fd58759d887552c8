"""One :class:`~hyperion_core.Gateway` per configuration, shared by every LlamaIndex object built from it.

Building ``HyperionLLM(model="chat", config="hyperion.yaml")`` in a loop must not build a gateway (its
connection pool, stores, audit writer) each time (STYLE 9). Objects resolve their gateway lazily, on
first use, through :func:`shared_gateway`: a cache keyed by the configuration — a file's resolved path,
a mapping's content, a ``GatewayConfig`` object's identity. Constructors never touch it.
"""

from __future__ import annotations

import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from hyperion_core import Gateway
from hyperion_core.errors import ConfigError
from hyperion_core.registry import _key, registry

T = TypeVar("T")

#: environment variable naming the config file used when neither ``config=`` nor ``gateway=`` is given
CONFIG_ENV = "HYPERION_CONFIG"


def shared_gateway(config: Any) -> Gateway:
    """The gateway for ``config`` (built on first use, then shared — with ``hyperion_lc`` too)."""
    return registry.get(config)


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
    """Run ``coro`` on the gateway's own background loop, where its sync twins run."""
    return gw.run_sync(coro)


def submit(gw: Gateway, coro: Coroutine[Any, Any, T]) -> Any:
    """Schedule ``coro`` on the gateway's background loop without waiting; returns a concurrent future."""
    return gw.submit(coro)


def clear_shared_gateways() -> list[Gateway]:
    """Forget every shared gateway (tests); returns them so the caller can close them."""
    with registry._lock:
        gws = [gw for gw, _ in registry._gateways.values()]
        registry._gateways.clear()
    return gws


__all__ = ["shared_gateway", "resolve_gateway", "check_source", "run_sync", "submit", "clear_shared_gateways", "CONFIG_ENV"]
