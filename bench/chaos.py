"""Failover under chaos: the Gateway against a fault-injecting upstream, scenario by scenario (issue 12).

Each scenario sends ``--requests`` requests (default 300) at concurrency ``--concurrency`` (default 8) to a
two-deployment ``failover`` route: faults on the primary only, a healthy backup, both served by one mock
provider process on one host:port (so a dead pooled socket would hit the backup). Asked to continue a
cut answer, the backup repeats its last two words first, as real models often do (``resume_overlap``),
so a resume that splices blindly shows up as wrong text. Paced scenarios start
requests at a fixed rate over three breaker cooldowns, so the breaker's reopen/probe cycle shows.

Every answer is checked against the mock's deterministic one: *failed* (an error reached the caller),
*silent truncations* (a strict prefix returned as complete), *text after a finish reason* (the whole
answer plus more), *other wrong* (anything else). Also: p50/p99 latency (S3/S6 against the attempt
timeout), primary calls per cooldown window while the primary is down or stalling, trailers lost
(logged by the adapters, answers complete).

    .venv/bin/python bench/chaos.py --json bench/results/chaos.json     # ~1.5 min (paced runs: 3 cooldowns)
    .venv/bin/python bench/chaos.py --only S3,S6 --requests 100
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _common import (  # noqa: E402
    ROOT,
    BenchError,
    Noise,
    add_common_args,
    arg_parser,
    exit_code,
    free_port,
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

ATTEMPT_TIMEOUT = 1.0  # seconds: attempt and first-token timeout (the stream idle timeout follows it)
BACKUP_OVERLAP = 2  # words a continuation on the backup repeats


@dataclass
class Scenario:
    id: str
    title: str
    faults: list[dict[str, Any]]
    mode: str = "mixed"  # "mixed": even requests whole, odd streamed; "stream": all streamed
    paced: bool = False
    recover_at: float | None = None  # seconds into the run when the primary's faults are cleared
    breaker: dict[str, Any] = field(default_factory=dict)
    down: bool = False  # the primary is down or stalling: primary calls per cooldown are a target


SCENARIOS = [
    Scenario("S1", "500 on 50%", [{"kind": "server_error", "probability": 0.5, "seed": 1}]),
    Scenario("S1r", "500 on 50%, failure-rate breaker (0.3 over 10 calls)",
             [{"kind": "server_error", "probability": 0.5, "seed": 1}],
             breaker={"failure_rate": 0.3, "min_calls": 10}),
    Scenario("S2", "429 + Retry-After 2 s; primary recovers at 6 s (paced)",
             [{"kind": "rate_limit", "retry_after": 2}], paced=True, recover_at=6.0),
    Scenario("S3", "30% hangs", [{"hang": True, "probability": 0.3, "seed": 3}]),
    Scenario("S4", "cut mid-stream (50%)", [{"cut_after_chunks": 5, "probability": 0.5, "seed": 4}], "stream"),
    Scenario("S4b", "clean EOF without terminal event (50%)",
             [{"eof_after_chunks": 5, "probability": 0.5, "seed": 5}], "stream"),
    Scenario("S4f", "connection drop after the finish reason (50%)",
             [{"drop_after_finish": True, "probability": 0.5, "seed": 6}], "stream"),
    Scenario("S5", "primary down (503)", [{"kind": "unavailable"}], down=True),
    Scenario("S6", "primary black-holed", [{"hang": True}], down=True),
    Scenario("S7", "stall after the first chunk (paced)", [{"stall_after_chunks": 1}], "stream", paced=True,
             down=True),
    Scenario("S8", "empty 200 stream", [{"empty": True}], "stream"),
]


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.trailers = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "trailer" in record.getMessage():
            self.trailers += 1


class MockProcess:
    """``hyperion_core.mock_provider.serve`` in its own process (on the last CPU when pinned)."""

    def __init__(self, cpu: int | None) -> None:
        from hyperion_core.mock_provider.client import MockProviderClient

        self.port = free_port()
        code = f"from hyperion_core.mock_provider import serve; serve('127.0.0.1', {self.port})"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if cpu is not None:
            try:
                os.sched_setaffinity(self.proc.pid, {cpu})
            except OSError:
                pass
        self.client = MockProviderClient(f"http://127.0.0.1:{self.port}")
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_mock/health", timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("the mock provider did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _route(mock: MockProcess, sc: Scenario, cooldown: float) -> dict[str, Any]:
    p, b = f"{sc.id}-primary", f"{sc.id}-backup"
    providers = {d: {"kind": "openai", "api_key": "sk-bench", "base_url": mock.client.base_url(d, "openai")} for d in (p, b)}
    return {
        "providers": providers,
        "routes": {
            "chat": {
                "deployments": [{"model": f"{p}/gpt-4o-mini", "name": p}, {"model": f"{b}/gpt-4o-mini", "name": b}],
                "timeout": 10.0,
                "attempt_timeout": ATTEMPT_TIMEOUT,
                "first_token_timeout": ATTEMPT_TIMEOUT,
                "retry": {"attempts": 1, "backoff_base": 0.05, "backoff_max": 0.5},
                "breaker": {"failure_threshold": 5, "cooldown": cooldown, **sc.breaker},
                "stream_resume": True,
            }
        },
    }


async def _one(gw: Any, sc: Scenario, i: int, t0: float) -> dict[str, Any]:
    from hyperion_core.mock_provider.content import answer_for

    prompt = f"{sc.id} question {i}"
    streamed = sc.mode == "stream" or i % 2 == 1
    start = time.monotonic()
    rec: dict[str, Any] = {"t": start - t0, "streamed": streamed}
    try:
        if streamed:
            stream = gw.astream("chat", [{"role": "user", "content": prompt}])
            text = "".join([c.content async for c in stream])
            resp = stream.response
        else:
            resp = await gw.acomplete("chat", [{"role": "user", "content": prompt}])
            text = resp.content or ""
        rec.update(ok=True, deployment=resp.deployment, resumed=bool(resp.resumed_by), attempts=resp.attempts)
    except Exception as exc:  # noqa: BLE001 - every failure is a result here
        rec.update(ok=False, error=type(exc).__name__, attempts=getattr(exc, "attempts", ()) or ())
        text = None
    rec["ns"] = int((time.monotonic() - start) * 1e9)
    want = answer_for(prompt)
    if text is not None and text != want:
        rec["wrong"] = "truncated" if want.startswith(text) else "appended" if text.startswith(want) else "other"
    return rec


async def run_scenario(mock: MockProcess, sc: Scenario, n: int, conc: int, cooldown: float) -> dict[str, Any]:
    from hyperion_core import Gateway

    mock.client.clear_faults()
    primary = f"{sc.id}-primary"
    for f in sc.faults:
        mock.client.fault(primary, **f)
    mock.client.fault(f"{sc.id}-backup", resume_overlap=BACKUP_OVERLAP)
    gw = Gateway(_route(mock, sc, cooldown))
    sem = asyncio.Semaphore(conc)
    duration = max(3 * cooldown, 2 * (sc.recover_at or 0.0)) if sc.paced else 0.0
    t0 = time.monotonic()
    recovered: list[float] = []

    async def paced(i: int) -> dict[str, Any]:
        if duration:
            await asyncio.sleep(max(0.0, t0 + i * duration / n - time.monotonic()))
        async with sem:
            return await _one(gw, sc, i, t0)

    async def recover() -> None:
        if sc.recover_at is not None:
            await asyncio.sleep(sc.recover_at)
            await asyncio.to_thread(mock.client.clear_faults, primary)
            recovered.append(time.monotonic() - t0)

    results, _ = await asyncio.gather(asyncio.gather(*(paced(i) for i in range(n))), recover())
    wall = time.monotonic() - t0
    await gw.aclose()
    stats = mock.client.stats()
    ok = [r for r in results if r["ok"]]
    lat = summary([r["ns"] for r in results], "ms", 1)
    out: dict[str, Any] = {
        "id": sc.id,
        "title": sc.title,
        "down": sc.down,
        "requests": n,
        "wall_s": round(wall, 2),
        "failed": sum(not r["ok"] for r in results),
        "errors": sorted({r["error"] for r in results if not r["ok"]}),
        "silent_truncations": sum(r.get("wrong") == "truncated" for r in results),
        "text_after_finish": sum(r.get("wrong") == "appended" for r in results),
        "other_wrong": sum(r.get("wrong") == "other" for r in results),
        "resumed": sum(r.get("resumed", False) for r in ok),
        "p50_ms": lat["p50_ms"],
        "p99_ms": lat["p99_ms"],
        "primary_calls": stats.get(primary, {}).get("requests", 0),
        "backup_errors": sum(
            1 for r in results for a in r["attempts"] if a.deployment.endswith("-backup") and a.outcome == "error"
        ),
    }
    # primary calls (not mid-stream cut records) by the cooldown window their request started in
    windows: dict[int, int] = {}
    for r in results:
        calls = sum(1 for a in r["attempts"] if a.deployment == primary and not (a.message or "").startswith("after "))
        windows[int(r["t"] // cooldown)] = windows.get(int(r["t"] // cooldown), 0) + calls
    out["primary_calls_per_cooldown_max"] = max(windows.values(), default=0)
    out["cooldown_windows"] = max(1, math.ceil(wall / cooldown))
    if recovered:
        back = [r["t"] for r in ok if r["deployment"] == primary and r["t"] >= recovered[0]]
        out["primary_reused_after_recovery_s"] = round(min(back) - recovered[0], 2) if back else None
        out["primary_calls_while_limited"] = sum(
            1 for r in results if r["t"] < recovered[0] for a in r["attempts"] if a.deployment == primary
        )
    return out


def _targets(rows: list[dict[str, Any]], cooldown: float) -> list[dict[str, Any]]:
    t: list[dict[str, Any]] = []
    total = {k: sum(r[k] for r in rows) for k in ("failed", "silent_truncations", "text_after_finish", "other_wrong")}
    for key, label in (("failed", "failed requests"), ("silent_truncations", "silent truncations"),
                       ("text_after_finish", "answers with text after a finish reason"),
                       ("other_wrong", "other wrong answers")):
        t.append({"target": f"{label}, all scenarios", "goal": "0", "value": total[key], "pass": total[key] == 0})
    limit = ATTEMPT_TIMEOUT * 1100
    for r in rows:
        if r["id"] in ("S3", "S6"):
            t.append({"target": f"{r['id']} p99", "goal": f"<= attempt timeout + 10% = {limit:.0f} ms",
                      "value": f"{r['p99_ms']:.0f} ms", "pass": r["p99_ms"] <= limit})
    for r in rows:
        if r["id"] in ("S5", "S6", "S7"):
            v = r["primary_calls_per_cooldown_max"]
            t.append({"target": f"{r['id']} primary calls per {cooldown:g} s cooldown (max window)", "goal": "<= 15",
                      "value": v, "pass": v <= 15})
    for r in rows:
        if r.get("primary_reused_after_recovery_s") is not None:
            v = r["primary_reused_after_recovery_s"]
            t.append({"target": f"{r['id']} primary used again after it recovered", "goal": "<= Retry-After (2 s)",
                      "value": f"{v} s", "pass": v <= 2.0})
            calls, windows = r["primary_calls_while_limited"], math.ceil(6.0 / 2.0)
            t.append({"target": f"{r['id']} primary calls while rate limited (6 s, Retry-After 2 s)",
                      "goal": f"<= one per Retry-After ({windows})", "value": calls, "pass": calls <= windows})
    return t


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| scenario | failed | silent truncations | text after finish | other wrong | resumed | p50 ms | p99 ms "
        "| primary calls | max per cooldown | backup errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['id']} {r['title']} | {r['failed']} | {r['silent_truncations']} | {r['text_after_finish']} "
            f"| {r['other_wrong']} | {r['resumed']} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['primary_calls']} "
            f"| {r['primary_calls_per_cooldown_max'] if r['down'] else '–'} | {r['backup_errors']} |"
        )
    return lines


async def main_async(args: Any, mock: MockProcess) -> list[dict[str, Any]]:
    only = {s.strip() for s in args.only.split(",")} if args.only else None
    rows = []
    for sc in SCENARIOS:
        if only and sc.id not in only:
            continue
        row = await run_scenario(mock, sc, args.requests, args.concurrency, args.cooldown)
        rows.append(row)
        print(f"  {sc.id:4} {sc.title:55} failed={row['failed']} trunc={row['silent_truncations']} "
              f"appended={row['text_after_finish']} p99={row['p99_ms']:.0f} ms primary={row['primary_calls']} "
              f"({row['wall_s']} s)", flush=True)
    return rows


def main() -> int:
    p = arg_parser(__doc__)
    add_common_args(p)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--cooldown", type=float, default=10.0, help="breaker cooldown, seconds (default 10)")
    p.add_argument("--only", help="comma-separated scenario ids")
    args = p.parse_args()
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    cpus, pinned = pin_to_cpu0(args.no_pin)
    counter = _Count()
    hlog = logging.getLogger("hyperion")
    hlog.addHandler(counter)
    hlog.propagate = False  # counted, not printed (the lost trailers of S4f are logged by design)
    mock = MockProcess(cpus - 1 if pinned else None)
    try:
        with Noise(mock.proc.pid) as noise:
            rows = asyncio.run(main_async(args, mock))
    finally:
        mock.stop()
    targets = _targets(rows, args.cooldown)
    meta = run_meta(cpus, pinned, git_rev("hyperion_core", "bench/chaos.py"),
                    package_versions(("aiohttp",), python=True))
    meta.update(requests=args.requests, concurrency=args.concurrency, cooldown_s=args.cooldown,
                attempt_timeout_s=ATTEMPT_TIMEOUT, trailers_lost_logged=counter.trailers, noise=noise.report())
    print()
    print("\n".join(_table(rows)))
    print()
    print("\n".join(targets_table(targets)))
    print(f"\ntrailers lost after a finish reason (logged, answers complete): {counter.trailers}")
    print_noise(meta)
    write_json(args.json, {"meta": meta, "scenarios": rows, "targets": targets})
    return exit_code(args.strict, targets)


if __name__ == "__main__":
    sys.exit(main())
