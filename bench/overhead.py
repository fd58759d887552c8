"""Hyperion's per-request overhead against raw httpx, the ``openai`` SDK and ``litellm.acompletion``.

One fast fixed-response upstream (nginx, ``bench/_nginx.py``) serves a fixed chat completion at
``/plain/v1/chat/completions`` and a fixed OpenAI SSE stream (a role chunk, 50 content chunks, a finish
chunk, a usage chunk, ``data: [DONE]``) at ``/sse/v1/chat/completions``. Four clients call it:

* ``raw httpx``  — ``httpx.AsyncClient.post`` / ``.stream``, orjson for bodies and SSE events;
* ``openai SDK`` — ``AsyncOpenAI(max_retries=0).chat.completions.create``;
* ``litellm``    — ``litellm.acompletion(model="openai/gpt-4o-mini", num_retries=0)``;
* ``Gateway``    — ``Gateway.acomplete`` / ``astream`` on a two-deployment ``failover`` route whose
  primary is the nginx upstream (native ``openai`` adapter); the spare is valid and never used.

Measured in one process, one event loop, interleaved round-robin per iteration (each round calls
every client once, in a seeded shuffled order) so drift hits every client alike. After each call, off
the clock, the benchmark waits for the tasks that call left behind: litellm leaves two logging tasks
per call (~0.2 ms of work) that would otherwise be billed to whichever client runs next (measured: the
Gateway's p50 doubled right after a litellm call). Latency is what the caller waits for; the deferred
work is still on litellm's CPU bill below.

1. whole completions: wall time per call (p50/p90/p99), then CPU per call;
2. streams: time to the first content chunk and to ``[DONE]``, then CPU per chunk: process CPU time
   (``time.process_time``; every thread of this process, nginx is another process) over blocks of
   whole streams of one client, divided by the 50 content chunks of each stream. Blocks rotate between
   clients, and each block waits 20 ms before its clock stops so work a client deferred (litellm's
   logging tasks and threads) lands on its own bill;
3. ``import hyperion_core`` in a fresh interpreter (median of 5 after one unrecorded run);
4. 200 concurrent in-flight ``Gateway.acomplete`` calls (``asyncio.gather``), errors and wall time.

Every answer is checked against the fixed body (content, and for the Gateway the deployment and
usage), and before measuring, nginx's own request counter proves each call of each client is exactly
one upstream request: no error path, retry or cache is ever timed. After imports and warm-up the heap
is frozen (``gc.freeze()``) so litellm's large import does not make every client's garbage collections
slower. With 2+ CPUs this process is pinned to CPU 0 and nginx to the last CPU (``--no-pin``). The
report says how much CPU other processes took meanwhile: tails are only meaningful on a quiet machine.

Usage::

    .venv/bin/python bench/overhead.py                   # ~2,000 iterations per client (~2 min)
    .venv/bin/python bench/overhead.py --quick           # ~300 (~25 s)
    .venv/bin/python bench/overhead.py --wait-quiet 600 --json bench/results/overhead.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))  # hyperion_core from this checkout

from _common import (  # noqa: E402
    BenchError,
    Noise,
    Settle,
    add_common_args,
    arg_parser,
    exit_code,
    git_rev,
    package_versions,
    pin_to_cpu0,
    run_meta,
    summary,
    targets_table,
    wait_quiet,
    write_json,
)
from _nginx import INSTALL_HINT, Body, FixedNginx, NginxError, find_nginx  # noqa: E402

perf_ns = time.perf_counter_ns
cpu_ns = time.process_time_ns

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "hi"}]
API_KEY = "sk-x"
CONTENT = "Hello! This is the fixed answer from the benchmark upstream."
STREAM_PARTS = [f"tok{i} " for i in range(50)]
STREAM_TEXT = "".join(STREAM_PARTS)
N_STREAM_CHUNKS = len(STREAM_PARTS)
USAGE = {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}
STREAM_USAGE = {"prompt_tokens": 9, "completion_tokens": N_STREAM_CHUNKS, "total_tokens": 9 + N_STREAM_CHUNKS}
CLIENTS = ("raw httpx", "openai SDK", "litellm", "Gateway")


# -- the fixed upstream --------------------------------------------------------------------------


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def plain_body() -> str:
    return _dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": CONTENT},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    )


def sse_body() -> str:
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": MODEL}

    def event(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> str:
        obj = {**head, "choices": choices}
        if usage is not None:
            obj["usage"] = usage
        return f"data: {_dumps(obj)}\n\n"

    out = [event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    out += [event([{"index": 0, "delta": {"content": p}, "finish_reason": None}]) for p in STREAM_PARTS]
    out.append(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    out.append(event([], STREAM_USAGE))
    out.append("data: [DONE]\n\n")
    return "".join(out)


def upstream_routes() -> dict[str, Body]:
    return {
        "/plain/v1/chat/completions": Body("application/json", plain_body()),
        "/sse/v1/chat/completions": Body("text/event-stream", sse_body()),
    }


def gateway_config(url: str) -> dict[str, Any]:
    def provider(path: str) -> dict[str, Any]:
        return {"kind": "openai", "base_url": f"{url}/{path}/v1", "api_key": API_KEY}

    def route(prov: str) -> dict[str, Any]:
        return {
            "strategy": "failover",
            "deployments": [
                {"model": f"{prov}/{MODEL}", "name": "primary"},
                {"model": f"{prov}_spare/{MODEL}", "name": "spare"},
            ],
        }

    return {
        "providers": {
            "nginx": provider("plain"),
            "nginx_spare": provider("plain"),
            "nginx_sse": provider("sse"),
            "nginx_sse_spare": provider("sse"),
        },
        "routes": {"chat": route("nginx"), "chat_stream": route("nginx_sse")},
    }


# -- the four clients ------------------------------------------------------------------------------

Call = Callable[[], Awaitable[str]]
# a stream returns (perf_ns of its first content chunk, the whole text)
Stream = Callable[[], Awaitable[tuple[int, str]]]


@dataclass
class Clients:
    calls: dict[str, Call] = field(default_factory=dict)
    streams: dict[str, Stream] = field(default_factory=dict)
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    async def aclose(self) -> None:
        for close in self.closers:
            try:
                await close()
            except Exception as exc:  # noqa: BLE001 - cleanup must not hide the real outcome
                print(f"warning: cleanup failed: {exc!r}", file=sys.stderr)


def build_clients(url: str, gw: Any) -> Clients:
    import httpx
    import litellm
    import openai
    import orjson

    litellm.suppress_debug_info = True
    c = Clients()
    plain, sse = f"{url}/plain/v1", f"{url}/sse/v1"

    # raw httpx -------------------------------------------------------------------------------
    hx = httpx.AsyncClient()
    headers = {"content-type": "application/json", "authorization": f"Bearer {API_KEY}"}
    body = {"model": MODEL, "messages": MESSAGES}
    sbody = {**body, "stream": True, "stream_options": {"include_usage": True}}
    plain_url, sse_url = f"{plain}/chat/completions", f"{sse}/chat/completions"

    async def httpx_call() -> str:
        r = await hx.post(plain_url, content=orjson.dumps(body), headers=headers)
        if r.status_code != 200:
            raise BenchError(f"raw httpx: HTTP {r.status_code}")
        return orjson.loads(r.content)["choices"][0]["message"]["content"]

    async def httpx_stream() -> tuple[int, str]:
        first, parts = 0, []
        async with hx.stream("POST", sse_url, content=orjson.dumps(sbody), headers=headers) as r:
            if r.status_code != 200:
                raise BenchError(f"raw httpx: HTTP {r.status_code}")
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                choices = orjson.loads(data)["choices"]
                if choices:
                    text = choices[0]["delta"].get("content")
                    if text:
                        if not first:
                            first = perf_ns()
                        parts.append(text)
        return first, "".join(parts)

    # openai SDK ------------------------------------------------------------------------------
    oa = openai.AsyncOpenAI(base_url=plain, api_key=API_KEY, max_retries=0)
    oa_sse = openai.AsyncOpenAI(base_url=sse, api_key=API_KEY, max_retries=0)

    async def openai_call() -> str:
        r = await oa.chat.completions.create(model=MODEL, messages=MESSAGES)
        return r.choices[0].message.content

    async def openai_stream() -> tuple[int, str]:
        first, parts = 0, []
        s = await oa_sse.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        async for chunk in s:
            if chunk.choices:
                text = chunk.choices[0].delta.content
                if text:
                    if not first:
                        first = perf_ns()
                    parts.append(text)
        return first, "".join(parts)

    # litellm ---------------------------------------------------------------------------------
    async def litellm_call() -> str:
        r = await litellm.acompletion(
            model=f"openai/{MODEL}", messages=MESSAGES, api_base=plain, api_key=API_KEY, num_retries=0
        )
        return r.choices[0].message.content

    async def litellm_stream() -> tuple[int, str]:
        first, parts = 0, []
        s = await litellm.acompletion(
            model=f"openai/{MODEL}",
            messages=MESSAGES,
            api_base=sse,
            api_key=API_KEY,
            num_retries=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in s:
            if chunk.choices:
                text = chunk.choices[0].delta.content
                if text:
                    if not first:
                        first = perf_ns()
                    parts.append(text)
        return first, "".join(parts)

    # Gateway ---------------------------------------------------------------------------------
    async def gateway_call() -> str:
        r = await gw.acomplete("chat", MESSAGES)
        if (
            r.deployment != "primary"
            or len(r.attempts) != 1
            or r.usage.prompt_tokens != USAGE["prompt_tokens"]
        ):
            raise BenchError(f"Gateway: unexpected routing/usage: {r.deployment} {r.attempts} {r.usage}")
        return r.content

    async def gateway_stream() -> tuple[int, str]:
        first, parts = 0, []
        s = gw.astream("chat_stream", MESSAGES)
        async for chunk in s:
            text = chunk.content
            if text:
                if not first:
                    first = perf_ns()
                parts.append(text)
        r = s.response
        if (
            r is None
            or r.deployment != "primary"
            or r.usage.completion_tokens != N_STREAM_CHUNKS
            or r.content != STREAM_TEXT
        ):
            raise BenchError(f"Gateway: unexpected stream response: {r}")
        return first, "".join(parts)

    c.calls = dict(zip(CLIENTS, (httpx_call, openai_call, litellm_call, gateway_call), strict=True))
    c.streams = dict(zip(CLIENTS, (httpx_stream, openai_stream, litellm_stream, gateway_stream), strict=True))

    async def close_litellm() -> None:
        try:
            from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients
        except ImportError:
            return
        await close_litellm_async_clients()

    c.closers = [hx.aclose, oa.close, oa_sse.close, close_litellm, gw.aclose]
    return c


# -- measurement -------------------------------------------------------------------------------


def rotations(names: tuple[str, ...], i: int) -> tuple[str, ...]:
    """Block ``i``'s client order for the CPU phases: a rotation, so each client goes first in turn."""
    k = i % len(names)
    return names[k:] + names[:k]


