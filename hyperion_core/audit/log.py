"""The audit log: ``emit`` hands an event over without waiting; a background writer batches events
to the sink, and spools them locally while the sink is down.

Order and delivery:

* events reach the sink in ``emit`` order (per log); the spool always holds events older than the
  in-memory buffer, and is flushed first;
* when a write fails, that batch and everything buffered behind it move to the spool; the writer
  retries the spool with exponential backoff (``retry_base`` doubling up to ``retry_max`` seconds)
  and, once the sink takes a write again, flushes the spool in order, then carries on;
* when the spool is full (``spool_max_events``), new events are dropped — never silently: the
  ``dropped`` counter in :attr:`AuditLog.metrics` counts them and the ``hyperion.audit`` logger
  says so at ERROR level once per outage (a warning marks the start and the end of each outage).

``emit`` is safe from any thread. The writer is created lazily on the running event loop, or — for
callers with no loop — on a private background loop. At interpreter exit, events still in memory go
to a file spool (or are reported at ERROR level); ``aclose`` is the orderly way out.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import random
import threading
import time
import weakref
from collections import deque
from pathlib import Path
from typing import Any

from .._portal import Portal
from .anchor import Checkpoint, key_bytes, write_anchor
from .chain import VerifyReport
from .query import AuditQuery
from .record import AuditError, AuditEvent
from .scrub import scrub
from .sinks.base import AuditSink
from .spool import FileSpool, MemorySpool

log = logging.getLogger("hyperion.audit")


class _Flush:
    """A marker in the buffer: resolved once everything emitted before it has left memory."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[bool] = concurrent.futures.Future()


