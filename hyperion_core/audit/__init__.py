"""The audit log: exactly one immutable :class:`AuditEvent` per request, failures included,
hash-chained in every sink so that edits, deletions, insertions and reordering are detected.

::

    log = AuditLog(SqliteSink("audit.db"), spool_path="audit-spool.jsonl")
    log.emit(event_from_response(resp, caller, stream=False, store_content=log.store_content))
    await log.query(team="search", outcome="error", since=time.time() - 3600)
    report = await log.verify()          # VerifyReport(ok, checked, first_bad_index, reason)
    await log.aclose()

Sinks (one module each, one Protocol): SQLite (the embedded default), JSONL, Redis Streams.
``open_sink("sqlite:///path/audit.db")`` builds one from a spec; ``tail_command`` and
``verify_command`` back ``hyperion audit tail|verify``.
"""

from .chain import GENESIS, ChainRow, Verifier, VerifyReport, canonical, link, verify
from .commands import SinkSpec, format_event, open_sink, parse_sink_spec, tail_command, verify_command
from .config import AuditConfig
from .log import AuditLog
from .query import AuditQuery
from .record import (
    OUTCOMES,
    AuditAttempt,
    AuditError,
    AuditEvent,
    AuditOutcome,
    CacheTier,
    FrozenMap,
    event_from_error,
    event_from_response,
    new_event_id,
    outcome_for,
)
from .scrub import REDACTED, Scrubber, scrub
from .sinks import AuditSink, JsonlSink, MemorySink, RedisStreamsSink, SqliteSink
from .spool import FileSpool, MemorySpool

__all__ = [
    "AuditEvent",
    "AuditAttempt",
    "AuditOutcome",
    "AuditError",
    "CacheTier",
    "FrozenMap",
    "OUTCOMES",
    "event_from_response",
    "event_from_error",
    "new_event_id",
    "outcome_for",
    "Scrubber",
    "scrub",
    "REDACTED",
    "GENESIS",
    "ChainRow",
    "Verifier",
    "VerifyReport",
    "canonical",
    "link",
    "verify",
    "AuditQuery",
    "AuditSink",
    "SqliteSink",
    "JsonlSink",
    "RedisStreamsSink",
    "MemorySink",
    "AuditLog",
    "FileSpool",
    "MemorySpool",
    "AuditConfig",
    "SinkSpec",
    "parse_sink_spec",
    "open_sink",
    "tail_command",
    "verify_command",
    "format_event",
]
