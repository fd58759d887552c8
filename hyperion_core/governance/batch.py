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

from ..errors import GovernanceStoreError

if TYPE_CHECKING:
    from ._lua import Call, Scripts

#: most submissions per pipeline (a larger tick is split)
MAX_BATCH = 256


class AutoPipeline:
    __slots__ = ("scripts", "_queues", "round_trips", "submitted", "_errors")

    def __init__(self, scripts: Scripts) -> None:
        from redis.exceptions import NoScriptError, RedisError

        self.scripts = scripts
        self._queues: dict[asyncio.AbstractEventLoop, list[tuple[Sequence[Call], Sequence[str], asyncio.Future[Any]]]] = {}
        self._errors = (NoScriptError, RedisError)
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
        NoScriptError, RedisError = self._errors  # noqa: N806
        scripts = self.scripts
        pipe = scripts.client.pipeline(transaction=False)
        for calls, reads, _ in batch:
            for key in reads:
                pipe.get(key)
            for name, keys, args in calls:
                pipe.evalsha(scripts.sha(name), len(keys), *keys, *args)
        self.round_trips += 1
        self.submitted += len(batch)
        try:
            out = await pipe.execute(raise_on_error=False)
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
