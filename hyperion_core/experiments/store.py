"""Experiment records and where they live: memory (one process) or a Redis list per experiment."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import orjson

log = logging.getLogger("hyperion.experiments")

#: records kept per experiment (oldest dropped first)
MAX_RECORDS = 100_000


@dataclass(slots=True, frozen=True)
class Record:
    """One request of one variant. ``agreement``: shadow pairs only, the shadow's answer against the
    primary's (0..1; 1 = the same text up to case and spacing); ``exact``: byte-equal answers."""

    experiment: str
    variant: str  # "a" (primary / control) | "b" (shadow / split target)
    time: float  # epoch seconds (the gateway's clock)
    latency_ms: float
    ok: bool
    error_class: str | None = None
    ttft_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    deployment: str | None = None
    label: str | None = None  # "direct" when the deployment is marked ``direct: true``
    agreement: float | None = None
    exact: bool | None = None
    similarity: float | None = None  # cosine of the answers' embeddings (the cache's embedder)
    judge: float | None = None  # the judge route's score

    def dumps(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: bytes | str) -> Record:
        return cls(**orjson.loads(raw))


class MemoryStore:
    def __init__(self) -> None:
        self._rows: dict[str, deque[Record]] = {}
        self.off: set[str] = set()

    def append(self, rec: Record) -> None:
        rows = self._rows.get(rec.experiment)
        if rows is None:
            rows = self._rows[rec.experiment] = deque(maxlen=MAX_RECORDS)
        rows.append(rec)

    async def add(self, rec: Record) -> None:
        self.append(rec)

    async def records(self, name: str) -> list[Record]:
        return list(self._rows.get(name, ()))

    async def set_off(self, name: str, off: bool) -> None:
        (self.off.add if off else self.off.discard)(name)

    async def is_off(self, name: str) -> bool:
        return name in self.off

    async def aclose(self) -> None:
        return None


class RedisStore:
    """``{prefix}:exp:{name}`` a list of JSON records (RPUSH + LTRIM in one MULTI), ``{prefix}:exp:off`` the
    set of stopped experiments."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def _key(self, name: str) -> str:
        return f"{self.prefix}:exp:{{{name}}}"

    async def add(self, rec: Record) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.rpush(self._key(rec.experiment), rec.dumps())
        pipe.ltrim(self._key(rec.experiment), -MAX_RECORDS, -1)
        await pipe.execute()

    async def records(self, name: str) -> list[Record]:
        return [Record.loads(r) for r in await self.client.lrange(self._key(name), 0, -1)]

    async def set_off(self, name: str, off: bool) -> None:
        key = f"{self.prefix}:exp:off"
        await (self.client.sadd(key, name) if off else self.client.srem(key, name))

    async def is_off(self, name: str) -> bool:
        return bool(await self.client.sismember(f"{self.prefix}:exp:off", name))

    async def aclose(self) -> None:
        return None


class Writer:
    """Records written in the background: the request never waits for the store; a failed write is
    logged and counted (``failed``), never raised into a request."""

    def __init__(self, store: MemoryStore | RedisStore) -> None:
        self.store = store
        self.failed = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, rec: Record) -> None:
        if isinstance(self.store, MemoryStore):
            self.store.append(rec)
            return
        task = asyncio.ensure_future(self._write(rec))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, rec: Record) -> None:
        try:
            await self.store.add(rec)
        except Exception as exc:  # noqa: BLE001 - a record lost is counted, the request is unaffected
            self.failed += 1
            log.warning("experiment record not stored: %s: %s", type(exc).__name__, exc)

    async def flush(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


__all__ = ["MAX_RECORDS", "MemoryStore", "Record", "RedisStore", "Writer"]
