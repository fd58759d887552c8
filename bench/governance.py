"""Governance cost per request: admission and settle, memory and Redis; a governed Gateway end to end.

Three parts, one run:

1. **Core** — ``Governance.admit`` (rate limits + budget reservation) and ``Governance.settle`` (budget
   settle, spend, TPM correction, anomaly watch), called directly, on the memory backend and on a local
   Redis (``hyperion_core.redis_server``, loopback).
2. **Stages** — the same through the Gateway's pipeline stages, as ``Gateway.acomplete`` runs them:
   ``gw.pipeline.enter(ctx)`` runs Authorize (virtual-key authentication + RBAC route check) and Admit
   (token and worst-case cost estimate + ``Governance.admit``) alone; ``gw.pipeline.exit(ctx, resp)``
   runs Settle (``Governance.settle``), with the audit log off. Memory: ``keys.store: memory`` and the
   memory governance backend. Redis: ``state.backend: redis``, ``keys.store: redis`` (a warm key's
   record is re-read in the admission round trip, so a revocation holds at once in every process) and
   the Redis governance backend that follows ``state``. A second pass, one backend at a time (back to
   back), times the parts of an admission.
3. **End to end** — ``Gateway.acomplete`` against the mock provider (another process): ungoverned (no
   keys, governance or audit) vs governed (virtual key required, budgets, rate limits; SQLite audit on
   or off) with memory state and with Redis state; interleaved latency (the audit writer is flushed off
   the clock after each governed call, so its batch never lands in another case's timing) and CPU per
   call over blocks of one case (audit writes included: the block ends with a flush). Inside the calls
   of these blocks the Authorize + Admit ``before`` hooks and the Settle ``after`` hook are timed too
   (thin wrappers set on the stage instances, well under a microsecond): admission as a real request
   pays it, after a network wait, with the caches the rest of the request left behind.

The same admission costs more the colder the CPU caches are (back to back < after an
``asyncio.sleep`` < after a Redis call). Hence the three stage figures; the targets are read on the
real calls, on the back-to-back best case and on the core.

The configuration is the one a real deployment would carry: a per-key monthly budget, a per-team
daily budget and a global monthly one (three budgets per request), RPM and TPM limits per key plus an
RPM limit on the route (three buckets), anomaly watch on key and team, spend counters on seven
dimensions. Subjects rotate over 200 keys in 10 teams. Limits are large enough that nothing is
refused: this measures the admitted path, which is every request that reaches a provider; every
admission and settle is checked.

Redis round trips are counted on the wire: every ``send_packed_command`` of every ``redis.asyncio``
connection in the process (a pipeline is one send), cross-checked with ``INFO commandstats`` deltas;
a bare ``PING`` through the same client gives the floor for one round trip. Measurement as in
``overhead.py``: warm-up first, then the heap is frozen (``gc.freeze()``); core and stage
measurements alternate memory and Redis calls round by round; with 2+ CPUs this process is pinned to
CPU 0 and Redis and the mock provider to the last CPU.

Usage::

    .venv/bin/python bench/governance.py                      # 5,000 iterations (~35 s)
    .venv/bin/python bench/governance.py --quick              # 1,000 (~10 s)
    .venv/bin/python bench/governance.py --json bench/results/governance.json
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))  # hyperion_core from this checkout

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
    summary_us,
    targets_table,
    wait_quiet,
    write_json,
)
from cache import MockProcess, commandstats, start_redis, stats_delta  # noqa: E402

perf_ns = time.perf_counter_ns
cpu_ns = time.process_time_ns
MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Summarise the quarterly report in three bullet points."}]
N_KEYS, N_TEAMS, N_USERS = 200, 10, 50

GOVERNANCE: dict[str, Any] = {
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
CONFIG_TEXT = (
    "3 budgets (key monthly, team daily, global monthly), 3 buckets (key rpm+tpm, route rpm), "
    "anomaly on key+team, spend on 7 dimensions; 200 keys in 10 teams"
)


# -- round trips on the wire ---------------------------------------------------------------------


class Wire:
    """Counts ``send_packed_command`` calls of every ``redis.asyncio`` connection (one per command
    or per pipeline: a round trip)."""

    def __init__(self) -> None:
        from redis.asyncio.connection import AbstractConnection

        self.sends = 0
        orig = AbstractConnection.send_packed_command
        wire = self

        async def counted(conn: Any, command: Any, check_health: bool = True) -> None:
            wire.sends += 1
            return await orig(conn, command, check_health)

        AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
        self._restore = lambda: setattr(AbstractConnection, "send_packed_command", orig)

    def close(self) -> None:
        self._restore()


# -- part 1: the governance core -----------------------------------------------------------------


@dataclass
class Series:
    admit: list[int] = field(default_factory=list)
    settle: list[int] = field(default_factory=list)
    admit_sends: int = 0
    settle_sends: int = 0

    def report(self, n: int, redis: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "admit": summary_us(self.admit),
            "settle": summary_us(self.settle),
            "admit_plus_settle": summary_us([a + s for a, s in zip(self.admit, self.settle)]),
        }
        if redis:
            out["round_trips_per_admit"] = self.admit_sends / n
            out["round_trips_per_settle"] = self.settle_sends / n
        return out


def subjects(i: int) -> dict[str, str]:
    return {"key": f"k{i % N_KEYS}", "team": f"t{i % N_TEAMS}", "user": f"u{i % N_USERS}", "route": "chat"}


async def core_phase(args: argparse.Namespace, redis_url: str, wire: Wire) -> dict[str, Any]:
    import redis.asyncio as aioredis

    from hyperion_core.governance import Governance

    client = aioredis.Redis.from_url(redis_url)
    govs = {
        "memory": Governance(GOVERNANCE),
        "redis": Governance({**GOVERNANCE, "backend": "redis", "key_prefix": "core"}, redis=client),
    }
    series = {k: Series() for k in govs}
    tag = os.urandom(3).hex()
    stats0 = None
    rng = random.Random(3)
    for i in range(args.warmup + args.iterations):
        if i == args.warmup:
            gc.collect()
            gc.freeze()
            stats0 = await commandstats(client)
        order = list(govs)
        rng.shuffle(order)
        for name in order:
            gov, s = govs[name], series[name]
            w0 = wire.sends
            t0 = perf_ns()
            adm = await gov.admit(
                f"c{tag}{name}-{i}", subjects(i), tokens_estimate=1200, cost_estimate_usd=0.0042
            )
            t1 = perf_ns()
            w1 = wire.sends
            t2 = perf_ns()
            done = await gov.settle(
                adm, 0.0017, prompt_tokens=700, completion_tokens=180, deployment="d1", model=MODEL
            )
            t3 = perf_ns()
            w2 = wire.sends
            if not done.settled:
                raise BenchError(f"core {name}: request {i} was not settled: {done}")
            if i >= args.warmup:
                s.admit.append(t1 - t0)
                s.settle.append(t3 - t2)
                s.admit_sends += w1 - w0
                s.settle_sends += w2 - w1
    gc.unfreeze()
    cmds = stats_delta(stats0 or {}, await commandstats(client))
    out = {k: series[k].report(args.iterations, k == "redis") for k in govs}
    out["redis"]["server_commands_per_request"] = {
        k: round(v["calls"] / args.iterations, 2) for k, v in cmds.items() if k not in ("info", "ping")
    }
    out["redis"]["server_usec_per_call"] = {k: v["usec_per_call"] for k, v in cmds.items() if k != "info"}
    out["redis"]["keys_after"] = await client.dbsize()
    for g in govs.values():
        await g.aclose()
    await client.aclose()
    return out


async def ping(redis_url: str, n: int) -> dict[str, float]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    xs = []
    for i in range(n + 200):
        t = perf_ns()
        await client.ping()
        if i >= 200:
            xs.append(perf_ns() - t)
    await client.aclose()
    return summary_us(xs)


# -- part 2: the pipeline stages ------------------------------------------------------------------


def stage(gw: Any, name: str) -> Any:
    """The gateway's pipeline stage called ``name`` (``authorize``, ``admit``, ``settle``)."""
    for st in gw.pipeline.stages:
        if st.name == name:
            return st
    raise BenchError(f"the pipeline has no {name!r} stage")


