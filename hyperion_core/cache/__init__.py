"""Hyperion's response cache (pipeline steps 4 and 9): exact tiers (L1 in process, L2 in Redis), a
semantic tier (memory or Redis through redisvl) whose hits must pass guards, and single-flight
coalescing of identical concurrent misses, in one process and across processes.

:class:`ResponseCache` is the entry point; :class:`CacheSettings` is a route's policy and
:class:`CacheBackendConfig` says where the shared tiers live. Keys are pure functions in
:mod:`hyperion_core.cache.keys`.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

# Submodules load on first use: ``import hyperion_core`` must not pay for numpy / redis / redisvl.
_WHERE = {
    "Flight": "coalesce", "Flights": "coalesce",
    "CacheBackendConfig": "config", "CacheSettings": "config", "CoalesceSettings": "config",
    "GreyZone": "config", "L1Settings": "config", "L2Settings": "config", "SemanticSettings": "config",
    "CachedAnswer": "exact", "L1Cache": "exact", "RedisBackend": "exact",
    "exact_key": "keys", "scope_of": "keys", "semantic_partition_key": "keys", "semantic_text": "keys",
    "CacheFlight": "layer", "CacheHit": "layer", "CacheKeys": "layer", "CacheMetrics": "layer",
    "ResponseCache": "layer", "Verifier": "layer", "replay_chunks": "layer",
    "MemorySemantic": "semantic", "RedisSemantic": "semantic", "SemanticCandidate": "semantic",
}


__getattr__ = lazy_exports(__name__, _WHERE)


if TYPE_CHECKING:  # pragma: no cover
    from .coalesce import Flight, Flights
    from .config import (
        CacheBackendConfig,
        CacheSettings,
        CoalesceSettings,
        GreyZone,
        L1Settings,
        L2Settings,
        SemanticSettings,
    )
    from .exact import CachedAnswer, L1Cache, RedisBackend
    from .keys import exact_key, scope_of, semantic_partition_key, semantic_text
    from .layer import CacheFlight, CacheHit, CacheKeys, CacheMetrics, ResponseCache, Verifier, replay_chunks
    from .semantic import MemorySemantic, RedisSemantic, SemanticCandidate

__all__ = [
    "ResponseCache",
    "CacheHit",
    "CacheKeys",
    "CacheFlight",
    "CacheMetrics",
    "CachedAnswer",
    "CacheSettings",
    "CacheBackendConfig",
    "L1Settings",
    "L2Settings",
    "SemanticSettings",
    "GreyZone",
    "CoalesceSettings",
    "L1Cache",
    "RedisBackend",
    "MemorySemantic",
    "RedisSemantic",
    "SemanticCandidate",
    "Flight",
    "Flights",
    "Verifier",
    "replay_chunks",
    "exact_key",
    "scope_of",
    "semantic_partition_key",
    "semantic_text",
]
