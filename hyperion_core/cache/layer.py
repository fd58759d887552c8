"""The response cache (pipeline steps 4 and 9): exact L1 and L2, the semantic tier, single-flight.

::

    cache = ResponseCache(CacheBackendConfig(backend="redis", redis_url=...), embedder=embedder)
    hit = await cache.lookup(req, settings)              # L1, then L2, then semantic
    if hit:
        return hit.response(req)                         # or hit.chunks() for a streaming caller
    async with cache.flight(req, settings) as f:         # identical concurrent misses share one call
        if not f.leader and (hit := await f.wait()):
            return hit.response(req)
        resp = await call_upstream(req)
        await f.finish(resp)                             # store (per the rules) + hand to followers
    # or, for a whole call: resp = await cache.complete(req, settings, lambda: call_upstream(req))

Scoping: entries belong to the caller's tenant (``CacheSettings.scope``, see ``keys.scope_of``); the
scope is in the exact key, in the semantic partition and in the semantic tier's ``scope`` tag filter.

Storing: never errors, partial/cut or resumed streams, cache hits, finish reasons other than
``stop``; ``length`` only with ``store_length_finish``; tool-call answers only with
``store_tool_calls``. ``CacheControl``: ``no_cache`` (no read, no write, no coalescing),
``force_refresh`` (no read, write), ``no_store`` (read, no write), ``ttl`` (overrides every tier's TTL;
0 = no write), ``namespace`` (part of every key). The semantic tier is skipped for requests with
tools or a temperature above ``semantic.max_temperature``.

A semantic candidate is a hit only if it passes every enabled guard (and, in the grey zone, the
verifier); the nearest passing one among the top ``k`` wins.

Failures of Redis, the embedder, the guards or the verifier never reach the caller: they count in
:attr:`ResponseCache.metrics` and the cache behaves as a miss / a skipped store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..clock import SYSTEM, MonotonicClock
from ..types import CacheInfo, ChatChunk, ChatRequest, ChatResponse, ToolCallDelta
from .coalesce import Flight, Flights
from .config import CacheBackendConfig, CacheSettings
from .exact import CachedAnswer, L1Cache, RedisBackend, RedisExact
from .generations import Generations
from .keys import exact_key, scope_hash, scope_of, semantic_partition_key, semantic_text
from .semantic import MemorySemantic, RedisSemantic, SemanticCandidate, SemanticStore

log = logging.getLogger("hyperion.cache")

#: (verifier route, query text, cached prompt text) -> do they ask the same thing?
Verifier = Callable[[str, str, str], Awaitable[bool]]


class EmbedderLike(Protocol):
    dim: int

    async def embed(self, texts: list[str]) -> np.ndarray: ...


class GuardResultLike(Protocol):
    passed: bool
    passed_guards: tuple[str, ...]
    failed: tuple[str, ...]


GuardCheck = Callable[[str, str, "Mapping[str, bool] | None"], GuardResultLike]



# -- hits ------------------------------------------------------------------------------------


def replay_chunks(answer: CachedAnswer, *, chunk_chars: int = 64, deployment: str | None = None) -> list[ChatChunk]:
    """A cached answer as a stream: content in pieces of ``chunk_chars`` characters, tool calls,
    then a final chunk with the finish reason and usage (what a live stream ends with)."""
    dep = deployment or answer.deployment
    text = answer.content or ""
    step = max(1, chunk_chars)
    out = [ChatChunk(content=text[i : i + step], deployment=dep) for i in range(0, len(text), step)]
    if answer.tool_calls:
        out.append(
            ChatChunk(
                tool_calls=tuple(
                    ToolCallDelta(index=i, id=t.id, name=t.name, arguments=t.arguments)
                    for i, t in enumerate(answer.tool_calls)
                ),
                deployment=dep,
            )
        )
    out.append(ChatChunk(finish_reason=answer.finish_reason, usage=answer.usage, deployment=dep))
    return out


@dataclass(slots=True, frozen=True)
class CacheHit:
    """A cached answer and how it was found (``info`` becomes ``ChatResponse.cache``)."""

    answer: CachedAnswer
    info: CacheInfo

    def response(self, req: ChatRequest, *, latency_ms: float = 0.0) -> ChatResponse:
        """The answer as a ``ChatResponse``: ``cost`` 0 (nothing paid upstream), the original
        usage, and ``cache`` set (``cache.cost_saved`` is what the original call cost)."""
        a = self.answer
        return ChatResponse(
            request_id=req.request_id,
            route=req.route,
            deployment=a.deployment,
            model=a.model,
            content=a.content,
            tool_calls=a.tool_calls,
            finish_reason=a.finish_reason,
            usage=a.usage,
            cost=0.0,
            attempts=(),
            latency_ms=latency_ms,
            cache=self.info,
        )

    def chunks(self, *, chunk_chars: int = 64) -> list[ChatChunk]:
        return replay_chunks(self.answer, chunk_chars=chunk_chars)


# -- metrics ---------------------------------------------------------------------------------


@dataclass
class CacheMetrics:
    """Live counters. ``hits`` by tier (l1, l2, semantic, coalesced: served by a concurrent
    identical request's call); ``skipped_stores`` by reason; ``semantic_rejected`` by the guard (or
    ``verifier``) that turned a candidate down; ``backend_errors``: failed Redis commands."""

    hits: Counter[str] = field(default_factory=Counter)
    misses: int = 0
    bypassed: int = 0  # lookups not made: no_cache / force_refresh
    stores: Counter[str] = field(default_factory=Counter)  # by tier
    skipped_stores: Counter[str] = field(default_factory=Counter)
    semantic_rejected: Counter[str] = field(default_factory=Counter)
    backend_errors: int = 0
    backend_errors_by_op: Counter[str] = field(default_factory=Counter)
    backend_skipped: int = 0  # Redis commands not sent while backing off after an error
    embed_errors: int = 0
    decode_errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "hits": dict(self.hits),
            "misses": self.misses,
            "bypassed": self.bypassed,
            "stores": dict(self.stores),
            "skipped_stores": dict(self.skipped_stores),
            "semantic_rejected": dict(self.semantic_rejected),
            "backend_errors": self.backend_errors,
            "backend_errors_by_op": dict(self.backend_errors_by_op),
            "backend_skipped": self.backend_skipped,
            "embed_errors": self.embed_errors,
            "decode_errors": self.decode_errors,
        }


@dataclass(slots=True, frozen=True)
class CacheKeys:
    """Where a request's entries live: its tenant scope, the scope's hash, its exact key."""

    scope: str
    sh: str  # scope hash: hash tag and semantic scope tag
    key: str  # exact key


# -- the cache -------------------------------------------------------------------------------


class ResponseCache:
    """The gateway's response cache. One per gateway; route settings are passed on every call.

    ``backend``: where the shared tiers live (memory = L1 + in-process semantic only). ``embedder``:
    needed by the semantic tier. ``clock``: monotonic seconds for in-process TTLs (tests inject a
    manual one); ``wall``: wall-clock seconds for entry ages. ``verifier``: asked for semantic
    candidates in a route's grey zone. ``guard_check``: defaults to ``guards.check_guards``.
    ``route_ids``: route name -> the name and fingerprint of what serves it (``keys.route_fingerprint``),
    part of every key; a route not named is keyed by its name alone.
    """

    def __init__(
        self,
        backend: CacheBackendConfig | Mapping[str, Any] | None = None,
        *,
        embedder: EmbedderLike | None = None,
        clock: MonotonicClock | None = None,
        wall: Callable[[], float] = time.time,
        verifier: Verifier | None = None,
        guard_check: GuardCheck | None = None,
        route_ids: Mapping[str, str] | None = None,
    ) -> None:
        if backend is None:
            backend = CacheBackendConfig()
        elif not isinstance(backend, CacheBackendConfig):
            backend = CacheBackendConfig.model_validate(backend)
        self.backend_config = backend
        self.embedder = embedder
        self.clock = clock or SYSTEM
        self.wall = wall
        self.verifier = verifier
        self._guard_check = guard_check
        self._route_ids = dict(route_ids or {})
        self._metrics = CacheMetrics()
        self.redis: RedisBackend | None = None
        self._l2: RedisExact | None = None
        if backend.backend == "redis":
            self.redis = RedisBackend(backend, on_error=self._on_backend_error)
            self._l2 = RedisExact(self.redis)
        self._flights: Flights[CacheHit] = Flights(self.redis)
        self.generations = Generations(self.redis)  # invalidation by namespace (generations.py)
        self._l1: dict[str, L1Cache] = {}
        self._sem_memory: dict[str, MemorySemantic] = {}
        self._sem_redis: dict[int, RedisSemantic] = {}  # by vector dimension

    # -- introspection
    @property
    def metrics(self) -> CacheMetrics:
        if self.redis is not None:
            self._metrics.backend_skipped = self.redis.skipped
        return self._metrics

    def l1(self, route: str) -> L1Cache | None:
        """The route's L1 (None before its first store)."""
        return self._l1.get(route)

    def _on_backend_error(self, op: str, exc: BaseException) -> None:
        self._metrics.backend_errors += 1
        self._metrics.backend_errors_by_op[op] += 1

    # -- keys
    def keys(self, req: ChatRequest, settings: CacheSettings) -> CacheKeys:
        scope = self.generations.scoped(scope_of(req.caller, settings.scope), req.cache)
        return CacheKeys(scope, scope_hash(scope), exact_key(req, scope, self._route_ids.get(req.route)))

    # -- lookup
    async def lookup(self, req: ChatRequest, settings: CacheSettings) -> CacheHit | None:
        """The cached answer for ``req`` (L1, then L2, then semantic), or None."""
        if not settings.enabled:
            return None
        cc = req.cache
        if cc is not None and (cc.no_cache or cc.force_refresh):
            self._metrics.bypassed += 1
            return None
        k = self.keys(req, settings)
        hit = await self._exact(req.route, k, settings)
        if hit is None:
            hit = await self._semantic_lookup(req, k, settings)
        if hit is None:
            self._metrics.misses += 1
        else:
            self._metrics.hits[hit.info.tier] += 1
        return hit

    def _info(self, a: CachedAnswer, tier: str, similarity: float | None = None,
              guards: tuple[str, ...] = ()) -> CacheInfo:
        return CacheInfo(
            tier=tier,
            age_s=max(0.0, self.wall() - a.created_at),
            similarity=similarity,
            guards=guards,
            tokens_saved=a.usage.total_tokens,
            cost_saved=a.cost,
            source_deployment=a.deployment,
        )

    async def _exact(self, route: str, k: CacheKeys, settings: CacheSettings) -> CacheHit | None:
        l1 = self._l1.get(route) if settings.l1.enabled else None
        if l1 is not None:
            a = l1.get(k.key)
            if a is not None:
                return CacheHit(a, self._info(a, "l1"))
        if self._l2 is None or self.redis is None or not settings.l2.enabled:
            return None
        data = await self._l2.get(self.redis.key("cache", k.sh, k.key))
        if data is None:
            return None
        try:
            a = CachedAnswer.from_bytes(data)
        except ValueError:
            self._metrics.decode_errors += 1
            return None
        if settings.l1.enabled and settings.l1.ttl > 0:  # back-fill L1, never past the L2 expiry
            ttl = settings.l1.ttl
            if a.expires_at is not None:
                ttl = min(ttl, a.expires_at - self.wall())
            if ttl > 0:
                self._l1_for(route, settings).set(k.key, a, len(data), ttl)
        return CacheHit(a, self._info(a, "l2"))

    def _l1_for(self, route: str, settings: CacheSettings) -> L1Cache:
        s = settings.l1
        l1 = self._l1.get(route)
        if l1 is None:
            l1 = self._l1[route] = L1Cache(s.max_entries, s.max_bytes, self.clock)
        elif (l1.max_entries, l1.max_bytes) != (s.max_entries, s.max_bytes):
            l1.resize(s.max_entries, s.max_bytes)
        return l1

    # -- semantic
    def _semantic_query(self, req: ChatRequest, settings: CacheSettings) -> str | None:
        sem = settings.semantic
        if not sem.enabled or self.embedder is None or req.tools:
            return None
        if req.temperature is not None and req.temperature > sem.max_temperature:
            return None
        return semantic_text(req)

    def _semantic_store_for(self, route: str, settings: CacheSettings, dim: int) -> SemanticStore:
        if self.redis is not None:
            store = self._sem_redis.get(dim)
            if store is None:
                store = self._sem_redis[dim] = RedisSemantic(
                    self.redis, dim, algorithm=self.backend_config.vector_index,
                    ef_runtime=self.backend_config.hnsw_ef_runtime,
                )
            return store
        mem = self._sem_memory.get(route)
        if mem is None:
            mem = self._sem_memory[route] = MemorySemantic(settings.semantic.max_entries, self.clock)
        mem.max_entries = settings.semantic.max_entries
        return mem

    async def _embed(self, text: str) -> np.ndarray | None:
        """The text's unit vector, or None if the embedder failed (identical texts are cached by
        the embedder: ``embedders.CachedEmbedder``, which ``make_embedder`` wraps around every model)."""
        assert self.embedder is not None
        try:
            arr = np.asarray(await self.embedder.embed([text]), dtype=np.float32)
            if arr.ndim != 2 or arr.shape[0] != 1 or arr.shape[1] == 0:
                raise ValueError(f"embedder returned shape {arr.shape} for one text")
            v = arr[0]
            norm = float(np.linalg.norm(v))
            if not norm > 0:
                raise ValueError("embedder returned a zero vector")
            return v if abs(norm - 1.0) < 1e-4 else v / norm
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the semantic tier steps aside
            self._metrics.embed_errors += 1
            log.warning("cache: embedding failed (%s: %s); semantic tier skipped", type(exc).__name__, exc)
            return None

    async def _semantic_lookup(self, req: ChatRequest, k: CacheKeys, settings: CacheSettings) -> CacheHit | None:
        text = self._semantic_query(req, settings)
        if text is None:
            return None
        vec = await self._embed(text)
        if vec is None:
            return None
        store = self._semantic_store_for(req.route, settings, vec.shape[0])
        sem = settings.semantic
        partition = semantic_partition_key(req, k.scope, self._route_ids.get(req.route))
        threshold = sem.threshold if sem.threshold is not None else getattr(self.embedder, "recommended_threshold", 0.1)
        cands = await store.search(vec, scope=k.sh, partition=partition, threshold=threshold, k=sem.top_k)
        for cand in cands:
            passed = await self._accept(text, cand, settings)
            if passed is not None:
                return CacheHit(cand.answer, self._info(cand.answer, "semantic", cand.similarity, passed))
        return None

    async def _accept(self, text: str, cand: SemanticCandidate, settings: CacheSettings) -> tuple[str, ...] | None:
        """The guards that passed, or None when the candidate is turned down."""
        sem = settings.semantic
        try:
            check = self._guard_check
            if check is None:
                from .guards import check_guards

                check = self._guard_check = check_guards
            result = check(text, cand.prompt, sem.guards or None)
        except Exception as exc:  # noqa: BLE001 - a broken guard rejects, never serves
            self._metrics.semantic_rejected["guard_error"] += 1
            log.warning("cache: semantic guards failed (%s: %s); candidate rejected", type(exc).__name__, exc)
            return None
        if not result.passed:
            for name in result.failed or ("guards",):
                self._metrics.semantic_rejected[name] += 1
            return None
        passed = tuple(result.passed_guards)
        gz = sem.grey_zone
        if gz is not None and gz.low <= cand.distance <= gz.high:
            if self.verifier is None:
                self._metrics.semantic_rejected["verifier_missing"] += 1
                return None
            try:
                same = await self.verifier(gz.route, text, cand.prompt)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                same = False
            if not same:
                self._metrics.semantic_rejected["verifier"] += 1
                return None
            passed = (*passed, "verifier")
        return passed

    # -- store
    def refusal(self, req: ChatRequest, resp: ChatResponse | BaseException | None, settings: CacheSettings,
                *, complete: bool = True) -> str | None:
        """Why ``resp`` must not be stored (a metrics reason), or None if it may be."""
        if not settings.enabled:
            return "disabled"
        cc = req.cache
        if cc is not None:
            if cc.no_cache:
                return "no_cache"
            if cc.no_store:
                return "no_store"
            if cc.ttl is not None and cc.ttl <= 0:
                return "ttl_zero"
        if resp is None or isinstance(resp, BaseException):
            return "error"
        if resp.cache is not None:
            return "from_cache"
        if not complete or resp.finish_reason is None:
            return "partial"  # a stream without its terminal event
        if resp.resumed_by:
            return "resumed"  # spliced from several deployments
        fr = resp.finish_reason
        if fr in ("tool_calls", "function_call") or resp.tool_calls:
            if not settings.store_tool_calls:
                return "tool_calls"
        elif fr == "length":
            if not settings.store_length_finish:
                return "length"
        elif fr != "stop":
            return "finish_reason"  # content_filter, error, ...
        if not resp.content and not resp.tool_calls:
            return "empty"
        return None

    async def store(self, req: ChatRequest, resp: ChatResponse | BaseException | None, settings: CacheSettings,
                    *, complete: bool = True) -> bool:
        """Store a fresh answer in every eligible tier; True if any tier took it. ``complete``: False
        for a stream that did not reach its terminal event."""
        reason = self.refusal(req, resp, settings, complete=complete)
        if reason is not None:
            self._metrics.skipped_stores[reason] += 1
            return False
        assert isinstance(resp, ChatResponse)
        override = req.cache.ttl if req.cache is not None else None

        def ttl(tier_ttl: float) -> float:
            return tier_ttl if override is None else override

        k = self.keys(req, settings)
        now = self.wall()
        answer = CachedAnswer.from_response(resp, created_at=now)
        stored: list[str] = []
        jobs: list[Awaitable[str | None]] = []

        l1_ttl = ttl(settings.l1.ttl)
        if settings.l1.enabled and l1_ttl > 0:
            size = len(answer.to_bytes(expires_at=now + l1_ttl))
            if self._l1_for(req.route, settings).set(k.key, answer, size, l1_ttl):
                stored.append("l1")
            elif size > settings.l1.max_bytes:
                self._metrics.skipped_stores["l1_too_large"] += 1

        l2_ttl = ttl(settings.l2.ttl)
        if self._l2 is not None and self.redis is not None and settings.l2.enabled and l2_ttl > 0:
            payload = answer.to_bytes(expires_at=now + l2_ttl)
            key = self.redis.key("cache", k.sh, k.key)
            l2 = self._l2

            async def l2_job() -> str | None:
                return "l2" if await l2.set(key, payload, l2_ttl) else None

            jobs.append(l2_job())

        sem_ttl = ttl(settings.semantic.ttl)
        text = self._semantic_query(req, settings)
        if text is not None and sem_ttl > 0 and not answer.tool_calls:
            jobs.append(self._semantic_store(req, k, settings, text, answer, sem_ttl))

        if jobs:
            stored.extend(t for t in await asyncio.gather(*jobs) if t)
        for tier in stored:
            self._metrics.stores[tier] += 1
        if not stored:
            self._metrics.skipped_stores["no_tier"] += 1
        return bool(stored)

    async def _semantic_store(self, req: ChatRequest, k: CacheKeys, settings: CacheSettings, text: str,
                              answer: CachedAnswer, ttl: float) -> str | None:
        vec = await self._embed(text)
        if vec is None:
            return None
        store = self._semantic_store_for(req.route, settings, vec.shape[0])
        partition = semantic_partition_key(req, k.scope, self._route_ids.get(req.route))
        ok = await store.store(vec, scope=k.sh, partition=partition, prompt=text, answer=answer, ttl=ttl)
        return "semantic" if ok else None

    # -- coalescing
    @asynccontextmanager
    async def flight(self, req: ChatRequest, settings: CacheSettings) -> AsyncIterator[CacheFlight]:
        """Single-flight for ``req``'s exact key (see the module docstring and ``coalesce.py``).
        Cross-process with the Redis backend when the route's L2 is on (followers read L2)."""
        cc = req.cache
        co = settings.coalesce
        if (not settings.enabled or not co.enabled or co.wait_timeout <= 0
                or (cc is not None and (cc.no_cache or cc.force_refresh))):
            yield CacheFlight(self, req, settings, None)
            return
        k = self.keys(req, settings)
        distributed = self.redis is not None and settings.l2.enabled and settings.l2.ttl > 0
        lock_key = self.redis.key("flight", k.sh, k.key) if distributed and self.redis is not None else None

        async def fetch() -> CacheHit | None:
            return await self._exact(req.route, k, settings)

        async with self._flights.flight(
            k.key,
            lock_key=lock_key,
            fetch=fetch if distributed else None,
            lock_ttl=co.lock_ttl,
            wait_timeout=co.wait_timeout,
            poll_interval=co.poll_interval,
        ) as f:
            yield CacheFlight(self, req, settings, f)

    async def complete(self, req: ChatRequest, settings: CacheSettings,
                       compute: Callable[[], Awaitable[ChatResponse]]) -> ChatResponse:
        """Lookup, then single-flight ``compute`` on a miss, then store: one whole call."""
        started = time.perf_counter()
        hit = await self.lookup(req, settings)
        if hit is None:
            async with self.flight(req, settings) as f:
                if not f.leader:
                    hit = await f.wait()
                if hit is None:
                    resp = await compute()
                    await f.finish(resp)
                    return resp
        return hit.response(req, latency_ms=(time.perf_counter() - started) * 1000.0)

    def waiting(self, req: ChatRequest, settings: CacheSettings) -> int:
        """Followers in this process waiting on ``req``'s flight (for tests and metrics)."""
        return self._flights.waiting(self.keys(req, settings).key)

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


