"""What ``HyperionChat`` costs a LangChain app: ``ainvoke`` / ``astream`` against ``ChatOpenAI`` and
``ChatLiteLLM`` on the same upstream, in one run.

The upstream is Hyperion's mock provider (OpenAI wire, JSON and SSE), run in its own process so its
work is not billed to the clients (with 2+ CPUs the benchmark is pinned to CPU 0 and the mock to the
last CPU; ``--no-pin``). Three LangChain chat models call it:

* ``ChatOpenAI``   — ``langchain-openai``, ``base_url`` at the mock, ``max_retries=0``;
* ``HyperionChat`` — a plain gateway route: one deployment (native OpenAI adapter) at the same mock, no
  cache, keys, budgets or audit; the whole pipeline still runs (routing, breaker, deadline, cost);
* ``ChatLiteLLM``  — ``langchain-litellm``, ``openai/gpt-4o-mini`` with ``api_base`` at the mock.

Measured in one process and one event loop, interleaved: every round calls each client once in a seeded
shuffled order, after warm-up rounds, with an untimed settle after each call for the tasks a client left
behind (litellm's logging tasks would otherwise land in the next client's time). Every answer is checked
against the mock's deterministic answer, so no error path is ever timed. ``ainvoke``: wall time per
call; ``astream``: time to the first content chunk and to the end of the stream (the mock sends one word
per chunk, ~25 chunks). After warm-up the heap is frozen (``gc.freeze()``).

Target: ``HyperionChat.ainvoke`` p50 no slower than ``ChatOpenAI.ainvoke`` (ratio <= 1.0).

Usage::

    .venv/bin/python bench/langchain.py                      # 1,000 rounds (~1 min)
    .venv/bin/python bench/langchain.py --quick              # 200 rounds (~15 s)
    .venv/bin/python bench/langchain.py --json bench/results/langchain.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))  # hyperion_core / hyperion_lc from this checkout

from _common import (  # noqa: E402
    BenchError,
    Settle,
    add_common_args,
    arg_parser,
    exit_code,
    free_port,
    git_rev,
    package_versions,
    pin_to_cpu0,
    run_meta,
    summary,
    write_json,
)

perf_ns = time.perf_counter_ns
CLIENTS = ("ChatOpenAI", "HyperionChat", "ChatLiteLLM")
PROMPT = "hi"
MODEL = "gpt-4o-mini"


# -- the upstream: the mock provider in its own process ---------------------------------------------


class MockProcess:
    def __init__(self, cpu: int | None) -> None:
        self.port = free_port()
        self.cpu = cpu
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, dep: str) -> str:
        return f"{self.url}/{dep}/v1"

    def start(self) -> MockProcess:
        code = f"from hyperion_core.mock_provider import serve; serve(port={self.port})"
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL)
        if self.cpu is not None:
            os.sched_setaffinity(self.proc.pid, {self.cpu})
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise BenchError("the mock provider exited at start") from None
                time.sleep(0.05)
        raise BenchError("the mock provider did not start listening in 15 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# -- the three clients ------------------------------------------------------------------------------

Call = Callable[[], Awaitable[str]]
Stream = Callable[[], Awaitable[tuple[int, str]]]  # (perf_ns of the first content chunk, whole text)


def build_clients(mock: MockProcess) -> tuple[dict[str, Call], dict[str, Stream], Any]:
    from langchain_litellm import ChatLiteLLM
    from langchain_openai import ChatOpenAI

    from hyperion_core import Gateway
    from hyperion_lc import HyperionChat

    gw = Gateway({
        "providers": {"mock": {"kind": "openai", "api_key": "sk-bench", "base_url": mock.base_url("hyperion")}},
        "routes": {"chat": {"deployments": [{"model": f"mock/{MODEL}"}]}},
    })
    models = {
        "ChatOpenAI": ChatOpenAI(model=MODEL, base_url=mock.base_url("openai"), api_key="sk-bench", max_retries=0),
        "HyperionChat": HyperionChat(model="chat", gateway=gw),
        "ChatLiteLLM": ChatLiteLLM(model=f"openai/{MODEL}", api_base=mock.base_url("litellm"), api_key="sk-bench",
                                   max_retries=0),
    }

    def call(m: Any) -> Call:
        async def fn() -> str:
            return (await m.ainvoke(PROMPT)).content

        return fn

    def stream(m: Any) -> Stream:
        async def fn() -> tuple[int, str]:
            first, parts = 0, []
            async for chunk in m.astream(PROMPT):
                if chunk.content:
                    if not first:
                        first = perf_ns()
                    parts.append(chunk.content)
            return first, "".join(parts)

        return fn

    return {k: call(m) for k, m in models.items()}, {k: stream(m) for k, m in models.items()}, gw


# -- measuring -------------------------------------------------------------------------------------


def check(name: str, got: str, want: str) -> None:
    if got != want:
        raise BenchError(f"{name}: wrong content {got!r:.100} (expected {want!r:.60})")


async def bench_calls(calls: dict[str, Call], want: str, warmup: int, n: int, seed: int = 1) -> dict[str, list[int]]:
    rng, settle = random.Random(seed), Settle()
    lat: dict[str, list[int]] = {k: [] for k in CLIENTS}
    for i in range(warmup + n):
        order = list(CLIENTS)
        rng.shuffle(order)
        for name in order:
            before = asyncio.all_tasks()
            t0 = perf_ns()
            got = await calls[name]()
            t1 = perf_ns()
            await settle(before)
            check(name, got, want)
            if i >= warmup:
                lat[name].append(t1 - t0)
        if i == warmup - 1:
            gc.collect()
            gc.freeze()
    return lat


async def bench_streams(streams: dict[str, Stream], want: str, warmup: int, n: int,
                        seed: int = 2) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    rng, settle = random.Random(seed), Settle()
    ttft: dict[str, list[int]] = {k: [] for k in CLIENTS}
    total: dict[str, list[int]] = {k: [] for k in CLIENTS}
    for i in range(warmup + n):
        order = list(CLIENTS)
        rng.shuffle(order)
        for name in order:
            before = asyncio.all_tasks()
            t0 = perf_ns()
            first, text = await streams[name]()
            t1 = perf_ns()
            await settle(before)
            check(name, text, want)
            if i >= warmup:
                ttft[name].append(first - t0)
                total[name].append(t1 - t0)
    return ttft, total


# -- reporting -------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    pkgs = ("langchain-core", "langchain-openai", "langchain-litellm", "openai", "litellm", "aiohttp")
    return package_versions(pkgs, python=True)


def ratios(res: dict[str, Any]) -> dict[str, float]:
    c, s = res["ainvoke"], res["astream"]
    return {
        "hyperion_vs_chatopenai_p50": c["HyperionChat"]["p50_ms"] / c["ChatOpenAI"]["p50_ms"],
        "hyperion_vs_chatopenai_p99": c["HyperionChat"]["p99_ms"] / c["ChatOpenAI"]["p99_ms"],
        "chatlitellm_vs_hyperion_p50": c["ChatLiteLLM"]["p50_ms"] / c["HyperionChat"]["p50_ms"],
        "hyperion_vs_chatopenai_ttft_p50": s["HyperionChat"]["ttft_p50_ms"] / s["ChatOpenAI"]["ttft_p50_ms"],
        "hyperion_vs_chatopenai_stream_total_p50": s["HyperionChat"]["total_p50_ms"] / s["ChatOpenAI"]["total_p50_ms"],
        "chatlitellm_vs_hyperion_ttft_p50": s["ChatLiteLLM"]["ttft_p50_ms"] / s["HyperionChat"]["ttft_p50_ms"],
    }


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    r = res["ratios"]
    rows = [
        ("HyperionChat.ainvoke p50 no slower than ChatOpenAI's", r["hyperion_vs_chatopenai_p50"], "<= 1.00x",
         r["hyperion_vs_chatopenai_p50"] <= 1.0),
        ("HyperionChat.astream TTFT p50 no slower than ChatOpenAI's", r["hyperion_vs_chatopenai_ttft_p50"],
         "<= 1.00x", r["hyperion_vs_chatopenai_ttft_p50"] <= 1.0),
    ]
    return [{"target": t, "value": f"{v:.2f}x", "goal": g, "pass": bool(p)} for t, v, g, p in rows]


def print_report(res: dict[str, Any]) -> None:
    c, s = res["ainvoke"], res["astream"]
    print()
    print(f"{'ainvoke':<14}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}   | {'astream':<8}{'TTFT p50':>10}{'TTFT p99':>10}{'total p50':>11}")
    for k in CLIENTS:
        print(f"{k:<14}{c[k]['p50_ms']:>9.3f}{c[k]['p90_ms']:>9.3f}{c[k]['p99_ms']:>9.3f}   | {'':<8}"
              f"{s[k]['ttft_p50_ms']:>10.3f}{s[k]['ttft_p99_ms']:>10.3f}{s[k]['total_p50_ms']:>11.3f}")
    print()
    for name, v in res["ratios"].items():
        print(f"  {name:<42} {v:.2f}x")
    print()
    for t in res["targets"]:
        print(f"  [{'PASS' if t['pass'] else 'MISS'}] {t['target']}: {t['value']} (goal {t['goal']})")


def markdown(res: dict[str, Any]) -> str:
    c, s = res["ainvoke"], res["astream"]
    lines = ["| client | ainvoke p50 ms | p99 ms | astream TTFT p50 ms | stream total p50 ms |", "|---|---:|---:|---:|---:|"]
    for k in CLIENTS:
        name = f"**{k}**" if k == "HyperionChat" else f"`{k}`"
        lines.append(f"| {name} | {c[k]['p50_ms']:.3f} | {c[k]['p99_ms']:.3f} | {s[k]['ttft_p50_ms']:.3f} | {s[k]['total_p50_ms']:.3f} |")
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, mock: MockProcess) -> dict[str, Any]:
    from hyperion_core.mock_provider import answer_for

    calls, streams, gw = build_clients(mock)
    want = answer_for(PROMPT)
    try:
        print(f"ainvoke: {args.warmup} warm-up + {args.iterations} measured rounds ...", flush=True)
        lat = await bench_calls(calls, want, args.warmup, args.iterations)
        gc.unfreeze()
        print(f"astream: {args.warmup} warm-up + {args.stream_iterations} measured rounds ...", flush=True)
        ttft, total = await bench_streams(streams, want, args.warmup, args.stream_iterations)
    finally:
        gc.unfreeze()
        await gw.aclose()
    res: dict[str, Any] = {"ainvoke": {k: summary(lat[k]) for k in CLIENTS}, "astream": {}}
    for k in CLIENTS:
        t, f = summary(ttft[k]), summary(total[k])
        res["astream"][k] = {"n": t["n"], "ttft_p50_ms": t["p50_ms"], "ttft_p90_ms": t["p90_ms"],
                             "ttft_p99_ms": t["p99_ms"], "total_p50_ms": f["p50_ms"], "total_p99_ms": f["p99_ms"]}
    res["chunks_per_stream"] = len(want.split())
    return res


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = arg_parser(__doc__)
    p.add_argument("--quick", action="store_true", help="200 rounds instead of 1,000")
    p.add_argument("--iterations", type=int, help="measured ainvoke rounds (default 1000; --quick 200)")
    p.add_argument("--stream-iterations", type=int, help="measured astream rounds (default 1000; --quick 200)")
    add_common_args(p, quiet=False)
    a = p.parse_args(argv)
    a.iterations = a.iterations or (200 if a.quick else 1000)
    a.stream_iterations = a.stream_iterations or (200 if a.quick else 1000)
    a.warmup = 30 if a.quick else 100
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cpus, pin = pin_to_cpu0(args.no_pin)
    meta = run_meta(cpus, pin, git_rev("hyperion_core", "hyperion_lc"), versions())
    meta.update({
        "quick": args.quick,
        "iterations": args.iterations,
        "stream_iterations": args.stream_iterations,
        "warmup": args.warmup,
        "prompt": PROMPT,
        "upstream": "hyperion mock provider (OpenAI wire) in its own process",
        "order": "each round calls every client once in a seeded shuffled order; untimed settle after each call",
        "gc": "frozen after warm-up (gc.freeze)",
    })
    mock = MockProcess(cpu=(cpus - 1) if pin else None)
    try:
        mock.start()
        print(f"upstream: mock provider at {mock.url} (pid {mock.proc.pid if mock.proc else '?'})", flush=True)
        res = asyncio.run(run(args, mock))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        mock.stop()
    res = {"meta": meta, **res}
    res["ratios"] = ratios(res)
    res["targets"] = targets(res)
    res["markdown"] = markdown(res)
    print_report(res)
    write_json(args.json, res)
    return exit_code(args.strict, res["targets"])


if __name__ == "__main__":
    sys.exit(main())
