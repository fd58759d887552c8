"""The Redis Streams audit sink against a real Redis: write/query/verify, tampering with the stream,
writers racing on one stream, a lost reply retried, and Redis going away mid-traffic."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest
import redis.asyncio as aioredis

from hyperion_core.audit import (
    AuditEvent,
    AuditLog,
    AuditQuery,
    RedisStreamsSink,
    canonical,
    link,
    new_event_id,
    verify_command,
)
from hyperion_core.redis_server import RedisServer

pytestmark = pytest.mark.redis
T0 = 1_700_000_000.0


def ev(i: int, **kw) -> AuditEvent:
    base = dict(id=new_event_id(), time=T0 + i, outcome="ok" if i % 4 else "error", request_id=f"req-{i}",
                key_id=f"k{i % 3}", team="red" if i % 2 else "blue", route="chat", cost=0.01 * i)
    base.update(kw)
    return AuditEvent(**base)


@pytest.fixture
async def stream(redis_url):
    """A fresh stream name per test (hash-tagged like the default), deleted afterwards."""
    name = f"{{audit-test-{os.urandom(4).hex()}}}:audit"
    yield name
    r = aioredis.Redis.from_url(redis_url)
    await r.delete(name, f"{name}:head")
    await r.aclose()


@pytest.fixture
async def filled(redis_url, stream):
    sink = RedisStreamsSink(redis_url, stream=stream)
    events = [ev(i) for i in range(10)]
    await sink.write(events[:4])
    await sink.write(events[4:])
    r = aioredis.Redis.from_url(redis_url)
    yield sink, r, events
    await r.aclose()
    await sink.aclose()


async def test_write_query_tail_verify(filled, redis_url, stream):
    sink, r, events = filled
    assert await r.xlen(stream) == 10
    assert await sink.query(AuditQuery(limit=None)) == events[::-1]
    assert [e.request_id for e in await sink.query(AuditQuery(team="red", outcome="ok", limit=3))] == [
        "req-9", "req-7", "req-5"
    ]
    assert [e.request_id for e in await sink.query(AuditQuery(since=T0 + 2, until=T0 + 5))] == ["req-4", "req-3", "req-2"]
    assert [e.request_id for e in await sink.tail(2)] == ["req-8", "req-9"]
    report = await sink.verify()
    assert (report.ok, report.checked) == (True, 10)
    seq, h = await r.hmget(f"{stream}:head", "seq", "hash")
    entries = await r.xrange(stream)
    assert int(seq) == 10 and entries[-1][1][b"hash"] == h and entries[0][1][b"seq"] == b"1"
    assert verify_command(f"{redis_url}?stream={stream}")[0] == 0


async def _rewrite(r, stream, entries) -> None:
    """Replace the stream with ``entries`` (what someone with write access can do: ids must grow)."""
    await r.delete(stream)
    for i, (_, fields) in enumerate(entries, 1):
        await r.xadd(stream, fields, id=f"{i}-0")


async def test_xdel_of_a_row_is_detected(filled, stream):
    sink, r, events = filled
    entries = await r.xrange(stream)
    await r.xdel(stream, entries[3][0])
    report = await sink.verify()
    assert (report.ok, report.first_bad_index) == (False, 3)
    assert "seq 5 where seq 4 was expected" in report.reason and events[4].id in report.reason


async def test_an_edited_field_is_detected(filled, stream):
    sink, r, events = filled
    entries = await r.xrange(stream)
    fields = dict(entries[6][1])
    fields[b"event"] = fields[b"event"].replace(b'"outcome":"ok"', b'"outcome":"denied"')
    entries[6] = (entries[6][0], fields)
    await _rewrite(r, stream, entries)
    report = await sink.verify()
    assert (report.ok, report.first_bad_index) == (False, 6) and "edited" in report.reason
    assert events[6].id in report.reason and "entry 7-0" in report.reason


async def test_reordered_and_inserted_rows_are_detected(filled, stream):
    sink, r, _ = filled
    original = await r.xrange(stream)
    swapped = list(original)
    swapped[2], swapped[3] = swapped[3], swapped[2]
    await _rewrite(r, stream, swapped)
    assert (await sink.verify()).first_bad_index == 2
    await _rewrite(r, stream, [*original[:5], original[4], *original[5:]])  # a copied row
    report = await sink.verify()
    assert (report.ok, report.first_bad_index) == (False, 5) and "reordered or inserted" in report.reason


async def test_rows_appended_or_removed_behind_the_heads_back_are_detected(filled, redis_url, stream):
    sink, r, events = filled
    entries = await r.xrange(stream)
    last = entries[-1][1]
    forged = canonical(ev(99))
    await r.xadd(stream, {"seq": 11, "prev": last[b"hash"], "hash": link(last[b"hash"].decode(), forged), "event": forged})
    report = await sink.verify()
    assert not report.ok and "head" in report.reason  # a perfect forgery still disagrees with the head
    await r.xtrim(stream, maxlen=8)  # drops the oldest rows
    assert not (await sink.verify()).ok
    await r.delete(f"{stream}:head")
    code, msg = verify_command(f"{redis_url}?stream={stream}")
    assert code == 1 and "FAILED" in msg


async def test_concurrent_writers_keep_one_linear_chain(redis_url, stream):
    sinks = [RedisStreamsSink(redis_url, stream=stream) for _ in range(4)]

    async def writer(k: int, sink: RedisStreamsSink) -> None:
        for j in range(15):
            await sink.write([ev(j, metadata={"w": str(k)}) for _ in range(1 + j % 3)])

    await asyncio.gather(*(writer(k, s) for k, s in enumerate(sinks)))
    report = await sinks[0].verify()
    assert report.ok and report.checked == 4 * sum(1 + j % 3 for j in range(15))
    assert sum(s.conflicts for s in sinks) > 0  # the writers did race, and re-chained
    for s in sinks:
        await s.aclose()


async def test_a_retried_append_whose_reply_was_lost_is_not_duplicated(redis_url, stream):
    sink = RedisStreamsSink(redis_url, stream=stream)
    batch = [ev(1), ev(2)]
    await sink.write(batch)
    sink._head = (0, "0" * 64)  # as if the reply never came: the client still believes the old head ...
    await sink.write(batch)  # ... and sends the same rows again
    assert len(await sink.query(AuditQuery(limit=None))) == 2 and sink.conflicts == 0
    await sink.write([ev(3)])
    assert (await sink.verify()).checked == 3
    await sink.aclose()


async def test_capped_stream_verifies_from_its_oldest_row(redis_url, stream):
    sink = RedisStreamsSink(redis_url, stream=stream, maxlen=50)
    for i in range(0, 400, 20):
        await sink.write([ev(j) for j in range(i, i + 20)])
    report = await sink.verify()
    assert report.ok and report.checked < 400 and "trimmed" in report.reason
    await sink.aclose()


async def test_redis_down_while_emitting_spools_then_flushes_in_order(caplog):
    server = RedisServer().start()
    port = server.port
    sink = RedisStreamsSink(server.url, connect_timeout=0.5, socket_timeout=1.0)
    log = AuditLog(sink, retry_base=0.02, retry_max=0.2)
    try:
        for i in range(10):
            log.emit(ev(i))
        assert await log.aflush() is True

        server.stop()  # Redis goes away mid-traffic
        during = [ev(i) for i in range(10, 40)]
        for i, e in enumerate(during):
            log.emit(e)
            if i % 10 == 0:
                await asyncio.sleep(0.01)
        assert await log.aflush() is False
        m = log.metrics
        assert m["outage"] and m["spooled"] == 30 and m["dropped"] == 0 and m["sink_errors"] >= 1

        server = RedisServer(port=port).start()  # a new, empty Redis on the same address
        deadline = time.monotonic() + 15
        while not await log.aflush():
            assert time.monotonic() < deadline, log.metrics
            await asyncio.sleep(0.05)
        got = await sink.query(AuditQuery(limit=None))
        assert [e.id for e in reversed(got)] == [e.id for e in during]  # all of them, in order
        assert (await sink.verify()).ok
        m = log.metrics
        assert (m["written"], m["dropped"], m["spooled"], m["outage"]) == (40, 0, 0, False)
        assert "is failing" in caplog.text and "is back" in caplog.text
    finally:
        await log.aclose()
        server.stop()


async def test_sync_emitters_and_async_readers_share_one_log(redis_url, stream):
    """Emits from a plain thread run the writer on a private loop; queries run on this loop: the
    sink keeps one Redis client per loop, and ``aclose`` closes both."""
    sink = RedisStreamsSink(redis_url, stream=stream)
    log = AuditLog(sink, retry_base=0.01, retry_max=0.1)
    flushed: list[bool] = []

    def sync_caller() -> None:
        for i in range(20):
            log.emit(ev(i))
        flushed.append(log.flush(timeout=5))

    t = threading.Thread(target=sync_caller)
    t.start()
    await asyncio.to_thread(t.join)
    assert flushed == [True]
    assert [e.request_id for e in await log.tail(2)] == ["req-18", "req-19"]
    assert (await log.verify()).checked == 20
    assert len(sink._clients) == 2
    await log.aclose()
    assert len(sink._clients) == 0


async def test_a_missing_stream_is_a_failure_unless_allowed(redis_url, stream):
    spec = f"{redis_url}?stream={stream}"  # never written: no rows, no head
    code, msg = verify_command(spec)
    assert code == 1 and "the audit log is empty" in msg and "stream" in msg
    assert verify_command(spec, allow_empty=True)[0] == 0


async def test_a_stream_cut_at_the_end_fails_against_the_anchor(redis_url, stream, tmp_path):
    key = "redis-audit-test-key-42"
    anchor = tmp_path / "audit.anchor"
    log = AuditLog(RedisStreamsSink(redis_url, stream=stream), anchor_path=anchor, checkpoint_key=key,
                   checkpoint_every=5)
    for i in range(12):
        log.emit(ev(i))
    assert await log.aflush() is True
    await log.aclose()
    spec = f"{redis_url}?stream={stream}"
    assert verify_command(spec, anchor=anchor, key=key)[0] == 0
    r = aioredis.Redis.from_url(redis_url)
    entries = await r.xrange(stream)
    await r.xdel(stream, *[eid for eid, _ in entries[8:]])  # cut the newest rows ...
    last = entries[7][1]
    await r.hset(f"{stream}:head", mapping={"seq": last[b"seq"], "hash": last[b"hash"]})  # ... and move the head back
    await r.aclose()
    assert verify_command(spec)[0] == 0  # the chain alone cannot tell
    code, msg = verify_command(spec, anchor=anchor, key=key)
    assert code == 1 and "vouches for seq 12" in msg and "ends at seq 8" in msg, msg
