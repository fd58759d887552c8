"""Audit log: records and builders, secret scrubbing, the hash chain, the SQLite and JSONL sinks
(tampered with directly on disk), the spool, and the CLI helpers. No sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pickle
import sqlite3
import threading
import time

import orjson
import pytest

import hyperion_core.audit as audit
from hyperion_core.audit import (
    GENESIS,
    AuditAttempt,
    AuditError,
    AuditEvent,
    AuditLog,
    AuditQuery,
    ChainRow,
    FileSpool,
    JsonlSink,
    MemorySink,
    SqliteSink,
    canonical,
    event_from_error,
    event_from_response,
    link,
    new_event_id,
    open_sink,
    scrub,
    tail_command,
    verify,
    verify_command,
)
from hyperion_core.audit.chain import chain_rows
from hyperion_core.errors import (
    AllDeploymentsFailedError,
    BudgetExceededError,
    ConfigError,
    InvalidKeyError,
    KeyRevokedError,
    PermissionDeniedError,
    ProviderUnavailableError,
    RateLimitedError,
    RateLimitError,
    StreamInterruptedError,
)
from hyperion_core.types import Attempt, CacheInfo, Caller, ChatResponse, ToolCall, Usage

VKEY = "hk-a1b2c3d4e5f6.Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXhx"
T0 = 1_700_000_000.0


def caller(**kw) -> Caller:
    base = dict(virtual_key=VKEY, key_id="a1b2c3d4e5f6", team="search", user="ada", tags=("beta",),
                metadata={"env": "prod", "api_key": "plain-secret-value"})
    base.update(kw)
    return Caller(**base)


def response(**kw) -> ChatResponse:
    base = dict(
        request_id="req-1", route="chat", deployment="anthropic-backup", model="claude", content="hello",
        tool_calls=(), finish_reason="stop", usage=Usage(120, 40, 100, 0, 8), cost=0.00123,
        attempts=(Attempt("openai-primary", "error", 12.5, "ProviderUnavailableError", 503, "upstream 503"),
                  Attempt("anthropic-backup", "ok", 80.0)),
        latency_ms=95.0, ttft_ms=30.0,
    )
    base.update(kw)
    return ChatResponse(**base)


def ev(i: int = 0, **kw) -> AuditEvent:
    base = dict(id=new_event_id(), time=T0 + i, outcome="ok", request_id=f"req-{i}", key_id=f"k{i % 3}",
                team="red" if i % 2 else "blue", user=f"u{i % 4}", route="chat" if i % 5 else "summarise",
                cost=0.001 * i, metadata={"i": str(i)})
    base.update(kw)
    return AuditEvent(**base)


# -- records and builders -------------------------------------------------------------------------


def test_event_from_response_fills_every_field():
    e = event_from_response(response(), caller(), stream=False, store_content=False,
                            messages=[{"role": "user", "content": "hi"}], guardrails=("pii:redacted",))
    assert (e.outcome, e.request_id, e.route, e.deployment) == ("ok", "req-1", "chat", "anthropic-backup")
    assert (e.key_id, e.team, e.user) == ("a1b2c3d4e5f6", "search", "ada")
    assert (e.prompt_tokens, e.completion_tokens, e.cached_prompt_tokens, e.reasoning_tokens) == (120, 40, 100, 8)
    assert e.cost == 0.00123 and e.cost_saved == 0.0 and e.cache_tier is None
    assert (e.ttft_ms, e.latency_ms, e.stream) == (30.0, 95.0, False)
    assert e.attempts == (
        AuditAttempt("openai-primary", "error", "ProviderUnavailableError", 503, 12.5),
        AuditAttempt("anthropic-backup", "ok", None, None, 80.0),
    )
    assert e.guardrails == ("pii:redacted",)
    assert e.prompt is None and e.answer is None  # content only when the config says so
    assert e.metadata == {"env": "prod", "api_key": "[REDACTED]", "tags": "beta"}
    assert e.error_class is None and e.error_message is None
    assert abs(e.time - time.time()) < 5 and e.id.startswith("evt-")


def test_event_is_frozen_hashable_picklable_and_round_trips():
    e = event_from_response(response(), caller(), stream=True, store_content=True, delivered_chunks=7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.cost = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        e.metadata["env"] = "dev"  # type: ignore[index]
    assert hash(e) == hash(pickle.loads(pickle.dumps(e)))
    assert AuditEvent.from_dict(orjson.loads(canonical(e))) == e
    assert canonical(orjson.loads(canonical(e))) == canonical(e)
    assert e.stream and e.delivered_chunks == 7


def test_cache_hit_records_tier_and_saving_and_content_is_stored_when_asked():
    hit = response(cost=0.0, attempts=(), cache=CacheInfo(tier="semantic", age_s=3.0, cost_saved=0.0042))
    e = event_from_response(hit, caller(), stream=False, store_content=True,
                            messages=[{"role": "user", "content": "What is 2+2?"}])
    assert (e.cache_tier, e.cost, e.cost_saved) == ("semantic", 0.0, 0.0042)
    assert orjson.loads(e.prompt) == [{"role": "user", "content": "What is 2+2?"}]
    assert e.answer == "hello"
    tools = response(content=None, tool_calls=(ToolCall("c1", "lookup", '{"q": 1}'),))
    assert orjson.loads(event_from_response(tools, None, stream=False, store_content=True).answer) == [
        {"name": "lookup", "arguments": '{"q": 1}'}
    ]


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (AllDeploymentsFailedError("every deployment failed", route="chat"), "error"),
        (RateLimitError("upstream 429", status=429, deployment="openai-primary"), "error"),  # not our limit
        (PermissionDeniedError("key 'a1' may not call route 'chat'"), "denied"),
        (KeyRevokedError("revoked"), "denied"),
        (InvalidKeyError("unknown virtual key"), "denied"),
        (RateLimitedError("over 60 rpm", limit_name="key:rpm", retry_after=2.0), "rate_limited"),
        (BudgetExceededError("team budget $10/day would be exceeded", budget="team:search"), "budget_exceeded"),
        (asyncio.CancelledError(), "cancelled"),
        (RuntimeError("a bug"), "error"),
    ],
)
def test_event_from_error_outcome_per_kind(exc, outcome):
    e = event_from_error(exc, "req-9", "chat", caller(), stream=False)
    assert e.outcome == outcome
    assert e.error_class == type(exc).__name__
    assert (e.request_id, e.route, e.key_id, e.team) == ("req-9", "chat", "a1b2c3d4e5f6", "search")
    assert e.error_message


def test_event_from_error_reads_attempts_and_stream_progress_from_the_exception():
    attempts = [Attempt("a", "error", 10.0, "ProviderTimeoutError"), Attempt("b", "error", 5.0, "StreamCutError", None)]
    exc = StreamInterruptedError("stream from 'b' failed after 3 chunk(s)", delivered_chunks=3, attempts=attempts,
                                 route="chat", deployment="b", request_id="req-s")
    e = event_from_error(exc, None, None, caller(), stream=True, latency_ms=50.0, ttft_ms=9.0, usage=Usage(10, 3))
    assert (e.request_id, e.route, e.deployment, e.delivered_chunks) == ("req-s", "chat", "b", 3)
    assert [a.deployment for a in e.attempts] == ["a", "b"] and e.attempts[0].error_class == "ProviderTimeoutError"
    assert (e.prompt_tokens, e.completion_tokens, e.latency_ms, e.ttft_ms, e.stream) == (10, 3, 50.0, 9.0, True)
    # no deployment on the error: the last attempt's
    e2 = event_from_error(AllDeploymentsFailedError("x", attempts=attempts), "r", "chat", None, stream=False)
    assert e2.deployment == "b" and e2.key_id is None


def test_exception_can_declare_its_outcome_and_bad_values_are_refused():
    class GuardrailBlocked(Exception):
        audit_outcome = "denied"

    assert event_from_error(GuardrailBlocked("pii"), "r", "chat", None, stream=False).outcome == "denied"
    assert event_from_error(ProviderUnavailableError("x"), "r", "c", None, stream=False, outcome="cancelled").outcome == "cancelled"
    with pytest.raises(AuditError, match="outcome"):
        ev(outcome="fine")
    with pytest.raises(AuditError, match="cache_tier"):
        ev(cache_tier="l3")
    with pytest.raises(AuditError, match="outcome"):
        AuditQuery(outcome="nope")


# -- secrets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
        "sk-ant-api03-abcdefghijklmnopqrstuvwx",
        "hk-a1b2c3d4e5f6.Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4",
        "hk-0123456789ab",
        "AIzaSyA-1234567890abcdefghijklmnopqrstu",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ],
)
def test_scrub_removes_key_shaped_secrets(secret):
    out = scrub(f"upstream 401: invalid key {secret} (check it)")
    assert "[REDACTED]" in out and "upstream 401: invalid key" in out
    tail = secret.split(".", 1)[1] if secret.startswith("hk-") and "." in secret else secret
    assert tail not in out


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Authorization: Bearer abc.def-ghi_jkl", "Authorization: Bearer [REDACTED]"),
        ('{"api_key": "abc123xyz"}', '{"api_key": "[REDACTED]"}'),
        ("GET /v1beta/models?key=AIzaNotReallyButLong&alt=sse", "?key=[REDACTED]&alt=sse"),
        ("password=hunter22 user=bob", "password=[REDACTED] user=bob"),
    ],
)
def test_scrub_keeps_the_shape_of_what_it_redacts(text, kept):
    assert kept in scrub(text)


def test_scrub_leaves_ordinary_text_alone():
    text = "maximum context length is 8192 tokens; risk-assessment of the task-management plan; key_id=a1b2"
    assert scrub(text) == text


def test_no_secret_reaches_any_event():
    odd_key = "opaque-provider-credential-42"  # shaped like nothing: removed because it is passed as a secret
    msgs = [{"role": "user", "content": f"use {VKEY} and sk-live1234567890abcdef"},
            {"role": "tool", "content": "ok", "headers": {"Authorization": "Bearer abcdefghijklmnop"}}]
    c = caller(metadata={"x-api-key": "k-123", "note": f"called with {VKEY}", "client_secret": "s3cr3t!"})
    ok = event_from_response(response(content=f"your key {odd_key}"), c, stream=False, store_content=True,
                             messages=msgs, secrets=[odd_key])
    err = event_from_error(
        ProviderUnavailableError(f"upstream 500: bad header x-api-key: {odd_key} sent with {VKEY}"),
        "r", "chat", c, stream=False, store_content=True, messages=msgs, secrets=[odd_key],
    )
    for e in (ok, err):
        blob = canonical(e).decode()
        for secret in (VKEY, VKEY.split(".")[1], "sk-live1234567890abcdef", "abcdefghijklmnop", "k-123", "s3cr3t!",
                       odd_key):
            assert secret not in blob, (secret, blob)
        assert "a1b2c3d4e5f6" in blob  # the key id stays: it is what audit rows name
    assert err.error_message.startswith("upstream 500: bad header x-api-key: [REDACTED]")


def test_the_callers_virtual_key_is_removed_whatever_its_shape():
    c = caller(virtual_key="opaque_vk_0123456789")  # a door may pass a key that matches no pattern
    e = event_from_error(ProviderUnavailableError("echo: opaque_vk_0123456789"), "r", "chat", c, stream=False)
    assert e.error_message == "echo: [REDACTED]"


# -- the chain ---------------------------------------------------------------------------------------


def rows(n: int = 6) -> list[ChainRow]:
    return chain_rows([canonical(ev(i)) for i in range(n)], 0, GENESIS)


def test_chain_links_each_row_to_the_one_before():
    r = rows()
    assert r[0].prev_hash == GENESIS and [x.seq for x in r] == [1, 2, 3, 4, 5, 6]
    assert all(b.prev_hash == a.hash == link(a.prev_hash, a.body) for a, b in zip(r, r[1:]))
    report = verify(r, head=(6, r[-1].hash))
    assert (report.ok, report.checked, report.first_bad_index) == (True, 6, None)
    assert verify([]).ok


def test_verify_catches_an_edited_row():
    r = rows()
    body = orjson.loads(r[2].body)
    body["cost"] = 0.0
    r[2] = dataclasses.replace(r[2], body=canonical(body))
    report = verify(r)
    assert (report.ok, report.first_bad_index, report.checked) == (False, 2, 2)
    assert "edited" in report.reason and body["id"] in report.reason


def test_verify_catches_a_deleted_row():
    r = rows()
    del r[3]
    report = verify(r)
    assert (report.ok, report.first_bad_index) == (False, 3)
    assert "seq 5 where seq 4 was expected" in report.reason


def test_verify_catches_a_reordered_row():
    r = rows()
    r[1], r[2] = r[2], r[1]
    assert verify(r).first_bad_index == 1
    # renumbering seq to hide the swap does not help: the links are broken
    r[1], r[2] = dataclasses.replace(r[1], seq=2), dataclasses.replace(r[2], seq=3)
    report = verify(r)
    assert (report.ok, report.first_bad_index) == (False, 1) and "does not link" in report.reason


def test_verify_catches_an_inserted_row():
    r = rows()
    forged_body = canonical(ev(99, outcome="ok", cost=0.0))
    naive = ChainRow(3, r[1].hash, "f" * 64, forged_body)  # a made-up hash
    assert verify([*r[:2], naive, *r[2:]]).first_bad_index == 2
    # a forged row with a correct hash links fine, but then the next genuine row does not
    clever = ChainRow(3, r[1].hash, link(r[1].hash, forged_body), forged_body)
    report = verify([*r[:2], clever, *r[2:]])
    assert (report.ok, report.first_bad_index) == (False, 3) and "reordered or inserted" in report.reason


def test_verify_catches_rows_cut_from_the_end_with_the_head():
    r = rows()
    report = verify(r[:4], head=(6, r[-1].hash))
    assert (report.ok, report.first_bad_index, report.checked) == (False, 4, 4)
    assert "cut from the end" in report.reason
    assert verify(r[:4]).ok  # without a head there is nothing to compare with


# -- SQLite and JSONL sinks ----------------------------------------------------------------------------

EVENTS = 12


@pytest.fixture(params=["sqlite", "jsonl"])
async def filled(request, tmp_path):
    """A sink of each file kind holding EVENTS events, written in three batches."""
    path = tmp_path / ("audit.db" if request.param == "sqlite" else "audit.jsonl")
    sink = SqliteSink(path) if request.param == "sqlite" else JsonlSink(path)
    events = [ev(i) for i in range(EVENTS)]
    for i in range(0, EVENTS, 5):
        await sink.write(events[i : i + 5])
    yield request.param, sink, path, events
    await sink.aclose()


async def test_file_sinks_query_filters_newest_first(filled):
    _, sink, _, events = filled
    by_id = lambda got: [e.id for e in got]  # noqa: E731
    newest_first = events[::-1]
    assert by_id(await sink.query(AuditQuery(limit=None))) == by_id(newest_first)
    assert await sink.query(AuditQuery(limit=None)) == newest_first  # events survive storage exactly
    assert by_id(await sink.query(AuditQuery(limit=3))) == by_id(newest_first[:3])
    for field, value in (("key_id", "k1"), ("team", "red"), ("user", "u2"), ("route", "summarise")):
        got = await sink.query(AuditQuery(**{field: value}))
        assert by_id(got) == by_id([e for e in newest_first if getattr(e, field) == value]) and got
    window = await sink.query(AuditQuery(since=T0 + 3, until=T0 + 7))
    assert [e.time for e in window] == [T0 + 6, T0 + 5, T0 + 4, T0 + 3]
    assert by_id(await sink.query(AuditQuery(team="blue", key_id="k0", limit=None))) == by_id(
        [e for e in newest_first if e.team == "blue" and e.key_id == "k0"]
    )
    assert await sink.query(AuditQuery(outcome=("error", "denied"))) == []
    assert by_id(await sink.query(AuditQuery(request_id="req-4"))) == [events[4].id]


async def test_file_sinks_tail_and_verify(filled):
    _, sink, _, events = filled
    assert [e.id for e in await sink.tail(3)] == [e.id for e in events[-3:]]  # oldest first, like tail
    assert await sink.tail(0) == []
    report = await sink.verify()
    assert (report.ok, report.checked) == (True, EVENTS)


async def test_sqlite_sink_ignores_a_repeated_event(tmp_path):
    sink = SqliteSink(tmp_path / "a.db")
    e = [ev(1), ev(2)]
    await sink.write(e)
    await sink.write([e[1], ev(3)])  # a batch re-sent after a crash between write and spool pop
    assert len(await sink.query(AuditQuery(limit=None))) == 3 and (await sink.verify()).ok
    await sink.aclose()


def _sql(path, *statements):
    con = sqlite3.connect(path)
    for s in statements:
        con.execute(s)
    con.commit()
    con.close()


def _lines(path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _tamper_jsonl(path, how: str) -> None:
    lines = _lines(path)
    if how == "edit":
        d = orjson.loads(lines[4])
        d["event"]["outcome"] = "error"
        lines[4] = orjson.dumps(d, option=orjson.OPT_SORT_KEYS) + b"\n"
    elif how == "delete":
        del lines[4]
    elif how == "reorder":
        lines[4], lines[5] = lines[5], lines[4]
    elif how == "insert":
        lines.insert(4, lines[3])
    elif how == "cut_end":
        lines = lines[:-2]
    path.write_bytes(b"".join(lines))


_SQLITE_TAMPER = {
    "edit": ["UPDATE audit_events SET body = replace(body, '\"outcome\":\"ok\"', '\"outcome\":\"error\"') WHERE seq = 5"],
    "column": ["UPDATE audit_events SET outcome = 'denied' WHERE seq = 5"],
    "delete": ["DELETE FROM audit_events WHERE seq = 5"],
    "reorder": ["UPDATE audit_events SET seq = -1 WHERE seq = 5", "UPDATE audit_events SET seq = 5 WHERE seq = 6",
                "UPDATE audit_events SET seq = 6 WHERE seq = -1"],
    "insert": ["INSERT INTO audit_events SELECT 100, 'evt-forged', time, request_id, key_id, team, user, route, "
               "outcome, body, prev_hash, hash FROM audit_events WHERE seq = 4",
               "UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 5 AND seq < 100",  # make room ...
               "UPDATE audit_events SET seq = seq - 999 WHERE seq > 1000",
               "UPDATE audit_events SET seq = 5 WHERE seq = 100"],  # ... and slot the copy in at seq 5
    "cut_end": ["DELETE FROM audit_events WHERE seq >= 11"],
}


@pytest.mark.parametrize(
    ("how", "index", "words"),
    [
        ("edit", 4, "edited"),
        ("delete", 4, "deleted"),
        ("reorder", 4, "seq"),
        ("insert", 4, "link"),
        ("cut_end", 10, "cut from the end"),
    ],
)
async def test_tampering_on_disk_is_detected_and_named(filled, how, index, words):
    kind, sink, path, events = filled
    if kind == "sqlite":
        _sql(path, *_SQLITE_TAMPER[how])
    else:
        _tamper_jsonl(path, how)
        if how == "insert":
            index, words = 4, "reordered or inserted"
        if how == "reorder":
            words = "seq 6 where seq 5 was expected"
    report = await sink.verify()
    assert not report.ok
    assert report.first_bad_index == index, report
    assert words in report.reason, report.reason
    if how not in ("cut_end", "insert"):
        assert f"row {index} (seq" in report.reason  # names the row ...
    if how == "edit":
        assert events[index].id in report.reason  # ... and its event id
    code, msg = verify_command(f"{kind}://{path}")
    assert code == 1 and "FAILED at row" in msg


async def test_sqlite_edit_of_an_indexed_column_alone_is_detected(tmp_path):
    sink = SqliteSink(tmp_path / "a.db")
    events = [ev(i) for i in range(6)]
    await sink.write(events)
    _sql(tmp_path / "a.db", *_SQLITE_TAMPER["column"])  # queries filter on columns: they must agree with the body
    report = await sink.verify()
    assert (report.ok, report.first_bad_index, report.checked) == (False, 4, 4)
    assert "column 'outcome' says 'denied'" in report.reason and events[4].id in report.reason
    await sink.aclose()


async def test_a_deletion_at_the_end_stays_visible_after_new_writes(filled):
    kind, sink, path, _ = filled
    if kind == "sqlite":
        _sql(path, f"DELETE FROM audit_events WHERE seq = {EVENTS}")
    else:
        path.write_bytes(b"".join(_lines(path)[:-1]))
    await sink.write([ev(50)])  # continues from the head, so the hole is not papered over
    report = await sink.verify()
    assert not report.ok and report.first_bad_index == EVENTS - 1 and "deleted" in report.reason


async def test_jsonl_half_written_line_is_dropped_by_the_next_writer(tmp_path, caplog):
    path = tmp_path / "a.jsonl"
    sink = JsonlSink(path)
    await sink.write([ev(1), ev(2)])
    with open(path, "ab") as f:
        f.write(b'{"event":{"id":"evt-crash')  # a writer died mid-line
    assert (await sink.verify()).ok  # never acknowledged: ignored
    await sink.write([ev(3)])
    assert "half-written" in caplog.text
    assert len(_lines(path)) == 3 and (await sink.verify()).ok
    assert [e.request_id for e in await sink.tail(5)] == ["req-1", "req-2", "req-3"]
    await sink.aclose()


# -- the log and its spool -----------------------------------------------------------------------------


class FlakySink(MemorySink):
    """Fails ``failures`` writes (or every write while ``down``), then behaves."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.failures = failures
        self.down = False
        self.calls = 0

    async def write(self, events):
        self.calls += 1
        if self.down or self.failures > 0:
            self.failures = max(0, self.failures - 1)
            raise ConnectionError("sink unreachable")
        await super().write(events)