async def enter(gw: Any, rs: Any, req: Any) -> Any:
    """Authorize + Admit alone, as ``Gateway.acomplete`` runs them (Validate would leave the route)."""
    from hyperion_core.pipeline import EXTERNAL

    ctx = gw.pipeline.context(req, EXTERNAL)
    ctx.rs = rs  # Admit prices the route's deployments, as for a chat request
    return await gw.pipeline.enter(ctx)


def check_settled(name: str, i: int, ctx: Any, admission: Any) -> None:
    if admission is None or admission.done is not True or ctx.admission is not None:
        raise BenchError(f"stages {name}: request {i} was not admitted and settled")
    if ctx.settle_error is not None or ctx.after_errors:
        raise BenchError(f"stages {name}: request {i}: {ctx.settle_error or ctx.after_errors}")


def gateway_config(
    mock: MockProcess | None,
    *,
    state: str | None,
    audit_dir: str | None,
    keys_store: str = "memory",
    dep: str = "governance",
) -> dict[str, Any]:
    base = (
        mock.base_url(dep) if mock is not None else "http://127.0.0.1:9/v1"
    )  # the stages part never calls it
    cfg: dict[str, Any] = {
        "providers": {"p": {"kind": "openai", "api_key": "sk-bench-provider", "base_url": base}},
        "routes": {"chat": {"deployments": [{"model": f"p/{MODEL}"}], "retry": {"attempts": 0}}},
    }
    if state is None:
        return cfg  # ungoverned
    cfg["keys"] = {"required": True, "store": keys_store}
    cfg["governance"] = GOVERNANCE
    if state != "memory":
        cfg["state"] = {"backend": "redis", "redis_url": state, "prefix": f"gov{os.urandom(2).hex()}"}
    if audit_dir is not None:
        cfg["audit"] = {"sink": f"sqlite:///{audit_dir}/audit-{os.urandom(3).hex()}.db"}
    return cfg


