"""The one way Hyperion builds a ``redis.asyncio`` client for its shared state (keys, governance).

A bounded pool that makes a request *wait* for a free connection (up to ``pool_timeout`` seconds)
instead of failing: redis-py's default pool raises "Too many connections" once 100 are in use, which
failed every request past the 100th in a burst.
"""

from __future__ import annotations

from typing import Any


def state_client(
    url: str, *, max_connections: int = 64, pool_timeout: float = 10.0, socket_timeout: float | None = 5.0
) -> Any:
    """A ``redis.asyncio.Redis`` on a ``BlockingConnectionPool`` of ``max_connections``; a command that
    gets no answer in ``socket_timeout`` seconds fails (a hung server must not hang requests)."""
    import redis.asyncio as aioredis

    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=pool_timeout, socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
    )
    return aioredis.Redis(connection_pool=pool)


__all__ = ["state_client"]