async def until(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def fast_log(sink, **kw) -> AuditLog:
    return AuditLog(sink, retry_base=0.005, retry_max=0.02, **kw)


async def test_emit_batches_to_the_sink_in_order():
    sink = MemorySink()
    log = fast_log(sink)
    sent = [ev(i) for i in range(300)]
    for e in sent:
        log.emit(e)  # returns at once; the writer runs when the loop is free
    assert sink.events == []
    assert await log.aflush() is True
    assert sink.events == sent
    m = log.metrics
    assert (m["emitted"], m["written"], m["dropped"], m["pending"]) == (300, 300, 0, 0)
    assert (await log.verify()).ok
    assert [e.id for e in await log.query(team="red", limit=2)] == [sent[299].id, sent[297].id]
    await log.aclose()


async def test_sink_failing_then_recovering_loses_nothing_and_keeps_order(caplog):
    sink = FlakySink(failures=4)
    log = fast_log(sink, batch_size=7)
    sent = []
    for i in range(60):
        e = ev(i)
        sent.append(e)
        log.emit(e)
        if i % 6 == 0:
            await asyncio.sleep(0.002)  # let the writer run between emits: several batches, several failures
    await until(lambda: log.metrics["written"] == 60)
    assert [e.id for e in sink.events] == [e.id for e in sent]
    m = log.metrics
    assert (m["sink_errors"], m["dropped"], m["spooled"], m["outage"]) == (4, 0, 0, False)
    assert m["spooled_total"] > 0
    assert "is failing" in caplog.text and "is back" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await log.aclose()


async def test_spool_full_drops_loudly_once_per_outage(caplog):
    sink = FlakySink()
    sink.down = True
    log = fast_log(sink, spool_max_events=5)
    sent = [ev(i) for i in range(20)]
    for e in sent:
        log.emit(e)
    assert await log.aflush() is False  # the sink is down: in the spool, not in the sink
    for e in [ev(i) for i in range(20, 25)]:
        log.emit(e)
    assert await log.aflush() is False
    m = log.metrics
    assert (m["spooled"], m["dropped"], m["outage"]) == (5, 20, True)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "DROPPED" in errors[0].getMessage()
    sink.down = False
    await until(lambda: log.metrics["spooled"] == 0)
    assert sink.events == sent[:5]  # the spool kept the oldest, and flushed them in order
    # the next outage says so again
    sink.down = True
    for i in range(30, 40):
        log.emit(ev(i))
    assert await log.aflush() is False
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2
    sink.down = False
    await log.aclose()
    assert log.metrics["dropped"] == 25 and len(sink.events) == 10


async def test_file_spool_survives_a_restart(tmp_path, caplog):
    spool = tmp_path / "spool.jsonl"
    down = FlakySink()
    down.down = True
    log = fast_log(down, spool_path=spool)
    sent = [ev(i) for i in range(10)]
    for e in sent:
        log.emit(e)
    assert await log.aflush() is False
    await log.aclose()  # the sink never came back: the events stay in the file
    assert len(_lines(spool)) == 10 and log.metrics["dropped"] == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    sink = MemorySink()
    log2 = fast_log(sink, spool_path=spool)  # e.g. the next run of the process
    assert len(log2.spool) == 10
    log2.emit(ev(10))
    assert await log2.aflush() is True
    assert [e.id for e in sink.events] == [e.id for e in sent] + [sink.events[-1].id]
    await log2.aclose()
    assert spool.read_bytes() == b""


async def test_file_spool_pops_by_offset_and_is_one_process_only(tmp_path):
    path = tmp_path / "s-{pid}.jsonl"
    sp = FileSpool(path, 100)
    assert str(sp.path).endswith(f"s-{__import__('os').getpid()}.jsonl")
    events = [ev(i) for i in range(6)]
    assert sp.append(events) == 6
    sp.pop(2)
    with pytest.raises(AuditError, match="in use"):
        FileSpool(path, 100)
    sp.close()
    again = FileSpool(path, 4)  # reopened: resumes after the popped events; capacity counts what is left
    assert again.peek(10) == events[2:]
    assert again.append([ev(7), ev(8)]) == 0
    again.close()


async def test_a_hanging_sink_times_out_into_the_spool():
    class Hang(MemorySink):
        hang = True

        async def write(self, events):
            if self.hang:
                await asyncio.sleep(3600)
            await super().write(events)

    sink = Hang()
    log = fast_log(sink, write_timeout=0.05)
    log.emit(ev(1))
    assert await log.aflush() is False and log.metrics["spooled"] == 1
    sink.hang = False
    await until(lambda: len(sink.events) == 1)
    await log.aclose()


def test_emit_from_plain_threads_without_a_loop():
    sink = MemorySink()
    log = AuditLog(sink)

    def worker(t: int) -> None:
        for i in range(25):
            log.emit(ev(i, metadata={"t": str(t), "i": str(i)}))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.flush(timeout=5) is True
    assert len(sink.events) == 100
    for t in range(4):  # each thread's events in its own order
        assert [e.metadata["i"] for e in sink.events if e.metadata["t"] == str(t)] == [str(i) for i in range(25)]
    log.close()
    assert log.metrics["written"] == 100


async def test_emit_from_another_thread_while_the_writer_runs_here():
    sink = MemorySink()
    log = fast_log(sink)
    log.emit(ev(0))  # binds the writer to this loop
    t = threading.Thread(target=lambda: [log.emit(ev(i)) for i in range(1, 51)])
    t.start()
    await asyncio.to_thread(t.join)
    assert await log.aflush() and len(sink.events) == 51
    with pytest.raises(AuditError, match="aflush"):
        log.flush()
    await log.aclose()
    log.emit(ev(99))  # after close: counted and reported, never silent
    assert log.metrics["dropped"] == 1


# -- specs and CLI helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("sqlit:///tmp/a.db", "did you mean 'sqlite'"),
        ("ftp://host/x", "unknown scheme 'ftp'"),
        ("sqlite://", "the path is missing"),
        ("audit.txt", "not a sink spec"),
        ("", "empty sink spec"),
        ("redis://h:6379/0?maxlen=lots", "maxlen must be an integer"),
    ],
)
def test_open_sink_explains_a_bad_spec(spec, words):
    with pytest.raises(ConfigError, match=words) as info:
        open_sink(spec)
    if words.startswith(("did you", "unknown", "not a", "empty")):
        assert "sqlite:///path/audit.db" in str(info.value)  # shows the accepted forms


