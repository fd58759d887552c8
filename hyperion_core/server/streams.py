"""A streamed answer as an ASGI response: SSE frames from a wire encoder, and a client that goes away.

The gateway stream is closed (``aclose``) as soon as the client is known to be gone, between chunks:
that is the pipeline's "the caller stopped reading" path, which bills what was generated upstream and
audits the request as ``cancelled``. (The ASGI server silently drops writes to a closed connection, so
a watcher task reads ``http.disconnect`` off ``receive``.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..streaming import ChatStream
from ..types import ChatChunk

log = logging.getLogger("hyperion.server")


class SSEResponse:
    """Send ``first`` then the rest of ``stream`` through ``encoder`` (``chunk``/``done``/``error``).
    ``on_end(outcome, exc)`` runs once: outcome ``ok`` | ``error`` | ``cancelled``."""

    def __init__(
        self,
        stream: ChatStream,
        first: ChatChunk | None,
        encoder: Any,
        headers: dict[str, str],
        on_end: Callable[[str, BaseException | None], None] | None = None,
    ) -> None:
        self.stream = stream
        self.first = first
        self.encoder = encoder
        self.headers = headers
        self.on_end = on_end

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.ensure_future(watch())
        outcome, error = "ok", None
        enc = self.encoder
        try:
            await send({
                "type": "http.response.start",
                "status": 200,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()],
            })
            if self.first is not None:
                await send({"type": "http.response.body", "body": enc.chunk(self.first), "more_body": True})
            tail = b""
            pending: list[bytes] = []  # encoded chunks that were ready together: one write, one syscall
            it = self.stream.__aiter__()
            try:
                while True:
                    try:
                        ready, item = _start(it)
                        if not ready:  # the next chunk is not here yet: send what is, then wait
                            if pending:
                                await send({"type": "http.response.body", "body": b"".join(pending),
                                            "more_body": True})
                                pending.clear()
                            item = await item
                    except StopAsyncIteration:
                        tail = enc.done()
                        break
                    if gone.is_set():
                        outcome = "cancelled"
                        break
                    data = enc.chunk(item)
                    if data:
                        pending.append(data)
            except Exception as exc:  # noqa: BLE001 - a failure after the first chunk: the wire's error event
                outcome, error = "error", exc
                tail = enc.error(exc)
                if not hasattr(exc, "request_id"):
                    log.exception("stream failed")
            tail = b"".join((*pending, tail)) if pending else tail
            if gone.is_set() and outcome == "ok":
                outcome = "cancelled"
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        except (OSError, asyncio.CancelledError):  # the connection broke under a write, or the server stops
            outcome = "cancelled"
            raise
        finally:
            watcher.cancel()
            try:
                await self.stream.aclose()  # a stream left early: bill what was generated, audit "cancelled"
            except Exception:  # noqa: BLE001 - the pipeline has already recorded its own failure
                pass
            if self.on_end is not None:
                self.on_end(outcome, error)


def _start(it: Any) -> tuple[bool, Any]:
    """Run ``it.__anext__()`` up to its first wait: ``(True, chunk)`` when the chunk was already there
    (the upstream's bytes were buffered), ``(False, awaitable)`` when it must wait — awaiting that
    resumes the same call. Raises ``StopAsyncIteration`` at the end. Lets the caller batch the chunks
    that are ready at once into one socket write without ever delaying one that arrives later."""
    coro = it.__anext__()
    try:
        waiting = coro.send(None)
    except StopIteration as done:
        return True, done.value
    return False, _Resume(coro, waiting)


class _Resume:
    """Awaitable continuing a coroutine that has already run up to ``waiting`` (what ``yield from``
    does): the task waits on the same future, results and exceptions (cancellation too) go back in."""

    __slots__ = ("coro", "waiting")

    def __init__(self, coro: Any, waiting: Any) -> None:
        self.coro, self.waiting = coro, waiting

    def __await__(self) -> Any:
        coro, waiting = self.coro, self.waiting
        while True:
            try:
                value = yield waiting
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - cancellation and the future's error go in
                try:
                    waiting = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting = coro.send(value)
                except StopIteration as done:
                    return done.value


__all__ = ["SSEResponse"]
