"""Audit sinks: one module each, one :class:`AuditSink` Protocol.

``SqliteSink`` (the embedded default), ``JsonlSink``, ``RedisStreamsSink`` and ``MemorySink`` (tests).
"""

from .base import AuditSink, ThreadedSink
from .jsonl import JsonlSink
from .memory import MemorySink
from .redis_streams import RedisStreamsSink
from .sqlite import SqliteSink

__all__ = ["AuditSink", "ThreadedSink", "JsonlSink", "MemorySink", "RedisStreamsSink", "SqliteSink"]
