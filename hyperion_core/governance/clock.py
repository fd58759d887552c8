"""Wall time as Redis sees it: the one clock of the Redis governance backend.

The Redis scripts read ``TIME`` for reservation expiry and every TTL they set; the client computes
budget periods (``d2026-11-24``) and spend days. If the client used its own host clock, a host a few
minutes off would charge the wrong day around midnight and disagree with the scripts about when a
period's counters expire. :class:`RedisClock` keeps the offset between the host clock and the Redis
server's ``TIME`` (measured at the midpoint of one round trip, re-measured every ``resync_s``), so
every process, whatever its host clock, agrees with the scripts and with each other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..errors import GovernanceStoreError


class RedisClock:
    """Unix seconds on the Redis server's clock: ``local() + offset``.

    Call it like ``time.time``. ``await refresh()`` re-measures the offset when ``resync_s`` (> 0,
    seconds) has passed since the last measurement (at once the first time); between measurements it
    costs one monotonic-clock read. ``local`` and ``monotonic`` are injectable for tests.
    """

    __slots__ = ("client", "resync_s", "local", "monotonic", "offset", "_next")

    def __init__(
        self,
        client: Any,
        *,
        resync_s: float = 60.0,
        local: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not resync_s > 0:
            raise ValueError(f"resync_s must be > 0 seconds, got {resync_s}")
        self.client = client
        self.resync_s = resync_s
        self.local = local
        self.monotonic = monotonic
        self.offset = 0.0  # Redis TIME - local clock, seconds
        self._next = float("-inf")

    def __call__(self) -> float:
        return self.local() + self.offset

    @property
    def synced(self) -> bool:
        return self._next != float("-inf")

    async def refresh(self) -> None:
        """Measure the offset again if it is due (cheap when it is not)."""
        if self.monotonic() >= self._next:
            await self.sync()

    async def sync(self) -> None:
        """Measure the offset now: one ``TIME`` round trip, credited half to each direction."""
        from redis.exceptions import RedisError

        t0 = self.local()
        try:
            sec, usec = await self.client.time()
        except RedisError as exc:
            raise GovernanceStoreError(f"governance store: reading Redis TIME failed: {exc}") from exc
        t1 = self.local()
        self.offset = (int(sec) + int(usec) / 1e6) - (t0 + t1) / 2
        self._next = self.monotonic() + self.resync_s


__all__ = ["RedisClock"]
