"""Governance cost per request: admission (rate-limit acquire + budget reserve) and settle.

``Governance.admit`` and ``Governance.settle`` are timed one call at a time (``perf_counter_ns``) on
the memory backend and on a local Redis (``hyperion_core.redis_server``, loopback), with the
configuration a real deployment would carry: a per-key monthly budget, a per-team daily budget and a
global monthly one (three budgets per request), RPM and TPM limits per key plus an RPM limit on the
route (three buckets), anomaly watch on key and team, spend counters on seven dimensions. Subjects
rotate over 200 keys in 10 teams. Budgets and limits are large enough that nothing is refused: this
measures the admitted path, which is every request that reaches a provider.

Redis round trips are counted (every script call and pipeline goes through one ``Scripts`` object),
and a bare ``PING`` through the same ``redis.asyncio`` client gives the floor for one round trip.

Usage::

    .venv/bin/python bench/governance_core.py                      # 5,000 iterations per backend
    .venv/bin/python bench/governance_core.py --iterations 1000
    .venv/bin/python bench/governance_core.py --json bench/results/governance_core.json
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hyperion_core.governance import Governance  # noqa: E402
from hyperion_core.governance._lua import Scripts  # noqa: E402

CONFIG: dict[str, Any] = {
    "budgets": [
        {"scope": "key", "id": "*", "period": "monthly", "limit_usd": 1_000_000},
        {"scope": "team", "id": "*", "period": "daily", "limit_usd": 1_000_000},
        {"scope": "global", "period": "monthly", "limit_usd": 5_000_000},
    ],
    "rate_limits": [
        {"scope": "key", "id": "*", "rpm": 10_000_000, "tpm": 1_000_000_000},
        {"scope": "route", "id": "chat", "rpm": 10_000_000},
    ],
    "anomaly": {"enabled": True},
    "alerts": [],
}


def pct(xs: list[int], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] / 1000.0  # ns -> µs


def summary(xs: list[int]) -> dict[str, float]:
    return {
        "p50_us": round(pct(xs, 50), 2),
        "p90_us": round(pct(xs, 90), 2),
        "p99_us": round(pct(xs, 99), 2),
        "mean_us": round(statistics.fmean(xs) / 1000.0, 2),
    }


class Counter:
    """Counts round trips: each ``Scripts.run`` / ``run_many`` call is one."""

    def __init__(self) -> None:
        self.n = 0
        run, run_many = Scripts.run, Scripts.run_many
        counter = self

        async def counted_run(self_: Scripts, *a: Any, **kw: Any) -> Any:
            counter.n += 1
            return await run(self_, *a, **kw)

        async def counted_many(self_: Scripts, calls: Any) -> Any:
            if len(calls) == 1:
                return [await counted_run(self_, *calls[0])]
            counter.n += 1
            return await run_many(self_, calls)

        Scripts.run, Scripts.run_many = counted_run, counted_many  # type: ignore[method-assign]


async def measure(gov: Governance, iterations: int, warmup: int, rt: Counter | None) -> dict[str, Any]:
    perf = time.perf_counter_ns
    admit_ns: list[int] = []
    settle_ns: list[int] = []
    admit_rt = settle_rt = 0
    tag = os.urandom(3).hex()
    for i in range(warmup + iterations):
        if i == warmup:
            gc.collect()
            gc.freeze()
        subj = {"key": f"k{i % 200}", "team": f"t{i % 10}", "user": f"u{i % 50}", "route": "chat"}
        rid = f"b{tag}-{i}"
        before = rt.n if rt else 0
        t0 = perf()
        adm = await gov.admit(rid, subj, tokens_estimate=1200, cost_estimate_usd=0.0042)
        t1 = perf()
        mid = rt.n if rt else 0
        t2 = perf()
        done = await gov.settle(
            adm, 0.0017, prompt_tokens=700, completion_tokens=180, deployment="d1", model="m1"
        )
        t3 = perf()
        assert done.settled
        if i >= warmup:
            admit_ns.append(t1 - t0)
            settle_ns.append(t3 - t2)
            if rt:
                admit_rt += mid - before
                settle_rt += rt.n - mid
    gc.unfreeze()
    both = [a + s for a, s in zip(admit_ns, settle_ns)]
    out: dict[str, Any] = {
        "admit": summary(admit_ns),
        "settle": summary(settle_ns),
        "admit_plus_settle": summary(both),
    }
    if rt:
        out["round_trips_per_admit"] = admit_rt / iterations
        out["round_trips_per_settle"] = settle_rt / iterations
    return out


async def ping(client: Any, n: int) -> dict[str, float]:
    xs = []
    for i in range(n + 200):
        t = time.perf_counter_ns()
        await client.ping()
        if i >= 200:
            xs.append(time.perf_counter_ns() - t)
    return summary(xs)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    results: dict[str, Any] = {
        "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU",
        "iterations": args.iterations,
        "config": "3 budgets (key monthly, team daily, global monthly), 3 buckets (key rpm+tpm, route rpm), "
        "anomaly on key+team, spend on 7 dimensions",
    }

    gov = Governance(CONFIG)
    results["memory"] = await measure(gov, args.iterations, args.warmup, None)
    await gov.aclose()

    import redis.asyncio as aioredis

    from hyperion_core.redis_server import RedisServer

    with RedisServer() as server:
        client = aioredis.Redis.from_url(server.url)
        results["redis_ping"] = await ping(client, args.iterations)
        rt = Counter()
        gov = Governance({**CONFIG, "backend": "redis"}, redis=client)
        results["redis"] = await measure(gov, args.iterations, args.warmup, rt)
        results["redis"]["keys_after"] = await client.dbsize()
        await gov.aclose()
        await client.aclose()

    print(json.dumps(results, indent=2))
    m, r = results["memory"], results["redis"]
    print(
        f"\nmemory: admit p50 {m['admit']['p50_us']} µs (p99 {m['admit']['p99_us']}), "
        f"settle p50 {m['settle']['p50_us']} µs (p99 {m['settle']['p99_us']})"
        f"\nredis:  admit p50 {r['admit']['p50_us']} µs (p99 {r['admit']['p99_us']}), "
        f"settle p50 {r['settle']['p50_us']} µs (p99 {r['settle']['p99_us']}); "
        f"round trips {r['round_trips_per_admit']:.2f} + {r['round_trips_per_settle']:.2f}; "
        f"PING p50 {results['redis_ping']['p50_us']} µs"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