def shuffled(names: tuple[str, ...], rng: random.Random) -> list[str]:
    """One round's order: shuffled, so every client follows every other equally often (a plain
    rotation would always put the same client right after litellm and its deferred work)."""
    order = list(names)
    rng.shuffle(order)
    return order


def check(name: str, got: str | None, want: str) -> None:
    if got != want:
        raise BenchError(
            f"{name}: wrong content {got!r:.120} (expected {want!r:.60}) — would time an error path"
        )


async def bench_calls(
    cl: Clients, warmup: int, n: int, *, names: tuple[str, ...] = CLIENTS, seed: int = 1
) -> dict[str, list[int]]:
    """Wall nanoseconds per whole completion; every round calls each client once, in shuffled order,
    settling (untimed) after each call."""
    rng, settle = random.Random(seed), Settle()
    lat: dict[str, list[int]] = {k: [] for k in names}
    for i in range(warmup + n):
        for name in shuffled(names, rng):
            fn = cl.calls[name]
            before = settle.snapshot()
            t0 = perf_ns()
            got = await fn()
            t1 = perf_ns()
            await settle(before)
            check(name, got, CONTENT)
            if i >= warmup:
                lat[name].append(t1 - t0)
    return lat


async def bench_streams(
    cl: Clients, warmup: int, n: int, *, names: tuple[str, ...] = CLIENTS, seed: int = 2
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Nanoseconds to the first content chunk and to the end of each stream, interleaved as above."""
    rng, settle = random.Random(seed), Settle()
    ttft: dict[str, list[int]] = {k: [] for k in names}
    total: dict[str, list[int]] = {k: [] for k in names}
    for i in range(warmup + n):
        for name in shuffled(names, rng):
            fn = cl.streams[name]
            before = settle.snapshot()
            t0 = perf_ns()
            first, text = await fn()
            t1 = perf_ns()
            await settle(before)
            check(name, text, STREAM_TEXT)
            if i >= warmup:
                ttft[name].append(first - t0)
                total[name].append(t1 - t0)
    return ttft, total


async def bench_cpu(
    fns: dict[str, Callable[[], Awaitable[Any]]],
    per_client: int,
    rounds: int,
    *,
    names: tuple[str, ...] = CLIENTS,
) -> dict[str, float]:
    """Process CPU nanoseconds per operation, from blocks of consecutive operations per client."""
    block = max(1, per_client // rounds)
    spent = {k: 0 for k in names}
    done = {k: 0 for k in names}
    for r in range(rounds):
        for name in rotations(names, r):
            fn = fns[name]
            await asyncio.sleep(0.02)  # let the previous client's deferred work finish off the clock
            c0 = cpu_ns()
            for _ in range(block):
                await fn()
            await asyncio.sleep(0.02)  # ... and this client's own deferred work finish on it
            spent[name] += cpu_ns() - c0
            done[name] += block
    return {k: spent[k] / done[k] for k in names}


def bench_import(repeats: int = 5) -> dict[str, Any]:
    code = (
        "import time, sys; t0 = time.perf_counter(); import hyperion_core; t1 = time.perf_counter(); "
        "print(t1 - t0, 'litellm' in sys.modules, hyperion_core.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    walls, procs, litellm_loaded, where = [], [], False, ""
    for i in range(repeats + 1):  # the first run (pyc writes, cold page cache) is not recorded
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        t1 = time.perf_counter()
        secs, loaded, where = out.stdout.split()
        if i:
            walls.append(float(secs))
            procs.append(t1 - t0)
            litellm_loaded = litellm_loaded or loaded == "True"
    return {
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "max_s": max(walls),
        "runs_s": walls,
        "process_wall_median_s": statistics.median(procs),
        "imports_litellm": litellm_loaded,
        "module": where,
    }


async def bench_concurrency(gw: Any, n: int, rounds: int) -> dict[str, Any]:
    walls, errors, samples = [], 0, []
    for _ in range(rounds):
        t0 = perf_ns()
        res = await asyncio.gather(
            *(gw.acomplete("chat", MESSAGES) for _ in range(n)), return_exceptions=True
        )
        walls.append((perf_ns() - t0) / 1e6)
        for r in res:
            if isinstance(r, BaseException) or r.content != CONTENT:
                errors += 1
                if len(samples) < 3:
                    samples.append(repr(r)[:300])
    return {
        "in_flight": n,
        "rounds": rounds,
        "errors": errors,
        "error_samples": samples,
        "first_round_wall_ms": walls[0],
        "median_wall_ms": statistics.median(walls),
        "walls_ms": walls,
    }


# -- reporting -----------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    out = package_versions(("httpx", "openai", "litellm", "aiohttp", "orjson"), python=True)
    try:
        nginx = subprocess.run([find_nginx() or "nginx", "-v"], capture_output=True, text=True)
        out["nginx"] = nginx.stderr.strip().rpartition("/")[2]
    except OSError:
        out["nginx"] = "?"
    return out


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    s, r = res["stream"], res["ratios"]
    gw_chunk, hx_chunk = s["Gateway"]["cpu_us_per_chunk"], s["raw httpx"]["cpu_us_per_chunk"]
    rows = [
        (
            "Gateway p50 within 1.3x of raw httpx",
            f"{r['gateway_vs_httpx_p50']:.2f}x",
            "<= 1.30x",
            r["gateway_vs_httpx_p50"] <= 1.3,
        ),
        (
            "Gateway p50 faster than the openai SDK",
            f"{r['gateway_vs_openai_p50']:.2f}x",
            "< 1.00x",
            r["gateway_vs_openai_p50"] < 1.0,
        ),
        (
            "litellm.acompletion p50 >= 3x the Gateway's",
            f"{r['litellm_vs_gateway_p50']:.2f}x",
            ">= 3.00x",
            r["litellm_vs_gateway_p50"] >= 3.0,
        ),
        (
            "streamed CPU per chunk within 2x of raw httpx",
            f"{r['gateway_vs_httpx_cpu_per_chunk']:.2f}x ({gw_chunk:.1f} vs {hx_chunk:.1f} µs)",
            "<= 2.00x",
            r["gateway_vs_httpx_cpu_per_chunk"] <= 2.0,
        ),
        (
            "import hyperion_core",
            f"{res['import']['median_s']:.3f} s",
            "< 0.5 s",
            res["import"]["median_s"] < 0.5,
        ),
        (
            f"{res['concurrency']['in_flight']} concurrent Gateway.acomplete",
            f"{res['concurrency']['errors']} errors, {res['concurrency']['median_wall_ms']:.0f} ms",
            "0 errors",
            res["concurrency"]["errors"] == 0,
        ),
    ]
    return [{"target": t, "value": v, "goal": g, "pass": bool(p)} for t, v, g, p in rows]


def ratios(res: dict[str, Any]) -> dict[str, float]:
    c, s = res["complete"], res["stream"]
    return {
        "gateway_vs_httpx_p50": c["Gateway"]["p50_ms"] / c["raw httpx"]["p50_ms"],
        "gateway_vs_openai_p50": c["Gateway"]["p50_ms"] / c["openai SDK"]["p50_ms"],
        "litellm_vs_gateway_p50": c["litellm"]["p50_ms"] / c["Gateway"]["p50_ms"],
        "gateway_vs_httpx_p99": c["Gateway"]["p99_ms"] / c["raw httpx"]["p99_ms"],
        "gateway_vs_openai_p99": c["Gateway"]["p99_ms"] / c["openai SDK"]["p99_ms"],
        "litellm_vs_gateway_p99": c["litellm"]["p99_ms"] / c["Gateway"]["p99_ms"],
        "gateway_vs_httpx_ttft_p50": s["Gateway"]["ttft_p50_ms"] / s["raw httpx"]["ttft_p50_ms"],
        "gateway_vs_openai_ttft_p50": s["Gateway"]["ttft_p50_ms"] / s["openai SDK"]["ttft_p50_ms"],
        "litellm_vs_gateway_ttft_p50": s["litellm"]["ttft_p50_ms"] / s["Gateway"]["ttft_p50_ms"],
        "gateway_vs_httpx_ttft_p99": s["Gateway"]["ttft_p99_ms"] / s["raw httpx"]["ttft_p99_ms"],
        "gateway_vs_httpx_cpu_per_chunk": s["Gateway"]["cpu_us_per_chunk"]
        / s["raw httpx"]["cpu_us_per_chunk"],
        "gateway_vs_openai_cpu_per_chunk": s["Gateway"]["cpu_us_per_chunk"]
        / s["openai SDK"]["cpu_us_per_chunk"],
        "litellm_vs_gateway_cpu_per_chunk": s["litellm"]["cpu_us_per_chunk"]
        / s["Gateway"]["cpu_us_per_chunk"],
    }


def print_report(res: dict[str, Any]) -> None:
    m, c, s = res["meta"], res["complete"], res["stream"]
    print()
    print(
        f"Hyperion overhead — {m['date']}, {m['cpus']} CPUs, Python {m['versions']['python']}, "
        f"nginx {m['versions']['nginx']} on loopback, hyperion {m['git']}"
    )
    print(
        f"whole completions: {m['iterations']} interleaved calls per client after {m['warmup']} warm-up rounds"
    )
    print(f"  {'client':<12} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'CPU µs/call':>12}")
    for k in CLIENTS:
        v = c[k]
        print(
            f"  {k:<12} {v['p50_ms']:8.3f} {v['p90_ms']:8.3f} {v['p99_ms']:8.3f} {v['mean_ms']:8.3f} {v['cpu_us_per_call']:12.0f}"
        )
    print(
        f"streams ({N_STREAM_CHUNKS} content chunks + usage + [DONE]): {m['stream_iterations']} interleaved streams "
        f"per client; CPU over {m['cpu_streams']} streams per client"
    )
    print(
        f"  {'client':<12} {'TTFT p50':>9} {'TTFT p99':>9} {'full p50':>9} {'full p99':>9} {'CPU µs/chunk':>13}"
    )
    for k in CLIENTS:
        v = s[k]
        print(
            f"  {k:<12} {v['ttft_p50_ms']:9.3f} {v['ttft_p99_ms']:9.3f} {v['total_p50_ms']:9.3f} "
            f"{v['total_p99_ms']:9.3f} {v['cpu_us_per_chunk']:13.1f}"
        )
    r = res["ratios"]
    print("ratios (p50 unless marked):")
    print(
        f"  Gateway / raw httpx   {r['gateway_vs_httpx_p50']:.2f}x   (p99 {r['gateway_vs_httpx_p99']:.2f}x)"
    )
    print(
        f"  Gateway / openai SDK  {r['gateway_vs_openai_p50']:.2f}x   (p99 {r['gateway_vs_openai_p99']:.2f}x)"
    )
    print(
        f"  litellm / Gateway     {r['litellm_vs_gateway_p50']:.2f}x   (p99 {r['litellm_vs_gateway_p99']:.2f}x)"
    )
    print(
        f"  TTFT: Gateway / raw httpx {r['gateway_vs_httpx_ttft_p50']:.2f}x, Gateway / openai SDK "
        f"{r['gateway_vs_openai_ttft_p50']:.2f}x, litellm / Gateway {r['litellm_vs_gateway_ttft_p50']:.2f}x"
    )
    print(
        f"  CPU per chunk: Gateway / raw httpx {r['gateway_vs_httpx_cpu_per_chunk']:.2f}x, Gateway / openai SDK "
        f"{r['gateway_vs_openai_cpu_per_chunk']:.2f}x, litellm / Gateway {r['litellm_vs_gateway_cpu_per_chunk']:.2f}x"
    )
    n = m.get("noise", {})
    if "other_processes_share" in n:
        print(
            f"noise: other processes used {n['other_processes_cpu_s']:.1f} CPU-s ({n['other_processes_share']:.0%} of the "
            f"machine) during the {n['wall_s']:.0f} s of measurement; load average {n['loadavg_before'][0]:.2f} -> "
            f"{n['loadavg_after'][0]:.2f}"
        )
        if n["other_processes_share"] > 0.10:
            print(
                "  WARNING: the machine was busy; tails (p90/p99) include waits for a CPU and are not "
                "representative (a client that blocks on the network waits for the busy core to be handed "
                "back). Rerun on a quiet machine (--wait-quiet 600)."
            )
    imp, con = res["import"], res["concurrency"]
    print(
        f"import hyperion_core: median {imp['median_s'] * 1000:.0f} ms (min {imp['min_s'] * 1000:.0f}, max "
        f"{imp['max_s'] * 1000:.0f}; whole interpreter {imp['process_wall_median_s'] * 1000:.0f} ms; "
        f"imports litellm: {imp['imports_litellm']})"
    )
    print(
        f"{con['in_flight']} concurrent Gateway.acomplete: {con['errors']} errors; wall first round "
        f"{con['first_round_wall_ms']:.1f} ms (new connections), median of {con['rounds']} {con['median_wall_ms']:.1f} ms"
    )
    print("targets:")
    for t in res["targets"]:
        print(f"  {'PASS' if t['pass'] else 'MISS'}  {t['target']:<48} {t['value']:<28} (goal {t['goal']})")
    print()
    print("markdown:")
    print(markdown(res))


def markdown(res: dict[str, Any]) -> str:
    m, c, s, r = res["meta"], res["complete"], res["stream"], res["ratios"]
    v = m["versions"]
    lines = [
        f"Overhead against one fixed-response nginx upstream on loopback ({m['cpus']} CPUs, Python {v['python']}, "
        f"httpx {v['httpx']}, openai {v['openai']}, litellm {v['litellm']}; {m['iterations']} interleaved calls "
        f"and {m['stream_iterations']} streams of {N_STREAM_CHUNKS} chunks per client; `bench/overhead.py`, {m['date'][:10]}):",
        "",
        "| client | p50 ms | p99 ms | stream TTFT p50 ms | TTFT p99 ms | CPU µs / chunk |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k in CLIENTS:
        name = {
            "raw httpx": "raw `httpx`",
            "openai SDK": "`openai` SDK",
            "litellm": "`litellm.acompletion`",
            "Gateway": "**Hyperion `Gateway`**",
        }[k]
        lines.append(
            f"| {name} | {c[k]['p50_ms']:.3f} | {c[k]['p99_ms']:.3f} | {s[k]['ttft_p50_ms']:.3f} | "
            f"{s[k]['ttft_p99_ms']:.3f} | {s[k]['cpu_us_per_chunk']:.1f} |"
        )
    lines += [
        "",
        f"Gateway / raw httpx {r['gateway_vs_httpx_p50']:.2f}x, Gateway / openai SDK {r['gateway_vs_openai_p50']:.2f}x, "
        f"litellm / Gateway {r['litellm_vs_gateway_p50']:.2f}x (p50); streamed TTFT Gateway / raw httpx "
        f"{r['gateway_vs_httpx_ttft_p50']:.2f}x; CPU per chunk Gateway / raw httpx {r['gateway_vs_httpx_cpu_per_chunk']:.2f}x. "
        f"`import hyperion_core` {res['import']['median_s'] * 1000:.0f} ms; "
        f"{res['concurrency']['in_flight']} concurrent requests: {res['concurrency']['errors']} errors, "
        f"{res['concurrency']['median_wall_ms']:.0f} ms.",
        "",
        *targets_table(res["targets"]),
    ]
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------


async def verify(cl: Clients, nginx: FixedNginx, n: int = 20) -> dict[str, Any]:
    """Every client, both shapes, gets the fixed body — and, by nginx's own counter, each call is
    exactly one upstream request (no cache, no retry, no error path is being timed)."""
    out: dict[str, Any] = {}
    for name in CLIENTS:
        for shape, fn in (("complete", cl.calls[name]), ("stream", cl.streams[name])):
            before = await asyncio.to_thread(nginx.requests)
            for _ in range(n):
                got = await fn()
                if shape == "stream":
                    first, got = got
                    if not first:
                        raise BenchError(f"{name}: stream had no content chunk")
                check(name, got, STREAM_TEXT if shape == "stream" else CONTENT)
            after = await asyncio.to_thread(nginx.requests)
            if before is not None and after is not None:
                upstream = after - before - 1  # minus the status query itself
                if upstream != n:
                    raise BenchError(
                        f"{name} ({shape}): {n} calls made {upstream} upstream requests, expected {n}"
                    )
            out[f"{name} {shape}"] = "ok" if before is not None else "content ok (no stub_status)"
    return out


async def run(args: argparse.Namespace, nginx: FixedNginx) -> dict[str, Any]:
    from hyperion_core import Gateway

    url = nginx.url
    gw = Gateway(gateway_config(url))
    cl = build_clients(url, gw)
    try:
        checked = await verify(cl, nginx)
        gc.collect()
        gc.freeze()
        print(f"complete: {args.warmup} warm-up + {args.iterations} measured rounds ...", flush=True)
        lat = await bench_calls(cl, args.warmup, args.iterations)
        print(f"complete: CPU over {args.cpu_calls} calls per client ...", flush=True)
        cpu_call = await bench_cpu(cl.calls, args.cpu_calls, args.cpu_rounds)
        print(
            f"stream: {args.stream_warmup} warm-up + {args.stream_iterations} measured rounds ...", flush=True
        )
        ttft, total = await bench_streams(cl, args.stream_warmup, args.stream_iterations)
        print(f"stream: CPU over {args.cpu_streams} streams per client ...", flush=True)
        cpu_stream = await bench_cpu(cl.streams, args.cpu_streams, args.cpu_rounds)
        print(f"concurrency: {args.concurrency} in flight x {args.concurrency_rounds} rounds ...", flush=True)
        conc = await bench_concurrency(gw, args.concurrency, args.concurrency_rounds)
    finally:
        await cl.aclose()
        gc.unfreeze()

    complete = {k: {**summary(lat[k]), "cpu_us_per_call": cpu_call[k] / 1e3} for k in CLIENTS}
    stream = {}
    for k in CLIENTS:
        t, f = summary(ttft[k]), summary(total[k])
        stream[k] = {
            "n": t["n"],
            "ttft_p50_ms": t["p50_ms"],
            "ttft_p90_ms": t["p90_ms"],
            "ttft_p99_ms": t["p99_ms"],
            "ttft_mean_ms": t["mean_ms"],
            "total_p50_ms": f["p50_ms"],
            "total_p99_ms": f["p99_ms"],
            "cpu_us_per_stream": cpu_stream[k] / 1e3,
            "cpu_us_per_chunk": cpu_stream[k] / 1e3 / N_STREAM_CHUNKS,
        }
    return {"verified": checked, "complete": complete, "stream": stream, "concurrency": conc}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = arg_parser(__doc__)
    p.add_argument("--quick", action="store_true", help="~300 iterations per client instead of ~2,000")
    p.add_argument(
        "--iterations", type=int, help="measured whole-completion rounds (default 2000; --quick 300)"
    )
    p.add_argument("--stream-iterations", type=int, help="measured stream rounds (default 2000; --quick 300)")
    p.add_argument(
        "--cpu-calls", type=int, help="calls per client for CPU per call (default 2000; --quick 300)"
    )
    p.add_argument(
        "--cpu-streams", type=int, help="streams per client for CPU per chunk (default 500; --quick 100)"
    )
    p.add_argument(
        "--cpu-rounds", type=int, default=10, help="blocks per client in the CPU phases (default 10)"
    )
    p.add_argument("--concurrency", type=int, default=200, help="in-flight Gateway requests (default 200)")
    p.add_argument("--concurrency-rounds", type=int, default=5)
    add_common_args(p)
    a = p.parse_args(argv)
    quick = a.quick
    a.iterations = a.iterations or (300 if quick else 2000)
    a.stream_iterations = a.stream_iterations or (300 if quick else 2000)
    a.cpu_calls = a.cpu_calls or (300 if quick else 2000)
    a.cpu_streams = a.cpu_streams or (100 if quick else 500)
    a.warmup = 50 if quick else 200
    a.stream_warmup = 20 if quick else 100
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if find_nginx() is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    cpus, pin = pin_to_cpu0(args.no_pin)
    meta = run_meta(cpus, pin, git_rev("hyperion_core"), versions())
    meta.update({
        "quick": args.quick,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "stream_iterations": args.stream_iterations,
        "stream_warmup": args.stream_warmup,
        "cpu_calls": args.cpu_calls,
        "cpu_streams": args.cpu_streams,
        "cpu_rounds": args.cpu_rounds,
        "stream_chunks": N_STREAM_CHUNKS,
        "gc": "frozen after warm-up (gc.freeze)",
        "order": "each round calls every client once in a seeded shuffled order; untimed settle after each call",
        "cpu_method": "process_time over rotating blocks of one client's operations (+20 ms settle inside the block)",
    })
    if args.wait_quiet > 0:
        print(f"waiting up to {args.wait_quiet:.0f} s for a quiet machine ...", flush=True)
        meta["quiet_before_start"] = wait_quiet(args.wait_quiet)
    print("import hyperion_core: 5 fresh interpreters ...", flush=True)
    imp = bench_import()
    nginx = FixedNginx(upstream_routes(), cpu=(cpus - 1) if pin else None)
    try:
        nginx.start()
        print(f"upstream: nginx at {nginx.url} (pid {nginx.proc.pid if nginx.proc else '?'})", flush=True)
        t0 = time.perf_counter()
        import litellm  # noqa: F401  - timed for the record, outside every measurement

        meta["litellm_import_s"] = time.perf_counter() - t0
        with Noise(nginx.proc.pid if nginx.proc else None) as noise:
            res = asyncio.run(run(args, nginx))
        meta["noise"] = noise.report()
    except KeyboardInterrupt:
        print("\ninterrupted; nginx stopped", file=sys.stderr)
        return 130
    except (BenchError, NginxError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        nginx.stop()
    res = {
        "meta": meta,
        "upstream": {
            "plain": "/plain/v1/chat/completions",
            "sse": "/sse/v1/chat/completions",
            "content": CONTENT,
            "stream_chunks": N_STREAM_CHUNKS,
        },
        **res,
        "import": imp,
    }
    res["ratios"] = ratios(res)
    res["targets"] = targets(res)
    print_report(res)
    write_json(args.json, res)
    return exit_code(args.strict, res["targets"])


if __name__ == "__main__":
    sys.exit(main())
