"""Bad input and broken stores get a HyperionError that names the problem — never a TypeError,
sqlite3 or redis error from deep inside (issue 11 #14)."""

from __future__ import annotations

import pytest

from hyperion_core import Gateway, HyperionError
from hyperion_core.errors import GovernanceStoreError, InvalidRequestError, RouteNotFoundError
from hyperion_core.redis_server import RedisServer


def gw_for(mock, dep: str, **extra) -> Gateway:
    return Gateway({
        "providers": {"p": {"kind": "openai", "api_key": "k", "base_url": mock.base_url(dep, "openai")}},
        "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini"}], "cache": {}}},
        **extra,
    })


def deep_schema(depth: int) -> dict:
    root = cur = {"type": "object"}
    for _ in range(depth):
        cur["properties"] = {"x": {"type": "object"}}
        cur = cur["properties"]["x"]
    return root


HI = [{"role": "user", "content": "hi"}]
CASES = [
    ("temperature as a string", {"temperature": "0.5"}, HI, "temperature: must be a number from 0 to 2, got '0.5'"),
    ("top_p out of range", {"top_p": 3}, HI, "top_p: must be a number from 0 to 1, got 3"),
    ("n as a string", {"n": "2"}, HI, "n: must be a positive integer, got '2'"),
    ("seed as a string", {"seed": "1"}, HI, "seed: must be an integer, got '1'"),
    ("stop as a number", {"stop": 5}, HI, "stop: must be a string or a list of strings, got 5"),
    ("tools not a list", {"tools": "x"}, HI, "tools: must be a list of tool definitions"),
    ("max_tokens past 2^31", {"max_tokens": 2**70}, HI, "max_tokens: must be a positive integer"),
    ("content as a number", {}, [{"role": "user", "content": 42}], "messages[0].content: must be a string or a list"),
    ("a lone surrogate", {}, [{"role": "user", "content": "bad \ud800 text"}], "cannot be encoded as JSON: str is not valid UTF-8"),
    ("a tool schema 400 levels deep", {"tools": [{"type": "function", "function": {"name": "f", "parameters": deep_schema(400)}}]},
     HI, "cannot be encoded as JSON: Recursion limit reached"),
]


@pytest.mark.parametrize(("what", "kw", "messages", "message"), CASES, ids=[c[0] for c in CASES])
async def test_bad_requests_are_named_not_crashed(mock, what, kw, messages, message):
    gw = gw_for(mock, "bad-in")
    with pytest.raises(InvalidRequestError) as exc:
        await gw.acomplete("chat", messages, **kw)
    assert message in str(exc.value)
    with pytest.raises(InvalidRequestError):  # streams too
        async for _ in gw.astream("chat", messages, **kw):
            pass
    assert mock.stats().get("bad-in", {}).get("requests", 0) == 0  # refused before anything was sent
    await gw.aclose()


async def test_a_route_that_is_not_a_string(mock):
    gw = gw_for(mock, "bad-route")
    with pytest.raises(RouteNotFoundError, match="unknown route 'None'"):
        await gw.acomplete(None, HI)  # type: ignore[arg-type]
    await gw.aclose()


async def test_a_key_store_on_a_dead_redis_is_a_store_error(mock, tmp_path):
    server = RedisServer().start()
    gw = gw_for(mock, "bad-redis", keys={"store": "redis"},
                state={"backend": "redis", "redis_url": server.url, "socket_timeout": 0.5})
    key, _ = await gw.keys.create("k")
    server.stop()
    with pytest.raises(GovernanceStoreError, match="key store \\(Redis\\)"):
        await gw.acomplete("chat", HI, virtual_key=key)
    with pytest.raises(GovernanceStoreError):
        await gw.keys.create("another")
    await gw.aclose()


async def test_an_unwritable_key_database_is_a_store_error(mock, tmp_path):
    """A key database that cannot be opened or written (here: its path is a directory — what a
    read-only or broken state folder looks like to SQLite even for root) fails as a store error."""
    state = tmp_path / "state"
    (state / "keys.db").mkdir(parents=True)  # not a database file
    gw = gw_for(mock, "bad-sqlite", keys={"store": "sqlite", "required": True}, state={"path": str(state)})
    with pytest.raises(GovernanceStoreError, match="key store .*keys.db"):
        await gw.keys.create("k")
    assert isinstance(GovernanceStoreError("x"), HyperionError)
    await gw.aclose()


async def test_an_oversized_sse_line_is_a_malformed_response_not_a_raw_aiohttp_error():
    """Issue 11 #14: a 512 KB SSE line raised aiohttp's LineTooLong from deep inside. Lines up to 4 MiB
    are read (a big tool call or image in one event); past that it is a MalformedResponseError."""
    import orjson
    from aiohttp import web

    from hyperion_core.errors import MalformedResponseError
    from hyperion_core.http import HttpClient, sse_events

    async def handler(request):
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        try:
            await resp.write(b"data: " + orjson.dumps({"x": "a" * int(request.query["n"])}) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
        except ConnectionError:
            pass  # the client gave up on the oversized line
        return resp

    app = web.Application()
    app.router.add_get("/s", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    http = HttpClient()
    try:
        async with http.session().get(f"http://127.0.0.1:{port}/s?n=2000000") as resp:
            assert [len(d) for _, d in [e async for e in sse_events(resp, "u")]] == [2_000_008, 6]
        with pytest.raises(MalformedResponseError, match="event line too long"):
            async with http.session().get(f"http://127.0.0.1:{port}/s?n=9000000") as resp:
                async for _ in sse_events(resp, "u"):
                    pass
    finally:
        await http.aclose()
        await runner.cleanup()
