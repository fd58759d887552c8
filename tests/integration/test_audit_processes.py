"""Several processes appending to one audit log: 4 processes x 50 events each, at the same time, into
the same SQLite file, the same JSONL file and the same Redis stream. Each sink must end with 200
rows in one verifiable chain, every process's events in the order it emitted them."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
import time

import orjson
import pytest
import redis

from hyperion_core.audit import AuditQuery, open_sink, verify_command

pytestmark = pytest.mark.redis

PROCS, EACH = 4, 50

WORKER = textwrap.dedent(
    """
    import asyncio, random, sys, time
    from hyperion_core.audit import AuditEvent, AuditLog, new_event_id, open_sink

    async def main(proc, start_at, specs):
        # small batches and jittered emits, so the processes' appends interleave on every sink
        logs = [AuditLog(open_sink(s), batch_size=3, retry_base=0.01, retry_max=0.1) for s in specs]
        while time.time() < start_at:
            await asyncio.sleep(0.001)
        for i in range(%(each)d):
            e = AuditEvent(id=new_event_id(), time=time.time(), outcome="ok", request_id=f"p{proc}-{i}",
                           key_id=f"p{proc}", metadata={"proc": str(proc), "i": str(i)})
            for log in logs:
                log.emit(e)
            await asyncio.sleep(random.random() * 0.002)
        for log in logs:
            await log.aclose()
            m = log.metrics
            assert m["written"] == %(each)d and m["dropped"] == 0 and m["spooled"] == 0, m
        print("done", proc)

    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]))
    """
) % {"each": EACH}


def test_four_processes_share_each_sink(tmp_path, redis_url):
    stream = f"{{audit-procs-{os.urandom(4).hex()}}}:audit"
    specs = [f"sqlite://{tmp_path}/audit.db", f"jsonl://{tmp_path}/audit.jsonl", f"{redis_url}?stream={stream}"]
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    start_at = time.time() + 2.0  # every process imports first, then all start together
    procs = [
        subprocess.Popen([sys.executable, str(script), str(p), str(start_at), *specs],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for p in range(PROCS)
    ]
    try:
        outs = [p.communicate(timeout=30) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "AUDIT EVENTS" not in err, err  # nothing dropped or lost

    try:
        for spec in specs:
            events, report = asyncio.run(_read(spec))
            assert report.ok and report.checked == PROCS * EACH, (spec, report)
            assert len(events) == PROCS * EACH and len({e.id for e in events}) == PROCS * EACH
            in_order = events[::-1]
            for proc in range(PROCS):
                mine = [int(e.metadata["i"]) for e in in_order if e.metadata["proc"] == str(proc)]
                assert mine == list(range(EACH)), (spec, proc)
            switches = sum(a.metadata["proc"] != b.metadata["proc"] for a, b in zip(in_order, in_order[1:]))
            assert switches >= PROCS, (spec, switches)  # the appends really did interleave
            assert verify_command(spec)[0] == 0
    finally:
        redis.Redis.from_url(redis_url).delete(stream, f"{stream}:head")


EXIT_WITHOUT_CLOSE = textwrap.dedent(
    """
    import asyncio, sys
    from hyperion_core.audit import AuditEvent, AuditLog, MemorySink, new_event_id

    class Hang(MemorySink):  # a sink that never answers
        async def write(self, events):
            await asyncio.sleep(3600)

    log = AuditLog(Hang(), spool_path=sys.argv[1])
    for i in range(20):
        log.emit(AuditEvent(id=new_event_id(), time=0.0, outcome="ok", request_id=f"r{i}"))
    # exits without close(): what is still in memory must be saved, and what is not must be reported
    """
)

REOPEN = textwrap.dedent(
    """
    import asyncio, sys
    from hyperion_core.audit import AuditLog, open_sink

    async def main():
        log = AuditLog(open_sink(sys.argv[2]), spool_path=sys.argv[1])
        assert await log.aflush() is True
        await log.aclose()

    asyncio.run(main())
    """
)


def test_a_process_exiting_without_close_saves_or_reports_every_event(tmp_path):
    spool = tmp_path / "spool.jsonl"
    (tmp_path / "exit.py").write_text(EXIT_WITHOUT_CLOSE)
    p = subprocess.run([sys.executable, str(tmp_path / "exit.py"), str(spool)], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    saved = len(spool.read_bytes().splitlines())
    lost = int(m.group(1)) if (m := re.search(r"AUDIT EVENTS LOST: (\d+)", p.stderr)) else 0
    assert saved + lost == 20 and saved > 0, p.stderr  # the in-flight batch is the only thing reported lost
    assert f"{saved} unwritten event(s) saved" in p.stderr

    (tmp_path / "reopen.py").write_text(REOPEN)
    db = f"sqlite://{tmp_path}/audit.db"
    p = subprocess.run([sys.executable, str(tmp_path / "reopen.py"), str(spool), db], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    events, report = asyncio.run(_read(db))
    assert len(events) == saved and report.ok
    assert [e.request_id for e in events[::-1]] == [f"r{i}" for i in range(lost, 20)]  # oldest first, in order
    assert spool.read_bytes() == b""


async def _read(spec):
    sink = open_sink(spec)
    try:
        return await sink.query(AuditQuery(limit=None)), await sink.verify()
    finally:
        await sink.aclose()


FULL_DISK = textwrap.dedent(
    """
    import asyncio, json, resource, signal, sys, time
    from hyperion_core.audit import AuditEvent, AuditLog, MemorySink, new_event_id

    class Switch(MemorySink):
        down = True

        async def write(self, events):
            if self.down:
                raise ConnectionError("sink unreachable")
            await super().write(events)

    async def until(cond):
        deadline = time.monotonic() + 30
        while not cond():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.01)

    async def main(spool):
        # files this process writes stop growing at 16 KiB: the spool's "disk" is full at ~50 events
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        sink = Switch()
        log = AuditLog(sink, spool_path=spool, batch_size=20, retry_base=0.01, retry_max=0.05)
        for i in range(600):
            log.emit(AuditEvent(id=new_event_id(), time=time.time(), outcome="ok", request_id=f"a{i}"))
            if i % 25 == 0:
                await asyncio.sleep(0.001)
        assert await log.aflush() is False
        full = dict(log.metrics)
        sink.down = False  # the sink is back: the spool drains, which frees its disk
        await until(lambda: log.metrics["spooled"] == 0 and log.metrics["written"] == full["spooled"])
        sink.down = True  # a second outage: the spool has room again
        for i in range(20):
            log.emit(AuditEvent(id=new_event_id(), time=time.time(), outcome="ok", request_id=f"b{i}"))
        assert await log.aflush() is False
        second = dict(log.metrics)
        sink.down = False
        assert await log.aflush() is True
        await log.aclose()
        print(json.dumps({"full": full, "second": second, "end": log.metrics,
                          "ids": [e.request_id for e in sink.events]}))

    asyncio.run(main(sys.argv[1]))
    """
)


def test_a_spool_whose_disk_fills_up_drops_loudly_and_recovers_when_it_frees(tmp_path):
    import json

    (tmp_path / "full.py").write_text(FULL_DISK)
    p = subprocess.run([sys.executable, str(tmp_path / "full.py"), str(tmp_path / "spool.jsonl")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    full, second, end = out["full"], out["second"], out["end"]
    assert 0 < full["spooled"] < 600 and full["spooled"] + full["dropped"] == 600, full  # every event accounted for
    assert p.stderr.count("AUDIT EVENTS ARE BEING DROPPED") == 1 and "File too large" in p.stderr
    assert second["spooled"] == 20 and second["dropped"] == full["dropped"], second  # the freed disk takes events again
    assert end["written"] == full["spooled"] + 20 and end["dropped"] == full["dropped"] and end["spooled"] == 0
    kept = out["ids"][: full["spooled"]]  # whichever batches fitted, in emission order
    assert [int(i[1:]) for i in kept] == sorted(int(i[1:]) for i in kept) and all(i[0] == "a" for i in kept)
    assert out["ids"][full["spooled"] :] == [f"b{i}" for i in range(20)]


SPOOL_AND_DIE = textwrap.dedent(
    """
    import asyncio, sys, time
    from hyperion_core.audit import AuditEvent, AuditLog, MemorySink, new_event_id

    class Down(MemorySink):
        async def write(self, events):
            raise ConnectionError("sink unreachable")

    async def main(spool, tag, n):
        log = AuditLog(Down(), spool_path=spool, retry_base=0.05, retry_max=0.1)
        for i in range(n):
            log.emit(AuditEvent(id=new_event_id(), time=time.time(), outcome="ok", request_id=f"{tag}-{i}"))
        assert await log.aflush() is False and log.metrics["spooled"] == n, log.metrics
        print("spooled", flush=True)
        await asyncio.sleep(3600)  # SIGKILLed here: no atexit, no close

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)

