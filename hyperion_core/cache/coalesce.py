"""Single-flight: N identical concurrent misses make one upstream call.

::

    async with flights.flight(key, ...) as f:
        if not f.leader:
            value = await f.wait()      # the leader's answer, or None: compute it yourself
            if value is not None:
                return value
        value = await compute()         # whole call, or a stream collected to its end
        await cache.store(...)          # before leaving the block: remote followers poll the cache
        f.publish(value)                # hands it to the followers in this process
        return value

In one process the first flight for a key is the local leader; later flights await its future
(``publish``), and get None if it leaves without publishing (error, cancellation, a partial answer):
each then calls upstream itself, so one failure is never shared and nothing waits forever.

Across processes (a Redis backend and a ``fetch`` that reads the shared cache) the local leader
also takes a Redis lock ``SET lock token PX lock_ttl`` (a Lua script that also accepts the "done"
marker). The lock holder is the global leader; it renews the lock every ``lock_ttl / 3`` while it
lives and, when it leaves the block, replaces it (compare-and-set on its token) with a short-lived
"done" marker. Other processes' local leaders poll: ``fetch()`` (the leader stores before leaving),
then the lock. "done" without a cached answer means "compute it yourself" (the answer was not
cacheable); no lock at all means the leader died (its lock lapsed within ``lock_ttl``): the first
follower to take the lock becomes the leader, the others keep waiting on it. A follower gives up
after ``wait_timeout`` seconds and computes itself. Any Redis failure degrades to "compute it
yourself" — coalescing never blocks or fails a request.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

from .exact import RedisBackend, _timeout

T = TypeVar("T")

DONE = b"done"

#: KEYS[1] lock; ARGV token, ttl ms, done marker -> 1 when taken
_ACQUIRE = """
local v = redis.call('get', KEYS[1])
if v == false or v == ARGV[3] then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
#: KEYS[1] lock; ARGV token, ttl ms -> 1 while still ours
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
#: KEYS[1] lock; ARGV token, done marker, done ttl ms -> 1 when released (compare-and-set)
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


class _Local:
    __slots__ = ("future", "followers")

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future
        self.followers = 0


class Flight(Generic[T]):
    """One request's place in a flight. ``leader``: this request should compute the answer."""

    __slots__ = ("leader", "role", "_flights", "_local", "_lock_key", "_token", "_fetch", "_timeout",
                 "_poll", "_lock_ttl", "_renewer")

    def __init__(self, flights: Flights[T], local: _Local, role: str, *, lock_key: str | None = None,
                 fetch: Callable[[], Awaitable[T | None]] | None = None, timeout: float = 60.0,
                 poll: float = 0.02, lock_ttl: float = 5.0) -> None:
        #: "leader" (computes; others wait on it), "local" (waits on this process's leader),
        #: "remote" (this process's leader, waiting on another process's)
        self.role = role
        self.leader = role == "leader"
        self._flights = flights
        self._local = local
        self._lock_key = lock_key
        self._token: bytes | None = None
        self._fetch = fetch
        self._timeout = timeout
        self._poll = poll
        self._lock_ttl = lock_ttl
        self._renewer: asyncio.Task[None] | None = None

    @property
    def holds_lock(self) -> bool:
        return self._token is not None

    async def wait(self) -> T | None:
        """The leader's answer, or None: then compute it yourself (``leader`` says whether others
        now wait on you). Returns None at once for a leader."""
        if self.role == "local":
            self._local.followers += 1
            try:
                async with _timeout(self._timeout):
                    return await asyncio.shield(self._local.future)
            except (TimeoutError, asyncio.TimeoutError):
                return None
            finally:
                self._local.followers -= 1
        if self.role == "remote":
            value = await self._wait_remote()
            if value is not None:
                self.publish(value)
            return value
        return None

    def publish(self, value: T) -> None:
        """Give ``value`` to this process's followers (a no-op unless this flight leads locally)."""
        if self.role in ("leader", "remote") and not self._local.future.done():
            self._local.future.set_result(value)

    # -- cross-process
    async def _wait_remote(self) -> T | None:
        assert self._fetch is not None and self._lock_key is not None
        backend = self._flights.redis
        assert backend is not None
        deadline = time.monotonic() + self._timeout
        while True:
            value = await self._fetch()
            if value is not None:
                return value
            state = await backend.call("flight.peek", lambda c: c.get(self._lock_key), b"error")
            if state == b"error":
                return None
            if state == DONE:  # the leader finished; its answer, if cacheable, is stored by now
                return await self._fetch()
            if state is None:  # no leader (it died, or finished long ago): try to become it
                taken = await self._acquire()
                if taken is None:
                    return None
                if taken:
                    value = await self._fetch()  # double check: stored just before we took over?
                    if value is not None:
                        await self._release()
                        return value
                    self.role, self.leader = "leader", True
                    return None
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(self._poll)

    async def _acquire(self) -> bool | None:
        """True: we hold the lock; False: someone else does; None: Redis failed."""
        backend = self._flights.redis
        assert backend is not None and self._lock_key is not None
        token = os.urandom(12).hex().encode()
        ms = max(1, round(self._lock_ttl * 1000))
        got = await backend.call(
            "flight.acquire", lambda c: backend.script(_ACQUIRE)(keys=[self._lock_key], args=[token, ms, DONE]), -1
        )
        if got == -1:
            return None
        if got:
            self._token = token
            self._renewer = asyncio.ensure_future(self._renew())
            return True
        return False

    async def _renew(self) -> None:
        backend = self._flights.redis
        assert backend is not None
        ms = max(1, round(self._lock_ttl * 1000))
        every = self._lock_ttl / 3
        while self._token is not None:
            await asyncio.sleep(every)
            token = self._token
            if token is None:
                return
            ok = await backend.call(
                "flight.renew", lambda c, t=token: backend.script(_RENEW)(keys=[self._lock_key], args=[t, ms]), 0
            )
            if not ok:
                return  # lost (or Redis failed): the lock lapses, a follower may take over

    async def _release(self) -> None:
        token, self._token = self._token, None
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None
        if token is None:
            return
        backend = self._flights.redis
        assert backend is not None
        done_ms = max(1000, round(self._poll * 50 * 1000))
        await backend.call(
            "flight.release",
            lambda c: backend.script(_RELEASE)(keys=[self._lock_key], args=[token, DONE, done_ms]),
            0,
        )


