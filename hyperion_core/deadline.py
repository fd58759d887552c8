"""The per-attempt deadline of upstream calls: ``async with timeout(seconds)``.

On Python 3.11+ it is :class:`Deadline` — the semantics of ``asyncio.timeout`` for a fraction of its
cost; on 3.10 ``async_timeout.timeout`` (aiohttp depends on it there).

Deadlines share timers. A gateway starts one deadline per upstream attempt, thousands a second, and
nearly all of them end long before they expire; a timer handle each (``loop.call_later`` then
``cancel``) costs a heap push of a Python-compared handle, its cancellation and the heap clean-ups
that follow — ~3.5 µs per attempt, the largest single cost of routing a request. Here a deadline
joins the *slot* its expiry falls in: slots are ``2**k`` seconds wide, ``k`` chosen so that a slot
is at most ~1/1000 of the delay (at least ~1 ms: :data:`MIN_SLOT_S`), and each slot has one timer
handle, shared by every deadline in it, that fires at the slot's end. A deadline thus fires never
early and at most 0.1 % (or 1 ms) late; leaving one is a dict removal. A slot whose deadlines all
ended keeps its handle until it fires (cancelling would give back the saving when requests are
sequential); live slots stay few (~1,000 per delay scale) and hold no reference to an ended body.
"""

from __future__ import annotations

import asyncio
import math
import sys
from typing import Any

#: the narrowest slot (seconds): no deadline fires more than this late
MIN_SLOT_EXP = -10  # 2**-10 s ~ 1 ms
MIN_SLOT_S = 2.0**MIN_SLOT_EXP
#: a slot is at most delay / 2**SLOT_BITS wide (~0.1 % of the delay)
SLOT_BITS = 10


class _Wheel:
    """One loop's shared deadline timers: ``(exponent, slot index) -> deadlines due in that slot``."""

    __slots__ = ("loop", "slots")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.slots: dict[tuple[int, int], dict[Deadline, None]] = {}

    def join(self, d: Deadline, delay: float) -> tuple[int, int]:
        exp = max(math.frexp(delay)[1] - SLOT_BITS, MIN_SLOT_EXP)
        width = 2.0**exp
        key = (exp, -int(-(self.loop.time() + delay) // width))  # the slot whose end is at or after the expiry
        members = self.slots.get(key)
        if members is None:
            members = self.slots[key] = {}
            self.loop.call_at(key[1] * width, self._fire, key)
        members[d] = None
        return key

    def leave(self, d: Deadline, key: tuple[int, int]) -> None:
        members = self.slots.get(key)
        if members is not None:
            members.pop(d, None)

    def _fire(self, key: tuple[int, int]) -> None:
        members = self.slots.pop(key, None)
        if members:
            for d in list(members):
                d._expire()  # noqa: SLF001 - the wheel is the deadline's own timer


_wheels: dict[asyncio.AbstractEventLoop, _Wheel] = {}


def _wheel(loop: asyncio.AbstractEventLoop) -> _Wheel:
    wheel = _wheels.get(loop)
    if wheel is None:
        for dead in [lp for lp in _wheels if lp.is_closed()]:
            del _wheels[dead]
        wheel = _wheels[loop] = _Wheel(loop)
    return wheel


class Deadline:
    """``async with Deadline(delay)``: :class:`TimeoutError` when the body is still running ``delay``
    seconds later (at most 0.1 % or ~1 ms later: the timer is its slot's, shared) — the semantics of
    ``asyncio.timeout`` (a cancellation from outside stays a ``CancelledError``, also when it races the
    deadline). The per-attempt deadline of every upstream call."""

    __slots__ = ("_delay", "_task", "_slot", "_fired", "_cancelling", "_wheel", "_handle")
    _slot: tuple[int, int] | None

    def __init__(self, delay: float) -> None:
        self._delay = delay
        self._fired = False

    async def __aenter__(self) -> None:
        task: Any = asyncio.current_task()  # Any: Task.cancelling/uncancel are 3.11 (the gate checks 3.10)
        if task is None:
            raise RuntimeError("a deadline needs a running task")
        self._task = task
        self._cancelling = task.cancelling()
        loop = task.get_loop()
        if self._delay > 0:
            self._handle: asyncio.Handle | None = None
            self._wheel = _wheel(loop)
            # an infinite delay never expires: no slot
            self._slot = self._wheel.join(self, self._delay) if self._delay < math.inf else None
        else:  # already past: the body gets one step, as with asyncio.timeout
            self._handle = loop.call_soon(self._expire)

    def _expire(self) -> None:
        self._task.cancel()
        self._fired = True

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if self._handle is None:
            if self._slot is not None:
                self._wheel.leave(self, self._slot)
        else:
            self._handle.cancel()
        if self._fired and self._task.uncancel() <= self._cancelling and et is asyncio.CancelledError:
            raise TimeoutError from exc


if sys.version_info >= (3, 11):
    timeout = Deadline
else:  # pragma: no cover - Python 3.10 (no Task.uncancel)
    from async_timeout import timeout

__all__ = ["Deadline", "timeout", "MIN_SLOT_S"]
