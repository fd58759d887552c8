"""Sync twins of async methods: one long-lived event loop in a daemon thread per owner.

Running each sync call with ``asyncio.run`` would build a new loop — and with it a new connection
pool — per request. The portal keeps one loop (and so one pool) alive and submits coroutines to it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Portal:
    def __init__(self, name: str = "hyperion-portal") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            with self._lock:
                if self._loop is None:
                    ready = threading.Event()
                    new = asyncio.new_event_loop()

                    def run() -> None:
                        asyncio.set_event_loop(new)
                        new.call_soon(ready.set)
                        new.run_forever()

                    self._thread = threading.Thread(target=run, name=self._name, daemon=True)
                    self._thread.start()
                    ready.wait()
                    self._loop = new
                loop = self._loop
        return loop

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the portal loop and wait for its result (from any thread but the portal's)."""
        if self._thread is not None and threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a sync Hyperion method was called from inside its own event loop")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        """Drive an async iterator from sync code, one item per round trip to the portal loop."""
        anext = agen.__anext__
        try:
            while True:
                try:
                    yield self.call(anext())
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None and self._loop is not None and not self._loop.is_closed():
                self.call(aclose())

    @property
    def started(self) -> bool:
        """Whether the portal's loop exists (a sync call has been made)."""
        return self._loop is not None

    def close(self, before: Coroutine[Any, Any, Any] | None = None) -> None:
        loop, thread = self._loop, self._thread
        if loop is None:
            if before is not None:
                before.close()
            return
        if before is not None:
            self.call(before)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        loop.close()
        self._loop = self._thread = None


__all__ = ["Portal"]
