"""What a governed request costs Hyperion itself, next to the CPU budgets the throughput targets leave.

``bench/throughput.py`` compares whole requests against a raw aiohttp call to nginx. This script takes
the upstream away: the shared HTTP client's ``post_json`` answers from memory with the same OpenAI body
nginx serves (no socket, no parsing skipped: the adapter still decodes it, prices it, builds the typed
response), so the CPU per request is Hyperion's own work for each case of ``throughput.py`` — pipeline,
routing, breakers, deadline, keys, budgets, rate limits, spend, anomaly watch, audit (its writer thread
included, flushed before the clock stops), Redis admission and settle (Redis on the other CPU).

It then measures the raw aiohttp call to nginx (the floor of ``throughput.py``) and one redis-py round
trip (``GET``), sequential and 16 at a time, and prints the budget each target leaves: a ratio ``r`` of
the floor's req/s at full CPU allows ``(1 / r - 1) x floor CPU`` of extra work per request.

    .venv/bin/python bench/floors.py [--json bench/results/floors.json]
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import add_common_args, arg_parser, pin_to_cpu0, write_json  # noqa: E402
from _nginx import INSTALL_HINT, FixedNginx, NginxError, find_nginx  # noqa: E402
from overhead import plain_body, upstream_routes  # noqa: E402
from throughput import MEM, MESSAGES, PLAIN, RAW, REDIS, build_cases, gateway_config, make_keys  # noqa: E402

TARGETS = {PLAIN: 0.8, MEM: 0.7, REDIS: 0.5}  # issue 16: req/s vs the floor at every concurrency


async def closed_loop(call: Any, c: int, n: int, flush: Any = None) -> float:
    """CPU µs per call of ``n`` calls made by ``c`` workers (after a warm-up)."""
    for i in range(300):
        await call(i)
    if flush is not None:
        await flush()
    gc.collect()
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await call(i)

    c0 = time.process_time()
    await asyncio.gather(*(worker() for _ in range(c)))
    if flush is not None:
        await flush()
    return (time.process_time() - c0) / n * 1e6


async def own_cost(kind: str, redis_url: str, c: int, n: int) -> float:
    import multidict

    from hyperion_core import Gateway

    body = plain_body().encode()
    headers = multidict.CIMultiDictProxy(multidict.CIMultiDict({"content-type": "application/json"}))

    async def from_memory(url: str, payload: dict[str, Any], hdrs: dict[str, str]) -> tuple[int, Any, bytes]:
        return 200, headers, body

    gw = Gateway(gateway_config("http://127.0.0.1:9", kind, tempfile.mkdtemp(), redis_url))
    try:
        keys = await make_keys(gw) if kind != PLAIN else []
        gw.http.post_json = from_memory  # type: ignore[method-assign]

        async def call(i: int) -> None:
            kw = {"virtual_key": keys[i % len(keys)]} if keys else {}
            resp = await gw.acomplete("chat", MESSAGES, max_tokens=64, **kw)
            if not resp.content:
                raise RuntimeError(f"{kind}: empty answer")

        flush = (lambda: gw.audit.aflush(timeout=30)) if gw.audit is not None else None
        return await closed_loop(call, c, n, flush)
    finally:
        await gw.aclose()


async def floor_cost(url: str, c: int, n: int) -> float:
    cases, gws, session = await build_cases(url, tempfile.mkdtemp(), "", {RAW})
    try:
        return await closed_loop(cases[RAW].call, c, n)
    finally:
        await session.close()


async def redis_cost(redis_url: str, c: int, n: int) -> float:
    import redis.asyncio as aioredis

    r = aioredis.from_url(redis_url)
    try:
        await r.set("floors:k", "v")
        return await closed_loop(lambda i: r.get("floors:k"), c, n)
    finally:
        await r.aclose()


def token_bound_cost() -> tuple[float, float]:
    """µs to bound a ~2,000-token prompt's tokens for an OpenAI model (what every governed request on
    such a route does before admission): 64 different prompts on first sight, then the same texts
    again as new string objects (a conversation's next turn re-sends its history)."""
    import json
    import statistics

    from guardrails import prompt_variants

    from hyperion_core.tokens import prompt_tokens_bound
    from hyperion_core.types import ChatRequest

    texts = prompt_variants(64)
    bodies = [json.dumps([{"role": "system", "content": "You are a careful assistant. " * 12},
                          {"role": "user", "content": t}]) for t in texts]
    prompt_tokens_bound(ChatRequest("w", [{"role": "user", "content": "warm " * 100}]), "gpt-4o-mini")
    out = []
    for _ in range(2):
        samples = []
        for body in bodies:
            req = ChatRequest("chat", json.loads(body))
            t0 = time.perf_counter()
            prompt_tokens_bound(req, "gpt-4o-mini")
            samples.append((time.perf_counter() - t0) * 1e6)
        out.append(statistics.median(samples))
    return out[0], out[1]


def main(argv: list[str] | None = None) -> int:
    p = arg_parser(__doc__)
    p.add_argument("-n", type=int, default=20_000, help="calls per case and concurrency")
    add_common_args(p, quiet=False)
    args = p.parse_args(argv)
    if find_nginx() is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    cpus, pinned = pin_to_cpu0(args.no_pin)
    helper = cpus - 1 if pinned else None
    from hyperion_core.redis_server import RedisServer

    redis = RedisServer().start()
    proc = getattr(redis, "_proc", None)
    if proc is not None and helper is not None:
        os.sched_setaffinity(proc.pid, {helper})
    out: dict[str, Any] = {}
    try:
        with FixedNginx(upstream_routes(), cpu=helper) as nginx:
            for c in (1, 16):
                row: dict[str, float] = {}
                row["floor"] = asyncio.run(floor_cost(nginx.url, c, args.n))
                row["redis_round_trip"] = asyncio.run(redis_cost(redis.url, c, args.n))
                for kind in (PLAIN, MEM, REDIS):
                    row[kind] = asyncio.run(own_cost(kind, redis.url, c, args.n))
                out[f"c={c}"] = row
                print(f"\nc={c}: raw aiohttp call to nginx (the floor) {row['floor']:.1f} µs CPU; "
                      f"one redis-py round trip {row['redis_round_trip']:.1f} µs")
                print("| case | Hyperion's own CPU µs/request (upstream in memory) | budget at the target | over |")
                print("|---|---:|---:|---:|")
                for kind, ratio in TARGETS.items():
                    budget = (1 / ratio - 1) * row["floor"]
                    print(f"| {kind} (>= {ratio}x the floor) | {row[kind]:.1f} | {budget:.1f} | "
                          f"{row[kind] / budget:.1f}x |")
    except NginxError as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        redis.stop()
    first, seen = token_bound_cost()
    out["token_bound_2000_us"] = {"first_sight": round(first, 1), "seen": round(seen, 1)}
    print(f"\ntoken bound of a ~2,000-token prompt (gpt-4o-mini): {first:.0f} µs on first sight, "
          f"{seen:.1f} µs when its texts were seen before")
    if args.json:
        write_json(args.json, {"results": out, "targets": TARGETS})
    return 0


if __name__ == "__main__":
    sys.exit(main())
