"""The least a Python ASGI proxy can do: the floor for ``hyperion serve`` in ``bench/server.py``.

A raw ASGI callable (no framework, no routing, no auth, no JSON parsing) that reads the request
body, POSTs it unchanged to ``BARE_PROXY_UPSTREAM`` over one pooled aiohttp session and returns the
upstream's status and body. Served by uvicorn (uvloop + httptools) like ``hyperion serve``. Whatever
CPU per request this costs, no Python gateway built on these parts can cost less.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

UPSTREAM = os.environ.get("BARE_PROXY_UPSTREAM", "")
_session: aiohttp.ClientSession | None = None
_HEADERS = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _session
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                if _session is not None:
                    await _session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/healthz":
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": b"{}"})
        return
    body = b""
    more = True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    if _session is None:
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
    async with _session.post(UPSTREAM + scope["path"], data=body, headers={"content-type": "application/json"}) as r:
        out = await r.read()
        status = r.status
    await send({"type": "http.response.start", "status": status, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": out})
