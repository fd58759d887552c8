"""The embedded default sink: one SQLite file (stdlib ``sqlite3``, WAL), safe for several processes.

Chaining is race-free across processes because each batch is appended inside one
``BEGIN IMMEDIATE`` transaction: it takes SQLite's write lock *before* reading the head, so no other
writer can append between "read the head" and "insert the rows and move the head"; a second writer
waits (``busy_timeout``) and then reads the new head. Rows and head commit together or not at all.

Blocking calls run on the sink's own worker thread (see :class:`ThreadedSink`); a batch is one
transaction. ``synchronous=NORMAL`` (the WAL default) survives a process crash; pass ``"FULL"`` to
survive power loss too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import orjson

from ..chain import GENESIS, ChainRow, Verifier, VerifyReport, canonical, chain_rows
from ..query import AuditQuery
from ..record import AuditEvent
from .base import ThreadedSink

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_events (
    seq        INTEGER PRIMARY KEY,   -- chain position: 1, 2, 3, ...
    id         TEXT NOT NULL UNIQUE,
    time       REAL NOT NULL,         -- epoch seconds
    request_id TEXT,
    key_id     TEXT,
    team       TEXT,
    "user"     TEXT,
    route      TEXT,
    outcome    TEXT NOT NULL,
    body       TEXT NOT NULL,         -- the canonical JSON that is hashed
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events(time);
CREATE INDEX IF NOT EXISTS audit_events_key ON audit_events(key_id, seq);
CREATE INDEX IF NOT EXISTS audit_events_team ON audit_events(team, seq);
CREATE INDEX IF NOT EXISTS audit_events_request ON audit_events(request_id);
CREATE TABLE IF NOT EXISTS audit_head (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
"""
#: indexed columns that repeat a field of the hashed body; verify checks they still agree
_COLUMNS = ("id", "time", "request_id", "key_id", "team", "user", "route", "outcome")
_SELECT = "SELECT seq, " + ", ".join(f'"{c}"' for c in _COLUMNS) + ", body, prev_hash, hash FROM audit_events"
_INSERT = (
    "INSERT INTO audit_events (seq, " + ", ".join(f'"{c}"' for c in _COLUMNS) + ", body, prev_hash, hash) "
    "VALUES (" + ", ".join("?" * (len(_COLUMNS) + 4)) + ")"
)


class SqliteSink(ThreadedSink):
    """Audit rows in ``path`` (created with its folders if missing).

    ``busy_timeout`` (seconds) is how long a writer waits for another process's transaction.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0, synchronous: str = "NORMAL") -> None:
        super().__init__("hyperion-audit-sqlite")
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.synchronous = synchronous.upper()
        self._db: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"SqliteSink('{self.path}')"

    # -- worker-thread side ------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute("BEGIN IMMEDIATE")  # serialise schema creation between processes
            try:
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(stmt)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                db.close()
                raise
            self._db = db
        return self._db

    def _write(self, events: Sequence[AuditEvent]) -> tuple[int, str] | None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            events = self._not_stored(db, events)
            written = None
            if events:
                head = db.execute("SELECT seq, hash FROM audit_head WHERE one = 1").fetchone()
                last = db.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev = head or last or (0, GENESIS)
                # never collide with a row added behind the head's back: verify will flag the gap
                seq = max(seq, last[0] if last else 0)
                rows = chain_rows([canonical(e) for e in events], seq, prev)
                db.executemany(
                    _INSERT,
                    [
                        (r.seq, e.id, e.time, e.request_id, e.key_id, e.team, e.user, e.route, e.outcome,
                         r.body.decode(), r.prev_hash, r.hash)
                        for e, r in zip(events, rows)
                    ],
                )
                db.execute(
                    "INSERT INTO audit_head (one, seq, hash) VALUES (1, ?, ?) "
                    "ON CONFLICT(one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    (rows[-1].seq, rows[-1].hash),
                )
                written = (rows[-1].seq, rows[-1].hash)
            db.execute("COMMIT")
            return written
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    @staticmethod
    def _not_stored(db: sqlite3.Connection, events: Sequence[AuditEvent]) -> list[AuditEvent]:
        """Drop events already stored (a batch retried after a crash between write and spool pop)."""
        ids = [e.id for e in events]
        seen: set[str] = set()
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            q = f"SELECT id FROM audit_events WHERE id IN ({', '.join('?' * len(part))})"
            seen.update(r[0] for r in db.execute(q, part))
        out, batch_ids = [], set()
        for e in events:
            if e.id not in seen and e.id not in batch_ids:
                out.append(e)
                batch_ids.add(e.id)
        return out

    def _query(self, q: AuditQuery) -> list[AuditEvent]:
        where: list[str] = []
        params: list[object] = []
        for col in ("key_id", "team", "user", "route", "request_id"):
            value = getattr(q, col)
            if value is not None:
                where.append(f'"{col}" = ?')
                params.append(value)
        if q.outcomes:
            where.append(f"outcome IN ({', '.join('?' * len(q.outcomes))})")
            params.extend(q.outcomes)
        if q.since is not None:
            where.append("time >= ?")
            params.append(q.since)
        if q.until is not None:
            where.append("time < ?")
            params.append(q.until)
        sql = "SELECT body FROM audit_events" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY seq DESC"
        if q.limit is not None:
            sql += " LIMIT ?"
            params.append(q.limit)
        return [AuditEvent.from_dict(orjson.loads(b)) for (b,) in self._conn().execute(sql, params)]

    def _tail(self, n: int) -> list[AuditEvent]:
        rows = self._conn().execute("SELECT body FROM audit_events ORDER BY seq DESC LIMIT ?", (max(n, 0),)).fetchall()
        return [AuditEvent.from_dict(orjson.loads(b)) for (b,) in reversed(rows)]

    def _verify(self, v: Verifier) -> VerifyReport:
        db = self._conn()
        db.execute("BEGIN")  # one consistent snapshot of rows and head (WAL readers never block writers)
        try:
            head = db.execute("SELECT seq, hash FROM audit_head WHERE one = 1").fetchone()
            n = 0
            for n, (seq, *cols, body, prev_hash, h) in enumerate(
                db.execute(_SELECT + " WHERE seq >= ? ORDER BY seq", (v.start_seq,)), 1
            ):
                if not v.feed(ChainRow(seq, prev_hash, h, body.encode())):
                    return v.finish()
                stored = orjson.loads(body)
                for name, value in zip(_COLUMNS, cols):
                    if stored.get(name) != value:
                        return v.bad(
                            n - 1,
                            f"row {n - 1} (seq {seq}, id {stored.get('id')}): column '{name}' says {value!r} but "
                            f"the hashed event says {stored.get(name)!r} (the row was edited)",
                        )
            if n and head is None:
                return v.bad(n, "the head record (audit_head) is missing: it was deleted")
            return v.finish(tuple(head) if head else None)
        finally:
            db.execute("COMMIT")

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None



__all__ = ["SqliteSink"]
