"""A Redis Streams sink: one ``XADD`` per event to a stream shared by every process and replica.

Chaining scheme — optimistic compare-and-append in one Lua script:

1. the client computes each event's canonical JSON and its sha256 chain hash *from the head it
   believes current* (``seq``, ``hash``, cached from its last write or read with ``HMGET``);
2. the script (atomic: Redis runs nothing else meanwhile) reads the real head; if it is not the one
   the client chained from, it appends nothing and returns the real head, and the client re-chains
   from it and tries again; if it is, it ``XADD``\\ s every row (``seq``, ``prev``, ``hash``, ``event``)
   and moves the head, all in the same atomic step.

So every row's ``prev`` is exactly the hash of the row before it in the stream, whatever the number
of writers, and hashes are real sha256 (Redis Lua has only ``sha1hex``; a script-side sha256 in Lua
would block the server). A writer that loses a race pays one more round trip. A call retried after
its reply was lost finds the head already equal to its last hash and reports success instead of
appending twice (a duplicate is possible only if, in that window, another writer also appended).

Keys share a hash tag (``{hyperion}:audit`` and ``{hyperion}:audit:head``) so Redis Cluster keeps
them on one slot. ``maxlen`` caps the stream (approximate trimming); ``verify`` then takes the
oldest remaining row as the anchor, and cannot tell trimming from deleting the oldest rows.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson

from ..chain import GENESIS, ChainRow, Verifier, VerifyReport, canonical, chain_rows
from ..query import AuditQuery
from ..record import AuditError, AuditEvent

_APPEND = """
local head = redis.call('HMGET', KEYS[2], 'seq', 'hash')
local seq = tonumber(head[1]) or 0
local prev = head[2] or ARGV[4]
if #ARGV > 4 and prev == ARGV[#ARGV - 1] then
  return {2, seq, prev}
end
if seq ~= tonumber(ARGV[1]) or prev ~= ARGV[2] then
  return {0, seq, prev}
end
local maxlen = tonumber(ARGV[3])
for i = 5, #ARGV, 2 do
  seq = seq + 1
  if maxlen > 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'seq', seq, 'prev', prev, 'hash', ARGV[i], 'event', ARGV[i + 1])
  else
    redis.call('XADD', KEYS[1], '*', 'seq', seq, 'prev', prev, 'hash', ARGV[i], 'event', ARGV[i + 1])
  end
  prev = ARGV[i]
