"""A JSON Lines sink: one object per line, ``{"event": {...}, "hash": ..., "prev_hash": ..., "seq": n}``.

Safe for several processes appending to the same file: a batch is appended under an exclusive
``fcntl.flock`` held across "read the last line" and "append the new lines", so no other writer
can append in between and the chain stays linear. The head (``seq`` and ``hash`` of the newest row)
is also written to ``<path>.head`` under the same lock, so cutting rows from the end of the file is
detected; a writer that finds the file shorter than its head continues from the head (the gap stays
visible to ``verify``) rather than papering over it.

A line left half-written by a crashed writer (no trailing newline) was never acknowledged: the next
writer truncates it, with a warning. POSIX only (``fcntl``); local filesystems (flock over NFS is
not reliable).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path

import orjson

from ..chain import GENESIS, ChainRow, Verifier, VerifyReport, canonical, chain_rows
from ..query import AuditQuery
from ..record import AuditEvent
from .base import ThreadedSink

log = logging.getLogger("hyperion.audit")
_BLOCK = 64 * 1024


class JsonlSink(ThreadedSink):
    """Audit rows appended to ``path`` (created with its folders if missing).
    ``fsync=True`` makes every batch durable against power loss (slower)."""

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        super().__init__("hyperion-audit-jsonl")
        self.path = Path(path)
        self.head_path = Path(f"{self.path}.head")
        self.fsync = fsync
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"JsonlSink('{self.path}')"

    # -- worker-thread side ------------------------------------------------------------------

    def _file(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        return self._fd

    def _write(self, events: Sequence[AuditEvent]) -> tuple[int, str]:
        fd = self._file()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            seq, prev = self._continue_from(fd)
            rows = chain_rows([canonical(e) for e in events], seq, prev)
            data = b"".join(_line(r) for r in rows)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
            self._write_head(rows[-1].seq, rows[-1].hash)
            return rows[-1].seq, rows[-1].hash
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _continue_from(self, fd: int) -> tuple[int, str]:
        """(seq, hash) to append after; called under the exclusive lock."""
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            cut = _rfind_newline(fd, size) + 1
            log.warning("audit: %s ended in a half-written line (%d bytes); truncating it", self.path, size - cut)
            os.ftruncate(fd, cut)
            size = cut
        last = next(_lines_reverse(fd, size), None)
        seq, prev = (0, GENESIS)
        if last is not None:
            d = orjson.loads(last)
            seq, prev = int(d["seq"]), str(d["hash"])
        head = self._read_head()
        if head is not None and (head[0] > seq or (head[0] == seq and head[1] != prev)):
            return head  # rows were cut from the end: keep the gap visible
        return seq, prev

    def _read_head(self) -> tuple[int, str] | None:
        try:
            d = orjson.loads(self.head_path.read_bytes())
            return int(d["seq"]), str(d["hash"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            log.warning("audit: %s is unreadable; ignoring it", self.head_path)
            return None

    def _write_head(self, seq: int, h: str) -> None:
        tmp = Path(f"{self.head_path}.tmp")
        tmp.write_bytes(orjson.dumps({"hash": h, "seq": seq}))
        os.replace(tmp, self.head_path)

    def _events_reverse(self) -> Iterator[AuditEvent]:
        fd = self._file()
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                size = _rfind_newline(fd, size) + 1  # skip a half-written last line
            for line in _lines_reverse(fd, size):
                yield AuditEvent.from_dict(orjson.loads(line)["event"])
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _query(self, q: AuditQuery) -> list[AuditEvent]:
        out: list[AuditEvent] = []
        if q.limit == 0:
            return out
        with closing(self._events_reverse()) as events:
            for ev in events:
                if q.matches(ev):
                    out.append(ev)
                    if q.limit is not None and len(out) >= q.limit:
                        break
        return out

    def _tail(self, n: int) -> list[AuditEvent]:
        out: list[AuditEvent] = []
        if n > 0:
            with closing(self._events_reverse()) as events:
                for ev in events:
                    out.append(ev)
                    if len(out) >= n:
                        break
        return out[::-1]

    def _verify(self, v: Verifier) -> VerifyReport:
        fd = self._file()
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            with open(self.path, "rb") as f:
                for lineno, line in enumerate(f, 1):
                    i = lineno - 1
                    if not line.endswith(b"\n"):
                        break  # half-written by a crashed writer, never acknowledged (the head still counts)
                    try:
                        d = orjson.loads(line)
                        row = ChainRow(int(d["seq"]), str(d["prev_hash"]), str(d["hash"]), canonical(d["event"]),
                                       ref=f"line {lineno}")
                    except (ValueError, KeyError, TypeError) as exc:
                        return v.bad(i, f"row {i} (line {lineno}): not a valid audit row ({exc}); it was edited")
                    if not v.feed(row):
                        return v.finish()
            return v.finish(self._read_head())
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None



def _line(row: ChainRow) -> bytes:
    # the event is embedded as its canonical bytes, so the line itself is canonical (sorted keys)
    return b'{"event":%s,"hash":"%s","prev_hash":"%s","seq":%d}\n' % (
        row.body, row.hash.encode(), row.prev_hash.encode(), row.seq,
    )


def _rfind_newline(fd: int, end: int) -> int:
    """Offset of the last ``\\n`` before ``end``, or -1."""
    pos = end
    while pos > 0:
        start = max(0, pos - _BLOCK)
        i = os.pread(fd, pos - start, start).rfind(b"\n")
        if i >= 0:
            return start + i
        pos = start
    return -1


def _lines_reverse(fd: int, size: int) -> Iterator[bytes]:
    """Complete lines of the first ``size`` bytes (which end in a newline), newest first."""
    pos, head = size, b""  # ``head``: the start of a line whose beginning is not read yet
    while pos > 0:
        start = max(0, pos - _BLOCK)
        parts = (os.pread(fd, pos - start, start) + head).split(b"\n")
        pos, head = start, parts[0]
        for line in reversed(parts[1:]):
            if line.strip():
                yield line
    if head.strip():
        yield head


__all__ = ["JsonlSink"]