def test_open_sink_kinds(tmp_path):
    assert isinstance(open_sink(f"sqlite://{tmp_path}/a.db"), SqliteSink)
    assert open_sink(f"sqlite://{tmp_path}/a.db").path == tmp_path / "a.db"
    assert isinstance(open_sink(str(tmp_path / "b.jsonl")), JsonlSink)
    assert isinstance(open_sink(str(tmp_path / "c.sqlite3")), SqliteSink)
    r = open_sink("redis://:pw@localhost:6379/2?stream={t}:audit&maxlen=1000")
    assert (r.stream, r.head_key, r.maxlen, r.url) == ("{t}:audit", "{t}:audit:head", 1000, "redis://:pw@localhost:6379/2")
    assert "pw" not in repr(r)
    assert isinstance(open_sink("memory://"), MemorySink)


async def test_tail_and_verify_commands(tmp_path):
    path = tmp_path / "a.db"
    sink = SqliteSink(path)
    await sink.write([ev(1), ev(2, outcome="error", error_class="AllDeploymentsFailedError",
                                 error_message="every deployment failed", latency_ms=12.0)])
    await sink.aclose()
    out = tail_command(f"sqlite://{path}", 5)  # works from inside a running loop too
    lines = out.splitlines()
    assert len(lines) == 2 and "req-1" in lines[0]
    assert "error" in lines[1] and "AllDeploymentsFailedError: every deployment failed" in lines[1]
    assert "12ms" in lines[1] and "key=k2" in lines[1]
    assert verify_command(f"sqlite://{path}") == (0, f"sqlite://{path}: ok: 2 row(s), chain intact")
    (tmp_path / "empty.jsonl").touch()
    assert tail_command(f"jsonl://{tmp_path}/empty.jsonl", 5).startswith("(no audit events")
    assert verify_command("nope://x")[0] == 2
    # a mistyped path is an error, not an empty log that verifies "ok" (and nothing is created)
    assert verify_command(f"sqlite://{tmp_path}/typo.db") == (2, f"audit sink 'sqlite://{tmp_path}/typo.db': no audit log at {tmp_path}/typo.db")
    with pytest.raises(ConfigError, match="no audit log"):
        tail_command(f"jsonl://{tmp_path}/typo.jsonl")
    assert not (tmp_path / "typo.db").exists() and not (tmp_path / "typo.jsonl").exists()
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    code, msg = verify_command(f"sqlite://{tmp_path}/junk.db")
    assert code == 2 and "cannot read the audit log" in msg


