"""The exact tiers: L1 in process (LRU + TTL, bounded by entries and bytes) and L2 in Redis.

Also home of :class:`RedisBackend`, the one Redis connection the cache tiers and the coalescing
locks share: one pool per event loop (built once, lazily), every command bounded by short socket
timeouts, and every failure turned into a default value plus an ``on_error`` report — a Redis outage
makes the cache miss, it never fails a request. The outage is logged once, and Redis is left alone
for ``outage_backoff`` seconds after an error so a hung server does not slow every request.

Redis keys (``{...}`` is the Redis Cluster hash tag: one tenant's keys share a slot)::

    {prefix}:cache:{<scope hash>}:<exact key>     L2 entry (orjson CachedAnswer), PX = tier TTL
    {prefix}:flight:{<scope hash>}:<exact key>    coalescing lock (coalesce.py)
    {prefix}:sem:<dim>:{<scope hash>}:<entry id>  semantic entry, a hash (semantic.py)
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from ..clock import SYSTEM, MonotonicClock, SystemClock
from ..types import ChatResponse, ToolCall, Usage
from .config import CacheBackendConfig

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover - Python 3.10
    from async_timeout import timeout as _timeout

log = logging.getLogger("hyperion.cache")
T = TypeVar("T")
_PAYLOAD_VERSION = 1


#: the shared clock (``hyperion_core.clock``); the old names stay importable from here
_Monotonic = SystemClock


# -- the entry -------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class CachedAnswer:
    """One cached answer. ``created_at``/``expires_at`` are wall-clock seconds (``time.time()``),
    comparable across processes; ``cost`` is what the original call cost in USD."""

    content: str | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None
    usage: Usage
    model: str
    deployment: str
    cost: float
    created_at: float
    expires_at: float | None = None

    @classmethod
    def from_response(cls, resp: ChatResponse, *, created_at: float) -> CachedAnswer:
        return cls(
            content=resp.content,
            tool_calls=tuple(resp.tool_calls),
            finish_reason=resp.finish_reason,
            usage=resp.usage,
            model=resp.model,
            deployment=resp.deployment,
            cost=resp.cost,
            created_at=created_at,
        )

    def to_bytes(self, expires_at: float | None = None) -> bytes:
        u = self.usage
        return orjson.dumps(
            {
                "v": _PAYLOAD_VERSION,
                "c": self.content,
                "tc": [[t.id, t.name, t.arguments] for t in self.tool_calls],
                "f": self.finish_reason,
                "u": [u.prompt_tokens, u.completion_tokens, u.cached_prompt_tokens, u.cache_write_tokens,
                      u.reasoning_tokens],
                "m": self.model,
                "d": self.deployment,
                "$": self.cost,
                "t": self.created_at,
                "x": self.expires_at if expires_at is None else expires_at,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes | str) -> CachedAnswer:
        """Raises ``ValueError`` for a payload this version cannot read."""
        try:
            d = orjson.loads(data)
            if d.get("v") != _PAYLOAD_VERSION:
                raise ValueError(f"unknown cache payload version {d.get('v')!r}")
            return cls(
                content=d["c"],
                tool_calls=tuple(ToolCall(i, n, a) for i, n, a in d["tc"]),
                finish_reason=d["f"],
                usage=Usage(*d["u"]),
                model=d["m"],
                deployment=d["d"],
                cost=float(d["$"]),
                created_at=float(d["t"]),
                expires_at=d.get("x"),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"unreadable cache payload: {exc}") from None


# -- L1 --------------------------------------------------------------------------------------


class L1Cache:
    """In-process LRU with per-entry TTL, bounded by entry count and by bytes (the serialised size
    the caller passes). Every operation is O(1) amortised. Expired entries are dropped when read and
    are the first evicted (they sink to the LRU end as they stop being read)."""

    __slots__ = ("max_entries", "max_bytes", "clock", "bytes", "evictions", "_data")

    def __init__(self, max_entries: int, max_bytes: int, clock: MonotonicClock | None = None) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock or SYSTEM
        self.bytes = 0
        self.evictions = 0
        self._data: OrderedDict[str, tuple[float, int, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def get(self, key: str) -> Any | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] <= self.clock.now():
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return item[2]

    def set(self, key: str, value: Any, size: int, ttl: float) -> bool:
        """Store ``value`` for ``ttl`` seconds; False if it cannot fit (or ttl/bounds are 0)."""
        if ttl <= 0 or size > self.max_bytes or self.max_entries <= 0:
            return False
        if key in self._data:
            self._drop(key)
        self._data[key] = (self.clock.now() + ttl, size, value)
        self.bytes += size
        self._shrink()
        return True

    def delete(self, key: str) -> bool:
        if key in self._data:
            self._drop(key)
            return True
        return False

    def clear(self) -> None:
        self._data.clear()
        self.bytes = 0

    def resize(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._shrink()

    def _drop(self, key: str) -> None:
        self.bytes -= self._data.pop(key)[1]

    def _shrink(self) -> None:
        data = self._data
        while data and (len(data) > self.max_entries or self.bytes > self.max_bytes):
            _, (_, size, _) = data.popitem(last=False)
            self.bytes -= size
            self.evictions += 1


# -- Redis -----------------------------------------------------------------------------------

ErrorHook = Callable[[str, BaseException], None]


class RedisBackend:
    """The shared Redis connection of the cache (see the module docstring for the contract)."""

    def __init__(self, cfg: CacheBackendConfig, *, on_error: ErrorHook | None = None) -> None:
        if not cfg.redis_url:
            raise ValueError("RedisBackend needs CacheBackendConfig.redis_url")
        self.cfg = cfg
        self.prefix = cfg.key_prefix
        self.on_error = on_error
        self.errors = 0  # commands that failed
        self.skipped = 0  # commands not sent while Redis was backing off after an error
        self.down = False
        self._retry_at = 0.0
        self._op_timeout = 2 * cfg.socket_timeout
        # event loop -> (client, {lua source: registered script})
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, dict[str, Any]]] = (
            weakref.WeakKeyDictionary()
        )

    # -- keys
    def key(self, kind: str, scope_hash: str, key: str) -> str:
        return f"{self.prefix}:{kind}:{{{scope_hash}}}:{key}"

    # -- the client: one pool per event loop, built once
    def client(self) -> Any:
        return self._conn()[0]

    def _conn(self) -> tuple[Any, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        conn = self._clients.get(loop)
        if conn is None:
            import redis.asyncio as aredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import ConnectionError as RedisConnectionError

            t = self.cfg.socket_timeout
            # A pooled connection the server closed (a restart, an idle timeout) fails its next command:
            # retry such a command once, on a fresh connection; a timeout is never retried (the
            # operation is bounded by socket_timeout, and a hung server then backs off)
            retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
            pool = aredis.BlockingConnectionPool.from_url(
                self.cfg.redis_url,
                max_connections=self.cfg.max_connections,
                timeout=t,
                socket_timeout=t,
                socket_connect_timeout=t,
                retry=retry,
            )
            client = aredis.Redis(connection_pool=pool, retry=retry)
            conn = self._clients[loop] = (client, {})
        return conn

    def script(self, source: str) -> Any:
        """A Lua script registered on this loop's client (EVALSHA, falling back to EVAL)."""
        client, scripts = self._conn()
        s = scripts.get(source)
        if s is None:
            s = scripts[source] = client.register_script(source)
        return s

    async def call(self, op: str, fn: Callable[[Any], Awaitable[T]], default: T) -> T:
        """Run ``fn(client)`` bounded in time; on any failure report it and return ``default``."""
        if self.down and time.monotonic() < self._retry_at:
            self.skipped += 1
            return default
        try:
            async with _timeout(self._op_timeout):
                result = await fn(self.client())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any backend failure degrades to a miss
            self._failed(op, exc)
            return default
        if self.down:
            self.down = False
            log.warning("cache: Redis is back (%s); shared tiers resumed", self._where())
        return result

    def _failed(self, op: str, exc: BaseException) -> None:
        self.errors += 1
        self._retry_at = time.monotonic() + self.cfg.outage_backoff
        if not self.down:
            self.down = True
            log.warning(
                "cache: Redis unavailable (%s) during %s: %s: %s; serving without the shared tiers "
                "until it is back (logged once per outage)",
                self._where(), op, type(exc).__name__, exc,
            )
        if self.on_error is not None:
            self.on_error(op, exc)

    def _where(self) -> str:
        url = self.cfg.redis_url or ""
        return url.rpartition("@")[2]  # never log credentials

    async def aclose(self) -> None:
        clients = list(self._clients.items())
        self._clients.clear()
        loop = asyncio.get_running_loop()
        for owner, (client, _) in clients:
            if owner is loop:
                try:
                    await client.aclose(close_connection_pool=True)
                except Exception:  # noqa: BLE001 - closing a dead connection
                    pass


class RedisExact:
    """The L2 tier: GET/SET of serialised :class:`CachedAnswer` with a Redis-side TTL (PX)."""

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend

    async def get(self, key: str) -> bytes | None:
        return await self.backend.call("l2.get", lambda c: c.get(key), None)

    async def set(self, key: str, payload: bytes, ttl: float) -> bool:
        ms = max(1, round(ttl * 1000))
        return bool(await self.backend.call("l2.set", lambda c: c.set(key, payload, px=ms), False))

    async def delete(self, key: str) -> bool:
        return bool(await self.backend.call("l2.delete", lambda c: c.delete(key), 0))


__all__ = ["CachedAnswer", "L1Cache", "RedisBackend", "RedisExact", "MonotonicClock"]
