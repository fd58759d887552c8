"""SSEResponse writes: chunks that are ready together go out in one write, a chunk that arrives later
is never held back, and waiting inside the stream stays an ordinary await (cancellation included)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hyperion_core.server.streams import SSEResponse, _start


class _Enc:
    def chunk(self, c: Any) -> bytes:
        return f"[{c}]".encode()

    def done(self) -> bytes:
        return b"<done>"

    def error(self, exc: BaseException) -> bytes:
        return f"<error {type(exc).__name__}>".encode()


class _Stream:
    """Chunks in bursts: a burst is ready at once, the next one after a real wait."""

    def __init__(self, bursts: list[list[str]], gap: float = 0.05, fail: bool = False,
                 log: list[Any] | None = None) -> None:
        self.bursts, self.gap, self.fail, self.closed = bursts, gap, fail, False
        self.log = log if log is not None else []

    def __aiter__(self) -> Any:
        return self._gen()

    async def _gen(self) -> Any:
        for i, burst in enumerate(self.bursts):
            if i:
                await asyncio.sleep(self.gap)
            self.log.append(("burst", i))
            for c in burst:
                yield c
        if self.fail:
            raise RuntimeError("cut")

    async def aclose(self) -> None:
        self.closed = True


async def _serve(stream: _Stream) -> tuple[list[bytes], list[str]]:
    writes: list[bytes] = []
    outcomes: list[str] = []
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.body":
            writes.append(msg["body"])
            stream.log.append(("write", msg["body"]))

    resp = SSEResponse(stream, None, _Enc(), {}, on_end=lambda outcome, exc: outcomes.append(outcome))  # type: ignore[arg-type]
    await resp({}, receive, send)
    return writes, outcomes


async def test_ready_chunks_share_a_write_and_later_ones_are_not_held() -> None:
    stream = _Stream([["a", "b", "c"], ["d"], ["e", "f"]], gap=0.01)
    writes, outcomes = await _serve(stream)
    assert writes == [b"[a][b][c]", b"[d]", b"[e][f]<done>"]
    # each burst is written as soon as the stream has to wait, before the next burst exists
    assert stream.log == [("burst", 0), ("write", b"[a][b][c]"), ("burst", 1), ("write", b"[d]"), ("burst", 2),
                          ("write", b"[e][f]<done>")]
    assert outcomes == ["ok"] and stream.closed


async def test_a_failure_after_buffered_chunks_sends_them_then_the_error() -> None:
    writes, outcomes = await _serve(_Stream([["a"], ["b", "c"]], gap=0.01, fail=True))
    assert b"".join(writes) == b"[a][b][c]<error RuntimeError>"
    assert outcomes == ["error"]


async def test_start_resumes_a_waiting_call_and_passes_cancellation_in() -> None:
    finished: list[str] = []

    async def gen() -> Any:
        yield 1
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            finished.append("cancelled inside")
            raise
        yield 2

    it = gen()
    assert _start(it) == (True, 1)
    ready, waiting = _start(it)
    assert not ready

    async def consume() -> Any:
        return await waiting

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == ["cancelled inside"]

    async def slow() -> Any:
        await asyncio.sleep(0.01)
        yield "late"

    ready, waiting = _start(slow())
    assert not ready and await waiting == "late"
    with pytest.raises(StopAsyncIteration):
        _start(_empty())


async def _empty_gen() -> Any:
    if False:
        yield None


def _empty() -> Any:
    return _empty_gen()
