"""Automatic pipelining of governance round trips (``governance/batch.py``) on a real Redis: concurrent
admissions share round trips, a failing command fails only its submitter, a dead server fails every
submitter with the store error, scripts come back after a ``SCRIPT FLUSH``, a cancelled waiter does not
break its batch, and the budget race stays exact with batching on."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from hyperion_core.errors import BudgetExceededError
from hyperion_core.governance import Governance, GovernanceStoreError
from hyperion_core.governance._lua import Scripts
from hyperion_core.redis_server import free_port

pytestmark = pytest.mark.redis


@pytest.fixture
async def client(redis_url):
    r = aioredis.Redis.from_url(redis_url)
    yield r
    await r.aclose()


def governance(client, limit: float = 1.0) -> Governance:
    return Governance({"backend": "redis", "key_prefix": f"b{uuid.uuid4().hex[:8]}", "alerts": [],
                       "budgets": [{"scope": "team", "id": "t", "period": "daily", "limit_usd": limit}],
                       "rate_limits": [{"scope": "key", "id": "*", "rpm": 100_000}]},
                      redis=client, now=lambda: 1_795_478_400.0 + 43_200)


async def test_concurrent_admissions_share_round_trips(client):
    gov = governance(client, limit=100.0)
    batcher = gov.ledger.store.scripts.pipeline  # the one batcher of this governance's Redis client
    before_trips, before_sub = batcher.round_trips, batcher.submitted
    subjects = {"key": "k", "team": "t"}
    admissions = await asyncio.gather(*(gov.admit(f"r{i}", subjects, tokens_estimate=10, cost_estimate_usd=0.01)
                                        for i in range(100)))
    trips, submitted = batcher.round_trips - before_trips, batcher.submitted - before_sub
    assert submitted == 100 and trips <= 5  # one tick, one pipeline (a few at most), not 100 round trips
    await asyncio.gather(*(gov.settle(a, actual_usd=0.005) for a in admissions))
    (st,) = await gov.status({"team": "t"})
    assert st.spent_usd == pytest.approx(0.5) and st.reserved_usd == pytest.approx(0.0)


async def test_the_budget_race_is_exact_with_batching(client):
    gov = governance(client, limit=1.0)
    subjects = {"key": "k", "team": "t"}

    async def one(i: int) -> bool:
        try:
            a = await gov.admit(f"race{i}", subjects, tokens_estimate=10, cost_estimate_usd=0.03)
        except BudgetExceededError:
            return False
        await gov.settle(a, actual_usd=0.03)
        return True

    admitted = sum(await asyncio.gather(*(one(i) for i in range(200))))
    (st,) = await gov.status({"team": "t"})
    assert admitted == 33 and st.spent_usd == pytest.approx(0.99) and st.spent_usd <= 1.0


async def test_a_failing_command_fails_only_its_submitter(client):
    scripts = Scripts(client)
    key = f"b{uuid.uuid4().hex[:8]}"
    await client.set(key + ":str", "x")
    good = scripts.run_many([("status", [key + ":resq", key + ":b"], ["", 1000, key + ":res:"])])
    bad = scripts.run_many([("status", [key + ":resq", key + ":str"], ["", 1000, key + ":res:"])])  # HMGET on a string
    ok, err = await asyncio.gather(good, bad, return_exceptions=True)
    assert ok == [[[0, 0]]]
    assert isinstance(err, GovernanceStoreError) and "status failed" in str(err)


async def test_a_dead_server_fails_every_submitter_with_the_store_error():
    dead = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    scripts = Scripts(dead)
    out = await asyncio.gather(*(scripts.run_many([("status", ["q", "b"], ["", 1000, "r:"])]) for _ in range(5)),
                               return_exceptions=True)
    assert all(isinstance(e, GovernanceStoreError) and "pipeline failed" in str(e) for e in out)
    await dead.aclose()


async def test_scripts_come_back_after_a_flush_and_a_cancelled_waiter_leaves_its_batch_intact(client):
    gov = governance(client, limit=100.0)
    subjects = {"key": "k", "team": "t"}
    await gov.admit("warm", subjects, tokens_estimate=1, cost_estimate_usd=0.01)
    await client.script_flush()
    tasks = [asyncio.ensure_future(gov.admit(f"f{i}", subjects, tokens_estimate=1, cost_estimate_usd=0.01))
             for i in range(10)]
    await asyncio.sleep(0)  # all submitted in this tick
    tasks[3].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[3], asyncio.CancelledError)
    assert all(not isinstance(d, BaseException) for i, d in enumerate(done) if i != 3)
    (st,) = await gov.status({"team": "t"})
    assert st.reserved_usd >= 0.09  # the nine (and the cancelled one, sent anyway) hold until settled


async def test_a_restarted_server_is_reached_on_a_fresh_connection_and_a_hung_one_fails():
    """The pooled connection a restart closed is retried once on a fresh one (the admission succeeds);
    a server that accepts but never answers fails the batch with the store error after the socket
    timeout, and the connection it hung on is not handed out again out of step."""
    from hyperion_core.redis_client import state_client
    from hyperion_core.redis_server import RedisServer

    server = RedisServer().start()
    try:
        client = state_client(server.url, socket_timeout=1.0)
        gov = governance(client, limit=100.0)
        subjects = {"key": "k", "team": "t"}
        await gov.admit("before", subjects, tokens_estimate=1, cost_estimate_usd=0.01)
        server.stop()
        server.start()  # same port: the pooled connection is now dead
        adm = await gov.admit("after", subjects, tokens_estimate=1, cost_estimate_usd=0.01)
        assert adm.reservation.amount_n > 0
        await client.aclose()
    finally:
        server.stop()
    with _mute_server() as url:
        client = state_client(url, socket_timeout=0.5)
        scripts = Scripts(client)
        with pytest.raises(GovernanceStoreError):
            await scripts.run_many([("status", ["q", "b"], ["", 1000, "r:"])])
        await client.aclose()



async def test_state_connections_bound_io_without_a_task_per_write(monkeypatch):
    """Hyperion's Redis connections keep redis-py's timeout outcomes (a reply that never comes raises
    redis-py's ``TimeoutError`` after ``socket_timeout`` and closes the connection) without redis-py's
    ``asyncio.wait_for`` per write (a task and several loop turns per command) or an ``asyncio.timeout``
    per reply (a pipeline of 50 commands set 50 timers); a live server still answers every command and
    pipeline."""
    import redis.exceptions

    from hyperion_core.redis_client import state_client
    from hyperion_core.redis_server import RedisServer

    def no_wait_for(*a, **kw):  # noqa: ANN002, ANN003
        raise AssertionError("asyncio.wait_for on the Redis hot path")

    import redis.asyncio.connection as rconn

    timers: list[float] = []
    real_timeout = rconn.async_timeout

    def counted(delay):  # noqa: ANN001, ANN202
        timers.append(delay)
        return real_timeout(delay)

    server = RedisServer().start()
    try:
        client = state_client(server.url, socket_timeout=2.0)
        await client.ping()  # connected (the connect itself may use redis-py's own timers)
        monkeypatch.setattr(asyncio, "wait_for", no_wait_for)
        monkeypatch.setattr(rconn, "async_timeout", counted)
        await client.set("k", "v")
        assert await client.get("k") == b"v"
        timers.clear()
        pipe = client.pipeline(transaction=False)
        for _ in range(50):
            pipe.incr("n")
        assert (await pipe.execute())[-1] == 50
        assert len(timers) <= 1  # the pool's wait for a connection at most; none per reply (was 50)
        monkeypatch.undo()
        await client.aclose()
    finally:
        server.stop()
    with _mute_server() as url:
        client = state_client(url, socket_timeout=0.3)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(redis.exceptions.TimeoutError, match="Timeout reading"):
            await client.get("k")
        assert loop.time() - t0 >= 0.3
        pool = client.connection_pool
        conns = [*pool._available_connections, *pool._in_use_connections]  # noqa: SLF001
        assert conns and not any(c.is_connected for c in conns)  # closed, not pooled half-read
        await client.aclose()


@contextlib.contextmanager
def _mute_server() -> Iterator[str]:
    """The URL of a server that accepts connections and never answers (a hung Redis)."""
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)
    try:
        yield f"redis://127.0.0.1:{mute.getsockname()[1]}/0"
    finally:
        mute.close()
