"""Hedged requests against tail latency (issue 15): p50/p95/p99 and extra upstream calls, without
hedging vs ``hedge: {after_ms: <fixed>}`` vs ``hedge: {after_ms: p95}``.

Each arm is its own Gateway with a two-deployment ``failover`` route on the mock provider (in this
process, its own thread and loop), with its own deployment names so the mock counts each arm's upstream
calls apart. Every arm gets the same faults, seeded alike: the primary answers in 30-80 ms, except 5% of
calls that hang (the mock drops the connection after ``--hang-s`` seconds: an error, then failover) and
5% that take ``--slow-ms`` (5 s); the backup answers in 30-80 ms. The arms' requests are interleaved in
one seeded shuffled job list served by ``--concurrency`` workers, so noise hits all arms alike; read
the arms against each other (same run), not against other runs.

    .venv/bin/python bench/hedge.py --json bench/results/hedge.json       # 3 x 400 requests, ~1 min
    .venv/bin/python bench/hedge.py --requests 100                        # quicker
    .venv/bin/python bench/hedge.py --stream --json bench/results/hedge_stream.json   # streams
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from hyperion_core import Gateway  # noqa: E402
from hyperion_core.hedge import threshold  # noqa: E402
from hyperion_core.mock_provider import MockProvider  # noqa: E402

ARMS: dict[str, dict[str, Any] | None] = {
    "no hedge": None,
    "hedge after_ms=150": {"after_ms": 150},
    "hedge after_ms=p95": {"after_ms": "p95", "min_samples": 20, "default_ms": 1000, "floor_ms": 50},
}


def base_faults(mock: MockProvider, dep: str, seed: int) -> None:
    """30 / 50 / 80 ms (40% / 50% / 10%) for whatever no earlier fault took."""
    mock.fault(dep, latency_ms=30, probability=0.4, seed=seed + 1)
    mock.fault(dep, latency_ms=50, probability=5 / 6, seed=seed + 2)
    mock.fault(dep, latency_ms=80, seed=seed + 3)


def setup(mock: MockProvider, tag: str, hedge: dict[str, Any] | None, args: argparse.Namespace) -> Gateway:
    primary, backup = f"{tag}-primary", f"{tag}-backup"
    mock.fault(primary, hang=True, hang_s=args.hang_s, probability=0.05, seed=args.seed)
    mock.fault(primary, latency_ms=args.slow_ms, probability=0.05 / 0.95, seed=args.seed + 7)
    base_faults(mock, primary, args.seed * 10)
    base_faults(mock, backup, args.seed * 10 + 5)
    route: dict[str, Any] = {
        "deployments": [{"model": f"{d}/gpt-4o-mini", "name": d} for d in ("primary", "backup")],
        "retry": {"attempts": 0}, "timeout": 30,
    }
    if hedge is not None:
        route["hedge"] = hedge
    return Gateway({
        "providers": {name: {"kind": "openai", "api_key": "sk-bench", "base_url": mock.base_url(dep, "openai")}
                      for name, dep in (("primary", primary), ("backup", backup))},
        "routes": {"chat": route},
    })


def pct(sorted_s: list[float], q: float) -> float:
    """Nearest-rank percentile, milliseconds."""
    idx = min(len(sorted_s) - 1, max(0, -(-int(q * len(sorted_s)) // 100) - 1))
    return sorted_s[idx] * 1000.0


async def main(args: argparse.Namespace) -> dict[str, Any]:
    mock = MockProvider().start()
    tags = {arm: f"hb{i}" for i, arm in enumerate(ARMS)}
    gws = {arm: setup(mock, tags[arm], hedge, args) for arm, hedge in ARMS.items()}
    lat: dict[str, list[float]] = {arm: [] for arm in ARMS}
    errors: dict[str, int] = dict.fromkeys(ARMS, 0)
    hedged: dict[str, int] = dict.fromkeys(ARMS, 0)
    jobs = [(arm, i) for arm in ARMS for i in range(args.requests)]
    random.Random(args.seed).shuffle(jobs)
    queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker() -> None:
        while not queue.empty():
            arm, i = queue.get_nowait()
            started = time.perf_counter()
            messages = [{"role": "user", "content": f"question {i}"}]
            try:
                if args.stream:  # to the last chunk; the hedge races the first one
                    stream = await gws[arm].open_stream("chat", messages, max_tokens=16)
                    async for _ in stream:
                        pass
                    resp = stream.response
                else:
                    resp = await gws[arm].acomplete("chat", messages, max_tokens=16)
            except Exception:  # noqa: BLE001 - counted, the run goes on
                errors[arm] += 1
                continue
            lat[arm].append(time.perf_counter() - started)
            hedged[arm] += any(a.outcome == "cancelled" for a in resp.attempts) or len(resp.attempts) > 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    wall = time.perf_counter() - t0
    stats = mock.stats()
    rows: dict[str, Any] = {}
    for arm in ARMS:
        s = sorted(lat[arm])
        tag = tags[arm]
        up_primary = stats.get(f"{tag}-primary", {}).get("requests", 0)
        up_backup = stats.get(f"{tag}-backup", {}).get("requests", 0)
        rs = gws[arm].route("chat")
        cfg = rs.cfg.hedge
        rows[arm] = {
            "requests": args.requests, "errors": errors[arm],
            "p50_ms": round(pct(s, 50), 1), "p95_ms": round(pct(s, 95), 1), "p99_ms": round(pct(s, 99), 1),
            "max_ms": round(s[-1] * 1000.0, 1),
            # the last 90% to finish: p95 mode hedges after default_ms until min_samples latencies are in
            "p99_warm_ms": round(pct(sorted(lat[arm][len(lat[arm]) // 10 :]), 99), 1),
            "upstream_primary": up_primary, "upstream_backup": up_backup,
            "extra_upstream_pct": round(100.0 * (up_primary + up_backup - args.requests) / args.requests, 1),
            "primary_faulted_hang": stats.get(f"{tag}-primary", {}).get("hung", 0),
            "answers_with_more_than_one_attempt": hedged[arm],
            "threshold_ms_at_end": None if cfg is None else round(threshold(cfg, rs.deployments[0], stream=args.stream) * 1000, 1),
        }
    for gw in gws.values():
        await gw.aclose()
    mock.stop()
    base = rows["no hedge"]
    print(f"{args.requests} requests per arm, concurrency {args.concurrency}, interleaved; wall {wall:.1f}s; "
          f"primary: 5% hang {args.hang_s:g}s, 5% take {args.slow_ms:g} ms, else 30-80 ms; backup 30-80 ms; "
          f"{'streams' if args.stream else 'chat'}")
    print("| arm | p50 ms | p95 ms | p99 ms | max ms | p99 vs no hedge | p99 of the last 90% | extra upstream calls "
          "| errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for arm, r in rows.items():
        ratio = r["p99_ms"] / base["p99_ms"] if base["p99_ms"] else float("nan")
        print(f"| {arm} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['max_ms']:.0f} | "
              f"{ratio:.3f}x | {r['p99_warm_ms']:.0f} | {r['extra_upstream_pct']:.1f}% | {r['errors']} |")
    for arm, r in rows.items():
        if r["threshold_ms_at_end"] is not None:
            print(f"{arm}: hedge threshold at the end of the run {r['threshold_ms_at_end']} ms")
    return {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "wall_s": round(wall, 1), "arms": rows}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=400, help="requests per arm")
    p.add_argument("--concurrency", type=int, default=12, help="workers serving the interleaved job list")
    p.add_argument("--slow-ms", type=float, default=5000.0)
    p.add_argument("--hang-s", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stream", action="store_true", help="streams (hedged on the first chunk) instead of chat")
    p.add_argument("--json", type=Path, help="write the results here")
    ns = p.parse_args()
    out = asyncio.run(main(ns))
    if ns.json:
        ns.json.write_text(json.dumps(out, indent=2) + "\n")
