"""One gateway per configuration, shared by every framework object (LangChain, LlamaIndex) that names it.

Building a :class:`~hyperion_core.Gateway` makes a connection pool, a background loop for the sync
twins and, with Redis state, Redis clients; doing that per model instance would make
``HyperionChat(...)`` in a loop expensive and leak pools. The registry builds each gateway once, on
first use, keyed by:

* a path (``str`` / ``PathLike``): the resolved file path;
* a ``dict``: a hash of its canonical JSON (equal dicts share a gateway; the secrets inside are hashed,
  never stored);
* a :class:`~hyperion_core.GatewayConfig`: the object's identity (the registry keeps it alive);
* ``None``: the path in ``$HYPERION_CONFIG``.

A :class:`~hyperion_core.Gateway` passed directly is used as is and not registered.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from .config import GatewayConfig
from .errors import ConfigError
from .gateway import Gateway

ENV_CONFIG = "HYPERION_CONFIG"


def config_key(config: Any) -> tuple[str, Any]:
    """The identity a config is shared under (see the module docstring); raises :class:`ConfigError`
    for a missing or unusable one. Pure: builds nothing."""
    if config is None:
        path = os.environ.get(ENV_CONFIG)
        if not path:
            raise ConfigError(
                "no gateway configuration: pass config=<path | dict | GatewayConfig> or gateway=<Gateway>, "
                f"or set ${ENV_CONFIG} to a YAML file"
            )
        config = path
    if isinstance(config, (str, os.PathLike)):
        return "path", str(Path(config).expanduser().resolve())
    if isinstance(config, GatewayConfig):
        return "object", id(config)
    if isinstance(config, Mapping):
        blob = orjson.dumps(config, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=repr)
        return "dict", hashlib.blake2b(blob, digest_size=16).hexdigest()
    raise ConfigError(f"config: expected a path, a mapping or a GatewayConfig, got {type(config).__name__}")


class GatewayRegistry:
    """Gateways by configuration identity (see the module docstring). Thread-safe."""

    def __init__(self) -> None:
        self._gateways: dict[tuple[str, Any], tuple[Gateway, Any]] = {}
        self._lock = threading.Lock()

    def get(self, config: Any = None) -> Gateway:
        """The shared gateway for ``config`` (built on first use)."""
        if isinstance(config, Gateway):
            return config
        key = config_key(config)
        entry = self._gateways.get(key)
        if entry is None:
            with self._lock:
                entry = self._gateways.get(key)
                if entry is None:
                    source = key[1] if key[0] == "path" else config
                    entry = self._gateways[key] = (Gateway(source), config)
        return entry[0]

    def __len__(self) -> int:
        return len(self._gateways)

    def clear(self) -> list[Gateway]:
        """Forget every registered gateway without closing it; returns them (the caller closes them)."""
        with self._lock:
            entries, self._gateways = list(self._gateways.values()), {}
        return [gw for gw, _ in entries]

    def close(self) -> None:
        """Close every registered gateway (their sync loops and pools) and forget them."""
        with self._lock:
            entries, self._gateways = list(self._gateways.values()), {}
        for gw, _ in entries:
            gw.close()

    async def aclose(self) -> None:
        """Close every registered gateway from async code and forget them."""
        with self._lock:
            entries, self._gateways = list(self._gateways.values()), {}
        for gw, _ in entries:
            await gw.aclose()
            gw.close()  # its sync loop, if the sync twins ever started it


#: the process-wide registry: ``HyperionChat``, its handlers and cache, ``HyperionLLM`` and
#: ``HyperionEmbedding`` built from the same config share one gateway (one pool, one budget ledger)
registry = GatewayRegistry()


def shared_gateway(config: Any = None) -> Gateway:
    """The shared gateway for a config path / dict / ``GatewayConfig`` (or ``$HYPERION_CONFIG``)."""
    return registry.get(config)


get_gateway = shared_gateway

_key = config_key  # the former private name


def close_gateways() -> None:
    """Close the gateways the registry built (e.g. at the end of a script or a test session)."""
    registry.close()


async def aclose_gateways() -> None:
    """:func:`close_gateways` from async code (flushes audit logs on the running loop)."""
    await registry.aclose()


__all__ = ["GatewayRegistry", "registry", "config_key", "shared_gateway", "get_gateway", "close_gateways", "aclose_gateways", "ENV_CONFIG"]
