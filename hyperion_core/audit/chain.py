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
the change *and* rewrites the head, or who cuts the newest rows and moves the head back with them.
Pins close that gap: a ``(seq, hash)`` known from outside the store (a signed anchor, see
:mod:`.anchor`, or ``--expect-head``) that the chain must contain. A verifier can also start at a
trusted checkpoint instead of genesis (``start``), and refuse an empty log (``allow_empty=False``).
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

    __slots__ = ("allow_trimmed", "allow_empty", "pins", "start", "expect_head", "_index", "_prev_hash",
                 "_prev_seq", "_skipped", "_seen_expected", "report")

    def __init__(
        self,
        *,
        allow_trimmed: bool = False,
        allow_empty: bool = True,
        pins: Mapping[int, tuple[str, str]] | None = None,
        start: tuple[int, str] | None = None,
        expect_head: str | None = None,
    ) -> None:
        #: the oldest rows may have been trimmed (a capped stream): the first row is taken as given
        self.allow_trimmed = allow_trimmed
        #: a log with no rows and no head verifies (False: it fails, naming the likely causes)
        self.allow_empty = allow_empty
        #: ``seq -> (hash, what vouches for it)``: rows the chain must contain, e.g. a signed anchor
        self.pins = dict(pins or {})
        #: a trusted checkpoint ``(seq, hash)``: rows before it are skipped, the chain is checked from it
        self.start = start
        #: the hash the newest row must have
        self.expect_head = expect_head
        self._index = 0
        self._prev_hash = GENESIS
        self._prev_seq = 0
        self._skipped = 0
        self._seen_expected: int | None = None  # seq of the row whose hash is ``expect_head``
        self.report: VerifyReport | None = None  # set at the first bad row

    @property
    def start_seq(self) -> int:
        """Rows with a smaller ``seq`` need not be fed (a sink may skip them to save time)."""
        return self.start[0] if self.start else 0

    @property
    def last_seq(self) -> int:
        """``seq`` of the last good row (0 before any)."""
        return self._prev_seq

    def feed(self, row: ChainRow) -> bool:
        """Check one row; False (and ``report`` set) if it is bad."""
        if self.report is not None:
            return False
        i = self._index
        if self.start and i == 0 and row.seq < self.start[0]:
            self._skipped += 1
            return True
        if link(row.prev_hash, row.body) != row.hash:
            return self._bad(f"{_where(i, row)}: content does not match its hash (the row was edited)")
        pin = self.pins.get(row.seq)
        if pin is not None and pin[0] != row.hash:
            return self._bad(f"{_where(i, row)}: its hash {row.hash[:16]}... differs from {pin[1]} ({pin[0][:16]}...): "
                             "the chain was rewritten up to here")
        if self.start and i == 0:
            seq, h = self.start
            if row.seq != seq:
                return self._bad(f"{_where(i, row)}: the checkpoint row seq {seq} is missing (rows were deleted)")
            if row.hash != h:
                return self._bad(f"{_where(i, row)}: it does not match the checkpoint ({h[:16]}...): it was rewritten")
        elif i == 0 and self.allow_trimmed and row.seq > 1:
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
        if self.expect_head is not None and row.hash == self.expect_head:
            self._seen_expected = row.seq
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
        late = sorted((seq, pin) for seq, pin in self.pins.items() if seq > self._prev_seq)
        if late:
            seq, (h, what) = late[0]
            end = f"ends at seq {self._prev_seq}" if n or self._skipped else "is empty"
            return self.bad(n, f"{what} vouches for seq {seq} (hash {h[:16]}...) but the log {end}: rows were cut "
                               "from the end (or the log was wiped or replaced)")
        if self.start and not n:
            return self.bad(0, f"the checkpoint row seq {self.start[0]} is missing: rows were cut or the log wiped")
        if self.expect_head is not None and self._prev_hash != self.expect_head:
            if self._seen_expected is not None:
                why = (f"the expected head is seq {self._seen_expected}, but the log goes on to seq {self._prev_seq} "
                       f"(head {self._prev_hash})")
            else:
                why = (f"the expected head {self.expect_head} is not in the log (its last row is seq {self._prev_seq}, "
                       f"{self._prev_hash}): rows were cut or rewritten")
            return self.bad(n, why)
        if not n and not self._skipped and head in (None, (0, GENESIS)) and not self.allow_empty:
            return self.bad(0, "the audit log is empty: no rows and no head (never written, wiped, or the wrong "
                               "sink or stream name); pass --allow-empty if that is expected")
        if self.start:
            return VerifyReport(True, n, None, f"checked from the checkpoint at seq {self.start[0]}")
        if n and self.allow_trimmed and self._prev_seq > n:
            return VerifyReport(True, n, None, f"rows before seq {self._prev_seq - n + 1} were trimmed by retention")
        return VerifyReport(True, n)


def verify(
    rows: Iterable[ChainRow], *, head: tuple[int, str] | None = None, allow_trimmed: bool = False,
    verifier: Verifier | None = None,
) -> VerifyReport:
    """Check a whole chain (see the module docstring for what is detected)."""
    v = verifier or Verifier(allow_trimmed=allow_trimmed)
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
