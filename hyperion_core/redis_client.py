"""The one way Hyperion builds a ``redis.asyncio`` client for its shared state (keys, governance).

A bounded pool that makes a request *wait* for a free connection (up to ``pool_timeout`` seconds)
instead of failing: redis-py's default pool raises "Too many connections" once 100 are in use, which
failed every request past the 100th in a burst.

With ``hiredis`` installed (a base dependency), redis-py parses replies in C but still *packs* commands
in Python on its asyncio connections (its sync client packs with hiredis). A governed request sends
about seven EVALSHA calls with ~100 arguments, and packing them was the largest single cost of an
admission + settle (``bench/throughput.py``); the connections here pack with ``hiredis.pack_command``,
byte-identical output (floats by ``repr``, text as UTF-8), as redis-py's sync client does.

They also bound a command's write and each reply's read by ``socket_timeout`` with Hyperion's shared-slot
deadline (:mod:`hyperion_core.deadline`) instead of redis-py's ``asyncio.wait_for`` per write (a new task
and ~4 loop turns: ~12 µs) and ``asyncio.timeout`` per reply (a heap timer each: ~4 µs; a pipeline reads
one reply per command). Same outcomes: a write or a read that takes longer closes the connection and
raises redis-py's ``TimeoutError``; a cancelled one closes it too.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections.abc import Iterable
from typing import Any

from .deadline import timeout as _deadline

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


async def _send_packed_command(self: Any, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
    """``Connection.send_packed_command`` without a task per write: the bytes go to the transport at
    once (as redis-py does); only a full socket buffer waits for ``drain``, within ``socket_timeout``."""
    if not self.is_connected:
        await self.connect_check_health(check_health=False)
    if check_health:
        await self.check_health()
    if isinstance(command, str):
        command = command.encode()
    if isinstance(command, bytes):
        command = [command]
    try:
        writer = self._writer
        writer.writelines(command)
        if writer.transport.get_write_buffer_size():  # the socket took it all: nothing to wait for
            if self.socket_timeout:
                async with _deadline(self.socket_timeout):
                    await writer.drain()
            else:
                await writer.drain()
    except (asyncio.TimeoutError, TimeoutError):
        await self.disconnect(nowait=True)
        raise _errors().TimeoutError("Timeout writing to socket") from None
    except OSError as e:
        await self.disconnect(nowait=True)
        err_no, errmsg = ("UNKNOWN", e.args[0]) if len(e.args) == 1 else (e.args[0], e.args[1])
        raise _errors().ConnectionError(f"Error {err_no} while writing to socket. {errmsg}.") from e
    except BaseException:
        await self.disconnect(nowait=True)  # a half-sent command: the connection is unusable
        raise


async def _read_response(
    self: Any,
    disable_decoding: bool = False,
    timeout: float | None = None,
    *,
    disconnect_on_error: bool = True,
    push_request: bool | None = False,
) -> Any:
    """``Connection.read_response``; its default bound (``socket_timeout``) kept by a shared-slot
    deadline rather than an ``asyncio.timeout`` per reply, or by the caller's own deadline over a
    whole pipeline (:data:`BOUNDED`). An explicit ``timeout`` is redis-py's."""
    read = _BASE_READ[type(self).__mro__[1]]
    if timeout is None and BOUNDED.get():
        timeout = math.inf  # the caller's one deadline bounds this read
    if timeout is not None or not self.socket_timeout:
        return await read(self, disable_decoding, timeout, disconnect_on_error=disconnect_on_error,
                          push_request=push_request)
    try:
        async with _deadline(self.socket_timeout):
            # math.inf: redis-py sets no timer of its own; a cancellation by the deadline closes the
            # connection (its BaseException path) when disconnect_on_error
            return await read(self, disable_decoding, math.inf, disconnect_on_error=disconnect_on_error,
                              push_request=push_request)
    except (asyncio.TimeoutError, TimeoutError):
        raise _errors().TimeoutError(f"Timeout reading from {self._host_error()}") from None


#: set (in its own task) by a caller that bounds a whole pipeline with one deadline: the replies it
#: reads then need no deadline each (``governance.batch.AutoPipeline``)
BOUNDED = contextvars.ContextVar("hyperion_redis_bounded", default=False)


def _errors() -> Any:
    import redis.exceptions  # imported with redis.asyncio already: a dict lookup

    return redis.exceptions


#: each base connection class's own ``read_response``
_BASE_READ: dict[type, Any] = {}
_fast: dict[type, type] = {}


def _fast_connection(cls: type) -> type:
    """``cls`` (TCP, TLS or unix socket) packing with hiredis and bounding I/O with shared-slot
    deadlines; one subclass per class."""
    sub = _fast.get(cls)
    if sub is None:
        _BASE_READ[cls] = cls.read_response  # type: ignore[attr-defined]
        ns = {"send_packed_command": _send_packed_command, "read_response": _read_response}
        if _HIREDIS_PACK:
            ns["pack_command"] = _hiredis_pack_command
        sub = _fast[cls] = type(f"Fast{cls.__name__}", (cls,), ns)
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
    pool.connection_class = _fast_connection(pool.connection_class)
    return aioredis.Redis(connection_pool=pool, retry=retry)


__all__ = ["state_client"]
