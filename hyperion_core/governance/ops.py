"""Store operations that run alone or batched: one code path for the memory and Redis backends.

Every governance store describes each operation as an :data:`Op` — a Redis store as a
:class:`ScriptOp` (a script call plus the parser of its reply), a memory store as a plain function that
does the work in process (under its lock, no awaits) — and owns a :class:`Runner` that executes ops. The ledger and the
:class:`~.facade.Governance` facade build ops and hand them to the runner without knowing the
backend: the memory runner runs them one after the other, the Redis runner sends them in one round
trip (``Scripts.run_many``), so admission (rate limits + budget reservation) and settlement (budget,
spend, TPM correction, anomaly buckets) stay one round trip on Redis::

    rate, held = await runner.run([rate_store.acquire_op(...), budget_store.reserve_op(...)])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from ._lua import Call, Scripts

T = TypeVar("T")


class ScriptOp(Generic[T]):
    """A Redis op: one script call and the parser of its reply into a ``T``."""

    __slots__ = ("call", "parse")

    def __init__(self, call: Call, parse: Callable[[Any], T]) -> None:
        self.call = call
        self.parse = parse

    def __repr__(self) -> str:
        return f"ScriptOp({self.call[0]!r})"


#: one store operation yielding a ``T``: a :class:`ScriptOp` (Redis), or a function that does the
#: work in process and returns the ``T`` (memory: a bound method or a ``functools.partial``)
Op = ScriptOp[T] | Callable[[], T]


class Runner(Protocol):
    async def run(self, ops: Sequence[Op[Any]], *, reads: Sequence[str] = ()) -> list[Any]:
        """Run ``ops`` in order; their results (led by the values of ``reads``, Redis keys read in
        the same round trip; the memory backend has none)."""

    async def one(self, op: Op[T]) -> T: ...


class LocalRunner:
    """Runs memory ops in order, in this process."""

    __slots__ = ()

    async def run(self, ops: Sequence[Op[Any]], *, reads: Sequence[str] = ()) -> list[Any]:
        if reads:
            raise ValueError("reads= needs the Redis backend")
        return [op() for op in ops]  # type: ignore[operator]

    async def one(self, op: Op[T]) -> T:
        return op()  # type: ignore[operator]


class ScriptRunner:
    """Runs Redis ops: one script alone, several pipelined in one round trip (each atomic)."""

    __slots__ = ("scripts",)

    def __init__(self, scripts: Scripts) -> None:
        self.scripts = scripts

    async def run(self, ops: Sequence[Op[Any]], *, reads: Sequence[str] = ()) -> list[Any]:
        raw = await self.scripts.run_many([op.call for op in ops], reads=reads)  # type: ignore[union-attr]
        n = len(reads)
        return raw[:n] + [op.parse(r) for op, r in zip(ops, raw[n:])]  # type: ignore[union-attr]

    async def one(self, op: Op[T]) -> T:
        return op.parse((await self.scripts.run_many([op.call]))[0])  # type: ignore[union-attr]


#: the memory backends' runner (stateless: one for all)
LOCAL = LocalRunner()


__all__ = ["Op", "ScriptOp", "Runner", "LocalRunner", "ScriptRunner", "LOCAL"]
