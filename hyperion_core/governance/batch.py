"""Automatic pipelining of governance round trips across requests.

Every request's admission (rate limits + reservation + the warm key's record) and settlement is one
Redis round trip already (``Scripts.run_many``). Under concurrency, many requests make that trip in the
same event-loop tick: :class:`AutoPipeline` collects what is submitted during one tick and sends it as
one pipeline of ``EVALSHA`` / ``GET`` commands, then hands each submitter its own slice of the replies.
Each script stays atomic on its own exactly as before (a pipeline is not a transaction and never was
one here), so the cross-process guarantees are unchanged; only the number of round trips (and of
pooled connections in use) drops. A command's error fails its submitter only; a connection error
fails every submitter of that pipeline with the same :class:`GovernanceStoreError` the unbatched path
raises. A submitter cancelled while waiting leaves its commands to run (they were, or will be, sent;
reservations expire as they always do).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..deadline import timeout as _deadline
from ..errors import GovernanceStoreError
from ..redis_client import BOUNDED

if TYPE_CHECKING:
    from ._lua import Call, Scripts

#: most submissions per pipeline (a larger tick is split)
MAX_BATCH = 256


class AutoPipeline:
    __slots__ = ("scripts", "_queues", "round_trips", "submitted", "_errors", "_timeout")

    def __init__(self, scripts: Scripts) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import NoScriptError, RedisError, ResponseError

        self.scripts = scripts
        self._queues: dict[asyncio.AbstractEventLoop, list[tuple[Sequence[Call], Sequence[str], asyncio.Future[Any]]]] = {}
        self._errors = (NoScriptError, RedisError, RedisConnectionError, ResponseError)
        #: one deadline over a whole pipeline (sending it and reading every reply), not one per reply
        kwargs = getattr(getattr(scripts.client, "connection_pool", None), "connection_kwargs", {})
        self._timeout: float | None = kwargs.get("socket_timeout")
        #: pipelines sent, and submissions they carried (``submitted / round_trips``: the batching)
        self.round_trips = 0
        self.submitted = 0

    async def submit(self, calls: Sequence[Call], reads: Sequence[str] = ()) -> list[Any]:
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = []
        if not queue:
            loop.call_soon(self._flush, loop)
        fut: asyncio.Future[Any] = loop.create_future()
        queue.append((calls, reads, fut))
        return await fut  # type: ignore[no-any-return]

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        queue = self._queues.pop(loop, [])
        for i in range(0, len(queue), MAX_BATCH):
            loop.create_task(self._send(queue[i : i + MAX_BATCH]))

    async def _send(self, batch: list[tuple[Sequence[Call], Sequence[str], asyncio.Future[Any]]]) -> None:
        RedisError = self._errors[1]  # noqa: N806
        scripts = self.scripts
        cmds: list[tuple[Any, ...]] = []
        for calls, reads, _ in batch:
            for key in reads:
                cmds.append((b"GET", key))
            for name, keys, args in calls:
                cmds.append((b"EVALSHA", scripts.sha(name), len(keys), *keys, *args))
        self.round_trips += 1
        self.submitted += len(batch)
        try:
            if self._timeout:
                BOUNDED.set(True)  # this task's own context: its replies need no deadline each
                try:
                    async with _deadline(self._timeout):
                        out = await self._exchange(cmds)
                finally:
                    BOUNDED.set(False)
            else:
                out = await self._exchange(cmds)
        except (TimeoutError, asyncio.TimeoutError):
            err = GovernanceStoreError(f"governance store: no answer from Redis within {self._timeout:g}s")
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        except RedisError as exc:
            err = GovernanceStoreError(f"governance store: pipeline failed: {exc}")
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        except BaseException as exc:  # cancelled while sending (shutdown): nobody waits forever
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(GovernanceStoreError(f"governance store: pipeline interrupted: {exc!r}"))
            raise
        await self._deliver(batch, out)

    async def _exchange(self, cmds: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``cmds`` in one write on one pooled connection and read their replies in order (a
        command's error is its reply). What redis-py's ``Pipeline`` does for this, without its per-command
        bookkeeping. A pooled connection the server closed (a restart, ``CLIENT KILL``) is retried once
        on a fresh one, as the client's retry policy does: every script here is safe to repeat."""
        _, _, RedisConnectionError, ResponseError = self._errors  # noqa: N806
        pool = self.scripts.client.connection_pool
        for attempt in (0, 1):
            conn = await pool.get_connection()
            try:
                await conn.send_packed_command(conn.pack_commands(cmds), check_health=False)
                out: list[Any] = []
                for _ in cmds:
                    try:
                        out.append(await conn.read_response())
                    except ResponseError as exc:
                        out.append(exc)
                return out
            except RedisConnectionError:
                await conn.disconnect()
                if attempt:
                    raise
            except BaseException:
                await conn.disconnect()  # replies may be left unread: never hand this connection out again
                raise
            finally:
                await pool.release(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _deliver(
        self, batch: list[tuple[Sequence[Call], Sequence[str], asyncio.Future[Any]]], out: list[Any]
    ) -> None:
        NoScriptError = self._errors[0]  # noqa: N806
        scripts = self.scripts
        i = 0
        for calls, reads, fut in batch:
            n = len(reads)
            part = out[i : i + n + len(calls)]
            i += n + len(calls)
            try:
                for j, r in enumerate(part):
                    if isinstance(r, NoScriptError):  # the server lost its scripts (a flush, a restart)
                        part[j] = await scripts.run(*calls[j - n])
                    elif isinstance(r, Exception):
                        what = f"GET {reads[j]}" if j < n else calls[j - n][0]
                        raise GovernanceStoreError(f"governance store: {what} failed: {r}") from r
            except GovernanceStoreError as exc:
                if not fut.done():
                    fut.set_exception(exc)
                continue
            if not fut.done():
                fut.set_result(part)


__all__ = ["AutoPipeline", "MAX_BATCH"]