async def make_keys(gw: Any) -> list[str]:
    keys = []
    for i in range(N_KEYS):
        key, _ = await gw.keys.create(
            f"svc{i}", team=f"team{i % N_TEAMS}", user=f"user{i % N_USERS}", routes=["chat"]
        )
        keys.append(key)
    return keys


def fake_response(req: Any) -> Any:
    from hyperion_core.types import ChatResponse, Usage

    usage = Usage(700, 180)
    return ChatResponse(
        request_id=req.request_id,
        route=req.route,
        deployment="p/" + MODEL,
        model=MODEL,
        content="ok",
        tool_calls=(),
        finish_reason="stop",
        usage=usage,
        cost=0.0017,
        attempts=(),
        latency_ms=1.0,
    )


async def stages_phase(args: argparse.Namespace, redis_url: str, wire: Wire) -> dict[str, Any]:
    from hyperion_core import Gateway

    gws = {
        "memory": Gateway(gateway_config(None, state="memory", audit_dir=None)),
        "redis": Gateway(gateway_config(None, state=redis_url, audit_dir=None, keys_store="redis")),
    }
    keys = {k: await make_keys(g) for k, g in gws.items()}
    for g in gws.values():
        if g.audit is not None:
            raise BenchError("the stages part must run without audit")
    import redis.asyncio as aioredis

    probe = aioredis.Redis.from_url(redis_url)
    series = {k: Series() for k in gws}
    rng = random.Random(4)
    stats0 = None
    for i in range(args.warmup + args.iterations):
        if i == args.warmup:
            gc.collect()
            gc.freeze()
            stats0 = await commandstats(probe)
        order = list(gws)
        rng.shuffle(order)
        for name in order:
            gw, s = gws[name], series[name]
            rs = gw.route("chat")
            req = gw.request("chat", MESSAGES, virtual_key=keys[name][i % N_KEYS], max_tokens=256)
            w0 = wire.sends
            t0 = perf_ns()
            ctx = await enter(gw, rs, req)
            t1 = perf_ns()
            w1 = wire.sends
            admission = ctx.admission
            resp = fake_response(req)
            t2 = perf_ns()
            await gw.pipeline.exit(ctx, resp)
            t3 = perf_ns()
            w2 = wire.sends
            check_settled(name, i, ctx, admission)
            if req.caller is None or req.caller.team != f"team{(i % N_KEYS) % N_TEAMS}":
                raise BenchError(f"stages {name}: request {i} ran as {req.caller}")
            if i >= args.warmup:
                s.admit.append(t1 - t0)
                s.settle.append(t3 - t2)
                s.admit_sends += w1 - w0
                s.settle_sends += w2 - w1
    gc.unfreeze()
    cmds = stats_delta(stats0 or {}, await commandstats(probe))
    out = {k: series[k].report(args.iterations, k == "redis") for k in gws}
    out["redis"]["server_commands_per_request"] = {
        k: round(v["calls"] / args.iterations, 2) for k, v in cmds.items() if k not in ("info", "ping")
    }
    out["redis"]["server_usec_per_call"] = {k: v["usec_per_call"] for k, v in cmds.items() if k != "info"}
    print("stages: admission part by part ...", flush=True)
    out["admit_parts"] = {k: await admit_parts(gws[k], keys[k], args.breakdown, wire) for k in gws}
    await probe.aclose()
    for g in gws.values():
        await g.aclose()
    return out