class AuditLog:
    """Hands audit events to ``sink`` without blocking the request path.

    ``spool_path``: a JSONL file for events the sink could not take (``{pid}`` is replaced by the
    process id, and spools that dead processes left next to it are adopted and delivered first);
    None keeps them in memory. ``spool_max_events``: its capacity. ``store_content``:
    whether builders should keep prompts and answers (read by the gateway). ``batch_size``: most
    events per sink write. ``max_pending``: most events waiting in memory for the writer. Times are
    seconds: ``retry_base``/``retry_max`` bound the backoff, ``write_timeout`` one sink write.
    ``linger``: seconds the writer lets events gather after the first one arrives before it writes
    (one sink write per batch rather than per event under load; a flush or close never waits for it).
    ``anchor_path``: a file outside the store where the writer keeps a checkpoint of the head, every
    ``checkpoint_every`` events or ``checkpoint_interval`` seconds (checked at each write) and at
    close, HMAC-signed with ``checkpoint_key`` when given (see :mod:`.anchor`; the key never reaches
    logs, events or the store).
    """

    def __init__(
        self,
        sink: AuditSink,
        *,
        spool_path: str | Path | None = None,
        spool_max_events: int = 10_000,
        store_content: bool = False,
        batch_size: int = 500,
        max_pending: int = 100_000,
        retry_base: float = 0.1,
        retry_max: float = 5.0,
        write_timeout: float | None = 30.0,
        anchor_path: str | Path | None = None,
        checkpoint_key: Any = None,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 60.0,
        linger: float = 0.005,
    ) -> None:
        if batch_size < 1:
            raise AuditError(f"batch_size: must be >= 1, got {batch_size}")
        if not 0 < retry_base <= retry_max:
            raise AuditError(f"retry_base/retry_max: need 0 < retry_base <= retry_max, got {retry_base}/{retry_max}")
        self.sink = sink
        self.store_content = store_content
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.write_timeout = write_timeout
        if linger < 0:
            raise AuditError(f"linger: must be >= 0, got {linger}")
        self.linger = linger
        if checkpoint_every < 1 or checkpoint_interval <= 0:
            raise AuditError(f"checkpoint_every/checkpoint_interval: need >= 1 and > 0, got {checkpoint_every}/"
                             f"{checkpoint_interval}")
        self.anchor_path = Path(anchor_path) if anchor_path is not None else None
        self._key = key_bytes(checkpoint_key)
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self._head: tuple[int, str] | None = None  # the sink's head after our last write
        self._unanchored = 0  # events written since the last checkpoint
        self._anchored_at = time.monotonic()
        self.spool: FileSpool | MemorySpool = (
            FileSpool(spool_path, spool_max_events) if spool_path is not None else MemorySpool(spool_max_events)
        )
        #: spools of dead processes (``{pid}`` paths) this log took over; delivered before its own
        self._adopted: list[FileSpool] = self.spool.adopt_orphans() if isinstance(self.spool, FileSpool) else []
        self._buf: deque[AuditEvent | _Flush] = deque()
        self._lock = threading.Lock()
        self._counts = {"emitted": 0, "written": 0, "spooled_total": 0, "dropped": 0, "sink_errors": 0,
                        "checkpoints": 0, "checkpoint_errors": 0}
        self._last_error: str | None = None
        # writer binding (guarded by _lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._urgent: asyncio.Event | None = None
        self._gen = 0
        self._task: Any = None
        self._done: concurrent.futures.Future[None] | None = None
        self._portal: Portal | None = None
        # outage state (writer only)
        self._outage_since: float | None = None
        self._backoff = 0.0
        self._retry_at = 0.0
        self._drop_logged = False
        self._inflight = 0
        self._closing = self._closed = False
        ref = weakref.ref(self)
        self._atexit = lambda: _at_exit(ref)
        atexit.register(self._atexit)
        if self._spooled() and _running_loop() is not None:
            self._kick()  # events left by an earlier run: flush them now, not at the first emit

    def __repr__(self) -> str:
        return f"AuditLog({self.sink!r}, {self.spool!r})"

    # -- hand-off ----------------------------------------------------------------------------

    def emit(self, event: AuditEvent) -> None:
        """Queue one event for the sink. Never blocks, never raises; safe from any thread."""
        if self._closed:
            self._drop([event], "the audit log is closed")
            return
        if len(self._buf) >= self.max_pending:
            self._drop([event], f"{len(self._buf)} events are already waiting for the sink")
            return
        self._buf.append(event)
        with self._lock:
            self._counts["emitted"] += 1
        try:
            self._kick()
        except RuntimeError as exc:  # e.g. no loop can be started during interpreter shutdown
            log.error("audit: cannot start the writer (%s); %d event(s) wait in memory", exc, len(self._buf))

    async def aflush(self, timeout: float | None = None) -> bool:
        """Wait until every event emitted before this call has left memory, trying the sink once
        more right away if it was down. True when all of them (and the spool) are in the sink;
        False when some wait in the spool because the sink is still down."""
        if self._closed:
            return not self._buf and not self._spooled()
        marker = _Flush()
        self._buf.append(marker)
        self._kick(urgent=True)
        return await asyncio.wait_for(asyncio.wrap_future(marker.future), timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """:meth:`aflush` for sync callers (not from inside the writer's own event loop)."""
        if self._loop is not None and _running_loop() is self._loop:
            raise AuditError("AuditLog.flush() was called inside its event loop; use 'await log.aflush()'")
        if self._closed:
            return not self._buf and not self._spooled()
        marker = _Flush()
        self._buf.append(marker)
        self._kick(urgent=True)
        return marker.future.result(timeout)

    async def aclose(self, timeout: float | None = 30.0) -> None:
        """Flush, stop the writer and close the sink. Events the sink still cannot take stay in a
        file spool (flushed by the next log that opens it) or, with a memory spool, are reported lost."""
        if self._closed or self._closing:
            return
        self._closing = True
        try:
            await self.aflush(timeout)
        except (asyncio.TimeoutError, TimeoutError):
            log.error("audit: flushing at close took longer than %ss", timeout)
        with self._lock:
            self._gen += 1  # the writer exits at its next turn
            loop, done = self._loop, self._done
            self._closed = True
        if loop is not None and not loop.is_closed():
            self._signal(loop, self._wake, self._urgent)
            if done is not None:
                try:
                    await asyncio.wait_for(asyncio.wrap_future(done), 5)
                except (asyncio.TimeoutError, TimeoutError):
                    log.error("audit: the writer did not stop within 5s")
        self._at_exit_flush(at_exit=False)
        await self._checkpoint()
        self.spool.close()
        for orphan in self._adopted:
            orphan.close()  # undelivered: released for the next process to adopt
        atexit.unregister(self._atexit)
        running = _running_loop()
        if loop is not None and loop is not running and loop.is_running():
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.sink.aclose(), loop))
        else:
            await self.sink.aclose()
        if self._portal is not None:
            portal, self._portal = self._portal, None
            threading.Thread(target=portal.close, daemon=True).start()

    def close(self, timeout: float | None = 30.0) -> None:
        """:meth:`aclose` for sync callers."""
        if _running_loop() is not None:
            raise AuditError("AuditLog.close() was called inside an event loop; use 'await log.aclose()'")
        loop = self._loop
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(self.aclose(timeout), loop).result()
        else:
            asyncio.run(self.aclose(timeout))

    async def __aenter__(self) -> AuditLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- reading ----------------------------------------------------------------------------

    async def query(self, filters: AuditQuery | None = None, *, flush: bool = True, **kw: Any) -> list[AuditEvent]:
        """Events matching ``filters`` (or the same fields as keywords), newest first.
        ``flush`` first waits for events emitted so far, so a caller reads its own writes."""
        if flush:
            await self.aflush()
        return await self.sink.query(filters if filters is not None else AuditQuery(**kw))

    async def tail(self, n: int = 20, *, flush: bool = True) -> list[AuditEvent]:
        """The newest ``n`` events, oldest first."""
        if flush:
            await self.aflush()
        return await self.sink.tail(n)

    async def verify(self) -> VerifyReport:
        return await self.sink.verify()

    @property
    def metrics(self) -> dict[str, Any]:
        """Counters since start: ``emitted``, ``written`` (to the sink), ``spooled_total``,
        ``dropped``, ``sink_errors``, ``checkpoints`` / ``checkpoint_errors`` (anchor writes); and now: ``pending`` (in memory), ``spooled`` (in the spool),
        ``outage`` (the sink is failing), ``last_error``."""
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
        out.update(
            pending=sum(1 for e in list(self._buf) if not isinstance(e, _Flush)) + self._inflight,
            spooled=self._spooled(),
            outage=self._outage_since is not None,
            last_error=self._last_error,
        )
        return out

    # -- writer binding ----------------------------------------------------------------------

    def _kick(self, urgent: bool = False) -> None:
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._bind()
        self._signal(loop, self._wake, self._urgent if urgent else None)

    @staticmethod
    def _signal(loop: asyncio.AbstractEventLoop, *events: asyncio.Event | None) -> None:
        for ev in events:
            if ev is None:
                continue
            if _running_loop() is loop:
                ev.set()
            else:
                loop.call_soon_threadsafe(ev.set)

    def _bind(self) -> asyncio.AbstractEventLoop:
        """Start a writer on the running loop, or on a private loop for callers without one."""
        running = _running_loop()
        with self._lock:
            if self._loop is not None and self._loop.is_running():
                return self._loop  # bound meanwhile by another thread
            if running is None:
                if self._portal is None:
                    self._portal = Portal("hyperion-audit")
                target = self._portal.loop
            else:
                target = running
            self._gen += 1
            self._wake, self._urgent = asyncio.Event(), asyncio.Event()
            self._done = concurrent.futures.Future()
            self._loop = target
            coro = self._run(self._gen, self._wake, self._urgent, self._done)
            if target is running:
                self._task = target.create_task(coro, name="hyperion-audit-writer")
            else:
                self._task = asyncio.run_coroutine_threadsafe(coro, target)
            return target

    # -- the writer ---------------------------------------------------------------------------

    async def _run(self, gen: int, wake: asyncio.Event, urgent: asyncio.Event, done: concurrent.futures.Future) -> None:
        # Python 3.11's wait_for can swallow a cancellation that lands as the write completes; a
        # writer that kept going would hang asyncio.run() at exit, so look at the task's own flag
        cancelling = getattr(asyncio.current_task(), "cancelling", None)
        try:
            while gen == self._gen:
                if cancelling is not None and cancelling():
                    raise asyncio.CancelledError
                try:
                    await self._turn(gen, wake, urgent)
                except Exception as exc:  # nothing may stop auditing: not a full disk, not a bug here
                    log.exception("audit: writer error (the writer carries on)")
                    self._on_failure(exc)
                await asyncio.sleep(0)  # a sink that fails without awaiting must not starve the loop
        finally:
            if not done.done():
                done.set_result(None)

    async def _turn(self, gen: int, wake: asyncio.Event, urgent: asyncio.Event) -> None:
        if self._retry_at and not urgent.is_set():
            wait = self._retry_at - time.monotonic()
            if wait > 0:  # backing off: keep memory small and the spool current meanwhile
                await _wait(urgent, min(wait, 0.5))
                if self._buf and not urgent.is_set():  # urgent (a flush): try the sink right away
                    await self._spool_buffer()
                return
        was_urgent = urgent.is_set()
        urgent.clear()
        if not self._buf and not self._spooled():
            wake.clear()
            if not self._buf and gen == self._gen:
                await wake.wait()
            return
        if self.linger and not was_urgent and len(self._buf) < self.batch_size and not self._closing:
            await _wait(urgent, self.linger)  # let a batch gather (a flush or close cuts this short)
        await self._cycle()

    def _spooled(self) -> int:
        return len(self.spool) + sum(map(len, self._adopted))

    async def _cycle(self) -> None:
        while self._adopted:  # a dead process's events are older than ours
            orphan = self._adopted[0]
            while len(orphan):
                batch = orphan.peek(self.batch_size)
                if not await self._write(batch):
                    await self._spool_buffer()
                    return
                await self._spool_io(orphan.pop, len(batch))
            await self._spool_io(orphan.discard)
            self._adopted.pop(0)
            log.warning("audit: delivered the events of the orphaned spool %s and removed it", orphan.path)
        while len(self.spool):  # older events first
            batch = self.spool.peek(self.batch_size)
            if not await self._write(batch):
                await self._spool_buffer()
                return
            await self._spool_io(self.spool.pop, len(batch))
        batch, markers = self._take()
        try:
            ok = await self._write(batch) if batch else True
        except BaseException:  # cancelled mid-write (its loop is shutting down): put the batch back
            self._buf.extendleft(reversed(markers))
            self._buf.extendleft(reversed(batch))
            raise
        if not ok:
            await self._spool_events(batch)
            _resolve(markers, False)
            await self._spool_buffer()
            return
        _resolve(markers, True)

    def _take(self) -> tuple[list[AuditEvent], list[_Flush]]:
        """Up to ``batch_size`` events from the buffer, stopping after the first flush marker."""
        batch: list[AuditEvent] = []
        markers: list[_Flush] = []
        while self._buf and len(batch) < self.batch_size:
            item = self._buf.popleft()
            if isinstance(item, _Flush):
                markers.append(item)
                break
            batch.append(item)
        return batch, markers

    async def _write(self, batch: list[AuditEvent]) -> bool:
        self._inflight = len(batch)
        try:
            if self.write_timeout is None:
                head = await self.sink.write(batch)
            else:
                head = await asyncio.wait_for(self.sink.write(batch), self.write_timeout)
        except Exception as exc:
            self._on_failure(exc)
            return False
        finally:
            self._inflight = 0
        with self._lock:
            self._counts["written"] += len(batch)
        if isinstance(head, tuple) and len(head) == 2:
            self._head = (int(head[0]), str(head[1]))
            self._unanchored += len(batch)
            if self.anchor_path is not None and (
                self._unanchored >= self.checkpoint_every
                or time.monotonic() - self._anchored_at >= self.checkpoint_interval
            ):
                await self._checkpoint()
        if self._outage_since is not None:
            log.warning(
                "audit: sink %r is back after %.1fs; flushing %d spooled event(s) in order",
                self.sink, time.time() - self._outage_since, self._spooled(),
            )
            self._outage_since = None
            self._drop_logged = False
        self._retry_at = self._backoff = 0.0
        return True

    async def _checkpoint(self) -> None:
        """Anchor the head we last wrote (signed when a key is set). Never raises."""
        if self.anchor_path is None or self._head is None or not self._unanchored:
            return
        cp = Checkpoint(self._head[0], self._head[1], time.time())
        if self._key is not None:
            cp = cp.signed(self._key)
        try:
            await asyncio.to_thread(write_anchor, self.anchor_path, cp)
        except Exception as exc:
            with self._lock:
                self._counts["checkpoint_errors"] += 1
            log.error("audit: cannot write the checkpoint to the anchor %s (%s); truncation below the last "
                      "anchored row stays detectable, newer rows are not anchored yet", self.anchor_path,
                      scrub(f"{type(exc).__name__}: {exc}")[:300])
            return
        with self._lock:
            self._counts["checkpoints"] += 1
        self._unanchored = 0
        self._anchored_at = time.monotonic()

    def _on_failure(self, exc: BaseException) -> None:
        err = scrub(f"{type(exc).__name__}: {exc}")[:500]
        with self._lock:
            self._counts["sink_errors"] += 1
        self._last_error = err
        if self._outage_since is None:
            self._outage_since = time.time()
            self._backoff = self.retry_base
            log.warning("audit: sink %r is failing (%s); spooling events to the %r and retrying", self.sink, err,
                        self.spool)
        else:
            self._backoff = min(self.retry_max, max(self._backoff * 2, self.retry_base))
        self._retry_at = time.monotonic() + self._backoff * random.uniform(0.5, 1.0)

    async def _spool_buffer(self) -> None:
        """Move everything buffered to the spool, in order; flush markers resolve False."""
        events: list[AuditEvent] = []
        while self._buf:
            item = self._buf.popleft()
            if isinstance(item, _Flush):
                await self._spool_events(events)
                events = []
                _resolve([item], False)
            else:
                events.append(item)
        await self._spool_events(events)

    async def _spool_events(self, events: list[AuditEvent]) -> None:
        if not events:
            return
        try:
            accepted = await self._spool_io(self.spool.append, events)
        except Exception as exc:  # e.g. ENOSPC: the spool's disk is full; nothing of this batch was kept
            err = scrub(f"{type(exc).__name__}: {exc}")[:300]
            self._drop(events, f"the sink {self.sink!r} is down and the {self.spool!r} cannot be written ({err})")
            return
        with self._lock:
            self._counts["spooled_total"] += accepted
        if accepted < len(events):
            self._drop(events[accepted:], f"the sink {self.sink!r} is down and the {self.spool!r} is full")

    async def _spool_io(self, fn: Any, *args: Any) -> Any:
        if isinstance(self.spool, FileSpool):
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    def _drop(self, events: list[AuditEvent], why: str) -> None:
        with self._lock:
            self._counts["dropped"] += len(events)
            first = not self._drop_logged
            self._drop_logged = True
        if first:
            log.error(
                "AUDIT EVENTS ARE BEING DROPPED: %s. Dropping %d event(s) now (first request id: %s); "
                "the count is in AuditLog.metrics['dropped']. This is said once per outage.",
                why, len(events), events[0].request_id if events else None,
            )

    # -- exit ---------------------------------------------------------------------------------

    def _at_exit_flush(self, at_exit: bool = True) -> None:
        """Events still in memory go to a file spool; anything that cannot be kept is reported."""
        pending: list[AuditEvent] = []
        while self._buf:
            item = self._buf.popleft()
            if isinstance(item, _Flush):
                _resolve([item], False)
            else:
                pending.append(item)
        kept = 0
        if pending and isinstance(self.spool, FileSpool):
            try:
                kept = self.spool.append(pending)
            except Exception as exc:
                log.error("audit: cannot save unwritten events to %s (%s)", self.spool.path, exc)
        lost = len(pending) - kept + (self._inflight if at_exit else 0)
        if not isinstance(self.spool, FileSpool):
            lost += len(self.spool)
        if kept:
            log.warning("audit: %d unwritten event(s) saved to %s", kept, self.spool.path)
        if lost:
            with self._lock:
                self._counts["dropped"] += lost
            log.error("AUDIT EVENTS LOST: %d event(s) never reached the sink %r%s", lost, self.sink,
                      "" if isinstance(self.spool, FileSpool) else " (configure spool_path to keep them)")


def _at_exit(ref: weakref.ref[AuditLog]) -> None:
    audit = ref()
    if audit is not None and not audit._closed:
        audit._at_exit_flush()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _wait(ev: asyncio.Event, timeout: float) -> None:
    try:
        await asyncio.wait_for(ev.wait(), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        pass


def _resolve(markers: list[_Flush], ok: bool) -> None:
    for m in markers:
        if not m.future.done():
            m.future.set_result(ok)


__all__ = ["AuditLog"]
