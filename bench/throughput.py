"""Throughput under concurrency: the Gateway (plain, governed on memory + SQLite audit, governed on Redis)
against a raw aiohttp client, all calling the same fixed nginx upstream.

One process, one event loop. For each concurrency level c (1, 16, 64, 256, then 400 for the error
check) every case runs as a closed loop of c workers (each sends its next request as soon as the last
one answered), for ``--seconds`` per level in total, cut into slices that rotate between the cases in
a seeded shuffled order (interleaved: drift and noise hit every case alike). A slice ends when its time
is up and its in-flight requests have answered; its wall time and CPU (``time.process_time``: every
thread of this process, the audit writer's included) cover the drain and, for the audited case, the
flush of the audit writer — work the slice's requests caused. Warm-up bursts at each level open the
connections first; the heap is frozen (``gc.freeze()``) after the first warm-up.

Cases (rows):

| name | what |
|---|---|
| raw aiohttp | one ``aiohttp.ClientSession`` (``TCPConnector(limit=1000)``), orjson body, the floor |
| Gateway plain | ``Gateway.acomplete`` on a one-deployment route, no keys, governance or audit |
| Gateway governed, memory + SQLite audit | virtual key required (memory key store), 3 budgets, 3 rate-limit buckets, anomaly watch, spend on 7 dimensions (``bench/governance.py``'s configuration), SQLite audit |
| Gateway governed, Redis state | the same governance with ``state.backend: redis`` (keys, budgets, rate limits in Redis), audit off |

Redis is ``hyperion_core.redis_server.RedisServer`` on loopback. With 2+ CPUs this process is pinned to
CPU 0 and nginx and Redis to the last CPU. Every answer is checked (content); before measuring, nginx's
request counter shows that each case's call is exactly one upstream request.

Usage::

    .venv/bin/python bench/throughput.py                 # 10 s per case and level (~4 min)
    .venv/bin/python bench/throughput.py --quick         # ~2 s per case and level (~1 min)
    .venv/bin/python bench/throughput.py --json bench/results/throughput.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from _common import (  # noqa: E402
    BenchError,
    Noise,
    add_common_args,
    arg_parser,
    exit_code,
    git_rev,
    package_versions,
    pin_to_cpu0,
    print_noise,
    run_meta,
    summary,
    targets_table,
    wait_quiet,
    write_json,
)
from _nginx import INSTALL_HINT, FixedNginx, NginxError, find_nginx  # noqa: E402
from governance import GOVERNANCE, N_KEYS, N_TEAMS, N_USERS  # noqa: E402
from overhead import API_KEY, CONTENT, MODEL, upstream_routes  # noqa: E402

perf_ns = time.perf_counter_ns
cpu_ns = time.process_time_ns
MESSAGES = [{"role": "user", "content": "hi"}]
RAW, PLAIN, MEM, REDIS = (
    "raw aiohttp",
    "Gateway plain",
    "Gateway governed, memory + SQLite audit",
    "Gateway governed, Redis state",
)
CASES = (RAW, PLAIN, MEM, REDIS)
TARGET_LEVELS = (1, 16, 64, 256)


@dataclass
class Case:
    name: str
    call: Callable[[int], Awaitable[None]]
    flush: Callable[[], Awaitable[None]] | None = None
    lat: list[int] = field(default_factory=list)
    ok: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    wall_ns: int = 0
    cpu_ns: int = 0

    def reset(self) -> None:
        self.lat, self.ok, self.errors, self.error_samples, self.wall_ns, self.cpu_ns = [], 0, 0, [], 0, 0

    def row(self) -> dict[str, Any]:
        s = summary(self.lat, "ms", 3) if self.lat else {}
        return {
            "req_per_s": round(self.ok / (self.wall_ns / 1e9), 1) if self.wall_ns else 0.0,
            "p50_ms": s.get("p50_ms"),
            "p90_ms": s.get("p90_ms"),
            "p99_ms": s.get("p99_ms"),
            "cpu_ms_per_request": round(self.cpu_ns / 1e6 / self.ok, 4) if self.ok else None,
            "requests": self.ok,
            "errors": self.errors,
            "error_samples": self.error_samples[:3],
            "seconds": round(self.wall_ns / 1e9, 2),
        }


async def burst(case: Case, c: int, seconds: float, record: bool) -> None:
    """c workers in a closed loop for ``seconds``; then drain (and flush the audit writer)."""
    stop = time.perf_counter() + seconds
    lat: list[int] = []
    errs: list[str] = []
    call = case.call

    async def worker(w: int) -> None:
        i = w
        while time.perf_counter() < stop:
            t0 = perf_ns()
            try:
                await call(i)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errs.append(f"{type(exc).__name__}: {exc}"[:200])
            else:
                lat.append(perf_ns() - t0)
            i += c

    c0, t0 = cpu_ns(), perf_ns()
    await asyncio.gather(*(worker(w) for w in range(c)))
    if case.flush is not None:
        await case.flush()
    wall, cpu = perf_ns() - t0, cpu_ns() - c0
    if record:
        case.lat += lat
        case.ok += len(lat)
        case.errors += len(errs)
        case.error_samples += errs[: 3 - len(case.error_samples)] if len(case.error_samples) < 3 else []
        case.wall_ns += wall
        case.cpu_ns += cpu


# -- the cases -------------------------------------------------------------------------------------


def gateway_config(url: str, kind: str, audit_dir: str, redis_url: str | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "providers": {"nginx": {"kind": "openai", "base_url": f"{url}/plain/v1", "api_key": API_KEY}},
        "routes": {"chat": {"deployments": [{"model": f"nginx/{MODEL}"}]}},
    }
    if kind == PLAIN:
        return cfg
    cfg["governance"] = GOVERNANCE
    if kind == MEM:
        cfg["keys"] = {"required": True, "store": "memory"}
        cfg["audit"] = {"sink": f"sqlite:///{audit_dir}/audit-{os.urandom(3).hex()}.db"}
    else:
        cfg["keys"] = {"required": True, "store": "redis"}
        cfg["state"] = {"backend": "redis", "redis_url": redis_url, "prefix": f"tp{os.urandom(2).hex()}"}
    return cfg


async def make_keys(gw: Any) -> list[str]:
    keys = []
    for i in range(N_KEYS):
        key, _ = await gw.keys.create(
            f"svc{i}", team=f"team{i % N_TEAMS}", user=f"user{i % N_USERS}", routes=["chat"]
        )
        keys.append(key)
    return keys


async def build_cases(
    url: str, audit_dir: str, redis_url: str, keep: set[str] | None = None
) -> tuple[dict[str, Case], list[Any], Any]:
    import aiohttp
    import orjson

    from hyperion_core import Gateway

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
    raw_url = f"{url}/plain/v1/chat/completions"
    raw_body = orjson.dumps({"model": MODEL, "messages": MESSAGES})
    raw_headers = {"content-type": "application/json", "authorization": f"Bearer {API_KEY}"}

    async def raw(i: int) -> None:
        async with session.post(raw_url, data=raw_body, headers=raw_headers) as resp:
            data = orjson.loads(await resp.read())
        if resp.status != 200 or data["choices"][0]["message"]["content"] != CONTENT:
            raise BenchError(f"raw: {resp.status} {data!r:.80}")

    cases = {RAW: Case(RAW, raw)}
    gws = []
    for kind in (PLAIN, MEM, REDIS):
        if keep is not None and kind not in keep:
            continue
        gw = Gateway(gateway_config(url, kind, audit_dir, redis_url))
        gws.append(gw)
        keys = await make_keys(gw) if kind != PLAIN else []

        def make_call(gw: Any = gw, keys: list[str] = keys, kind: str = kind) -> Callable[[int], Awaitable[None]]:
            async def call(i: int) -> None:
                kw = {"virtual_key": keys[i % N_KEYS]} if keys else {}
                resp = await gw.acomplete("chat", MESSAGES, max_tokens=64, **kw)
                if resp.content != CONTENT or resp.cache is not None:
                    raise BenchError(f"{kind}: unexpected response {resp.content!r:.80}")

            return call

        flush = None
        if gw.audit is not None:

            async def flush(gw: Any = gw, kind: str = kind) -> None:
                if not await gw.audit.aflush(timeout=30):
                    raise BenchError(f"{kind}: the audit sink did not take the events")

        cases[kind] = Case(kind, make_call(), flush)
    return cases, gws, session


async def check_one_upstream_each(cases: dict[str, Case], nginx: FixedNginx) -> None:
    for name, case in cases.items():
        for i in range(3):  # the first call may open connections, read keys ...
            await case.call(i)
        if case.flush:
            await case.flush()
        before = nginx.requests()
        await case.call(7)
        after = nginx.requests()
        if before is not None and after is not None and after - before != 2:  # the call + the status query
            raise BenchError(f"{name}: one call made {after - before - 1} upstream requests, not 1")


# -- the run ---------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, nginx: FixedNginx, redis_url: str, audit_dir: str) -> dict[str, Any]:
    keep = {RAW, *({"plain": PLAIN, "memory": MEM, "redis": REDIS}[k] for k in args.cases)}
    cases, gws, session = await build_cases(nginx.url, audit_dir, redis_url, keep)
    try:
        await check_one_upstream_each(cases, nginx)
        rng = random.Random(16)
        levels: dict[str, dict[str, Any]] = {}
        frozen = False
        for c in args.concurrency:
            for case in cases.values():
                case.reset()
                await burst(case, c, args.warmup, record=False)
            if not frozen:
                gc.collect()
                gc.freeze()
                frozen = True
            n_slices = max(1, round(args.seconds / args.slice))
            per = args.seconds / n_slices
            for _ in range(n_slices):
                order = list(cases)
                rng.shuffle(order)
                for name in order:
                    await burst(cases[name], c, per, record=True)
            levels[str(c)] = {name: case.row() for name, case in cases.items()}
            print_level(c, levels[str(c)])
        return levels
    finally:
        for gw in gws:
            await gw.aclose()
        await session.close()


def print_level(c: int, rows: dict[str, dict[str, Any]]) -> None:
    floor = rows[RAW]
    for name, r in rows.items():
        ratio = r["req_per_s"] / floor["req_per_s"] if floor["req_per_s"] else float("nan")
        print(
            f"c={c:<4} {name:<40} {r['req_per_s']:>9,.0f} req/s ({ratio:4.2f}x)  p50 {r['p50_ms'] or 0:7.2f} ms"
            f"  p99 {r['p99_ms'] or 0:8.2f} ms  cpu {r['cpu_ms_per_request'] or 0:.3f} ms/req  errors {r['errors']}",
            flush=True,
        )


def targets(levels: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(target: str, goal: str, value: str, ok: bool) -> None:
        out.append({"target": target, "goal": goal, "value": value, "pass": bool(ok)})

    def ratio(c: int, name: str, key: str) -> float:
        a, b = levels[str(c)][name].get(key), levels[str(c)][RAW].get(key)
        return float("inf") if not a or not b else a / b

    have = [c for c in TARGET_LEVELS if str(c) in levels]
    present = set(next(iter(levels.values()), {}))
    if MEM in present and "1" in levels:
        r = ratio(1, MEM, "p50_ms")
        add("governed memory + audit: p50 at c=1 vs floor", "<= 1.3x", f"{r:.2f}x", r <= 1.3)
    for c in have if MEM in present else []:
        r = ratio(c, MEM, "req_per_s")
        add(f"governed memory + audit: req/s at c={c} vs floor", ">= 0.7x", f"{r:.2f}x", r >= 0.7)
    for c in have if REDIS in present else []:
        if c >= 16:
            r = ratio(c, REDIS, "req_per_s")
            add(f"governed Redis: req/s at c={c} vs floor", ">= 0.5x", f"{r:.2f}x", r >= 0.5)
    for c in have if REDIS in present else []:
        r = ratio(c, REDIS, "p99_ms")
        add(f"governed Redis: p99 at c={c} vs floor", "<= 3x", f"{r:.2f}x", r <= 3)
    for c in have if REDIS in present else []:
        r = ratio(c, REDIS, "cpu_ms_per_request")
        add(f"governed Redis: CPU/request at c={c} vs floor", "<= 3x", f"{r:.2f}x", r <= 3)
    if REDIS in present and "400" in levels:
        e = levels["400"][REDIS]["errors"]
        add("governed Redis: errors at c=400", "0", str(e), e == 0)
    for c in have if PLAIN in present else []:
        r = ratio(c, PLAIN, "req_per_s")
        add(f"plain: req/s at c={c} vs floor", ">= 0.8x", f"{r:.2f}x", r >= 0.8)
        r = ratio(c, PLAIN, "p99_ms")
        add(f"plain: p99 at c={c} vs floor", "<= 1.5x", f"{r:.2f}x", r <= 1.5)
    return out


def markdown(levels: dict[str, dict[str, Any]]) -> str:
    cs = list(levels)
    lines = [
        "| path | " + " | ".join(f"c={c} req/s (p50 / p99 ms)" for c in cs) + " | CPU ms/req | errors |",
        "|---|" + "---:|" * (len(cs) + 2),
    ]
    for name in [n for n in CASES if n in levels[cs[0]]]:
        cells = []
        for c in cs:
            r = levels[c][name]
            cells.append(f"{r['req_per_s']:,.0f} ({r['p50_ms']:.2f} / {r['p99_ms']:.2f})" if r["p50_ms"] else "-")
        cpu = [levels[c][name]["cpu_ms_per_request"] for c in cs if levels[c][name]["cpu_ms_per_request"]]
        errs = sum(levels[c][name]["errors"] for c in cs)
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {min(cpu):.2f}–{max(cpu):.2f} | {errs} |"
        )
    return "\n".join(lines)


def redis_parser() -> str:
    """The reply parser redis-py picked at import: hiredis (C) when installed, else pure Python."""
    from redis.utils import HIREDIS_AVAILABLE

    return "hiredis" if HIREDIS_AVAILABLE else "python"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = arg_parser(__doc__)
    p.add_argument("--quick", action="store_true", help="~2 s per case and level")
    p.add_argument("--seconds", type=float, default=None, help="seconds per case and level (default 10)")
    p.add_argument("--slice", type=float, default=None, help="seconds per interleaved slice (default 1)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds per case and level")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256, 400])
    p.add_argument("--uvloop", action="store_true", help="run on uvloop")
    p.add_argument(
        "--cases",
        nargs="+",
        choices=("plain", "memory", "redis"),
        default=["plain", "memory", "redis"],
        help="Gateway cases to run (the raw aiohttp floor always runs)",
    )
    add_common_args(p)
    a = p.parse_args(argv)
    a.seconds = a.seconds or (2.0 if a.quick else 10.0)
    a.slice = a.slice or (0.5 if a.quick else 1.0)
    a.warmup = a.warmup if a.warmup is not None else (0.3 if a.quick else 1.0)
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if find_nginx() is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    cpus, pinned = pin_to_cpu0(args.no_pin)
    helper = cpus - 1 if pinned else None
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    from hyperion_core.redis_server import RedisServer

    redis = RedisServer().start()
    proc = getattr(redis, "_proc", None)
    if proc is not None and helper is not None:
        os.sched_setaffinity(proc.pid, {helper})
    audit_dir = tempfile.mkdtemp(prefix="hyperion-bench-throughput-")
    try:
        with FixedNginx(upstream_routes(), cpu=helper) as nginx:
            with Noise(nginx.proc.pid if nginx.proc else None) as noise:
                if proc is not None:
                    noise.pids.append(str(proc.pid))
                if args.uvloop:
                    import uvloop

                    levels = uvloop.run(run(args, nginx, redis.url, audit_dir))
                else:
                    levels = asyncio.run(run(args, nginx, redis.url, audit_dir))
    except NginxError as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        redis.stop()
    meta = run_meta(
        cpus,
        pinned,
        git_rev(),
        package_versions(("aiohttp", "redis", "hiredis", "orjson", "uvloop"), python=True),
    )
    meta.update(
        seconds_per_level=args.seconds,
        slice_s=args.slice,
        warmup_s=args.warmup,
        concurrency=args.concurrency,
        loop="uvloop" if args.uvloop else "asyncio",
        redis_parser=redis_parser(),
        governance=GOVERNANCE,
        noise=noise.report(),
    )
    tg = targets(levels)
    res = {"meta": meta, "levels": levels, "targets": tg, "markdown": markdown(levels)}
    print()
    print(res["markdown"])
    print()
    print("\n".join(targets_table(tg)))
    print_noise(meta)
    write_json(args.json, res)
    return exit_code(args.strict, tg)


if __name__ == "__main__":
    sys.exit(main())