async def admit_parts(gw: Any, keys: list[str], n: int, wire: Wire) -> dict[str, Any]:
    """A separate pass: the key store's ``authenticate_record`` and ``Governance.admit`` timed inside
    ``pipeline.enter`` (Authorize + Admit) by thin wrappers (the rest is RBAC, the caller record and
    the estimates). A warm key is not read separately: on Redis its record rides in the admission
    round trip, on memory it is the store's own lookup."""
    rs = gw.route("chat")
    store, gov = gw.services.keys, gw.services.governance
    auth_orig, admit_orig = store.authenticate_record, gov.admit
    parts: dict[str, list[int]] = {"whole admit": [], "authenticate": [], "Governance.admit": [], "rest": []}
    sends: dict[str, int] = {"authenticate": 0, "Governance.admit": 0}
    cur: dict[str, int] = {}

    async def auth(key: str) -> Any:
        w, t = wire.sends, perf_ns()
        try:
            return await auth_orig(key)
        finally:
            cur["authenticate"] = perf_ns() - t
            sends["authenticate"] += wire.sends - w

    async def admit(*a: Any, **kw: Any) -> Any:
        w, t = wire.sends, perf_ns()
        try:
            return await admit_orig(*a, **kw)
        finally:
            cur["Governance.admit"] = perf_ns() - t
            sends["Governance.admit"] += wire.sends - w

    store.authenticate_record, gov.admit = auth, admit
    try:
        for i in range(n + 200):
            req = gw.request("chat", MESSAGES, virtual_key=keys[i % len(keys)], max_tokens=256)
            cur["authenticate"] = 0
            t0 = perf_ns()
            ctx = await enter(gw, rs, req)
            whole = perf_ns() - t0
            admission = ctx.admission
            await gw.pipeline.exit(ctx, fake_response(req))
            check_settled("parts", i, ctx, admission)
            if i >= 200:
                parts["whole admit"].append(whole)
                parts["authenticate"].append(cur["authenticate"])
                parts["Governance.admit"].append(cur["Governance.admit"])
                parts["rest"].append(whole - cur["authenticate"] - cur["Governance.admit"])
    finally:
        del store.authenticate_record, gov.admit  # back to the class methods
    out: dict[str, Any] = {k: summary_us(v) for k, v in parts.items()}
    out["round_trips"] = {k: v / (n + 200) for k, v in sends.items()}
    return out


# -- part 3: end to end --------------------------------------------------------------------------

CASES = (
    "ungoverned",
    "governed, memory, audit off",
    "governed, memory",
    "governed, Redis, audit off",
    "governed, Redis",
)


@dataclass
class E2E:
    gw: Any
    keys: list[str]
    samples: list[int] = field(default_factory=list)
    cpu_ns: int = 0
    cpu_calls: int = 0
    calls: int = 0
    inside: Series | None = None  # Authorize + Admit / Settle timed inside the governed calls
    recording: bool = False


