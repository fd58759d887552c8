"""An in-process sink (tests, the demo): a hash-chained list that lives as long as the object."""

from __future__ import annotations

from collections.abc import Sequence

from ..chain import GENESIS, ChainRow, Verifier, VerifyReport, canonical, chain_rows, verify
from ..query import AuditQuery
from ..record import AuditEvent


class MemorySink:
    def __init__(self) -> None:
        self.rows: list[ChainRow] = []
        self.events: list[AuditEvent] = []
        self.head: tuple[int, str] = (0, GENESIS)

    async def write(self, events: Sequence[AuditEvent]) -> tuple[int, str]:
        rows = chain_rows([canonical(e) for e in events], *self.head)
        if rows:
            self.rows.extend(rows)
            self.events.extend(events)
            self.head = (rows[-1].seq, rows[-1].hash)
        return self.head

    async def query(self, filters: AuditQuery) -> list[AuditEvent]:
        out: list[AuditEvent] = []
        for ev in reversed(self.events):
            if filters.limit is not None and len(out) >= filters.limit:
                break
            if filters.matches(ev):
                out.append(ev)
        return out

    async def tail(self, n: int = 20) -> list[AuditEvent]:
        return self.events[-n:] if n > 0 else []

    async def verify(self, verifier: Verifier | None = None) -> VerifyReport:
        return verify(self.rows, head=self.head if self.rows else None, verifier=verifier)

    async def aclose(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"MemorySink({len(self.rows)} rows)"


__all__ = ["MemorySink"]