ADOPT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from hyperion_core.audit import AuditLog, open_sink

    async def main(spool, sink, start_at):
        while time.time() < start_at:
            await asyncio.sleep(0.001)
        log = AuditLog(open_sink(sink), spool_path=spool, retry_base=0.05, retry_max=0.1)
        assert await log.aflush() is True
        await log.aclose()
        print(json.dumps(log.metrics))

    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
    """
)


def test_a_new_process_adopts_the_spool_of_a_killed_one_exactly_once(tmp_path):
    """The documented ``{pid}`` spool path gives each process its own file; when a process dies
    with events in it, the next processes that start find the orphan (its lock is free), and
    exactly one of them delivers its events, in order, and removes it."""
    import json
    import signal

    spool = str(tmp_path / "spool" / "audit-{pid}.jsonl")
    sink = f"jsonl://{tmp_path}/audit.jsonl"  # the JSONL sink keeps repeats, so a duplicate would show
    (tmp_path / "die.py").write_text(SPOOL_AND_DIE)
    (tmp_path / "adopt.py").write_text(ADOPT)
    victims = []
    for tag, n in (("a", 60), ("b", 25)):  # two crashed processes, two orphaned spools
        p = subprocess.Popen([sys.executable, str(tmp_path / "die.py"), spool, tag, str(n)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        victims.append(p)
        assert p.stdout.readline().strip() == "spooled", p.stderr.read() if p.poll() is not None else ""
    for p in victims:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    orphans = sorted(f.name for f in (tmp_path / "spool").glob("audit-*.jsonl"))
    assert len(orphans) == 2

    start_at = time.time() + 2.0  # two new processes start together: the lock makes adoption exclusive
    adopters = [subprocess.Popen([sys.executable, str(tmp_path / "adopt.py"), spool, sink, str(start_at)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in adopters]
    for p, (_, err) in zip(adopters, outs):
        assert p.returncode == 0, err[-3000:]
    written = sum(json.loads(out)["written"] for out, _ in outs)
    lines = [orjson.loads(line) for line in (tmp_path / "audit.jsonl").read_bytes().splitlines()]
    ids = [d["event"]["request_id"] for d in lines]
    assert (written, len(lines), len({d["event"]["id"] for d in lines})) == (85, 85, 85)  # 85/85, exactly once
    for tag, n in (("a", 60), ("b", 25)):  # each orphan's events in the order they were emitted
        assert [i for i in ids if i.startswith(f"{tag}-")] == [f"{tag}-{i}" for i in range(n)]
    assert "adopted" in "".join(err for _, err in outs)
    assert sorted(f.name for f in (tmp_path / "spool").iterdir()) == []  # orphans and their offsets removed
    assert verify_command(sink)[0] == 0