def test_public_api_is_complete():
    for name in audit.__all__:
        assert hasattr(audit, name), name
    assert isinstance(SqliteSink(":memory:"), audit.AuditSink)
    for cls in (JsonlSink, MemorySink, audit.RedisStreamsSink):
        assert all(callable(getattr(cls, m, None)) for m in ("write", "query", "tail", "verify", "aclose")), cls


async def test_audit_config_builds_the_log_and_refuses_bad_settings(tmp_path):
    from pydantic import ValidationError

    from hyperion_core.audit import AuditConfig

    cfg = AuditConfig(sink=f"jsonl://{tmp_path}/a.jsonl", spool_path=str(tmp_path / "spool-{pid}.jsonl"),
                      store_content=True, retry_base_s=0.01, retry_max_s=0.1)
    log = cfg.build()
    assert isinstance(log.sink, JsonlSink) and log.store_content and isinstance(log.spool, FileSpool)
    log.emit(ev(1))
    assert await log.aflush() and len(await log.tail()) == 1
    await log.aclose()
    assert isinstance(AuditConfig().build().sink, SqliteSink)  # the embedded default
    with pytest.raises(ValidationError, match="did you mean 'sqlite'"):
        AuditConfig(sink="sqlit:///x.db")
    with pytest.raises(ValidationError, match="extra"):
        AuditConfig(sinks="memory://")
    with pytest.raises(ValidationError, match="retry_base_s"):
        AuditConfig(retry_base_s=10, retry_max_s=1)
    with pytest.raises(AuditError, match="retry_base"):
        AuditLog(MemorySink(), retry_base=0)


