"""``HyperionLLM.achat`` against LlamaIndex's own ``OpenAILike.achat``, on the same mock provider.

Both are LlamaIndex LLMs called the way a query engine or agent calls them (``await llm.achat(messages)``,
through LlamaIndex's callback and instrumentation wrappers), against one mock provider serving the
OpenAI wire format from a **separate process** (``hyperion mock-provider``), so the server's work never
competes with the clients for this interpreter's GIL:

* ``OpenAILike`` — ``llama_index.llms.openai_like.OpenAILike(api_base=<mock>, max_retries=0)``: the
  ``openai`` SDK underneath;
* ``HyperionLLM`` — ``hyperion_li.HyperionLLM(model="chat")`` on a plain route (one OpenAI-wire
  deployment at the same mock): the whole gateway pipeline (validation, routing, breaker, deadline,
  cost) on Hyperion's pooled aiohttp adapter, plus the routing event it dispatches.

Method, as ``bench/overhead.py``: one process, one event loop; warm-up rounds first, then the heap is
frozen (``gc.freeze()``); each round calls both clients once in a seeded shuffled order, and after each
call (off the clock) waits for tasks the call left behind. Every answer is checked against the mock's
deterministic answer, and the mock's request counter proves each call was exactly one upstream request.
Target: HyperionLLM's p50 at most 1.0x OpenAILike's.

A second, informational phase times ``OpenAILike.achat`` with :class:`HyperionInstrumentation` attached
(admission on the gateway's loop, settlement scheduled), interleaved with the bare ``OpenAILike``.

Usage::

    .venv/bin/python bench/llamaindex.py                       # 2,000 rounds (~30 s)
    .venv/bin/python bench/llamaindex.py --quick               # 300 rounds (~6 s)
    .venv/bin/python bench/llamaindex.py --json bench/results/llamaindex.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))  # hyperion_core / hyperion_li from this checkout

from _common import (  # noqa: E402
    BenchError,
    Settle,
    add_common_args,
    arg_parser,
    exit_code,
    free_port,
    git_rev,
    package_versions,
    run_meta,
    summary,
    write_json,
)

perf_ns = time.perf_counter_ns
PROMPT = "hi"
DEP = "bench"
BASE = "OpenAILike"
OURS = "HyperionLLM"
GOVERNED = "OpenAILike + HyperionInstrumentation"


# -- the mock provider, in its own process -------------------------------------------------------


class MockProcess:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MockProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hyperion_core.cli", "mock-provider", "--port", str(self.port)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"mock provider exited: {self.proc.stderr.read().decode()[-500:]}")
            try:
                urllib.request.urlopen(f"{self.url}/_mock/stats", timeout=1).read()
                return self
            except OSError:
                time.sleep(0.05)
        raise BenchError("mock provider did not start in 20 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def requests(self) -> int:
        stats = json.loads(urllib.request.urlopen(f"{self.url}/_mock/stats", timeout=5).read())
        return stats.get(DEP, {}).get("requests", 0)

    def base_url(self) -> str:
        return f"{self.url}/{DEP}/v1"


# -- clients ---------------------------------------------------------------------------------------

Call = Callable[[], Awaitable[str]]


def build(mock: MockProcess) -> tuple[dict[str, Call], Any]:
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai_like import OpenAILike

    from hyperion_core import Gateway
    from hyperion_li import HyperionLLM

    gw = Gateway({
        "providers": {"mock": {"kind": "openai", "api_key": "sk-bench", "base_url": mock.base_url()}},
        "routes": {"chat": {"deployments": [{"model": "mock/gpt-4o-mini"}], "retry": {"attempts": 0}}},
    })
    ours = HyperionLLM(model="chat", gateway=gw)
    base = OpenAILike(model="gpt-4o-mini", api_base=mock.base_url(), api_key="sk-bench", is_chat_model=True,
                      context_window=128000, max_retries=0)
    messages = [ChatMessage(role="user", content=PROMPT)]

    async def call_ours() -> str:
        r = await ours.achat(messages)
        if r.raw["deployment"] != "mock/gpt-4o-mini" or len(r.raw["attempts"]) != 1:
            raise BenchError(f"HyperionLLM: unexpected routing {r.raw['attempts']}")
        return r.message.content or ""

    async def call_base() -> str:
        return (await base.achat(messages)).message.content or ""

    return {OURS: call_ours, BASE: call_base}, gw


async def interleaved(calls: dict[str, Call], warmup: int, n: int, want: str, seed: int,
                      on_warm: Callable[[], None] | None = None) -> dict[str, list[int]]:
    rng, settle = random.Random(seed), Settle()
    names = list(calls)
    lat: dict[str, list[int]] = {k: [] for k in names}
    for i in range(warmup + n):
        if i == warmup and on_warm is not None:
            on_warm()
        order = names[:]
        rng.shuffle(order)
        for name in order:
            before = asyncio.all_tasks()
            t0 = perf_ns()
            got = await calls[name]()
            t1 = perf_ns()
            await settle(before)
            if got != want:
                raise BenchError(f"{name}: wrong content {got!r:.80}")
            if i >= warmup:
                lat[name].append(t1 - t0)
    return lat


async def run(args: argparse.Namespace, mock: MockProcess) -> dict[str, Any]:
    from hyperion_core.mock_provider import answer_for
    from hyperion_li import HyperionInstrumentation

    want = answer_for(PROMPT)
    calls, gw = build(mock)
    try:
        before = mock.requests()
        for fn in calls.values():  # each call is exactly one upstream request
            await fn()
        if mock.requests() - before != len(calls):
            raise BenchError("a call did not map to exactly one upstream request")
        gc.collect()
        print(f"achat: {args.warmup} warm-up + {args.iterations} measured rounds ...", flush=True)
        lat = await interleaved(calls, args.warmup, args.iterations, want, seed=1, on_warm=gc.freeze)
        result: dict[str, Any] = {k: summary(v) for k, v in lat.items()}

        governed_gw = type(gw)({
            "providers": {"mock": {"kind": "openai", "api_key": "sk-bench", "base_url": mock.base_url()}},
            "routes": {"chat": {"deployments": [{"model": "mock/gpt-4o-mini"}]}},
            "governance": {"budgets": [{"scope": "global", "period": "daily", "limit_usd": 1000}]},
        })
        handler = HyperionInstrumentation(governed_gw)
        gov_n = max(100, args.iterations // 4)
        print(f"instrumentation: {args.warmup // 2} warm-up + {gov_n} rounds ...", flush=True)
        # the same OpenAILike call with the handler attached (GOVERNED) and detached (BASE), alternating
        lat2: dict[str, list[int]] = {BASE: [], GOVERNED: []}
        rng = random.Random(3)
        for i in range(args.warmup // 2 + gov_n):
            order = [BASE, GOVERNED]
            rng.shuffle(order)
            for name in order:
                if name == GOVERNED:
                    handler.attach()
                t0 = perf_ns()
                got = await calls[BASE]()
                t1 = perf_ns()
                if name == GOVERNED:
                    await handler.aflush()  # off the clock: settlement is scheduled, not awaited, by the call
                    handler.detach()
                if got != want:
                    raise BenchError(f"{name}: wrong content {got!r:.80}")
                if i >= args.warmup // 2:
                    lat2[name].append(t1 - t0)
        result_gov: dict[str, Any] = {k: summary(v) for k, v in lat2.items()}
        result_gov["settled_calls"] = handler.stats["settled"]
        await governed_gw.aclose()
        governed_gw.close()
    finally:
        gc.unfreeze()
        await gw.aclose()
    return {"achat": result, "instrumentation": result_gov}


def versions() -> dict[str, str]:
    pkgs = ("llama-index-core", "llama-index-llms-openai", "llama-index-llms-openai-like", "openai", "aiohttp")
    return package_versions(pkgs, python=True)


def report(res: dict[str, Any]) -> tuple[str, bool]:
    a = res["achat"]
    ratio = a[OURS]["p50_ms"] / a[BASE]["p50_ms"]
    ok = ratio <= 1.0
    lines = ["", "| client | p50 ms | p90 ms | p99 ms | mean ms |", "|---|---:|---:|---:|---:|"]
    for k in (BASE, OURS):
        s = a[k]
        lines.append(f"| {k}.achat | {s['p50_ms']:.3f} | {s['p90_ms']:.3f} | {s['p99_ms']:.3f} | {s['mean_ms']:.3f} |")
    lines.append("")
    lines.append(f"HyperionLLM p50 / OpenAILike p50 = {ratio:.2f}x (target <= 1.0): {'PASS' if ok else 'MISS'}")
    g = res["instrumentation"]
    extra = g[GOVERNED]["p50_ms"] - g[BASE]["p50_ms"]
    lines.append(f"HyperionInstrumentation on OpenAILike: p50 {g[GOVERNED]['p50_ms']:.3f} ms vs {g[BASE]['p50_ms']:.3f} ms "
                 f"bare (+{extra:.3f} ms per call for admission; {g['settled_calls']} calls settled)")
    res["ratio_p50"] = ratio
    res["target"] = {"ratio_p50_max": 1.0, "pass": ok}
    return "\n".join(lines), ok


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = arg_parser(__doc__)
    p.add_argument("--quick", action="store_true", help="300 measured rounds instead of 2,000")
    p.add_argument("--iterations", type=int, help="measured rounds (default 2000; --quick 300)")
    add_common_args(p, pin=False, quiet=False)
    a = p.parse_args(argv)
    a.iterations = a.iterations or (300 if a.quick else 2000)
    a.warmup = 50 if a.quick else 200
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    meta = run_meta(os.cpu_count(), None, git_rev(), versions())
    meta.update({
        "quick": args.quick, "iterations": args.iterations, "warmup": args.warmup,
        "upstream": "hyperion mock-provider in a separate process (OpenAI wire, loopback)",
        "order": "each round calls both clients once in a seeded shuffled order; untimed settle after each call",
        "gc": "frozen after warm-up (gc.freeze)",
    })
    try:
        with MockProcess() as mock:
            print(f"upstream: mock provider at {mock.url} (pid {mock.proc.pid if mock.proc else '?'})", flush=True)
            res = asyncio.run(run(args, mock))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text, _ = report(res)
    print(text)
    write_json(args.json, {"meta": meta, **res})
    return exit_code(args.strict, [res["target"]])


if __name__ == "__main__":
    sys.exit(main())
