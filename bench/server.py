"""``hyperion serve`` throughput and latency: the openai SDK calling the mock provider directly vs calling
it through one Hyperion server worker.

Three processes: the mock provider (``hyperion mock-provider``), the server (``hyperion serve``, one
worker, a virtual key required, audit off, governance off — the door and the pipeline's routing only),
and this load generator (``openai.AsyncOpenAI``, one shared client per target). For each concurrency c
the two targets alternate in rounds (direct, hyperion, direct, ...; the order flips every round), each
round sending ``--requests`` chat completions with c in flight; latencies are pooled per target over
rounds. The server's CPU per request is read from ``/proc/<pid>/stat`` (utime + stime) over its rounds.
With 2+ CPUs the load generator is pinned to CPU 0 and the mock and the server to the last CPU — so the
server shares its CPU with the mock, which counts against it, not for it.

Not a timed test: a figure for the README. Usage::

    .venv/bin/python bench/server.py                       # c = 1, 16, 64; 3 rounds of 400 requests
    .venv/bin/python bench/server.py --quick               # c = 1, 16; 2 rounds of 150
    .venv/bin/python bench/server.py --json bench/results/server.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, _proc_ticks, free_port, pin_to_cpu0, summary  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _wait(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[3]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(url)


def _start(args: list[str], cpu: int | None) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "hyperion_core.cli", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if cpu is not None:
        os.sched_setaffinity(proc.pid, {cpu})
    return proc


async def _round(client, model: str, n: int, c: int) -> list[int]:
    sem = asyncio.Semaphore(c)
    lat: list[int] = []

    async def one(i: int) -> None:
        async with sem:
            t0 = time.perf_counter_ns()
            r = await client.chat.completions.create(model=model, max_tokens=16,
                                                     messages=[{"role": "user", "content": f"question {i % 50}"}])
            lat.append(time.perf_counter_ns() - t0)
            if not r.choices[0].message.content:
                raise RuntimeError("empty answer")

    await asyncio.gather(*(one(i) for i in range(n)))
    return lat


async def run(opts: argparse.Namespace, mock_url: str, hyp_url: str, key: str, server_pid: int) -> dict:
    import httpx
    import openai

    out: dict = {}
    for c in opts.concurrency:
        limits = httpx.Limits(max_connections=max(c, 1), max_keepalive_connections=max(c, 1))
        direct = openai.AsyncOpenAI(base_url=f"{mock_url}/bench/v1", api_key="sk-mock", max_retries=0,
                                    http_client=httpx.AsyncClient(limits=limits, timeout=60))
        hyper = openai.AsyncOpenAI(base_url=f"{hyp_url}/v1", api_key=key, max_retries=0,
                                   http_client=httpx.AsyncClient(limits=limits, timeout=60))
        await _round(direct, "gpt-4o-mini", min(opts.requests, 50), c)  # warm-up
        await _round(hyper, "chat", min(opts.requests, 50), c)
        lat = {"direct": [], "hyperion": []}
        wall = {"direct": 0.0, "hyperion": 0.0}
        ticks = 0
        for r in range(opts.rounds):
            order = ("direct", "hyperion") if r % 2 == 0 else ("hyperion", "direct")
            for name in order:
                client, model = (direct, "gpt-4o-mini") if name == "direct" else (hyper, "chat")
                t0, k0 = time.perf_counter(), _proc_ticks(server_pid)
                lat[name] += await _round(client, model, opts.requests, c)
                wall[name] += time.perf_counter() - t0
                if name == "hyperion":
                    ticks += _proc_ticks(server_pid) - k0
        n = opts.requests * opts.rounds
        row = {}
        for name in lat:
            s = summary(lat[name], "ms", 3)
            row[name] = {"req_per_s": round(n / wall[name], 1), **{k: v for k, v in s.items() if k != "n"}}
        row["hyperion"]["server_cpu_ms_per_request"] = round(ticks / TICK * 1000 / n, 3)
        row["p50_overhead_ms"] = round(row["hyperion"]["p50_ms"] - row["direct"]["p50_ms"], 3)
        out[f"c={c}"] = row
        print(f"c={c:<4} direct {row['direct']['req_per_s']:>8} req/s p50 {row['direct']['p50_ms']:.2f} ms "
              f"p99 {row['direct']['p99_ms']:.2f} ms | hyperion {row['hyperion']['req_per_s']:>8} req/s "
              f"p50 {row['hyperion']['p50_ms']:.2f} ms p99 {row['hyperion']['p99_ms']:.2f} ms "
              f"cpu {row['hyperion']['server_cpu_ms_per_request']} ms/req", flush=True)
        for cl in (direct, hyper):
            await cl.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--requests", type=int, default=None, help="requests per round and target")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--concurrency", type=int, nargs="*", default=None)
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--no-pin", action="store_true")
    opts = ap.parse_args(argv)
    opts.requests = opts.requests or (150 if opts.quick else 400)
    opts.rounds = opts.rounds or (2 if opts.quick else 3)
    opts.concurrency = opts.concurrency or ([1, 16] if opts.quick else [1, 16, 64])
    cpus, pinned = pin_to_cpu0(opts.no_pin)
    helper_cpu = cpus - 1 if pinned else None
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    mock_port, hyp_port = free_port(), free_port()
    mock = _start(["mock-provider", "--port", str(mock_port)], helper_cpu)
    mock_url = f"http://127.0.0.1:{mock_port}"
    tmp = Path(tempfile.mkdtemp(prefix="hyperion-bench-server-"))
    import yaml

    cfg = {
        "providers": {"p": {"kind": "openai", "api_key": "sk-mock", "base_url": f"{mock_url}/bench/v1"}},
        "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini"}]}},
        "state": {"path": str(tmp)},
        "keys": {"required": True, "store": "sqlite"},
    }
    (tmp / "hyperion.yaml").write_text(yaml.safe_dump(cfg))
    server = None
    try:
        _wait(f"{mock_url}/_mock/health", mock)

        from hyperion_core import Gateway

        async def make_key() -> str:
            gw = Gateway(cfg)
            key, _ = await gw.keys.create("bench")
            await gw.aclose()
            return key

        key = asyncio.run(make_key())
        server = _start(["serve", "--config", str(tmp / "hyperion.yaml"), "--port", str(hyp_port),
                         "--log-level", "warning", "--no-metrics"], helper_cpu)
        hyp_url = f"http://127.0.0.1:{hyp_port}"
        _wait(f"{hyp_url}/healthz", server)
        results = asyncio.run(run(opts, mock_url, hyp_url, key, server.pid))
    finally:
        for p in (server, mock):
            if p is not None:
                p.terminate()
                p.wait(30)
    meta = {"cpus": cpus, "pinned": pinned, "requests_per_round": opts.requests, "rounds": opts.rounds,
            "python": sys.version.split()[0]}
    if opts.json:
        Path(opts.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        print(f"wrote {opts.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
