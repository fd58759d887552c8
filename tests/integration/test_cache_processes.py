"""Single-flight across processes sharing Redis: one upstream call for identical concurrent misses,
and a follower takes over when the leader dies holding the lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import redis

pytestmark = pytest.mark.redis

# One worker process: waits for "go", then runs `concurrency` identical requests through
# ResponseCache.complete. Each upstream call increments {prefix}:computes in Redis. In "die" mode the
# call never returns (the test kills the process while it holds the lock).
WORKER = r"""
import asyncio, json, os, sys, time
import redis.asyncio as aredis
from hyperion_core.cache import CacheBackendConfig, CacheSettings, ResponseCache
from hyperion_core.types import Caller, ChatRequest, ChatResponse, Usage

a = json.loads(sys.argv[1])
P = a["prefix"]

async def main():
    r = aredis.Redis.from_url(a["url"])
    cache = ResponseCache(CacheBackendConfig(backend="redis", redis_url=a["url"], key_prefix=P))
    settings = CacheSettings(coalesce={"lock_ttl": a["lock_ttl"], "poll_interval": 0.01})

    async def compute():
        await r.incr(f"{P}:computes")
        await r.setnx(f"{P}:took_over_at", repr(time.monotonic()))  # (the leader's value is replaced below)
        if a["mode"] == "die":
            await asyncio.sleep(3600)
        await asyncio.sleep(a["compute_s"])
        return ChatResponse(request_id="x", route="chat", deployment="d", model="m",
                            content=f"answer from {os.getpid()}", tool_calls=(), finish_reason="stop",
                            usage=Usage(3, 4), cost=0.01, attempts=(), latency_ms=1.0)

    def request():
        return ChatRequest("chat", [{"role": "user", "content": "hello"}], caller=Caller(key_id="k1"))

    await r.incr(f"{P}:ready")
    while not await r.exists(f"{P}:go"):
        await asyncio.sleep(0.002)
    out = await asyncio.gather(*(cache.complete(request(), settings, compute) for _ in range(a["concurrency"])))
    print(json.dumps([[x.content, x.cache.tier if x.cache else None] for x in out]), flush=True)
    await cache.aclose()
    await r.aclose()

asyncio.run(main())
"""


def spawn(url: str, prefix: str, *, mode: str = "normal", concurrency: int = 5, compute_s: float = 0.3,
          lock_ttl: float = 5.0) -> subprocess.Popen[str]:
    args = dict(url=url, prefix=prefix, mode=mode, concurrency=concurrency, compute_s=compute_s, lock_ttl=lock_ttl)
    return subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=os.getcwd())


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def results(proc: subprocess.Popen[str], timeout: float = 20) -> list[list]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def r(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_three_processes_one_upstream_call(redis_url, r):
    prefix = f"p{uuid.uuid4().hex[:10]}"
    procs = [spawn(redis_url, prefix) for _ in range(3)]
    try:
        wait_for(lambda: int(r.get(f"{prefix}:ready") or 0) == 3, 30, "3 workers ready")
        r.set(f"{prefix}:go", 1)
        outs = [results(p) for p in procs]
    finally:
        for p in procs:
            p.kill() if p.poll() is None else None
    assert int(r.get(f"{prefix}:computes")) == 1
    answers = {content for out in outs for content, _ in out}
    assert len(answers) == 1  # 15 requests in 3 processes, one answer
    tiers = [tier or "fresh" for out in outs for _, tier in out]
    assert tiers.count("fresh") == 1 and tiers.count("coalesced") == 4  # the leader's local followers
    assert tiers.count("l2") == 10  # the other processes read the leader's L2 write (once each, shared)


def test_a_dead_leader_is_replaced_within_the_lock_ttl(redis_url, r):
    prefix = f"p{uuid.uuid4().hex[:10]}"
    lock_ttl = 1.0
    r.set(f"{prefix}:go", 1)
    leader = spawn(redis_url, prefix, mode="die", concurrency=1, lock_ttl=lock_ttl)
    followers: list[subprocess.Popen[str]] = []
    try:
        wait_for(lambda: int(r.get(f"{prefix}:computes") or 0) == 1, 30, "the leader to start its call")
        [lock] = r.keys(f"{prefix}:flight:*")
        token = r.get(lock)
        assert token and token != b"done"
        followers = [spawn(redis_url, prefix, concurrency=2, compute_s=0.1, lock_ttl=lock_ttl) for _ in range(2)]
        wait_for(lambda: int(r.get(f"{prefix}:ready") or 0) == 3, 30, "followers ready")
        time.sleep(lock_ttl * 1.5)  # the live leader keeps renewing: nobody takes over
        assert int(r.get(f"{prefix}:computes")) == 1 and r.get(lock) == token
        r.delete(f"{prefix}:took_over_at")  # the leader's own compute wrote it
        killed = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process on this host
        os.kill(leader.pid, signal.SIGKILL)
        outs = [results(p) for p in followers]
        took = float(r.get(f"{prefix}:took_over_at")) - killed
    finally:
        for p in [leader, *followers]:
            p.kill() if p.poll() is None else None
            p.wait()
    assert int(r.get(f"{prefix}:computes")) == 2  # exactly one follower took over
    assert len({content for out in outs for content, _ in out}) == 1
    # the dead leader's lock expires lock_ttl after its last renewal and a follower takes over at its
    # next poll: far sooner than the followers' 60 s wait_timeout, the other way they would proceed.
    # (The margin absorbs a loaded CI machine; the bound that matters is "not the wait_timeout".)
    assert 0 < took < lock_ttl + 10.0, took