class Flights(Generic[T]):
    """The flights of one process (one per cache); ``redis`` enables the cross-process protocol."""

    def __init__(self, redis: RedisBackend | None = None) -> None:
        self.redis = redis
        # (event loop, key) -> the local leader's future: a gateway driven from two loops (its sync
        # twins' portal and the caller's) never awaits a future of the other loop
        self._local: dict[tuple[asyncio.AbstractEventLoop, str], _Local] = {}

    @property
    def in_flight(self) -> int:
        return len(self._local)

    def waiting(self, key: str) -> int:
        """Followers in this process currently waiting on ``key``'s leader."""
        local = self._local.get((asyncio.get_running_loop(), key))
        return local.followers if local is not None else 0

    @asynccontextmanager
    async def flight(
        self,
        key: str,
        *,
        lock_key: str | None = None,
        fetch: Callable[[], Awaitable[T | None]] | None = None,
        lock_ttl: float = 5.0,
        wait_timeout: float = 60.0,
        poll_interval: float = 0.02,
    ) -> AsyncIterator[Flight[T]]:
        """Join the flight for ``key`` (seconds for every duration). Cross-process when this
        object has a Redis backend and both ``lock_key`` and ``fetch`` are given."""
        loop = asyncio.get_running_loop()
        slot = (loop, key)
        local = self._local.get(slot)
        if local is not None and not local.future.done():
            yield Flight(self, local, "local", timeout=wait_timeout)
            return
        local = _Local(loop.create_future())
        self._local[slot] = local
        opts = dict(lock_key=lock_key, fetch=fetch, timeout=wait_timeout, poll=poll_interval, lock_ttl=lock_ttl)
        flight: Flight[T] = Flight(self, local, "leader", **opts)  # type: ignore[arg-type]
        try:
            if self.redis is not None and lock_key is not None and fetch is not None:
                taken = await flight._acquire()
                if taken is False:
                    flight.role, flight.leader = "remote", False
                elif taken:
                    value = await fetch()  # double check: a leader may have stored it just now
                    if value is not None:
                        await flight._release()
                        flight.role, flight.leader = "local", False
                        local.future.set_result(value)
            yield flight
        finally:
            if flight._token is not None:
                await flight._release()
            if not local.future.done():
                local.future.set_result(None)
            if self._local.get(slot) is local:
                del self._local[slot]


__all__ = ["Flight", "Flights", "DONE"]