class CacheFlight:
    """A request's place in a flight (from :meth:`ResponseCache.flight`)."""

    __slots__ = ("_cache", "_req", "_settings", "_f")

    def __init__(self, cache: ResponseCache, req: ChatRequest, settings: CacheSettings,
                 f: Flight[CacheHit] | None) -> None:
        self._cache, self._req, self._settings, self._f = cache, req, settings, f

    @property
    def leader(self) -> bool:
        """True: compute the answer (others may be waiting for it)."""
        return self._f is None or self._f.leader

    async def wait(self) -> CacheHit | None:
        """The answer of the concurrent identical request, or None: compute it yourself."""
        if self._f is None:
            return None
        hit = await self._f.wait()
        if hit is not None:
            self._cache._metrics.hits[hit.info.tier] += 1
        return hit

    async def finish(self, resp: ChatResponse | BaseException | None, *, complete: bool = True) -> bool:
        """Store ``resp`` (per the store rules) and hand it to this process's followers if it is a
        whole answer (followers get answers that the rules keep out of storage too, e.g. a
        ``length`` finish: they asked the identical question at the same moment). True if stored."""
        stored = await self._cache.store(self._req, resp, self._settings, complete=complete)
        if (self._f is not None and isinstance(resp, ChatResponse) and complete
                and resp.finish_reason is not None and resp.cache is None):
            a = CachedAnswer.from_response(resp, created_at=self._cache.wall())
            self._f.publish(CacheHit(a, self._cache._info(a, "coalesced")))
        return stored


__all__ = [
    "ResponseCache",
    "CacheKeys",
    "CacheHit",
    "CacheFlight",
    "CacheMetrics",
    "Verifier",
    "replay_chunks",
]