def test_a_batch_cut_off_by_its_event_loop_ending_is_written_later():
    class Slow(MemorySink):
        async def write(self, events):
            await asyncio.sleep(0.05)
            await super().write(events)

    sink = Slow()
    log = AuditLog(sink)

    async def request_handler() -> None:
        for i in range(5):
            log.emit(ev(i))
        await asyncio.sleep(0.01)  # the writer is mid-write when asyncio.run() cancels it

    asyncio.run(request_handler())
    assert sink.events == [] and log.metrics["pending"] == 5
    assert log.flush(timeout=5) is True  # the writer restarts on a private loop
    assert [e.request_id for e in sink.events] == [f"req-{i}" for i in range(5)]
    log.close()
    assert log.flush() is True  # closed and empty


# -- a spool on a full disk (issue 11) ---------------------------------------------------------------------


async def test_the_writer_survives_a_spool_on_a_full_disk_and_counts_every_drop(caplog):
    """``/dev/full`` answers every write with ENOSPC, like a spool whose disk is full: the writer
    must keep running, count each event it could not keep as dropped, say so once, and deliver
    again as soon as the sink is back."""
    sink = FlakySink()
    sink.down = True
    log = fast_log(sink, spool_path="/dev/full", batch_size=50)
    for i in range(600):
        log.emit(ev(i))
        if i % 40 == 0:
            await asyncio.sleep(0.002)  # several batches, several failed spool writes
    assert await log.aflush(timeout=20) is False
    m = log.metrics
    assert (m["written"], m["spooled"], m["dropped"], m["pending"]) == (0, 0, 600, 0), m
    dropped = [r for r in caplog.records if r.levelno == logging.ERROR and "DROPPED" in r.getMessage()]
    assert len(dropped) == 1 and "No space left on device" in dropped[0].getMessage()
    sink.down = False  # the sink is back: the writer is still alive and delivers new events
    later = [ev(i) for i in range(600, 610)]
    for e in later:
        log.emit(e)
    assert await log.aflush(timeout=20) is True
    assert sink.events == later and log.metrics["dropped"] == 600
    await log.aclose()


