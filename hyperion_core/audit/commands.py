"""Sink specs and the helpers behind ``hyperion audit tail|verify``.

A sink spec names a sink in one string::

    sqlite:///var/lib/hyperion/audit.db     (sqlite://audit.db is relative to the working directory)
    jsonl:///var/log/hyperion/audit.jsonl
    redis://host:6379/0?stream={hyperion}:audit    (rediss:// and unix:// too; stream is optional)
    memory://                                       (in-process; tests)

A bare path ending in ``.db``/``.sqlite``/``.sqlite3`` or ``.jsonl``/``.ndjson`` is taken as that kind.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._text import suggest
from ..errors import ConfigError
from .anchor import key_bytes, read_anchor
from .chain import Verifier, VerifyReport
from .record import AuditError, AuditEvent
from .sinks.base import AuditSink
from .sinks.redis_streams import _safe_url

T = TypeVar("T")
_SCHEMES = ("sqlite", "jsonl", "redis", "rediss", "unix", "memory")
_EXAMPLES = "sqlite:///path/audit.db, jsonl:///path/audit.jsonl or redis://host:6379/0"


@dataclass(frozen=True, slots=True)
class SinkSpec:
    """A parsed sink spec: ``kind`` (sqlite | jsonl | redis | memory), ``target`` (a path or a URL
    without the sink's own query parameters) and constructor ``options`` (e.g. ``stream``)."""

    kind: str
    target: str
    options: tuple[tuple[str, Any], ...] = ()


def parse_sink_spec(spec: str) -> SinkSpec:
    """Check a sink spec without opening anything. Raises :class:`ConfigError` naming the problem
    and the accepted forms."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"audit sink: empty sink spec (use {_EXAMPLES})")
    spec = spec.strip()
    scheme, sep, rest = spec.partition("://")
    if not sep:
        low = spec.lower()
        if low.endswith((".db", ".sqlite", ".sqlite3")):
            return SinkSpec("sqlite", spec)
        if low.endswith((".jsonl", ".ndjson")):
            return SinkSpec("jsonl", spec)
        raise ConfigError(f"audit sink '{spec}': not a sink spec (use {_EXAMPLES})")
    scheme = scheme.lower()
    if scheme in ("sqlite", "jsonl"):
        if not rest:
            raise ConfigError(f"audit sink '{spec}': the path is missing (e.g. {scheme}:///var/lib/hyperion/audit.db)")
        return SinkSpec(scheme, rest)
    if scheme in ("redis", "rediss", "unix"):
        parts = urlsplit(spec)
        query = dict(parse_qsl(parts.query))
        options: dict[str, Any] = {}
        if "stream" in query:
            options["stream"] = query.pop("stream")
        if "maxlen" in query:
            try:
                options["maxlen"] = int(query.pop("maxlen"))
            except ValueError:
                raise ConfigError(f"audit sink '{_safe_url(spec)}': maxlen must be an integer") from None
        return SinkSpec("redis", urlunsplit(parts._replace(query=urlencode(query))), tuple(options.items()))
    if scheme == "memory":
        return SinkSpec("memory", "")
    raise ConfigError(
        f"audit sink '{_safe_url(spec)}': unknown scheme '{scheme}'" + suggest(scheme, set(_SCHEMES)) + f" (use {_EXAMPLES})"
    )


def open_sink(spec: str, **options: Any) -> AuditSink:
    """Build the sink a spec names (see :func:`parse_sink_spec`); ``options`` go to its constructor
    and win over the spec's own."""
    parsed = parse_sink_spec(spec)
    options = {**dict(parsed.options), **options}
    if parsed.kind == "sqlite":
        from .sinks.sqlite import SqliteSink

        return SqliteSink(parsed.target, **options)
    if parsed.kind == "jsonl":
        from .sinks.jsonl import JsonlSink

        return JsonlSink(parsed.target, **options)
    if parsed.kind == "redis":
        from .sinks.redis_streams import RedisStreamsSink

        return RedisStreamsSink(parsed.target, **options)
    from .sinks.memory import MemorySink

    return MemorySink()


def _open_existing(spec: str) -> AuditSink:
    """Like :func:`open_sink`, but a file sink must already exist (reading a mistyped path must not
    create an empty log that then verifies "ok")."""
    parsed = parse_sink_spec(spec)
    if parsed.kind in ("sqlite", "jsonl") and not Path(parsed.target).is_file():
        raise ConfigError(f"audit sink '{spec}': no audit log at {parsed.target}")
    return open_sink(spec)


def tail_command(sink_spec: str, n: int = 20) -> str:
    """The newest ``n`` events, oldest first, one line each (what ``hyperion audit tail`` prints).
    Raises :class:`ConfigError` for a bad spec or a missing file."""

    async def go() -> list[AuditEvent]:
        sink = _open_existing(sink_spec)
        try:
            return await sink.tail(n)
        finally:
            await sink.aclose()

    events = _run(go)
    if not events:
        return f"(no audit events in {_safe_url(sink_spec)})"
    return "\n".join(format_event(e) for e in events)


def verify_command(
    sink_spec: str,
    *,
    anchor: str | Path | None = None,
    key: Any = None,
    expect_head: str | None = None,
    since_checkpoint: bool = False,
    allow_empty: bool = False,
) -> tuple[int, str]:
    """Check the chain: ``(0, "... ok ...")`` when intact, ``(1, reason)`` when tampered with (an
    empty or missing log too, unless ``allow_empty``), ``(2, reason)`` for a usage or config error
    (bad spec, unreadable sink, missing anchor, a flag that needs something not given).

    ``anchor``: the anchor file (see :mod:`.anchor`): its row must be in the chain, so a log cut
    below it, wiped or rewritten fails; ``key`` checks its signature. ``expect_head``: the hash the
    newest row must have. ``since_checkpoint``: check from the anchored row on (fast), not genesis.
    """
    where = _safe_url(sink_spec) if isinstance(sink_spec, str) else repr(sink_spec)
    try:
        plan = _plan(anchor, key_bytes(key), expect_head, since_checkpoint, allow_empty)
    except ConfigError as exc:
        return 2, f"{where}: {exc}"
    if not isinstance(plan[0], Verifier):
        return plan[0], f"{where}: {plan[1]}"
    verifier, note = plan
    try:
        parsed = parse_sink_spec(sink_spec)
        if allow_empty and parsed.kind in ("sqlite", "jsonl") and not Path(parsed.target).is_file():
            return 0, f"{where}: ok: no audit log at {parsed.target} (allowed by --allow-empty)"
    except ConfigError as exc:
        return 2, str(exc)

    async def go() -> VerifyReport:
        sink = _open_existing(sink_spec)
        try:
            return await sink.verify(verifier)
        finally:
            await sink.aclose()

    try:
        report = _run(go)
    except ConfigError as exc:
        return 2, str(exc)
    except Exception as exc:
        return 2, f"{where}: cannot read the audit log ({type(exc).__name__}: {exc})"
    return (0 if report.ok else 1), f"{where}: {report}" + (f" [{note}]" if note and report.ok else "")


def _plan(anchor: str | Path | None, key: bytes | None, expect_head: str | None, since_checkpoint: bool,
          allow_empty: bool) -> tuple[Verifier, str] | tuple[int, str]:
    """The verifier the options ask for, or ``(exit code, reason)`` (pure but for reading the anchor)."""
    if expect_head is not None and not re.fullmatch(r"[0-9a-f]{64}", expect_head):
        raise ConfigError(f"--expect-head: '{expect_head}' is not a sha256 hex digest (64 characters 0-9a-f)")
    if since_checkpoint and anchor is None:
        raise ConfigError("--since-checkpoint needs an anchor (--anchor PATH, or audit.anchor_path in the config)")
    pins: dict[int, tuple[str, str]] = {}
    start = None
    note = ""
    if anchor is not None:
        try:
            cp = read_anchor(anchor)
        except AuditError as exc:
            return 1, f"FAILED: {exc}"
        if cp is None:
            raise ConfigError(f"no anchor at {anchor} (the writer creates it at its first checkpoint)")
        when = datetime.fromtimestamp(cp.time, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if key is not None:
            if not cp.signature_ok(key):
                return 1, (f"FAILED: the anchor {anchor} (seq {cp.seq}) does not carry a valid signature for this key: "
                           "it was forged or edited (or signed with another key)")
            what = f"the signed anchor of {when}"
        else:
            what = f"the anchor of {when}"
            note = "anchor signature not checked: no key (set HYPERION_AUDIT_KEY)" if cp.mac else "unsigned anchor"
        pins[cp.seq] = (cp.hash, what)
        if since_checkpoint:
            start = (cp.seq, cp.hash)
        note = "; ".join(filter(None, [f"anchored at seq {cp.seq}", note]))
    v = Verifier(allow_empty=allow_empty, pins=pins, start=start, expect_head=expect_head)
    return v, note


def format_event(e: AuditEvent) -> str:
    """One line: time, outcome, route, deployment, who, tokens, cost, latency, request id, error."""
    ts = datetime.fromtimestamp(e.time, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    who = " ".join(f"{k}={v}" for k, v in (("key", e.key_id), ("team", e.team), ("user", e.user)) if v)
    parts = [
        ts,
        f"{e.outcome:<15}",
        f"{e.route or '-'}/{e.deployment or '-'}",
        who or "anonymous",
        f"tokens={e.prompt_tokens}+{e.completion_tokens}",
        f"${e.cost:.6f}",
        f"{e.latency_ms:.0f}ms" if e.latency_ms is not None else "-",
    ]
    if e.cache_tier:
        parts.append(f"cache={e.cache_tier}")
    if e.stream:
        parts.append(f"stream chunks={e.delivered_chunks if e.delivered_chunks is not None else '?'}")
    parts.append(e.request_id or "-")
    if e.error_class:
        msg = (e.error_message or "").replace("\n", " ")
        parts.append(f"{e.error_class}: {msg[:160]}")
    return "  ".join(parts)


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine from sync code, even when the calling thread already runs a loop (a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())  # type: ignore[arg-type]
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(factory())  # type: ignore[arg-type]
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, name="hyperion-audit-cli")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


__all__ = ["SinkSpec", "parse_sink_spec", "open_sink", "tail_command", "verify_command", "format_event"]
