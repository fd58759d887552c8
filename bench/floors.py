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


def gateway_from_memory(kind: str, redis_url: str | None) -> Any:
    """A Gateway of ``kind`` whose shared HTTP client answers every POST from memory with the body
    nginx serves (the adapter still decodes, prices and types it)."""
    import multidict

    from hyperion_core import Gateway

    body = plain_body().encode()
    headers = multidict.CIMultiDictProxy(multidict.CIMultiDict({"content-type": "application/json"}))

    async def from_memory(url: str, payload: dict[str, Any], hdrs: dict[str, str]) -> tuple[int, Any, bytes]:
        return 200, headers, body

    gw = Gateway(gateway_config("http://127.0.0.1:9", kind, tempfile.mkdtemp(), redis_url))
    gw.http.post_json = from_memory
    return gw


async def own_cost(kind: str, redis_url: str, c: int, n: int) -> float:
    gw = gateway_from_memory(kind, redis_url)
    try:
        keys = await make_keys(gw) if kind != PLAIN else []

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


async def plain_layers(n: int) -> dict[str, float]:
    """CPU µs per call of each layer of the plain route, upstream in memory, sequential: the adapter
    (build the body, decode, type the answer), + the attempt (deadline, breaker, latency window,
    lease), + the router (order, fallback), + the pipeline (context, stages, typed response)."""
    from hyperion_core.types import ChatRequest

    gw = gateway_from_memory(PLAIN, None)
    try:
        rs = gw._routes["chat"]  # noqa: SLF001 - the layers under the facade
        ds = rs.deployments[0]
        call = next(st for st in gw.pipeline.stages if st.name == "call")
        router = call.router  # type: ignore[attr-defined]
        req = ChatRequest("chat", MESSAGES, max_tokens=64)

        def op(d: Any) -> Any:
            return d.adapter.chat(req)

        layers = {
            "adapter": lambda i: ds.adapter.chat(req),
            "+ attempt": lambda i: router.try_deployment(
                rs, ds, op, [], deadline=router.clock.now() + 600, stream=False, request_id="r", max_retries=2,
                defer=False, rest=()),
            "+ router": lambda i: router.run_with_fallback(rs, op, [], resolve=call.parts.route, request_id="r"),  # type: ignore[attr-defined]
            "+ pipeline (Gateway.acomplete)": lambda i: gw.acomplete("chat", MESSAGES, max_tokens=64),
        }
        return {name: await closed_loop(f, 1, n) for name, f in layers.items()}
    finally:
        await gw.aclose()


