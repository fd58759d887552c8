"""Budgets and rate limits shared by several OS processes through Redis (the reason Redis exists here)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from hyperion_core.errors import BudgetExceededError
from hyperion_core.governance import Governance

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import asyncio, json, random, sys, time
from hyperion_core.errors import BudgetExceededError, RateLimitedError
from hyperion_core.governance import Governance

mode, url, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = {
    "backend": "redis", "redis_url": url, "key_prefix": prefix, "alerts": [], "reservation_ttl_s": 1.0,
    "budgets": [{"scope": "team", "id": "race", "period": "daily", "limit_usd": 1.0}],
    "rate_limits": [{"scope": "key", "id": "shared", "rpm": 30}],
}
SUBJ = {"key": f"k{sys.argv[4]}", "team": "race", "route": "chat"}


async def one(gov, i, out):
    rid = f"p{sys.argv[4]}-{i}"
    try:
        adm = await gov.admit(rid, SUBJ, tokens_estimate=100, cost_estimate_usd=0.10)
    except BudgetExceededError:
        out["refused"] += 1
        return
    out["admitted"].append(rid)
    await asyncio.sleep(random.uniform(0, 0.02))  # the upstream call
    if await gov.settle(adm, 0.09, prompt_tokens=40, completion_tokens=20, deployment="d1"):
        out["settled"] += 1


async def acquire(gov, out):
    try:
        await gov.limiter.acquire({"key": "shared", "route": "chat"})
        out["admitted"] += 1
    except RateLimitedError as e:
        out["retry_after"].append(e.retry_after)


async def main():
    gov = Governance(cfg)
    await gov.status({"team": "race"})  # connect and load scripts before the start line
    print("ready", flush=True)
    sys.stdin.readline()
    if mode == "race":
        out = {"admitted": [], "refused": 0, "settled": 0}
        await asyncio.gather(*(one(gov, i, out) for i in range(50)))
    elif mode == "rate":
        out = {"admitted": 0, "retry_after": []}
        await asyncio.gather(*(acquire(gov, out) for _ in range(20)))
    elif mode == "hold":
        await gov.ledger.reserve("doomed", SUBJ, 0.5)
        print("held", flush=True)
        time.sleep(60)  # killed before it can settle
        return
    print(json.dumps(out), flush=True)
    await gov.aclose()

asyncio.run(main())
"""


@pytest.fixture
def spawn(tmp_path, redis_url):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    procs: list[subprocess.Popen[str]] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def start(mode: str, prefix: str, n: int) -> list[subprocess.Popen[str]]:
        group = [
            subprocess.Popen(
                [sys.executable, str(script), mode, redis_url, prefix, str(i)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for i in range(n)
        ]
        procs.extend(group)
        for p in group:  # every child is connected before any starts
            line = p.stdout.readline()
            assert line.strip() == "ready", p.stderr.read()
        return group

    yield start
    for p in procs:  # only the processes this test started
        if p.poll() is None:
            p.kill()
        p.wait()


def go(group) -> list[dict]:
    for p in group:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = []
    for p in group:
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs


def observer(redis_url: str, prefix: str) -> Governance:
    return Governance(
        {
            "backend": "redis",
            "redis_url": redis_url,
            "key_prefix": prefix,
            "alerts": [],
            "budgets": [{"scope": "team", "id": "race", "period": "daily", "limit_usd": 1.0}],
        }
    )


def test_four_processes_race_for_a_budget_that_allows_about_ten(spawn, redis_url):
    prefix = f"race{time.time_ns()}"
    outs = go(spawn("race", prefix, 4))
    admitted = [rid for o in outs for rid in o["admitted"]]
    refused = sum(o["refused"] for o in outs)
    assert len(admitted) + refused == 200  # every request answered or refused with the budget error
    assert 10 <= len(admitted) <= 11  # $0.10 worst case each, $0.09 billed, $1.00 limit
    assert sum(o["settled"] for o in outs) == len(admitted)  # exactly the admitted ones settle

    async def check() -> None:
        gov = observer(redis_url, prefix)
        (st,) = await gov.status({"team": "race"})
        assert st.spent_usd == pytest.approx(0.09 * len(admitted)) and st.spent_usd <= st.limit_usd
        assert st.reserved_usd == 0
        (row,) = await gov.spend_report("team")
        assert (row.group, row.requests, row.prompt_tokens) == ("race", len(admitted), 40 * len(admitted))
        assert row.cost_usd == pytest.approx(st.spent_usd)
        per_key = {r.group: r.requests for r in await gov.spend_report("key")}
        assert per_key == {f"k{i}": n for i, o in enumerate(outs) if (n := len(o["admitted"]))}
        await gov.aclose()

    asyncio.run(check())


def test_a_killed_process_reservation_expires_and_is_released(spawn, redis_url):
    prefix = f"kill{time.time_ns()}"
    (child,) = spawn("hold", prefix, 1)
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "held"
    os.kill(child.pid, signal.SIGKILL)  # between reserve and settle
    child.wait()

    async def check() -> None:
        gov = observer(redis_url, prefix)
        (st,) = await gov.status({"team": "race"})
        assert st.reserved_usd == 0.5
        with pytest.raises(BudgetExceededError):
            await gov.ledger.reserve("after", {"team": "race"}, 0.6)
        deadline = time.monotonic() + 5
        while (await gov.status({"team": "race"}))[0].reserved_usd and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        (st,) = await gov.status({"team": "race"})
        assert (st.reserved_usd, st.spent_usd) == (0, 0)
        await gov.ledger.reserve("after", {"team": "race"}, 0.6)  # the amount is available again
        r = aioredis.Redis.from_url(redis_url)
        assert await r.hget(f"{{{prefix}:ledger}}:res:doomed", "s") == b"x"  # marked expired
        await r.aclose()
        await gov.aclose()

    asyncio.run(check())


def test_three_processes_share_one_rpm_limit(spawn):
    prefix = f"rate{time.time_ns()}"
    outs = go(spawn("rate", prefix, 3))
    assert sum(o["admitted"] for o in outs) == 30  # rpm 30: the burst of a full bucket, exactly
    waits = [w for o in outs for w in o["retry_after"]]
    assert len(waits) == 30 and all(0 < w <= 2.0 for w in waits)  # one request per 2 s refills