def instrument(case: E2E, wire: Wire) -> None:
    """Time Authorize + Admit (``before``) and Settle (``after``) inside real ``acomplete`` calls (thin
    wrappers set on the stage instances, ~0.3 µs each; they record only while ``case.recording``)."""
    authorize, admit, settle = (stage(case.gw, n) for n in ("authorize", "admit", "settle"))
    case.inside = s = Series()
    auth_before, admit_before, settle_after = authorize.before, admit.before, settle.after
    start: dict[str, int] = {}

    async def timed_authorize(ctx: Any) -> None:
        start["w"], start["t"] = wire.sends, perf_ns()
        await auth_before(ctx)

    async def timed_admit(ctx: Any) -> None:
        try:
            await admit_before(ctx)
        finally:
            if case.recording:  # from Authorize's start (GuardIn between them is empty)
                s.admit.append(perf_ns() - start["t"])
                s.admit_sends += wire.sends - start["w"]

    async def timed_settle(ctx: Any) -> None:
        w, t0 = wire.sends, perf_ns()
        try:
            await settle_after(ctx)
        finally:
            if case.recording:
                s.settle.append(perf_ns() - t0)
                s.settle_sends += wire.sends - w

    authorize.before, admit.before, settle.after = timed_authorize, timed_admit, timed_settle


