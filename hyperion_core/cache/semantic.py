"""The semantic tier's storage: nearest cached prompts by cosine distance, within one tenant scope
and one partition (everything but the last user turn, see ``keys.semantic_partition_key``).

Two backends behind :class:`SemanticStore`: :class:`MemorySemantic` (a NumPy matrix per partition,
bounded entries, TTL) and :class:`RedisSemantic` (an index of our own on redisvl's ``SearchIndex``:
a FLAT cosine vector field and TAG fields ``scope`` and ``partition``, both ALWAYS in the filter;
Redis expires each entry). Both return candidates, nearest first, whose distance is at most the
threshold (0 = only an identical vector, within :data:`EPS` of float rounding); they never decide
a hit — ``layer.py`` runs the guards on each candidate.

Vectors are float32 and L2-normalised (the ``Embedder`` contract), so cosine distance = 1 - dot.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from ..clock import SYSTEM, MonotonicClock
from .exact import CachedAnswer, RedisBackend
from .keys import digest

#: float rounding allowance on distances: a threshold of 0 still matches an identical vector
EPS = 1e-5


@dataclass(slots=True, frozen=True)
class SemanticCandidate:
    answer: CachedAnswer
    prompt: str  # the cached prompt text (the guards compare it with the query)
    distance: float  # cosine distance, 0..2

    @property
    def similarity(self) -> float:
        return 1.0 - self.distance


class SemanticStore(Protocol):
    async def search(
        self, vector: np.ndarray, *, scope: str, partition: str, threshold: float, k: int
    ) -> list[SemanticCandidate]: ...

    async def store(
        self, vector: np.ndarray, *, scope: str, partition: str, prompt: str, answer: CachedAnswer, ttl: float
    ) -> bool: ...


def entry_id(scope: str, partition: str, prompt: str) -> str:
    """Deterministic: the same prompt in the same partition overwrites its entry."""
    return digest(f"{scope}\x00{partition}\x00{prompt}".encode())


def _as_row(vector: np.ndarray) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32)
    return v.reshape(-1)


# -- memory ----------------------------------------------------------------------------------


class _Entry:
    __slots__ = ("id", "part", "row", "expires", "prompt", "answer")

    def __init__(self, id: str, part: _Partition, row: int, expires: float, prompt: str, answer: CachedAnswer):
        self.id, self.part, self.row, self.expires, self.prompt, self.answer = id, part, row, expires, prompt, answer


class _Partition:
    __slots__ = ("key", "vecs", "entries")

    def __init__(self, key: tuple[str, str], dim: int) -> None:
        self.key = key
        self.vecs = np.empty((8, dim), dtype=np.float32)
        self.entries: list[_Entry] = []

    def append(self, vec: np.ndarray, entry: _Entry) -> None:
        n = len(self.entries)
        if n == self.vecs.shape[0]:
            grown = np.empty((n * 2, self.vecs.shape[1]), dtype=np.float32)
            grown[:n] = self.vecs[:n]
            self.vecs = grown
        self.vecs[n] = vec
        entry.row = n
        self.entries.append(entry)

    def remove(self, entry: _Entry) -> None:
        last = self.entries.pop()
        if last is not entry:  # move the last row into the hole
            self.vecs[entry.row] = self.vecs[last.row]
            last.row = entry.row
            self.entries[entry.row] = last


class MemorySemantic:
    """In-process semantic store: one float32 matrix per (scope, partition), ``max_entries`` in all
    (oldest evicted first), per-entry TTL on an injectable monotonic clock."""

    def __init__(self, max_entries: int, clock: MonotonicClock | None = None) -> None:
        self.max_entries = max_entries
        self.clock = clock or SYSTEM
        self.evictions = 0
        self._parts: dict[tuple[str, str], _Partition] = {}
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def search(
        self, vector: np.ndarray, *, scope: str, partition: str, threshold: float, k: int
    ) -> list[SemanticCandidate]:
        part = self._parts.get((scope, partition))
        if part is None or not part.entries:
            return []
        q = _as_row(vector)
        if q.shape[0] != part.vecs.shape[1]:
            return []
        n = len(part.entries)
        dist = 1.0 - part.vecs[:n] @ q
        idx = np.flatnonzero(dist <= threshold + EPS)
        if idx.size == 0:
            return []
        idx = idx[np.argsort(dist[idx], kind="stable")]
        now = self.clock.now()
        out: list[SemanticCandidate] = []
        expired: list[_Entry] = []
        for i in idx:
            e = part.entries[i]
            if e.expires <= now:
                expired.append(e)
                continue
            out.append(SemanticCandidate(e.answer, e.prompt, max(0.0, float(dist[i]))))
            if len(out) >= k:
                break
        for e in expired:
            self._remove(e)
        return out

    async def store(
        self, vector: np.ndarray, *, scope: str, partition: str, prompt: str, answer: CachedAnswer, ttl: float
    ) -> bool:
        if ttl <= 0 or self.max_entries <= 0:
            return False
        vec = _as_row(vector)
        now = self.clock.now()
        eid = entry_id(scope, partition, prompt)
        old = self._entries.get(eid)
        if old is not None:
            self._remove(old)
        part = self._parts.get((scope, partition))
        if part is not None and part.vecs.shape[1] != vec.shape[0]:  # the embedder changed
            for e in list(part.entries):
                self._remove(e)
            part = None
        if part is None:
            part = self._parts[(scope, partition)] = _Partition((scope, partition), vec.shape[0])
        entry = _Entry(eid, part, -1, now + ttl, prompt, answer)
        part.append(vec, entry)
        self._entries[eid] = entry
        while self._entries:  # expired entries at the old end go first
            first = next(iter(self._entries.values()))
            if first.expires > now and len(self._entries) <= self.max_entries:
                break
            self._remove(first)
            if first.expires > now:
                self.evictions += 1
        return True

    def _remove(self, entry: _Entry) -> None:
        if self._entries.pop(entry.id, None) is None:
            return
        part = entry.part
        part.remove(entry)
        if not part.entries:
            self._parts.pop(part.key, None)


# -- Redis (redisvl) -------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _redisvl_query() -> tuple[Any, Any]:
    """redisvl's query classes, imported once on first use (not at import: memory-only users never pay)."""
    from redisvl.query import VectorQuery
    from redisvl.query.filter import Tag

    return VectorQuery, Tag