end
redis.call('HSET', KEYS[2], 'seq', seq, 'hash', prev)
return {1, seq, prev}
"""

_PAGE = 1000


class RedisStreamsSink:
    """Audit rows in the stream ``stream`` (head in ``<stream>:head``) of the Redis at ``url``.

    Timeouts are seconds. Pass ``client`` to reuse a ``redis.asyncio.Redis`` (it must then be used
    from one event loop only); otherwise the sink builds one client per event loop it runs on.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        stream: str = "{hyperion}:audit",
        maxlen: int | None = None,
        client: Any = None,
        socket_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        max_conflicts: int = 1000,
    ) -> None:
        self.url = url
        self.stream = stream
        self.head_key = f"{stream}:head"
        self.maxlen = maxlen
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self.max_conflicts = max_conflicts
        self._given = client
        # one client (and script handle) per event loop: redis.asyncio connections belong to a loop
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._head: tuple[int, str] | None = None  # the head after this sink's last write
        #: appends that lost a race to another writer and were re-chained (a contention gauge)
        self.conflicts = 0

    def __repr__(self) -> str:
        return f"RedisStreamsSink('{_safe_url(self.url)}', stream='{self.stream}')"

    def _redis(self) -> Any:
        return self._client_and_script()[0]

    def _client_and_script(self) -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        pair = self._clients.get(loop)
        if pair is None:
            client = self._given
            if client is None:
                from redis.asyncio import Redis
                from redis.asyncio.retry import Retry
                from redis.backoff import NoBackoff

                # one quick retry covers a pooled connection that went stale; the audit log does the backoff
                client = Redis.from_url(
                    self.url,
                    socket_timeout=self.socket_timeout,
                    socket_connect_timeout=self.connect_timeout,
                    retry=Retry(NoBackoff(), 1),
                )
            pair = self._clients[loop] = (client, client.register_script(_APPEND))
        return pair

    async def _read_head(self, r: Any) -> tuple[int, str]:
        seq, h = await r.hmget(self.head_key, "seq", "hash")
        return (int(seq), h.decode()) if seq is not None and h is not None else (0, GENESIS)

    async def write(self, events: Sequence[AuditEvent]) -> tuple[int, str] | None:
        if not events:
            return None
        r, script = self._client_and_script()
        bodies = [canonical(e) for e in events]
        head = self._head or await self._read_head(r)
        for _ in range(self.max_conflicts):
            rows = chain_rows(bodies, *head)
            args: list[Any] = [head[0], head[1], self.maxlen or 0, GENESIS]
            for row in rows:
                args += (row.hash, row.body)
            status, seq, h = await script(keys=[self.stream, self.head_key], args=args, client=r)
            head = (int(seq), h.decode() if isinstance(h, bytes) else str(h))
            self._head = head
            if status in (1, 2):
                return head
            self.conflicts += 1
        raise AuditError(f"{self!r}: gave up appending after {self.max_conflicts} conflicting writers")

    async def _entries(self, reverse: bool, after: str | None = None) -> AsyncIterator[tuple[str, dict[bytes, bytes]]]:
        r = self._redis()
        bound = ("+" if reverse else "-") if after is None else "(" + after
        while True:
            if reverse:
                page = await r.xrevrange(self.stream, max=bound, min="-", count=_PAGE)
            else:
                page = await r.xrange(self.stream, min=bound, max="+", count=_PAGE)
            for eid, fields in page:
                yield eid.decode(), fields
            if len(page) < _PAGE:
                return
            bound = "(" + page[-1][0].decode()

    async def query(self, filters: AuditQuery) -> list[AuditEvent]:
        out: list[AuditEvent] = []
        if filters.limit == 0:
            return out
        async for _, fields in self._entries(reverse=True):
            ev = AuditEvent.from_dict(orjson.loads(fields[b"event"]))
            if filters.matches(ev):
                out.append(ev)
                if filters.limit is not None and len(out) >= filters.limit:
                    break
        return out

    async def tail(self, n: int = 20) -> list[AuditEvent]:
        if n <= 0:
            return []
        page = await self._redis().xrevrange(self.stream, max="+", min="-", count=n)
        return [AuditEvent.from_dict(orjson.loads(f[b"event"])) for _, f in reversed(page)]

    async def verify(self, verifier: Verifier | None = None) -> VerifyReport:
        r = self._redis()
        v = verifier or Verifier()
        v.allow_trimmed = v.allow_trimmed or self.maxlen is not None
        i, last_id = 0, None
        for _ in range(100):
            async for eid, f in self._entries(reverse=False, after=last_id):
                try:
                    row = ChainRow(int(f[b"seq"]), f[b"prev"].decode(), f[b"hash"].decode(), f[b"event"],
                                   ref=f"entry {eid}")
                except (KeyError, ValueError) as exc:
                    return v.bad(i, f"row {i} (entry {eid}): not a valid audit row (bad field {exc}); it was edited")
                if not v.feed(row):
                    return v.finish()
                i, last_id = i + 1, eid
            seq, h = await r.hmget(self.head_key, "seq", "hash")
            head = (int(seq), h.decode()) if seq is not None and h is not None else None
            # rows appended by a writer while we read: read them too, then look at the head again
            if head is None or head[0] <= v.last_seq or not await r.xrange(self.stream, min="(" + (last_id or "0-0"), count=1):
                break
        if i and head is None:
            return v.bad(i, f"the head record ({self.head_key}) is missing: it was deleted")
        return v.finish(head)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.items()), weakref.WeakKeyDictionary()
        if self._given is not None:
            return
        running = asyncio.get_running_loop()
        for loop, (client, _) in clients:
            if loop is running:
                await client.aclose()
            elif loop.is_running():
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(client.aclose(), loop))
            # a client of a closed loop has nothing left to close

    async def __aenter__(self) -> RedisStreamsSink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _safe_url(url: str) -> str:
    """The URL without a password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


__all__ = ["RedisStreamsSink"]
