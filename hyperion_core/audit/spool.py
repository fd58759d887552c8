"""The bounded local spool that holds audit events while a sink is down, oldest first.

:class:`FileSpool` is a JSON Lines file (one event per line) plus ``<path>.offset``, the byte offset
of the first event not yet handed to the sink; events survive a crash and are flushed by the next
:class:`~hyperion_core.audit.AuditLog` that opens the same file. Each file belongs to one process at a
time: its owner holds an exclusive ``flock`` on it for as long as it runs. :class:`MemorySpool` is the
same in memory (used when no ``spool_path`` is configured; lost if the process dies).

``{pid}`` in the file name gives each process its own spool. A process that dies leaves its file
behind, unlocked (the kernel drops a dead process's locks): :meth:`FileSpool.adopt_orphans` finds
such files next to the caller's own (same name pattern, lock free) and takes them over, lock and
all, so the adopting log delivers their events and then removes them. Two processes starting
together cannot both adopt one file: only one gets its lock, and a file removed after its adopter
finished is recognised (its inode is gone) by a process that opened it just before.

``append`` takes as many events as there is room for (``max_events``) and returns that number; the
caller counts and reports the rest as dropped. Delivery after a crash is at least once: an event
written to the sink just before the crash may be sent again (the SQLite sink ignores repeats by id).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Sequence
from itertools import islice
from pathlib import Path

import orjson

from .record import AuditError, AuditEvent

log = logging.getLogger("hyperion.audit")


class MemorySpool:
    path: Path | None = None

    def __init__(self, max_events: int = 10_000) -> None:
        if max_events < 0:
            raise AuditError(f"spool_max_events: must be >= 0, got {max_events}")
        self.max_events = max_events
        self._q: deque[AuditEvent] = deque()

    def __len__(self) -> int:
        return len(self._q)

    def __repr__(self) -> str:
        return f"memory spool ({len(self)}/{self.max_events} events)"

    def append(self, events: Sequence[AuditEvent]) -> int:
        take = list(events[: max(0, self.max_events - len(self._q))])
        self._q.extend(take)
        return len(take)

    def peek(self, n: int) -> list[AuditEvent]:
        return list(islice(self._q, n))

    def pop(self, n: int) -> None:
        for _ in range(min(n, len(self._q))):
            self._q.popleft()

    def close(self) -> None:
        pass


class FileSpool:
    def __init__(self, path: str | Path, max_events: int = 10_000, *, fsync: bool = False,
                 _locked_fd: int | None = None) -> None:
        if max_events < 0:
            raise AuditError(f"spool_max_events: must be >= 0, got {max_events}")
        self.template = str(path)
        self.path = Path(self.template.replace("{pid}", str(os.getpid())))
        self.offset_path = Path(f"{self.path}.offset")
        self.max_events = max_events
        self.fsync = fsync
        self._lock = threading.Lock()
        if _locked_fd is not None:  # an adopted orphan, already locked
            self._fd = _locked_fd
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(self._fd)
                raise AuditError(
                    f"audit spool {self.path} is in use by another process; give each process its own "
                    "spool_path (e.g. 'audit-spool-{pid}.jsonl')"
                ) from None
        self._q: deque[tuple[AuditEvent, int]] = deque()  # (event, its line's size in bytes)
        self._offset = 0
        self._load()

    def adopt_orphans(self) -> list[FileSpool]:
        """Spools left by dead processes next to this one (``{pid}`` in the file name), oldest file
        first, each locked by this process; empty ones are removed at once. Never raises: a file
        that cannot be read is left alone, with a warning."""
        name = Path(self.template).name
        if "{pid}" not in name:
            return []
        pattern = re.compile("^" + r"\d+".join(map(re.escape, name.split("{pid}"))) + "$")
        try:
            candidates = sorted(
                (p for p in self.path.parent.iterdir() if pattern.match(p.name) and p != self.path),
                key=lambda p: (p.stat().st_mtime, p.name),
            )
        except OSError as exc:
            log.warning("audit: cannot look for orphaned spools in %s (%s)", self.path.parent, exc)
            return []
        adopted = []
        for path in candidates:
            try:
                fd = os.open(path, os.O_RDWR | os.O_APPEND)
            except OSError:
                continue  # removed meanwhile (adopted by another process)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    raise FileNotFoundError(path)  # adopted and removed after we opened it
            except OSError:
                os.close(fd)  # its owner is alive, or another process adopted it
                continue
            try:
                orphan = FileSpool(path, max_events=0, fsync=self.fsync, _locked_fd=fd)
            except Exception as exc:
                os.close(fd)
                log.warning("audit: cannot read the orphaned spool %s (%s); leaving it alone", path, exc)
                continue
            if len(orphan):
                log.warning("audit: adopted %d event(s) from %s, the spool of a process that is no longer "
                            "running; they go to the sink first", len(orphan), path)
                adopted.append(orphan)
            else:
                orphan.discard()
        return adopted

    def discard(self) -> None:
        """Remove the file (and its offset) and release it; for an adopted spool once delivered."""
        with self._lock:
            if self._fd >= 0:
                self.path.unlink(missing_ok=True)  # while still locked: nobody else can adopt it now
                self.offset_path.unlink(missing_ok=True)
                os.close(self._fd)
                self._fd = -1

    def __len__(self) -> int:
        return len(self._q)

    def __repr__(self) -> str:
        return f"spool {self.path} ({len(self)}/{self.max_events} events)"

    def _load(self) -> None:
        try:
            self._offset = int(self.offset_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            self._offset = 0
        size = os.fstat(self._fd).st_size
        if self._offset > size:
            self._offset = 0
        base = self._offset
        data = os.pread(self._fd, size - base, base) if size > base else b""
        pos = 0
        while pos < len(data):
            end = data.find(b"\n", pos)
            if end < 0:  # a half-written last line: never acknowledged, drop it
                log.warning("audit: %s ends in a half-written event; truncating it", self.path)
                os.ftruncate(self._fd, base + pos)
                break
            n = end + 1 - pos
            try:
                self._q.append((AuditEvent.from_dict(orjson.loads(data[pos:end])), n))
            except (ValueError, TypeError) as exc:
                log.error("audit: %s has an unreadable event at byte %d (%s); skipping it", self.path,
                          base + pos, exc)
                if self._q:  # popped together with the event before it
                    ev, before = self._q.pop()
                    self._q.append((ev, before + n))
                else:
                    self._offset += n
            pos = end + 1
        if self._q:
            log.warning("audit: %s holds %d event(s) from an earlier run; they will be flushed first", self.path,
                        len(self._q))

    def append(self, events: Sequence[AuditEvent]) -> int:
        with self._lock:
            take = list(events[: max(0, self.max_events - len(self._q))])
            if not take:
                return 0
            lines = [orjson.dumps(e.to_dict()) + b"\n" for e in take]
            view = memoryview(b"".join(lines))
            size = os.fstat(self._fd).st_size
            try:
                while view:
                    view = view[os.write(self._fd, view) :]
                if self.fsync:
                    os.fsync(self._fd)
            except OSError:  # e.g. ENOSPC: take nothing, and leave no partial line behind
                try:
                    os.ftruncate(self._fd, size)
                except OSError:
                    pass
                raise
            self._q.extend(zip(take, map(len, lines)))
            return len(take)

    def peek(self, n: int) -> list[AuditEvent]:
        with self._lock:
            return [e for e, _ in islice(self._q, n)]

    def pop(self, n: int) -> None:
        with self._lock:
            for _ in range(min(n, len(self._q))):
                self._offset += self._q.popleft()[1]
            try:
                if not self._q:
                    os.ftruncate(self._fd, 0)
                    self._offset = 0
                    self.offset_path.unlink(missing_ok=True)
                else:
                    tmp = Path(f"{self.offset_path}.tmp")
                    tmp.write_text(str(self._offset))
                    os.replace(tmp, self.offset_path)
            except OSError as exc:  # a full disk: the events are in the sink; only crash recovery may repeat them
                log.warning("audit: cannot record the spool offset of %s (%s); after a crash some delivered "
                            "events may be sent again", self.path, exc)

    def close(self) -> None:
        if not self._q and "{pid}" in Path(self.template).name:
            self.discard()  # an empty per-process spool: nothing for anyone to adopt
            return
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)  # releases the flock
                self._fd = -1


__all__ = ["MemorySpool", "FileSpool"]