class RedisSemantic:
    """Semantic entries in Redis: one hash per entry under ``{prefix}:sem:<dim>:{<scope>}:<id>``
    (fields scope, partition, vector, prompt, entry), indexed by ``{prefix}:semhnsw:<dim>`` (HNSW; or
    ``{prefix}:sem:<dim>`` with a FLAT index; cosine, float32). A search is a KNN among the entries whose ``scope`` AND ``partition`` tags
    match, then the distance threshold; failures degrade to "no candidates" (``RedisBackend``)."""

    def __init__(self, backend: RedisBackend, dim: int, *, algorithm: str = "hnsw", ef_runtime: int = 20) -> None:
        self.backend = backend
        self.dim = dim
        self.algorithm = algorithm
        self.ef_runtime = ef_runtime
        # one key space per index kind, so switching kinds never mixes two indexes over one set of keys
        self.name = f"{backend.prefix}:sem:{dim}" if algorithm == "flat" else f"{backend.prefix}:sem{algorithm}:{dim}"
        self._schema: Any = None
        self._indexes: dict[int, Any] = {}  # id(client) -> AsyncSearchIndex whose index exists

    def key(self, scope: str, eid: str) -> str:
        return f"{self.name}:{{{scope}}}:{eid}"

    def _schema_obj(self) -> Any:
        if self._schema is None:
            from redisvl.schema import IndexSchema

            self._schema = IndexSchema.from_dict(
                {
                    "index": {"name": self.name, "prefix": f"{self.name}:", "storage_type": "hash"},
                    "fields": [
                        {"name": "scope", "type": "tag"},
                        {"name": "partition", "type": "tag"},
                        {
                            "name": "vector",
                            "type": "vector",
                            "attrs": {
                                "dims": self.dim,
                                "algorithm": self.algorithm,  # RediSearch 2.10 rejects SVS-VAMANA
                                "distance_metric": "cosine",
                                "datatype": "float32",
                                **({"m": 16, "ef_construction": 200, "ef_runtime": self.ef_runtime}
                                   if self.algorithm == "hnsw" else {}),
                            },
                        },
                    ],
                }
            )
        return self._schema

    async def _index(self, client: Any) -> Any:
        index = self._indexes.get(id(client))
        if index is None:
            from redis.exceptions import ResponseError
            from redisvl.index import AsyncSearchIndex

            index = AsyncSearchIndex(self._schema_obj(), redis_client=client)
            if not await index.exists():
                try:
                    await index.create(overwrite=False)
                except Exception as exc:  # another process created it first
                    cause = exc.__cause__ or exc
                    if not (isinstance(cause, ResponseError) and "exists" in str(cause).lower()):
                        if not await index.exists():
                            raise
            self._indexes[id(client)] = index
        return index

    async def search(
        self, vector: np.ndarray, *, scope: str, partition: str, threshold: float, k: int
    ) -> list[SemanticCandidate]:
        VectorQuery, Tag = _redisvl_query()
        q = _as_row(vector)
        if q.shape[0] != self.dim:
            return []
        query = VectorQuery(
            q.tobytes(),
            "vector",
            return_fields=["prompt", "entry"],
            filter_expression=(Tag("scope") == scope) & (Tag("partition") == partition),
            num_results=k,
        )

        async def run(client: Any) -> list[dict[str, Any]]:
            try:
                return await (await self._index(client)).query(query)
            except Exception as exc:
                self._indexes.pop(id(client), None)  # e.g. Redis restarted empty: check the index again
                if "no such index" not in str(exc).lower():
                    raise
            return await (await self._index(client)).query(query)  # created again (it indexes what exists)

        rows = await self.backend.call("semantic.search", run, [])
        out: list[SemanticCandidate] = []
        for row in rows:
            try:
                dist = float(row["vector_distance"])
                if dist > threshold + EPS:
                    continue
                out.append(SemanticCandidate(CachedAnswer.from_bytes(row["entry"]), row["prompt"], max(0.0, dist)))
            except (KeyError, ValueError, TypeError):
                continue  # an unreadable entry is a miss
        out.sort(key=lambda c: c.distance)
        return out

    async def store(
        self, vector: np.ndarray, *, scope: str, partition: str, prompt: str, answer: CachedAnswer, ttl: float
    ) -> bool:
        vec = _as_row(vector)
        if ttl <= 0 or vec.shape[0] != self.dim:
            return False
        key = self.key(scope, entry_id(scope, partition, prompt))
        ms = max(1, round(ttl * 1000))
        mapping = {
            "scope": scope,
            "partition": partition,
            "vector": vec.tobytes(),
            "prompt": prompt,
            "entry": answer.to_bytes(expires_at=time.time() + ttl),
        }

        async def run(client: Any) -> bool:
            try:
                await self._index(client)
                async with client.pipeline(transaction=True) as p:  # never an entry without its TTL
                    p.delete(key)
                    p.hset(key, mapping=mapping)
                    p.pexpire(key, ms)
                    await p.execute()
            except Exception:
                self._indexes.pop(id(client), None)
                raise
            return True

        return await self.backend.call("semantic.store", run, False)


__all__ = ["SemanticCandidate", "SemanticStore", "MemorySemantic", "RedisSemantic", "entry_id", "EPS"]