def audit_row_floor(n: int = 20_000, batch: int = 64) -> float:
    """CPU µs per audit row with no Hyperion code at all: a ~25-field event as sorted-key JSON
    (orjson), chained with SHA-256, inserted by ``sqlite3.executemany`` in transactions of ``batch``
    rows into the audit table (WAL, synchronous=NORMAL, its 4 indexes). What any SQLite audit row costs."""
    import hashlib
    import sqlite3

    import orjson

    from hyperion_core.audit.sinks.sqlite import _INSERT, _SCHEMA

    db = sqlite3.connect(f"{tempfile.mkdtemp()}/floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_SCHEMA)
    event = {"id": "", "time": 1.7e9, "outcome": "ok", "request_id": "req-0123456789abcdef", "key_id": "k1",
             "team": "team1", "user": "user1", "route": "chat", "deployment": "nginx/gpt-4o-mini",
             "attempts": [{"deployment": "nginx/gpt-4o-mini", "outcome": "ok", "latency_ms": 1.2}],
             "prompt_tokens": 8, "completion_tokens": 12, "cached_prompt_tokens": 0, "reasoning_tokens": 0,
             "cost": 1.2e-5, "cost_saved": 0.0, "cache_tier": None, "ttft_ms": None, "latency_ms": 1.3,
             "stream": False, "delivered_chunks": None, "error_class": None, "error_message": None,
             "guardrails": [], "prompt": None, "answer": None, "metadata": {}}
    prev, rows = "0" * 64, []
    c0 = time.process_time()
    for i in range(n):
        event["id"] = f"evt-{i}"
        raw = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
        h = hashlib.sha256(prev.encode() + raw).hexdigest()
        rows.append((i + 1, event["id"], 1.7e9, "r", "k1", "team1", "user1", "chat", "ok", raw.decode(), prev, h))
        prev = h
        if len(rows) == batch:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(_INSERT, rows)
            db.execute("COMMIT")
            rows = []
    cost = (time.process_time() - c0) / n * 1e6
    db.close()
    return cost


def bookkeeping_floor(n: int = 200_000) -> float:
    """CPU µs per request of the governance bookkeeping alone, as bare Python on dicts (no locks,
    clocks, periods, ids, validation, alerts or typed results — a lower bound, not an implementation):
    the key looked up; 3 budgets checked and held, then released and charged; 3 GCRA rate buckets
    taken; one anomaly EWMA updated; 7 spend rows of 5 counters each added to."""
    keys = {f"k{i}": ("team1", "user1") for i in range(200)}
    budgets = {b: [0, 0, 10**18] for b in ("key:k1", "team:team1", "user:user1")}
    buckets = {b: 0.0 for b in ("rpm:k1", "tpm:k1", "rpm:team1")}
    ewma = {"k1": 0.0}
    spend: dict[str, list[int]] = {}
    dims = ("key:k1", "team:team1", "user:user1", "route:chat", "model:gpt-4o-mini", "deployment:d", "global")
    c0 = time.process_time()
    for i in range(n):
        team, user = keys["k1"]
        amount, now = 1000 + (i & 7), i * 1e-4
        for b in budgets.values():  # reserve: all or nothing
            if b[0] + b[1] + amount > b[2]:
                break
        else:
            for b in budgets.values():
                b[1] += amount
        for name, tat in buckets.items():  # GCRA
            tat = max(tat, now) + 0.001
            if tat - now <= 60.0:
                buckets[name] = tat
        actual = amount // 2
        for b in budgets.values():  # settle
            b[1] -= amount
            b[0] += actual
        ewma["k1"] = 0.1 * actual + 0.9 * ewma["k1"]
        for d in dims:
            row = spend.get(d)
            if row is None:
                spend[d] = [1, 8, 12, actual, 0]
            else:
                row[0] += 1
                row[1] += 8
                row[2] += 12
                row[3] += actual
    return (time.process_time() - c0) / n * 1e6


async def raw_redis_round_trip(redis_url: str, n: int) -> float:
    """CPU µs of one ``PING`` round trip on a bare asyncio stream (no client library), sequential."""
    host, port = redis_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))

    async def ping(i: int) -> None:
        writer.write(b"PING\r\n")
        await reader.readline()

    try:
        return await closed_loop(ping, 1, n)
    finally:
        writer.close()


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
                if c == 1:
                    out["reference"] = ref = {
                        "raw_redis_ping_round_trip": asyncio.run(raw_redis_round_trip(redis.url, args.n)),
                        "audit_row_bare_sqlite": audit_row_floor(),
                        "governance_bookkeeping_bare_python": bookkeeping_floor(),
                        "plain_layers_in_memory": asyncio.run(plain_layers(args.n)),
                    }
                    print("\nreference floors (sequential, no Hyperion code unless named):")
                    print(f"  one Redis PING round trip on a bare asyncio stream: {ref['raw_redis_ping_round_trip']:.1f} µs CPU")
                    print(f"  one audit row, bare orjson + SHA-256 + sqlite3 (batches of 64): {ref['audit_row_bare_sqlite']:.1f} µs CPU")
                    print(f"  governance bookkeeping as bare Python on dicts: {ref['governance_bookkeeping_bare_python']:.1f} µs CPU")
                    print("  the plain route by layer, upstream in memory: " + ", ".join(
                        f"{k} {v:.1f} µs" for k, v in ref["plain_layers_in_memory"].items()))
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
