"""Cache settings: per route (:class:`CacheSettings`) and per gateway (:class:`CacheBackendConfig`).

Every duration is in seconds and every size says its unit. A tier whose ``ttl`` is 0 stores nothing;
a per-request ``CacheControl.ttl`` overrides every tier's ``ttl`` for that request (0 = do not store).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Scope = Literal["key", "team", "shared"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # .inf / .nan are never settings


class L1Settings(_Strict):
    """The in-process exact tier (LRU + TTL), bounded by entries AND bytes."""

    #: serve and store exact repeats from this process's memory
    enabled: bool = True
    #: seconds an entry lives (0 = this tier stores nothing)
    ttl: float = Field(default=300.0, ge=0)
    #: entries kept per route before the least recently used is evicted (0 = stores nothing)
    max_entries: int = Field(default=10_000, ge=0)
    #: bytes kept per route, measured as the serialised entry (0 = stores nothing); an entry larger
    #: than this is never stored
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=0)


class L2Settings(_Strict):
    """The shared exact tier (Redis; ignored with the memory backend). Redis expires the entries."""

    #: serve and store exact repeats from Redis (with ``state.backend: redis``)
    enabled: bool = True
    #: seconds an entry lives (0 = this tier stores nothing)
    ttl: float = Field(default=3600.0, ge=0)


class GreyZone(_Strict):
    """Semantic candidates whose distance lies in ``[low, high]`` (cosine distance, 0..2) are also
    checked by a verifier route (a cheap model asked whether two prompts ask the same thing)."""

    #: cosine distance from which a candidate also needs the verifier's yes
    low: float = Field(ge=0, le=2)
    #: cosine distance up to which the verifier is asked (above it: a miss)
    high: float = Field(ge=0, le=2)
    #: the route that answers the verifier question
    route: str = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> GreyZone:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class SemanticSettings(_Strict):
    """The semantic tier: the last user turn is embedded and compared with entries that share
    everything else (earlier turns, system prompt, parameters, tools, scope, namespace)."""

    #: serve paraphrases of an earlier question (embedding distance, then the guards)
    enabled: bool = False
    #: seconds an entry lives (0 = this tier stores nothing)
    ttl: float = Field(default=86_400.0, ge=0)
    #: maximum cosine distance of a candidate (0..2): 0 = only an identical vector (within float
    #: rounding, 1e-5) matches; 2 = every entry of the partition is a candidate for the guards.
    #: None = the embedder's ``recommended_threshold`` (wordllama 0.22, MiniLM 0.15, else 0.1)
    threshold: float | None = Field(default=None, ge=0, le=2)
    #: the semantic tier is skipped (read and write) for requests whose temperature is above this;
    #: a request without a temperature is eligible
    max_temperature: float = Field(default=0.5, ge=0)
    #: candidates (nearest first) checked by the guards; the best one passing every guard is the hit
    top_k: int = Field(default=3, ge=1, le=50)
    #: guard name -> on/off; guards not named keep their default (on). Names: ``guards.GUARD_NAMES``
    guards: dict[str, bool] = Field(default_factory=dict)
    grey_zone: GreyZone | None = None
    #: entries kept per route by the memory backend, oldest evicted first (0 = stores nothing);
    #: the Redis backend is bounded by ``ttl`` alone
    max_entries: int = Field(default=100_000, ge=0)

    @field_validator("guards")
    @classmethod
    def _known_guards(cls, v: dict[str, bool]) -> dict[str, bool]:
        if v:
            from .guards import GUARD_NAMES

            unknown = sorted(set(v) - set(GUARD_NAMES))
            if unknown:
                raise ValueError(f"unknown guard(s) {unknown}; known: {list(GUARD_NAMES)}")
        return v


class CoalesceSettings(_Strict):
    """Single-flight: identical concurrent misses make one upstream call; the others wait for it.
    Across processes (Redis backend with L2 on) the leader holds a lock that it renews while alive."""

    #: identical concurrent misses share one upstream call
    enabled: bool = True
    #: seconds the leader's lock lives without renewal; a live leader renews it every third of this,
    #: so a dead leader's followers take over within this time. > 0
    lock_ttl: float = Field(default=5.0, gt=0)
    #: seconds a follower waits for the leader before calling upstream itself (0 = never wait)
    wait_timeout: float = Field(default=60.0, ge=0)
    #: seconds between a cross-process follower's checks of the cache and the lock. > 0
    poll_interval: float = Field(default=0.02, gt=0)


class CacheSettings(_Strict):
    """One route's cache policy."""

    #: off keeps the section but neither reads nor writes the cache
    enabled: bool = True
    #: who shares entries: ``key`` = one virtual key sees only its own entries; ``team`` = the
    #: caller's team; ``shared`` = every caller of the route. Callers without a key are "anonymous"
    #: and share only with each other.
    scope: Scope = "key"
    l1: L1Settings = Field(default_factory=L1Settings)
    l2: L2Settings = Field(default_factory=L2Settings)
    semantic: SemanticSettings = Field(default_factory=SemanticSettings)
    coalesce: CoalesceSettings = Field(default_factory=CoalesceSettings)
    #: store answers cut by ``max_tokens`` (finish reason ``length``)
    store_length_finish: bool = False
    #: store answers whose finish reason is ``tool_calls`` (they wait on tool results)
    store_tool_calls: bool = False


class CacheTuning(_Strict):
    """How the shared tiers use Redis: the settings a gateway's ``cache:`` section shares with
    :class:`CacheBackendConfig` (one definition, so the two cannot drift)."""

    #: seconds a Redis command may take, connect included, before it counts as a backend error. > 0
    socket_timeout: float = Field(default=0.25, gt=0)
    #: connections in the shared pool; a command waits at most ``socket_timeout`` for a free one
    max_connections: int = Field(default=64, ge=1)
    #: seconds Redis is left alone after an error (operations skip it meanwhile); 0 = retry at once
    outage_backoff: float = Field(default=1.0, ge=0)
    #: the Redis semantic tier's vector index: ``hnsw`` (approximate, ~0.1 ms at 100k entries) or
    #: ``flat`` (exact brute force, ~4.5 ms at 100k: bench/cache.py). Each has its own key space.
    vector_index: Literal["hnsw", "flat"] = "hnsw"
    #: HNSW candidate list size at query time (higher = better recall, slower); >= 1
    hnsw_ef_runtime: int = Field(default=20, ge=1)


class CacheBackendConfig(CacheTuning):
    """Where the shared tiers live, for the whole gateway, and how they use Redis."""

    backend: Literal["memory", "redis"] = "memory"
    #: required with ``backend: redis``, e.g. ``redis://localhost:6379/0``
    redis_url: str | None = None
    #: first part of every Redis key (no braces: they delimit Redis Cluster hash tags)
    key_prefix: str = Field(default="hyperion", min_length=1, pattern=r"^[^{}\s]+$")

    @model_validator(mode="after")
    def _url_for_redis(self) -> CacheBackendConfig:
        if self.backend == "redis" and not self.redis_url:
            raise ValueError("redis_url is required with backend 'redis'")
        return self


__all__ = [
    "CacheSettings",
    "CacheBackendConfig",
    "CacheTuning",
    "L1Settings",
    "L2Settings",
    "SemanticSettings",
    "GreyZone",
    "CoalesceSettings",
    "Scope",
]
