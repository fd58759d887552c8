"""The one interface every audit sink implements, and a base for sinks whose I/O blocks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar, runtime_checkable

from ..chain import Verifier, VerifyReport
from ..query import AuditQuery
from ..record import AuditError, AuditEvent

T = TypeVar("T")


@runtime_checkable
class AuditSink(Protocol):
    """Where audit events are kept, hash-chained in write order.

    ``write`` appends a batch atomically and in order (all or nothing) or raises; the log spools and
    retries on any exception. It may return the head ``(seq, hash)`` after the batch (the log then
    anchors it, see :mod:`..anchor`). ``verify`` may take a configured
    :class:`~hyperion_core.audit.chain.Verifier` (pins, a start checkpoint, an expected
    head). ``query`` returns matching events newest first; ``tail(n)`` the newest ``n`` oldest first
    (as ``tail`` prints them); ``verify`` checks the whole chain.
    """

    async def write(self, events: Sequence[AuditEvent]) -> tuple[int, str] | None: ...

    async def query(self, filters: AuditQuery) -> list[AuditEvent]: ...

    async def tail(self, n: int = 20) -> list[AuditEvent]: ...

    async def verify(self, verifier: Verifier | None = None) -> VerifyReport: ...

    async def aclose(self) -> None: ...


class ThreadedSink:
    """Runs every blocking operation on one dedicated worker thread, in submission order: the event
    loop never blocks, and the connection or file handle is only ever used by that thread."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._closed = False

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise AuditError(f"{self!r} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _close(self) -> None:  # runs on the worker thread
        pass

    # the AuditSink interface over the subclass's blocking ``_write`` / ``_query`` / ``_tail`` / ``_verify``
    async def write(self, events: Sequence[AuditEvent]) -> tuple[int, str] | None:
        if events:
            return await self._run(self._write, list(events))  # type: ignore[attr-defined]
        return None

    async def query(self, filters: AuditQuery) -> list[AuditEvent]:
        return await self._run(self._query, filters)  # type: ignore[attr-defined]

    async def tail(self, n: int = 20) -> list[AuditEvent]:
        return await self._run(self._tail, n)  # type: ignore[attr-defined]

    async def verify(self, verifier: Verifier | None = None) -> VerifyReport:
        return await self._run(self._verify, verifier or Verifier())  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        if self._closed:
            return
        await self._run(self._close)
        self._closed = True
        self._executor.shutdown(wait=False)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = ["AuditSink", "ThreadedSink"]
