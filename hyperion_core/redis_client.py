"""The one way Hyperion builds a ``redis.asyncio`` client for its shared state (keys, governance).

A bounded pool that makes a request *wait* for a free connection (up to ``pool_timeout`` seconds)
instead of failing: redis-py's default pool raises "Too many connections" once 100 are in use, which
failed every request past the 100th in a burst.

With ``hiredis`` installed (a base dependency), redis-py parses replies in C but still *packs* commands
in Python on its asyncio connections (its sync client packs with hiredis). A governed request sends
about seven EVALSHA calls with ~100 arguments, and packing them was the largest single cost of an
admission + settle (``bench/throughput.py``); the connections here pack with ``hiredis.pack_command``,
byte-identical output (floats by ``repr``, text as UTF-8), as redis-py's sync client does.
"""

from __future__ import annotations

from typing import Any

try:  # redis-py takes hiredis >= 3.2 only; the same rule here
    import hiredis as _hiredis

    _HIREDIS_PACK = tuple(int(x) for x in _hiredis.__version__.split(".")[:2]) >= (3, 2)
except (ImportError, ValueError):
    _HIREDIS_PACK = False


def _hiredis_pack_command(self: Any, *args: Any) -> list[bytes]:
    """``Connection.pack_command`` in C (redis-py's ``HiredisRespSerializer.pack``, for asyncio)."""
    first = args[0]
    if isinstance(first, str):
        args = tuple(first.encode().split()) + args[1:]
    elif b" " in first:
        args = tuple(first.split()) + args[1:]
    try:
        return [_hiredis.pack_command(args)]
    except TypeError as exc:
        from redis.exceptions import DataError  # (the error path only)

        raise DataError(str(exc)) from exc


_fast: dict[type, type] = {}


def _fast_connection(cls: type) -> type:
    """``cls`` (TCP, TLS or unix socket) packing with hiredis; one subclass per class."""
    sub = _fast.get(cls)
    if sub is None:
        sub = _fast[cls] = type(f"HiredisPack{cls.__name__}", (cls,), {"pack_command": _hiredis_pack_command})
    return sub


def state_client(
    url: str, *, max_connections: int = 64, pool_timeout: float = 10.0, socket_timeout: float | None = 5.0
) -> Any:
    """A ``redis.asyncio.Redis`` on a ``BlockingConnectionPool`` of ``max_connections``; a command that
    gets no answer in ``socket_timeout`` seconds fails (a hung server must not hang requests). A
    command that meets a pooled connection the server closed (a restart) is sent once more on a fresh
    one; a timeout is never retried. (Every script Hyperion runs is safe to repeat: reservations and
    settlements are idempotent per id, and a repeated rate-limit take only errs on the strict side.)"""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=pool_timeout, socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout, retry=retry,
    )
    if _HIREDIS_PACK:
        pool.connection_class = _fast_connection(pool.connection_class)
    return aioredis.Redis(connection_pool=pool, retry=retry)


__all__ = ["state_client"]