async def e2e_phase(
    args: argparse.Namespace, mock: MockProcess, redis_url: str, audit_dir: str, wire: Wire
) -> dict[str, Any]:
    from hyperion_core import Gateway
    from hyperion_core.mock_provider.content import answer_for

    gws = {
        "ungoverned": Gateway(gateway_config(mock, state=None, audit_dir=None)),
        "governed, memory, audit off": Gateway(gateway_config(mock, state="memory", audit_dir=None)),
        "governed, memory": Gateway(gateway_config(mock, state="memory", audit_dir=audit_dir)),
        "governed, Redis, audit off": Gateway(
            gateway_config(mock, state=redis_url, audit_dir=None, keys_store="redis")
        ),
        "governed, Redis": Gateway(
            gateway_config(mock, state=redis_url, audit_dir=audit_dir, keys_store="redis")
        ),
    }
    cases = {k: E2E(g, await make_keys(g) if g.services.active else []) for k, g in gws.items()}
    for c in cases.values():
        if c.keys:
            instrument(c, wire)
    want = answer_for(MESSAGES[-1]["content"])

    async def call(name: str, i: int) -> None:
        c = cases[name]
        kw = {"virtual_key": c.keys[i % N_KEYS]} if c.keys else {}
        resp = await c.gw.acomplete("chat", MESSAGES, max_tokens=256, **kw)
        if resp.content != want or resp.cache is not None:
            raise BenchError(f"{name}: unexpected response {resp.content!r:.80}")
        c.calls += 1

    async def settle(name: str) -> None:
        audit = cases[name].gw.audit
        if audit is not None and not await audit.aflush(timeout=10):
            raise BenchError(f"{name}: the audit sink did not take the events")

    up0 = mock.requests("governance")
    rng = random.Random(5)
    n, warmup = args.e2e_iterations, args.e2e_warmup
    for r in range(warmup + n):
        if r == warmup:
            gc.collect()
            gc.freeze()
        order = list(CASES)
        rng.shuffle(order)
        for name in order:
            t0 = perf_ns()
            await call(name, r)
            t1 = perf_ns()
            await settle(name)  # off the clock: the audit writer's batch is nobody's latency
            if r >= warmup:
                cases[name].samples.append(t1 - t0)
    # CPU per call: blocks of one case, rotating; each block ends with the audit flush. Authorize +
    # Admit and Settle are timed in these blocks: consecutive calls of one gateway, as in a deployment that runs
    # one configuration (in the interleaved rounds a memory call may follow a Redis one, whose client
    # code leaves the CPU caches colder than any memory deployment would)
    block = max(1, args.e2e_cpu_calls // 10)
    for b in range(10):
        k0 = b % len(CASES)
        for name in CASES[k0:] + CASES[:k0]:
            await asyncio.sleep(0.02)
            cases[name].recording = True
            c0 = cpu_ns()
            for k in range(block):
                await call(name, b * block + k)
            await settle(name)
            await asyncio.sleep(0.02)
            cases[name].cpu_ns += cpu_ns() - c0
            cases[name].recording = False
            cases[name].cpu_calls += block
    gc.unfreeze()
    upstream = mock.requests("governance") - up0
    total = sum(c.calls for c in cases.values())
    if upstream != total:
        raise BenchError(f"{total} calls made {upstream} upstream requests")
    audited = {}
    for name, c in cases.items():
        if c.gw.audit is not None:
            events = await c.gw.audit.query(limit=total + 10)
            audited[name] = len(events)
            if len(events) != c.calls or any(e.outcome != "ok" for e in events):
                raise BenchError(f"{name}: {len(events)} audit events for {c.calls} calls")
            report = await c.gw.audit.verify()
            if not getattr(report, "ok", True):
                raise BenchError(f"{name}: the audit chain does not verify: {report}")
    out: dict[str, Any] = {}
    base = cases["ungoverned"]
    b50 = summary_us(base.samples)["p50_us"]
    bcpu = base.cpu_ns / base.cpu_calls / 1e3
    for name, c in cases.items():
        s = summary_us(c.samples)
        cpu = c.cpu_ns / c.cpu_calls / 1e3
        out[name] = {
            **s,
            "cpu_us_per_call": round(cpu, 1),
            "p50_added_us": round(s["p50_us"] - b50, 1),
            "p50_ratio": round(s["p50_us"] / b50, 3),
            "cpu_added_us": round(cpu - bcpu, 1),
            "calls": c.calls,
            "audit_events": audited.get(name),
        }
        if c.inside is not None:
            out[name]["stages_inside_calls"] = c.inside.report(len(c.inside.admit), "Redis" in name)
    for g in gws.values():
        await g.aclose()
    return out


# -- report --------------------------------------------------------------------------------------


def _admission_rows(
    res: dict[str, Any],
) -> list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]]:
    """(measurement, backend, admit summary, settle summary or None, round trips text) per row."""
    c, s, e = res["core"], res["stages"], res["e2e"]
    inside = {
        "memory": e["governed, memory, audit off"].get("stages_inside_calls"),
        "redis": e["governed, Redis, audit off"].get("stages_inside_calls"),
    }
    rows = []
    for backend in ("memory", "redis"):
        rows.append(
            (
                "Authorize + Admit / Settle stages inside governed `Gateway.acomplete` calls (audit off)",
                backend,
                inside[backend],
            )
        )
    for backend in ("memory", "redis"):
        rows.append(
            (
                "`pipeline.enter` / `exit` (Authorize + Admit / Settle), microbenchmark (memory and Redis calls alternate)",
                backend,
                s[backend],
            )
        )
    for backend in ("memory", "redis"):
        p = s["admit_parts"][backend]
        rows.append(
            (
                "`pipeline.enter` (Authorize + Admit), back to back (one backend at a time)",
                backend,
                {
                    "admit": p["whole admit"],
                    "round_trips_per_admit": p["round_trips"]["authenticate"]
                    + p["round_trips"]["Governance.admit"],
                },
            )
        )
    for backend in ("memory", "redis"):
        rows.append(
            (
                "`Governance.admit` / `settle`, microbenchmark (memory and Redis calls alternate)",
                backend,
                c[backend],
            )
        )
    return rows  # type: ignore[return-value]


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for label, backend, r in _admission_rows(res):
        if r is None or label.startswith("`pipeline.enter` / `exit`"):
            continue  # in the table; the targets use the real calls, the best case and the core
        p50 = r["admit"]["p50_us"]
        if backend == "memory":
            out.append((f"memory admission p50 < 30 µs: {label}", f"{p50:.1f} µs", "< 30 µs", p50 < 30))
        else:
            rt = r["round_trips_per_admit"]
            out.append(
                (
                    f"Redis admission in one round trip, p50 < 1 ms: {label}",
                    f"{rt:g} round trip{'s' if rt != 1 else ''}, {p50 / 1000:.3f} ms",
                    "1, < 1 ms",
                    abs(rt - 1) < 1e-9 and p50 < 1000,
                )
            )
    return [{"target": t, "value": v, "goal": g, "pass": bool(p)} for t, v, g, p in out]


