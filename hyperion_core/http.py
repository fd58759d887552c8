"""The one pooled HTTP client every native adapter shares.

aiohttp was measured against httpx on this machine (same loopback upstream, p50 per call):
aiohttp 0.15 ms, httpx 0.49 ms — so aiohttp it is, with orjson for bodies. A session belongs to the
event loop that created it; :class:`HttpClient` keeps one per loop (normally exactly one) and builds
it on first use, never per request. A session closes with its loop: ``asyncio.run`` (and every runner
that calls ``loop.shutdown_asyncgens()``, as pytest-asyncio and Jupyter do) closes it before the
loop ends, so code that calls ``asyncio.run`` repeatedly leaves no "Unclosed client session" behind.

A stream that ends any way but its terminal event never gives its connection back to the pool
(:meth:`HttpClient.discard`): the server (or a proxy) that cut it is likely closing the socket, and a
resume on the same host:port would otherwise pick up that dead socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from .errors import InvalidRequestError, MalformedResponseError, ProviderConnectionError, StreamCutError

_JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}


async def _closed_with_loop(session: aiohttp.ClientSession) -> AsyncIterator[None]:
    """Parked at its ``yield`` for the life of the loop; ``loop.shutdown_asyncgens()`` closes it,
    and with it the session (a loop-close hook that asyncio does not otherwise offer)."""
    try:
        yield
    finally:
        if not session.closed:
            await session.close()


def _close_with_loop(session: aiohttp.ClientSession) -> AsyncIterator[None]:
    guard = _closed_with_loop(session)
    try:  # first step runs synchronously to the yield; the loop's asyncgen hook now tracks it
        guard.__anext__().send(None)
    except StopIteration:
        pass
    return guard


class HttpClient:
    """Pooled keep-alive sessions, one per running event loop."""

    def __init__(self, *, limit: int = 1000, limit_per_host: int = 0, connect_timeout: float = 10.0) -> None:
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._connect_timeout = connect_timeout
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._guards: dict[asyncio.AbstractEventLoop, AsyncIterator[None]] = {}

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        s = self._sessions.get(loop)
        if s is None or s.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=self._limit_per_host,
                ttl_dns_cache=300,
                enable_cleanup_closed=True,
            )
            s = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
                json_serialize=lambda o: orjson.dumps(o).decode(),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
                read_bufsize=2**21,  # SSE event lines up to 4 MiB (a large tool call or image in one event)
            )
            self._sessions[loop] = s
            self._guards[loop] = _close_with_loop(s)
            for dead in [lp for lp in self._sessions if lp.is_closed()]:
                del self._sessions[dead]
                self._guards.pop(dead, None)
        return s

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        s = self._sessions.pop(loop, None)
        guard = self._guards.pop(loop, None)
        if s is not None:
            await s.close()
        if guard is not None:
            await guard.aclose()  # type: ignore[attr-defined]

    def discard(self, resp: aiohttp.ClientResponse, protocol: Any) -> None:
        """Close the connection that carried ``resp`` rather than keep it alive. aiohttp hands a
        connection back to the pool the moment a body ends cleanly, before the caller can see that
        the stream lacked its terminal event; ``protocol`` (taken from ``resp.connection`` while the
        body was still being read) is then found among the idle connections and closed."""
        resp.close()
        if protocol is None:
            return
        session = self._sessions.get(asyncio.get_running_loop())
        pool = getattr(session.connector, "_conns", None) if session is not None else None
        for idle in (pool or {}).values():
            for item in list(idle):
                if item[0] is protocol:
                    idle.remove(item)
                    protocol.close()
                    return

    def drop_loop(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession | None:
        self._guards.pop(loop, None)
        return self._sessions.pop(loop, None)

    async def post_json(
        self, url: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, Any, bytes]:
        """POST JSON; returns (status, response headers, raw body). Transport failures raise
        :class:`ProviderConnectionError`."""
        try:
            async with self.session().post(url, data=dumps_body(body), headers=headers) as resp:
                return resp.status, resp.headers, await resp.read()
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise ProviderConnectionError(f"connection to {_host(url)} failed: {_describe(exc)}") from exc

    async def get_json(self, url: str, headers: dict[str, str]) -> tuple[int, Any, bytes]:
        try:
            async with self.session().get(url, headers=headers) as resp:
                return resp.status, resp.headers, await resp.read()
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise ProviderConnectionError(f"connection to {_host(url)} failed: {_describe(exc)}") from exc


async def sse_events(resp: aiohttp.ClientResponse, url: str) -> AsyncIterator[tuple[str | None, bytes]]:
    """Yield ``(event, data)`` pairs of a Server-Sent Events body. A connection that breaks mid-body
    raises :class:`StreamCutError`; a clean end simply stops (the caller checks for its terminal event)."""
    event: str | None = None
    data: list[bytes] = []
    try:
        async for raw in resp.content:
            line = raw.rstrip(b"\r\n")
            if not line:
                if data:
                    yield event, b"\n".join(data)
                event, data = None, []
                continue
            if line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line.startswith(b"event:"):
                event = line[6:].strip().decode()
            # comments (":") and other fields (id, retry) are ignored
        if data:
            yield event, b"\n".join(data)
    except aiohttp.http_exceptions.LineTooLong as exc:
        raise MalformedResponseError(f"stream from {_host(url)} sent an event line too long to read ({exc})") from None
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
        raise StreamCutError(f"stream from {_host(url)} broke: {_describe(exc)}") from exc


def dumps_body(body: Any) -> bytes:
    """A request body as JSON bytes; what JSON cannot carry (lone surrogates, integers past 64 bits,
    nesting deeper than 254) is the caller's error, named as such — never a TypeError from orjson."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as exc:
        raise InvalidRequestError(f"the request cannot be sent as JSON: {exc}") from None


def _host(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


JSON_HEADERS = _JSON_HEADERS

__all__ = ["HttpClient", "sse_events", "JSON_HEADERS", "dumps_body"]