def test_asyncio_run_ending_mid_write_does_not_hang():
    """The writer is cancelled while its write is in flight; Python 3.11's ``wait_for`` may swallow
    that cancellation, and a writer that carried on would keep ``asyncio.run()`` from returning."""

    async def handler() -> None:
        log = AuditLog(MemorySink())
        log.emit(ev(1))
        await asyncio.sleep(0)  # the writer starts its write ...
        raise RuntimeError("the request handler failed")  # ... and the loop ends under it

    outcome: list[str] = []

    def run() -> None:
        try:
            asyncio.run(handler())
        except RuntimeError as exc:
            outcome.append(str(exc))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "asyncio.run() did not return: the audit writer ignored its cancellation"
    assert outcome == ["the request handler failed"]


async def test_a_flush_during_backoff_tries_the_sink_at_once():
    sink = FlakySink()
    sink.down = True
    log = AuditLog(sink, retry_base=30, retry_max=60)  # the writer now waits 15-30 s before retrying
    log.emit(ev(1))
    assert await log.aflush(timeout=20) is False
    sink.down = False
    log.emit(ev(2))
    assert await log.aflush(timeout=20) is True  # not "still down" because the backoff had not run out
    assert [e.request_id for e in sink.events] == ["req-1", "req-2"]
    await log.aclose()


