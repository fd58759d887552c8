"""Putting bytes on the wire, with the transport-level fault effects.

* :func:`json_response` / :func:`error_response`: plain JSON answers
  (``Retry-After`` and ``retry-after-ms`` headers when a retry delay is given).
* :func:`send_body`: a complete JSON body, or half of it followed by a closed
  connection (``cut``), or an invalid JSON body (``malformed``).
* :func:`send_stream`: a list of pre-encoded :class:`~.common.Event` frames,
  with ``delay_s`` between content frames, optionally truncated after
  ``cut_after`` content frames (the connection is then closed without the
  terminal frames or the chunked-encoding terminator) and optionally with one
  broken frame injected after the first content frame; ``stall_after`` content
  frames then silence on an open connection (``stall_s``); ``eof_after`` content
  frames then a clean end of body; ``drop_after_finish``: every frame up to the
  one carrying the finish reason, then the connection is closed.
* :func:`hang`: hold the request open for ``seconds`` then drop the
  connection. The server runs with handler cancellation, so a client that gives
  up cancels the wait and nothing is left behind.

Frames are coalesced into a single write whenever no delay separates them.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from .common import Event

JSON = "application/json"


def json_response(obj: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type=JSON, headers=headers)


def retry_headers(retry_after: float | None) -> dict[str, str] | None:
    if retry_after is None:
        return None
    seconds = str(int(retry_after)) if float(retry_after).is_integer() else f"{retry_after:g}"
    return {"Retry-After": seconds, "retry-after-ms": str(int(retry_after * 1000))}


def error_response(status: int, body: dict, retry_after: float | None = None) -> web.Response:
    return json_response(body, status, retry_headers(retry_after))


def drop_connection(request: web.Request) -> None:
    """Close the socket now: buffered bytes are flushed, no HTTP terminator is sent."""
    transport = request.transport
    if transport is not None and not transport.is_closing():
        transport.close()


async def send_body(
    request: web.Request, body: bytes, *, cut: bool = False, malformed_body: bytes | None = None
) -> web.StreamResponse:
    if malformed_body is not None and not cut:
        return web.Response(body=malformed_body, content_type=JSON)
    if not cut:
        return web.Response(body=body, content_type=JSON)
    resp = web.StreamResponse(headers={"Content-Type": JSON})
    resp.content_length = len(body)
    await resp.prepare(request)
    await resp.write(body[: len(body) // 2])
    drop_connection(request)
    return resp


def _truncate(events: list[Event], cut_after: int) -> list[Event]:
    """Frames before the ``cut_after + 1``-th content frame; if there are fewer, up to the last content frame."""
    content_at = [i for i, event in enumerate(events) if event.content]
    if len(content_at) > cut_after:
        return events[: content_at[cut_after]]
    return events[: content_at[-1] + 1] if content_at else []


#: what marks the frame carrying the finish reason on each wire
_FINISH_MARKS = (b'"finish_reason":"', b"event: message_delta", b'"finishReason":"')


def _through_finish(events: list[Event]) -> list[Event]:
    """Frames up to and including the first one after the last content frame that carries a finish reason."""
    last = max((i for i, e in enumerate(events) if e.content), default=-1)
    for i in range(last + 1, len(events)):
        if any(mark in events[i].data for mark in _FINISH_MARKS):
            return events[: i + 1]
    return events


def _inject(events: list[Event], frame: bytes) -> list[Event]:
    first = next((i for i, e in enumerate(events) if e.content), len(events) - 1)
    return [*events[: first + 1], Event(frame), *events[first + 1 :]]


async def send_stream(
    request: web.Request,
    events: list[Event],
    *,
    content_type: str,
    delay_s: float = 0.0,
    cut_after: int | None = None,
    malformed_frame: bytes | None = None,
    stall_after: int | None = None,
    stall_s: float = 300.0,
    eof_after: int | None = None,
    drop_after_finish: bool = False,
) -> web.StreamResponse:
    drop = cut_after is not None or drop_after_finish
    if cut_after is not None:
        events = _truncate(events, cut_after)
    elif eof_after is not None:
        events = _truncate(events, eof_after)
    elif stall_after is not None:
        events = _truncate(events, stall_after)
    elif drop_after_finish:
        events = _through_finish(events)
    if malformed_frame is not None:
        events = _inject(events, malformed_frame)
    resp = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
    await resp.prepare(request)
    pending: list[bytes] = []
    started = False
    for event in events:
        if event.content and delay_s > 0 and started:
            await resp.write(b"".join(pending))
            pending.clear()
            await asyncio.sleep(delay_s)
        started = started or event.content
        pending.append(event.data)
    if pending:
        await resp.write(b"".join(pending))
    if stall_after is not None and cut_after is None and eof_after is None:
        await asyncio.sleep(stall_s)  # cancelled by aiohttp when the client disconnects
        drop = True
    if drop:
        drop_connection(request)
    else:
        await resp.write_eof()
        if eof_after is not None:  # a clean end of body, then the socket closes (as a proxy giving up does)
            drop_connection(request)
    return resp


async def hang(request: web.Request, seconds: float) -> web.StreamResponse:
    await asyncio.sleep(seconds)  # cancelled by aiohttp when the client disconnects
    drop_connection(request)
    return web.Response(status=504)
