"""Hash chaining of audit rows (pure: no I/O).

Each sink keeps its rows in one linear order, numbered ``seq = 1, 2, 3, ...``, and links them::

    body_i = canonical(event_i)                       # orjson, sorted keys, UTF-8
    hash_i = sha256(hash_{i-1} || body_i)             # hex digests; hash_{i-1} as its 64 ASCII hex chars
    hash_0 = GENESIS                                  # 64 zeros

A sink also keeps its *head* (the ``seq`` and ``hash`` of its newest row) apart from the rows, and
continues the chain from the head. :func:`verify` then detects an edited row (its hash no longer
matches its content), a deleted, inserted or reordered row (a row no longer links to the row before
it, or ``seq`` does not step by one) and rows cut from the end (the last row is not the head).

What a plain hash chain cannot detect: someone with write access who recomputes every hash after
the change *and* rewrites the head. Ship the head (``seq``, ``hash``) somewhere else now and then
(a ticket, a log line, another store) to pin it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .record import AuditEvent

GENESIS = "0" * 64
_OPTS = orjson.OPT_SORT_KEYS


def canonical(event: AuditEvent | Mapping[str, Any]) -> bytes:
    """The bytes that are hashed: the event's JSON form with sorted keys and no whitespace.
    Stable under ``canonical(orjson.loads(canonical(x))) == canonical(x)``."""
    return orjson.dumps(event.to_dict() if isinstance(event, AuditEvent) else event, option=_OPTS)


def link(prev_hash: str, body: bytes) -> str:
    """``sha256(prev_hash || body)`` as hex."""
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


@dataclass(slots=True, frozen=True)
class ChainRow:
    """One stored row as the verifier sees it. ``ref`` is the sink's own address of the row
    (a line number, a stream entry id) for messages."""

    seq: int
    prev_hash: str
    hash: str
    body: bytes
    ref: str | None = None


def chain_rows(bodies: Sequence[bytes], head_seq: int, head_hash: str) -> list[ChainRow]:
    """The rows that append ``bodies`` after the head ``(head_seq, head_hash)``."""
    rows = []
    seq, prev = head_seq, head_hash
    for body in bodies:
        seq += 1
        h = link(prev, body)
        rows.append(ChainRow(seq, prev, h, body))
        prev = h
    return rows


@dataclass(slots=True, frozen=True)
class VerifyReport:
    """``ok`` when every row checked out; else ``first_bad_index`` (0-based position in the sink's
    order; equal to ``checked`` when rows are missing at the end) and a ``reason`` naming the row."""

    ok: bool
    checked: int
    first_bad_index: int | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.checked} row(s), chain intact" + (f" ({self.reason})" if self.reason else "")
        return f"FAILED at row {self.first_bad_index} after {self.checked} good row(s): {self.reason}"


class Verifier:
    """Incremental :func:`verify`: ``feed`` rows in the sink's order (stops at the first bad one),
    then ``finish`` with the sink's head. Lets sinks verify page by page without loading everything."""

    __slots__ = ("allow_trimmed", "_index", "_prev_hash", "_prev_seq", "report")

    def __init__(self, *, allow_trimmed: bool = False) -> None:
        #: the oldest rows may have been trimmed (a capped stream): the first row is taken as given
        self.allow_trimmed = allow_trimmed
        self._index = 0
        self._prev_hash = GENESIS
        self._prev_seq = 0
        self.report: VerifyReport | None = None  # set at the first bad row

    @property
    def last_seq(self) -> int:
        """``seq`` of the last good row (0 before any)."""
        return self._prev_seq

    def feed(self, row: ChainRow) -> bool:
        """Check one row; False (and ``report`` set) if it is bad."""
        if self.report is not None:
            return False
        i = self._index
        if link(row.prev_hash, row.body) != row.hash:
            return self._bad(f"{_where(i, row)}: content does not match its hash (the row was edited)")
        if i == 0 and self.allow_trimmed and row.seq > 1:
            pass  # older rows were trimmed by the retention policy: this row anchors the chain
        elif row.prev_hash != self._prev_hash or row.seq != self._prev_seq + 1:
            expected = self._prev_seq + 1
            if row.seq > expected:
                why = f"seq {row.seq} where seq {expected} was expected: rows were deleted or moved"
            elif row.seq < expected:
                why = f"seq {row.seq} comes after seq {self._prev_seq}: rows were reordered or inserted"
            else:
                why = "it does not link to the row before it: a row was inserted, replaced or moved"
            return self._bad(f"{_where(i, row)}: {why}")
        self._index += 1
        self._prev_hash, self._prev_seq = row.hash, row.seq
        return True

    def bad(self, index: int | None, reason: str) -> VerifyReport:
        """Record a sink-specific failure (e.g. a row that cannot be parsed)."""
        checked = self._index if index is None else min(index, self._index)
        self.report = VerifyReport(False, checked, self._index if index is None else index, reason)
        return self.report

    def _bad(self, reason: str) -> bool:
        self.bad(None, reason)
        return False

    def finish(self, head: tuple[int, str] | None = None) -> VerifyReport:
        """The report; ``head`` is the sink's ``(seq, hash)`` of its newest row, if it keeps one."""
        if self.report is not None:
            return self.report
        n = self._index
        if head is not None and head != (self._prev_seq, self._prev_hash):
            head_seq, head_hash = head
            if head_seq > self._prev_seq:
                why = f"the head says seq {head_seq} but the last row is seq {self._prev_seq}: rows were cut from the end"
            elif head_seq < self._prev_seq:
                why = (
                    f"the last row is seq {self._prev_seq} but the head says seq {head_seq}: rows were appended "
                    "behind the head's back (or a writer crashed before moving the head)"
                )
            else:
                why = f"the last row (seq {self._prev_seq}) is not the head: it was replaced"
            return self.bad(n, why)
        if n and self.allow_trimmed and self._prev_seq > n:
            return VerifyReport(True, n, None, f"rows before seq {self._prev_seq - n + 1} were trimmed by retention")
        return VerifyReport(True, n)


def verify(
    rows: Iterable[ChainRow], *, head: tuple[int, str] | None = None, allow_trimmed: bool = False
) -> VerifyReport:
    """Check a whole chain (see the module docstring for what is detected)."""
    v = Verifier(allow_trimmed=allow_trimmed)
    for row in rows:
        if not v.feed(row):
            break
    return v.finish(head)


def _where(index: int, row: ChainRow) -> str:
    try:
        event_id = orjson.loads(row.body).get("id")
    except (orjson.JSONDecodeError, AttributeError):
        event_id = None
    ref = f", {row.ref}" if row.ref else ""
    return f"row {index} (seq {row.seq}{ref}, id {event_id or '?'})"


__all__ = ["GENESIS", "ChainRow", "VerifyReport", "Verifier", "canonical", "chain_rows", "link", "verify"]