def markdown(res: dict[str, Any]) -> str:
    m, s, e = res["meta"], res["stages"], res["e2e"]
    lines = [
        f"Governance per request ({m['cpus']} CPUs, Python {m['python']}, local Redis {m['redis_version']} on "
        f"loopback, PING p50 {res['redis_ping']['p50_us']:.0f} µs; microbenchmarks {m['iterations']:,} iterations "
        f"per backend after {m['warmup']} warm-up, end to end {m['e2e_iterations']:,} interleaved calls per case; "
        f"{CONFIG_TEXT}; `bench/governance.py`, {m['date'][:10]}):",
        "",
        "| measurement | backend | admit p50 µs | admit p99 µs | settle p50 µs | settle p99 µs | round trips (admit + settle) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for label, backend, r in _admission_rows(res):
        if r is None:
            continue
        settle = r.get("settle")
        if backend == "redis":
            rt = f"{r['round_trips_per_admit']:g}" + (f" + {r['round_trips_per_settle']:g}" if settle else "")
        else:
            rt = "—"
        lines.append(
            f"| {label} | {backend} | {r['admit']['p50_us']:.1f} | {r['admit']['p99_us']:.1f} | "
            + (f"{settle['p50_us']:.1f} | {settle['p99_us']:.1f}" if settle else "— | —")
            + f" | {rt} |"
        )
    lines += [
        "",
        f'"Inside governed calls": {m["e2e_cpu_calls"]:,} consecutive `Gateway.acomplete` calls per gateway against '
        'the mock (the end-to-end CPU blocks below), audit off. "Microbenchmark": the calls alone, memory and Redis '
        'alternating. "Back to back": one backend at a time, nothing in between; the CPU caches are warmest there.',
        "",
    ]
    parts = s["admit_parts"]
    for backend in ("memory", "redis"):
        p = parts[backend]
        rts = p["round_trips"]
        lines.append(
            f"Stage admission (Authorize + Admit) on {backend}, part by part (p50 µs, back to back): key authentication "
            f"{p['authenticate']['p50_us']:.1f}"
            + (f" ({rts['authenticate']:g} round trip)" if backend == "redis" else "")
            + f", `Governance.admit` {p['Governance.admit']['p50_us']:.1f}"
            + (f" ({rts['Governance.admit']:g} round trip)" if backend == "redis" else "")
            + f", the rest (RBAC, caller record, estimates) {p['rest']['p50_us']:.1f}; whole {p['whole admit']['p50_us']:.1f}."
        )
    sc = s["redis"]["server_commands_per_request"]
    su = s["redis"]["server_usec_per_call"]
    inner = sum(v for k, v in sc.items() if k not in ("evalsha", "evalsha_ro"))
    lines += [
        "",
        f"Redis side, per request through the stages (`INFO commandstats`): {sc.get('evalsha', 0):g} Lua scripts (EVALSHA, "
        f"{su.get('evalsha', 0):.1f} µs each on the server) that run about {inner - 1:g} commands inside, "
        "plus the key record's GET.",
        "",
        f"End to end, `Gateway.acomplete` against the mock provider (another process), {m['e2e_iterations']:,} "
        "interleaved calls per case; CPU per call over blocks of one case, audit writes included:",
        "",
        "| case | p50 µs | p99 µs | added p50 µs | CPU µs / call | added CPU µs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, v in e.items():
        lines.append(
            f"| {name} | {v['p50_us']:.1f} | {v['p99_us']:.1f} | {v['p50_added_us']:+.1f} | "
            f"{v['cpu_us_per_call']:.1f} | {v['cpu_added_us']:+.1f} |"
        )
    lines += [
        "",
        "Governed = virtual key required (checked on every call), 3 budgets, 3 rate-limit buckets, anomaly watch, "
        "SQLite audit (one event per call, hash-chained; flushed off the clock in the latency rounds) unless "
        '"audit off". Redis = `state.backend: redis`: keys, budgets and rate limits in Redis.',
        "",
        *targets_table(res["targets"]),
    ]
    return "\n".join(lines)


def print_report(res: dict[str, Any]) -> None:
    print()
    for label, backend, v in _admission_rows(res):
        if v is None:
            continue
        rt = f"; round trips {v['round_trips_per_admit']:g}" if backend == "redis" else ""
        st = v.get("settle")
        print(
            f"{label[:60]:<60} {backend:<6} admit p50 {v['admit']['p50_us']:7.1f} µs (p99 {v['admit']['p99_us']:7.1f})"
            + (f", settle p50 {st['p50_us']:7.1f} µs" if st else "")
            + rt
        )
    print(f"Redis PING p50 {res['redis_ping']['p50_us']:.1f} µs")
    for name, v in res["e2e"].items():
        print(
            f"e2e {name:<18} p50 {v['p50_us']:8.1f} µs  p99 {v['p99_us']:8.1f}  CPU {v['cpu_us_per_call']:7.1f} µs/call"
        )
    print_noise(res["meta"])
    print("targets:")
    for t in res["targets"]:
        print(f"  {'PASS' if t['pass'] else 'MISS'}  {t['target']:<118} {t['value']}")
    print()
    print("markdown:")
    print(markdown(res))


# -- main ----------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, mock: MockProcess, redis_url: str, audit_dir: str) -> dict[str, Any]:
    wire = Wire()
    try:
        res: dict[str, Any] = {"redis_ping": await ping(redis_url, args.iterations)}
        print(f"core: {args.warmup} warm-up + {args.iterations} iterations per backend ...", flush=True)
        res["core"] = await core_phase(args, redis_url, wire)
        print(f"stages: {args.warmup} warm-up + {args.iterations} iterations per backend ...", flush=True)
        res["stages"] = await stages_phase(args, redis_url, wire)
        print(
            f"end to end: {args.e2e_warmup} warm-up + {args.e2e_iterations} rounds x {len(CASES)} cases ...",
            flush=True,
        )
        res["e2e"] = await e2e_phase(args, mock, redis_url, audit_dir, wire)
    finally:
        wire.close()
    return res


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = arg_parser(__doc__)
    p.add_argument("--quick", action="store_true", help="1,000 iterations instead of 5,000")
    p.add_argument("--iterations", type=int, help="core and stage iterations per backend (default 5000)")
    p.add_argument("--warmup", type=int, help="warm-up iterations (default 500; --quick 200)")
    p.add_argument("--breakdown", type=int, default=2000, help="admissions timed part by part per backend")
    p.add_argument("--e2e-iterations", type=int, help="end-to-end rounds (default 2000; --quick 300)")
    p.add_argument(
        "--e2e-cpu-calls", type=int, help="calls per case for CPU per call (default 2000; --quick 300)"
    )
    add_common_args(p)
    a = p.parse_args(argv)
    a.iterations = a.iterations or (1000 if a.quick else 5000)
    a.warmup = a.warmup if a.warmup is not None else (200 if a.quick else 500)
    a.e2e_iterations = a.e2e_iterations or (300 if a.quick else 2000)
    a.e2e_warmup = 50 if a.quick else 200
    a.e2e_cpu_calls = a.e2e_cpu_calls or (300 if a.quick else 2000)
    if a.quick:
        a.breakdown = min(a.breakdown, 500)
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cpus, pin = pin_to_cpu0(args.no_pin)
    helper_cpu = cpus - 1 if pin else None
    versions = package_versions(("redis", "aiohttp", "orjson"))
    meta = run_meta(cpus, pin, git_rev("hyperion_core"), versions, python=True)
    meta.update({
        "quick": args.quick,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "e2e_iterations": args.e2e_iterations,
        "e2e_cpu_calls": args.e2e_cpu_calls,
        "config": CONFIG_TEXT,
        "gc": "frozen after warm-up (gc.freeze)",
    })
    if args.wait_quiet > 0:
        meta["quiet_before_start"] = wait_quiet(args.wait_quiet)
    mock = server = None
    try:
        with tempfile.TemporaryDirectory(prefix="hyperion-bench-audit-") as audit_dir:
            mock = MockProcess(helper_cpu)
            server = start_redis(helper_cpu)
            import redis

            meta["redis_version"] = redis.Redis.from_url(server.url).info("server")["redis_version"]
            noise = Noise(mock.proc.pid)
            if getattr(server, "_proc", None):
                noise.pids.append(str(server._proc.pid))
            with noise:
                res = asyncio.run(run(args, mock, server.url, audit_dir))
            meta["noise"] = noise.report()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if mock is not None:
            mock.stop()
        if server is not None:
            server.stop()
    res = {"meta": meta, **res}
    res["targets"] = targets(res)
    print_report(res)
    write_json(args.json, res)
    return exit_code(args.strict, res["targets"])


if __name__ == "__main__":
    sys.exit(main())