# -- anchoring: truncated, wiped and rewritten logs (issue 10) -----------------------------------------

KEY = "test-audit-key-0123456789"


async def _anchored_log(tmp_path, kind: str) -> tuple[str, object, list[AuditEvent]]:
    """A log of 12 events written through AuditLog with a signed anchor outside the store."""
    spec = f"sqlite://{tmp_path}/store/audit.db" if kind == "sqlite" else f"jsonl://{tmp_path}/store/audit.jsonl"
    anchor = tmp_path / "elsewhere" / "audit.anchor"
    log = AuditLog(open_sink(spec), anchor_path=anchor, checkpoint_key=KEY, checkpoint_every=5)
    events = [ev(i) for i in range(12)]
    for e in events:
        log.emit(e)
    assert await log.aflush() is True
    await log.aclose()
    assert log.metrics["checkpoints"] >= 1 and log.metrics["checkpoint_errors"] == 0
    return spec, anchor, events


def _cut_tail(kind: str, spec: str, keep: int) -> None:
    """The attack: delete the newest rows and move the head back to the new last row."""
    path = spec.split("://", 1)[1]
    if kind == "sqlite":
        _sql(path, f"DELETE FROM audit_events WHERE seq > {keep}",
             f"UPDATE audit_head SET seq = {keep}, hash = (SELECT hash FROM audit_events WHERE seq = {keep})")
    else:
        from pathlib import Path

        lines = _lines(Path(path))[:keep]
        Path(path).write_bytes(b"".join(lines))
        last = orjson.loads(lines[-1]) if lines else {"seq": 0, "hash": GENESIS}
        Path(f"{path}.head").write_bytes(orjson.dumps({"hash": last["hash"], "seq": last["seq"]}))


@pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
async def test_a_log_cut_at_the_end_with_its_head_moved_fails_against_the_anchor(tmp_path, kind):
    spec, anchor, _ = await _anchored_log(tmp_path, kind)
    assert verify_command(spec, anchor=anchor, key=KEY)[0] == 0
    _cut_tail(kind, spec, 8)
    assert verify_command(spec)[0] == 0  # the chain alone cannot see it: that is the gap anchors close
    code, msg = verify_command(spec, anchor=anchor, key=KEY)
    assert code == 1, msg
    assert "signed anchor" in msg and "seq 12" in msg and "ends at seq 8" in msg and "cut from the end" in msg
    assert KEY not in msg


@pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
async def test_a_wiped_log_is_a_failure_unless_allowed(tmp_path, kind):
    spec, anchor, _ = await _anchored_log(tmp_path, kind)
    path = spec.split("://", 1)[1]
    if kind == "sqlite":  # every row and the head deleted
        _sql(path, "DELETE FROM audit_events", "DELETE FROM audit_head")
    else:
        open(path, "wb").close()
        __import__("os").remove(path + ".head")
    code, msg = verify_command(spec)
    assert code == 1 and "the audit log is empty" in msg and "--allow-empty" in msg
    assert verify_command(spec, allow_empty=True)[0] == 0
    code, msg = verify_command(spec, anchor=anchor, key=KEY, allow_empty=True)  # the anchor knows better
    assert code == 1 and "vouches for seq 12" in msg and "is empty" in msg


@pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
async def test_a_rewritten_chain_or_a_forged_anchor_fails(tmp_path, kind):
    spec, anchor, events = await _anchored_log(tmp_path, kind)
    # rewrite every row from scratch (new content, hashes recomputed, head moved): the chain is intact ...
    path = spec.split("://", 1)[1]
    __import__("os").remove(path)
    for extra in (".head", "-wal", "-shm"):
        __import__("pathlib").Path(path + extra).unlink(missing_ok=True)
    forged = open_sink(spec)
    await forged.write([dataclasses.replace(e, cost=0.0) for e in events])
    await forged.aclose()
    assert verify_command(spec)[0] == 0
    code, msg = verify_command(spec, anchor=anchor, key=KEY)  # ... but not the anchored row
    assert code == 1 and "row 11 (seq 12" in msg and "differs from the signed anchor" in msg, msg
    # an anchor moved to the forged head without the key does not pass either
    from hyperion_core.audit.anchor import Checkpoint, read_anchor

    real = read_anchor(anchor)
    head = orjson.loads(_lines(__import__("pathlib").Path(path))[-1])["hash"] if kind == "jsonl" else (
        sqlite3.connect(path).execute("SELECT hash FROM audit_head").fetchone()[0])
    anchor.write_bytes(Checkpoint(real.seq, head, real.time, real.mac).to_json())
    code, msg = verify_command(spec, anchor=anchor, key=KEY)
    assert code == 1 and "does not carry a valid signature" in msg
    anchor.write_bytes(Checkpoint(real.seq, head, real.time).signed(b"some other key").to_json())
    assert verify_command(spec, anchor=anchor, key=KEY)[0] == 1
    anchor.write_bytes(b"{not json")
    code, msg = verify_command(spec, anchor=anchor, key=KEY)
    assert code == 1 and "not a checkpoint" in msg


async def test_expect_head_since_checkpoint_and_usage_errors(tmp_path):
    spec, anchor, _ = await _anchored_log(tmp_path, "sqlite")
    head = sqlite3.connect(f"{tmp_path}/store/audit.db").execute("SELECT hash FROM audit_head").fetchone()[0]
    assert verify_command(spec, expect_head=head)[0] == 0
    code, msg = verify_command(spec, expect_head="ab" * 32)
    assert code == 1 and "is not in the log" in msg
    sink = SqliteSink(f"{tmp_path}/store/audit.db")
    await sink.write([ev(99)])
    await sink.aclose()
    code, msg = verify_command(spec, expect_head=head)
    assert code == 1 and "the expected head is seq 12, but the log goes on to seq 13" in msg
    code, msg = verify_command(spec, anchor=anchor, key=KEY, since_checkpoint=True)
    assert code == 0 and "checked from the checkpoint at seq 12" in msg and "2 row(s)" in msg, msg
    # usage errors: exit 2, naming the problem
    assert verify_command(spec, expect_head="nope")[0] == 2
    code, msg = verify_command(spec, since_checkpoint=True)
    assert code == 2 and "--since-checkpoint needs an anchor" in msg
    code, msg = verify_command(spec, anchor=tmp_path / "no-such.anchor")
    assert code == 2 and "no anchor at" in msg
    assert verify_command(f"sqlite://{tmp_path}/missing.db", allow_empty=True)[0] == 0
    # an edit after the checkpoint is still caught from it; the anchor's own row too
    _sql(f"{tmp_path}/store/audit.db", "UPDATE audit_events SET body = replace(body, '\"ok\"', '\"error\"') WHERE seq = 13")
    assert verify_command(spec, anchor=anchor, key=KEY, since_checkpoint=True)[0] == 1


def test_checkpoint_signing_is_pure_and_the_key_is_never_shown():
    from hyperion_core.audit.anchor import Checkpoint

    cp = Checkpoint(7, "a" * 64, T0).signed(b"k1")
    assert cp.signature_ok(b"k1") and not cp.signature_ok(b"k2")
    assert not Checkpoint(8, "a" * 64, T0, cp.mac).signature_ok(b"k1")  # the mac covers the seq ...
    assert not Checkpoint(7, "b" * 64, T0, cp.mac).signature_ok(b"k1")  # ... and the hash
    assert Checkpoint.from_json(cp.to_json()) == cp
    from hyperion_core.audit import AuditConfig

    cfg = AuditConfig(checkpoint_key="super-secret-audit-key", anchor_path="/x/a.anchor")
    assert "super-secret-audit-key" not in repr(cfg) and "super-secret-audit-key" not in str(cfg.model_dump())


def test_event_ids_are_unique_in_a_burst_and_across_a_fork():
    import os

    from hyperion_core.audit import new_event_id

    burst = [new_event_id() for _ in range(50_000)]
    assert len(set(burst)) == len(burst) and all(len(i) == 32 and i.startswith("evt-") for i in burst)
    assert burst == sorted(burst)  # time-ordered within a process
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child draws its own per-process part
        os.write(w, new_event_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(r, 64).decode()
    os.close(r)
    os.close(w)
    mine = new_event_id()
    assert child.split("-")[2][:10] != mine.split("-")[2][:10]
