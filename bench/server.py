"""``hyperion serve`` against a plain reverse proxy: one Hyperion worker vs nginx ``proxy_pass`` vs the
upstream itself, all driven by ``wrk`` (C, one thread, keep-alive) so the load generator is not the limit.

Processes: a fixed nginx upstream answering an OpenAI chat completion (``bench/_nginx.py``), a second
nginx that ``proxy_pass``-es to it over pooled keep-alive connections (the floor for any proxy), and
``hyperion serve --workers 1`` (uvloop + httptools; a virtual key required, metrics on; audit and
governance off: the door, key check, wire codecs and routing) whose one route calls the same upstream,
and the bare Python proxy (``bench/_bare_proxy.py``: raw ASGI on the same uvicorn, body forwarded
through one pooled aiohttp session, nothing else) — the floor for any Python proxy on these parts.
With 2+ CPUs ``wrk`` runs on CPU 0 and everything else on the last CPU, so a proxy shares its CPU with
the upstream. For each concurrency the three targets alternate (order rotated per round); req/s is
requests over seconds summed over rounds; p50/p99 are wrk's, averaged over rounds; CPU per request is
the proxy process's utime + stime over its rounds (``/proc``) divided by the requests wrk counted.
Streaming: the server's CPU per streamed chunk vs the library's (``Gateway.astream`` in this process,
``time.process_time``) against the same SSE upstream.

Not a timed test: figures for the README. Usage::

    .venv/bin/python bench/server.py                          # c = 1, 16, 64, 256; 2 rounds of 5 s
    .venv/bin/python bench/server.py --quick                  # c = 1, 64; 1 round of 3 s
    .venv/bin/python bench/server.py --json bench/results/server.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, _proc_ticks, free_port  # noqa: E402
from _nginx import INSTALL_HINT, Body, FixedNginx  # noqa: E402
from overhead import API_KEY, MODEL, N_STREAM_CHUNKS, plain_body, sse_body  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
LITELLM_PROXY_REQ_S = 100.0  # the LiteLLM proxy per worker, measured on this machine earlier (README)
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wait(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(url)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def wrk(url: str, c: int, seconds: float, script: str) -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{c}", f"-d{max(1, round(seconds))}s",  # wrk takes whole seconds
           "--latency", "--timeout", "10s", "-s", script, url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if m is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    requests, secs = int(m.group(1)), float(m.group(2)) * (0.001 if m.group(3) == "ms" else 1.0)
    lat = {int(p): _ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"requests": requests, "seconds": secs, "p50_ms": lat[50], "p99_ms": lat[99],
            "errors": (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)}


def lua(path: Path, key: str, body: dict) -> str:
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    )
    return str(path)


def measure(opts: argparse.Namespace, targets: dict[str, tuple[str, str, int | None]]) -> dict:
    out: dict = {}
    names = list(targets)
    for c in opts.concurrency:
        for url, script, _ in targets.values():  # warm-up
            wrk(url, min(c, 8), 1, script)
        acc = {n: {"requests": 0, "seconds": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "errors": 0, "ticks": 0}
               for n in names}
        for r in range(opts.rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:
                url, script, pid = targets[name]
                k0 = _proc_ticks(pid) if pid else 0
                res = wrk(url, c, opts.seconds, script)
                a = acc[name]
                a["ticks"] += (_proc_ticks(pid) - k0) if pid else 0
                for k in ("requests", "seconds", "p50_ms", "p99_ms", "errors"):
                    a[k] += res[k]
        row = {}
        for name, a in acc.items():
            row[name] = {
                "req_per_s": round(a["requests"] / a["seconds"], 1),
                "p50_ms": round(a["p50_ms"] / opts.rounds, 3),
                "p99_ms": round(a["p99_ms"] / opts.rounds, 3),
                "errors": a["errors"],
            }
            if targets[name][2]:
                row[name]["cpu_ms_per_request"] = round(a["ticks"] / TICK * 1000 / max(a["requests"], 1), 4)
        out[f"c={c}"] = row
        print(f"c={c:<4} " + " | ".join(
            f"{n}: {v['req_per_s']:>8} req/s p50 {v['p50_ms']:.2f} p99 {v['p99_ms']:.2f} ms"
            + (f" cpu {v['cpu_ms_per_request']} ms/req" if "cpu_ms_per_request" in v else "")
            for n, v in row.items()), flush=True)
    return out


async def library_cpu_per_chunk(upstream: str, n: int) -> float:
    from hyperion_core import Gateway

    gw = Gateway({"providers": {"p": {"kind": "openai", "api_key": API_KEY, "base_url": f"{upstream}/sse/v1"}},
                  "routes": {"chat": {"deployments": [{"model": f"p/{MODEL}"}]}}})
    msgs = [{"role": "user", "content": "hi"}]
    for _ in range(20):
        async for _chunk in gw.astream("chat", msgs):
            pass
    t0, chunks = time.process_time(), 0
    for _ in range(n):
        async for _chunk in gw.astream("chat", msgs):
            chunks += 1
    cpu = time.process_time() - t0
    await gw.aclose()
    return cpu * 1000 / chunks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--concurrency", type=int, nargs="*", default=None)
    ap.add_argument("--json", default=None, help="write the results here")
    opts = ap.parse_args(argv)
    opts.seconds = opts.seconds or (3 if opts.quick else 5)
    opts.rounds = opts.rounds or (1 if opts.quick else 2)
    opts.concurrency = opts.concurrency or ([1, 64] if opts.quick else [1, 16, 64, 256])
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    cpus = os.cpu_count() or 1
    helper = cpus - 1 if cpus >= 2 else None
    if helper is not None:
        os.sched_setaffinity(0, {0})  # wrk inherits CPU 0
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    tmp = Path(tempfile.mkdtemp(prefix="hyperion-bench-server-"))
    routes = {"/v1/chat/completions": Body("application/json", plain_body()),
              "/sse/v1/chat/completions": Body("text/event-stream", sse_body())}
    import yaml

    from hyperion_core import Gateway

    server = bare = None
    try:
        with FixedNginx(routes, cpu=helper) as upstream, \
                FixedNginx({}, cpu=helper, proxy_to=upstream.url) as proxy:
            cfg = {
                "providers": {"p": {"kind": "openai", "api_key": API_KEY, "base_url": f"{upstream.url}/v1"},
                              "s": {"kind": "openai", "api_key": API_KEY, "base_url": f"{upstream.url}/sse/v1"}},
                "routes": {"chat": {"deployments": [{"model": f"p/{MODEL}"}]},
                           "stream": {"deployments": [{"model": f"s/{MODEL}"}]}},
                "state": {"path": str(tmp)},
                "keys": {"required": True, "store": "sqlite"},
            }
            (tmp / "hyperion.yaml").write_text(yaml.safe_dump(cfg))

            async def make_key() -> str:
                gw = Gateway(cfg)
                key, _ = await gw.keys.create("bench")
                await gw.aclose()
                return key

            key = asyncio.run(make_key())
            port = free_port()
            server = subprocess.Popen(
                [sys.executable, "-m", "hyperion_core.cli", "serve", "--config", str(tmp / "hyperion.yaml"),
                 "--port", str(port), "--log-level", "warning"],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if helper is not None:
                os.sched_setaffinity(server.pid, {helper})
            hyp = f"http://127.0.0.1:{port}"
            _wait(f"{hyp}/healthz", server)
            bare_port = free_port()
            bare = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "_bare_proxy:app", "--port", str(bare_port), "--loop", "uvloop",
                 "--http", "httptools", "--workers", "1", "--no-access-log", "--log-level", "warning"],
                cwd=Path(__file__).resolve().parent, env={**os.environ, "BARE_PROXY_UPSTREAM": upstream.url},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if helper is not None:
                os.sched_setaffinity(bare.pid, {helper})
            bare_url = f"http://127.0.0.1:{bare_port}"
            _wait(f"{bare_url}/healthz", bare)
            proxy_worker = (_children(proxy.proc.pid) or [proxy.proc.pid])[0] if proxy.proc else None
            body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}
            direct = lua(tmp / "direct.lua", API_KEY, body)
            hyper = lua(tmp / "hyper.lua", key, {**body, "model": "chat"})
            targets = {
                "upstream (direct)": (f"{upstream.url}/v1/chat/completions", direct, None),
                "nginx proxy_pass": (f"{proxy.url}/v1/chat/completions", direct, proxy_worker),
                "bare Python proxy": (f"{bare_url}/v1/chat/completions", direct, bare.pid),
                "hyperion serve": (f"{hyp}/v1/chat/completions", hyper, server.pid),
            }
            results = measure(opts, targets)
            rss = _rss_mb(server.pid)
            # streaming: the server's CPU per chunk vs the library's
            sse = lua(tmp / "sse.lua", key, {**body, "model": "stream", "stream": True})
            k0 = _proc_ticks(server.pid)
            streamed = wrk(f"{hyp}/v1/chat/completions", 16, opts.seconds, sse)
            server_chunk_ms = (_proc_ticks(server.pid) - k0) / TICK * 1000 / (streamed["requests"] * N_STREAM_CHUNKS)
            library_chunk_ms = asyncio.run(library_cpu_per_chunk(upstream.url, 300))
    finally:
        for proc in (server, bare):
            if proc is not None:
                proc.terminate()
                proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    verdict = {}
    for level, row in results.items():
        h, n, b = row["hyperion serve"], row["nginx proxy_pass"], row["bare Python proxy"]
        verdict[level] = {
            "bare_python_cpu_vs_nginx": round(b["cpu_ms_per_request"] / max(n["cpu_ms_per_request"], 1e-9), 1),
            "cpu_vs_bare_python": round(h["cpu_ms_per_request"] / max(b["cpu_ms_per_request"], 1e-9), 2),
            "x_litellm_proxy": round(h["req_per_s"] / LITELLM_PROXY_REQ_S, 1),
            "cpu_vs_nginx": round(h["cpu_ms_per_request"] / max(n["cpu_ms_per_request"], 1e-9), 1),
            "req_s_vs_nginx": round(h["req_per_s"] / n["req_per_s"], 2),
        }
        print(f"{level}: {verdict[level]['x_litellm_proxy']}x the LiteLLM proxy's req/s (target >= 15), "
              f"CPU {verdict[level]['cpu_vs_nginx']}x nginx proxy_pass (target <= 4), "
              f"{verdict[level]['req_s_vs_nginx']}x its req/s; the bare Python proxy costs "
              f"{verdict[level]['bare_python_cpu_vs_nginx']}x nginx, hyperion {verdict[level]['cpu_vs_bare_python']}x it")
    stream = {"server_cpu_ms_per_chunk": round(server_chunk_ms, 4), "library_cpu_ms_per_chunk": round(library_chunk_ms, 4),
              "ratio": round(server_chunk_ms / library_chunk_ms, 2)}
    print(f"RSS of the worker: {rss:.0f} MB (target < 150); streaming CPU per chunk: server "
          f"{stream['server_cpu_ms_per_chunk']} ms vs library {stream['library_cpu_ms_per_chunk']} ms "
          f"({stream['ratio']}x, target <= 2)")
    meta = {"cpus": cpus, "pinned": helper is not None, "seconds": opts.seconds, "rounds": opts.rounds,
            "python": sys.version.split()[0], "load_generator": "wrk -t1"}
    if opts.json:
        Path(opts.json).write_text(json.dumps({"meta": meta, "results": results, "verdict": verdict,
                                               "rss_mb": round(rss, 1), "stream": stream}, indent=2) + "\n")
        print(f"wrote {opts.json}")
    return 0


if __name__ == "__main__":
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        print(INSTALL_HINT, file=sys.stderr)
        sys.exit(2)
    sys.exit(main())
