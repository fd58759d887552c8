"""Policy and quality routing (issue 15): what the per-request planner costs, against the failover
strategy's ordering measured in the same run.

Two measurements, each interleaved (every round runs every case once in a seeded shuffled order, after
warm-up rounds), read as differences and ratios against ``failover`` in the same run:

* the routing decision alone (no I/O): ``routing.order()`` for a failover route (what the router calls)
  vs ``await route.planner(ctx)`` for a 7-rule policy route (first rule matches / the default rule, after
  all six conditions failed / a team-budget rule, its utilisation cached) and a 3-deployment quality
  route; each sample times a batch of calls, reported in µs per call (the gateway's clock is fixed at
  noon UTC, so the time-of-day rule is evaluated and never matches);
* whole requests through the gateway to the mock provider over HTTP (``acomplete``): a failover route vs
  the same deployments under policy and quality, p50 latency.

    .venv/bin/python bench/policy.py --json bench/results/policy.json
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _common import add_common_args, arg_parser, git_rev, package_versions, run_meta, write_json  # noqa: E402

from hyperion_core import Gateway  # noqa: E402
from hyperion_core.mock_provider import MockProvider  # noqa: E402
from hyperion_core.pipeline import CHAT  # noqa: E402
from hyperion_core.routing import ManualClock, order  # noqa: E402
from hyperion_core.types import Caller  # noqa: E402

#: 2027-01-15T12:00:00Z: the bench's wall time, so the 'night' rule never matches whatever the hour
NOON = 1_800_000_000.0 + 4 * 3600

RULES = [
    {"name": "long_context", "when": {"prompt_tokens_gte": 1000}, "use": ["c"]},
    {"name": "tools", "when": {"has_tools": True}, "use": ["b"]},
    {"name": "vision", "when": {"has_images": True}, "use": ["b"]},
    {"name": "structured", "when": {"response_format": "json_schema"}, "use": ["b"]},
    {"name": "gold", "when": {"tags_any": ["tier:gold"]}, "use": ["c"], "then": "lowest_cost"},
    {"name": "night", "when": {"hours": "22:00-06:00", "tz": "Europe/Paris"}, "use": ["a"]},
    {"name": "default", "use": ["a"]},
]


def config(mock: MockProvider) -> dict[str, Any]:
    deps = [{"model": "p/gpt-4o-mini", "name": n,
             "pricing": {"input_per_mtok": p, "output_per_mtok": p}, "quality": {"default": q}}
            for n, p, q in (("a", 5.0, 0.9), ("b", 2.0, 0.88), ("c", 0.5, 0.7))]
    common = {"deployments": deps, "retry": {"attempts": 0}}
    return {
        "providers": {"p": {"kind": "openai", "api_key": "k", "base_url": mock.base_url("bench-policy", "openai")}},
        "routes": {
            "failover": common,
            "policy": {**common, "strategy": "policy", "policy": RULES},
            "budget": {**common, "strategy": "policy", "policy": [
                {"name": "thrifty", "when": {"team_budget_used_gte": 0.8}, "use": ["c"]}, {"name": "default", "use": ["a"]}]},
            "quality": {**common, "strategy": "quality"},
        },
        "governance": {"budgets": [{"scope": "team", "period": "total", "limit_usd": 100.0}]},
    }


async def decisions(gw: Gateway, rounds: int, batch: int, seed: int) -> dict[str, dict[str, float]]:
    rng = random.Random(seed)
    routes = gw.parts.routes
    short = [{"role": "user", "content": "What is the capital of France?"}]
    long = [{"role": "user", "content": "word " * 1200}]

    def ctx(route: str, messages: list[dict[str, Any]], **kw: Any) -> Any:
        c = gw.pipeline.context(gw.request(route, messages, **kw), CHAT)
        c.rs = routes[route]
        return c

    fo, router_rng = routes["failover"], gw.router.rng

    async def failover() -> None:
        for _ in range(batch):
            order(fo, router_rng)

    def planned(c: Any) -> Any:
        plan = c.rs.planner

        async def run() -> None:
            for _ in range(batch):
                await plan(c)

        return run

    cases = {
        "failover (order)": failover,
        "policy: 1st rule matches": planned(ctx("policy", long)),
        "policy: default after 6 rules": planned(ctx("policy", short)),
        "policy: team budget rule (cached)": planned(ctx("budget", short, caller=Caller(team="ml"))),
        "quality (3 deployments)": planned(ctx("quality", short)),
    }
    samples: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    for r in range(rounds + 20):
        rng.shuffle(names)
        for name in names:
            t = time.perf_counter_ns()
            await cases[name]()
            if r >= 20:  # warm-up rounds first
                samples[name].append((time.perf_counter_ns() - t) / batch / 1000.0)
    base = statistics.median(samples["failover (order)"])
    out = {}
    for k, v in samples.items():
        med = statistics.median(v)
        out[k] = {"p50_us": round(med, 3), "p90_us": round(sorted(v)[int(len(v) * 0.9)], 3),
                  "over_failover_us": round(med - base, 3), "ratio": round(med / base, 2)}
    return out


async def requests(gw: Gateway, n: int, seed: int) -> dict[str, dict[str, float]]:
    rng = random.Random(seed)
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    lat: dict[str, list[int]] = {r: [] for r in ("failover", "policy", "quality")}
    names = list(lat)
    for i in range(n + 30):
        rng.shuffle(names)
        for route in names:
            t = time.perf_counter_ns()
            resp = await gw.acomplete(route, msgs, max_tokens=8)
            if resp.content is None:
                raise RuntimeError("no answer")
            if i >= 30:
                lat[route].append(time.perf_counter_ns() - t)
    base = statistics.median(lat["failover"])
    return {r: {"p50_us": round(statistics.median(v) / 1000, 1), "p50_over_failover_us": round((statistics.median(v) - base) / 1000, 1),
                "ratio": round(statistics.median(v) / base, 3)} for r, v in lat.items()}


async def main_async(args: Any) -> dict[str, Any]:
    mock = MockProvider().start()
    try:
        gw = Gateway(config(mock), clock=ManualClock(wall=NOON))  # time-of-day rules: a fixed noon UTC
        await gw.governance.status({"team": "ml"})
        res = {"decision_per_call": await decisions(gw, args.rounds, args.batch, args.seed),
               "request_p50": await requests(gw, args.requests, args.seed)}
        await gw.aclose()
        return res
    finally:
        mock.stop()


def main() -> int:
    p = arg_parser(__doc__ or "")
    add_common_args(p, pin=False, quiet=False)
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    res = asyncio.run(main_async(args))
    res["meta"] = {**run_meta(os.cpu_count(), None, git_rev("hyperion_core/policy", "hyperion_core/routing.py"),
                              package_versions(("pydantic",)), python=True),
                   "rounds": args.rounds, "batch": args.batch, "requests": args.requests}
    print("routing decision, µs per call (median of batches; interleaved):")
    for k, v in res["decision_per_call"].items():
        print(f"  {k:36s} {v['p50_us']:8.2f} µs  (+{v['over_failover_us']:.2f} µs, x{v['ratio']})")
    print("whole request to the mock over HTTP, p50:")
    for k, v in res["request_p50"].items():
        print(f"  {k:10s} {v['p50_us']:9.1f} µs  ({v['p50_over_failover_us']:+.1f} µs, x{v['ratio']})")
    write_json(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
