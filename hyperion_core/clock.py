"""The one clock of Hyperion: monotonic time, wall time and sleeps, injectable, with a test mode.

Routing (breaker cooldowns, deadlines, backoff sleeps), the cache (in-process TTLs) and governance
(budget periods, reservation expiry, rate-limit buckets) read time through this interface, so a
test moves all of them with one :class:`ManualClock`::

    clock = ManualClock()            # starts at monotonic 1000.0 s, wall 2027-01-15T08:00:00Z
    gw = Gateway(cfg, clock=clock)   # breakers and deadlines follow it
    clock.advance(30)                # monotonic and wall both move 30 s

* ``now()`` — monotonic seconds (never jumps; only differences mean something);
* ``time()`` — wall clock, Unix seconds (comparable across processes; budget periods, TTLs shared
  through Redis — where the Redis backend uses ``governance.clock.RedisClock`` instead);
* ``sleep(s)`` — wait ``s`` seconds; :class:`SystemClock` returns at once in test mode
  (:func:`set_testing`), :class:`ManualClock` advances itself instead of waiting.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class MonotonicClock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""


class WallClock(Protocol):
    def time(self) -> float:
        """Wall-clock Unix seconds."""


class Clocks(MonotonicClock, WallClock, Protocol):
    """Both readings (governance: wall time for budget periods, monotonic for rate limits)."""


class Clock(MonotonicClock, Protocol):
    """What the router needs: monotonic time and (test-mode aware) sleeps."""

    async def sleep(self, seconds: float) -> None: ...


class _Testing:
    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = False


_TESTING = _Testing()


def set_testing(on: bool = True) -> None:
    """Test mode: sleeps of :class:`SystemClock` (backoff) return at once. Breaker cooldowns and
    TTLs still follow the clock, so tests that need them to pass use :class:`ManualClock`."""
    _TESTING.on = on


def is_testing() -> bool:
    """Whether test mode is on."""
    return _TESTING.on


class SystemClock:
    """The host's clocks: ``time.monotonic``, ``time.time`` and real sleeps (none in test mode)."""

    __slots__ = ()

    now = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    async def sleep(self, seconds: float) -> None:
        if seconds > 0 and not _TESTING.on:
            await asyncio.sleep(seconds)


#: the shared system clock (stateless)
SYSTEM = SystemClock()

#: the wall time a :class:`ManualClock` starts at by default: 2027-01-15T08:00:00Z
MANUAL_WALL_START = 1_800_000_000.0


class ManualClock:
    """A clock that only moves when told to (tests). ``sleep`` advances it instantly.

    ``start``: its monotonic seconds at creation; ``wall``: its Unix seconds at creation. Both move
    together with :meth:`advance` and :meth:`sleep`."""

    def __init__(self, start: float = 1000.0, *, wall: float = MANUAL_WALL_START) -> None:
        self.t = start
        self._wall_offset = wall - start

    def now(self) -> float:
        return self.t

    def time(self) -> float:
        return self.t + self._wall_offset

    def advance(self, seconds: float) -> None:
        self.t += seconds

    async def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.0)
        await asyncio.sleep(0)


__all__ = [
    "Clock",
    "MonotonicClock",
    "WallClock",
    "Clocks",
    "SystemClock",
    "ManualClock",
    "SYSTEM",
    "set_testing",
    "is_testing",
]
