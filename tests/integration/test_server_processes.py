"""``hyperion serve`` as real processes: four workers in each of two server processes sharing one Redis
(budgets and rate limits exact across all of them, revocation immediate everywhere, one intact audit chain, metrics
summed over workers), and a graceful shutdown that lets a stream in flight finish."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import uuid

import httpx
import pytest
import yaml

from hyperion_core import Gateway
from hyperion_core.server.testing import free_port, wait_until_up

pytestmark = pytest.mark.timeout(300)


def start(config_path, *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hyperion_core.cli", "serve", "--config", str(config_path), "--port", str(port),
         "--log-level", "warning", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/healthz", timeout=120, proc=proc)
    except Exception:
        proc.kill()
        out = proc.communicate(timeout=30)[0].decode(errors="replace")
        raise AssertionError(f"hyperion serve did not come up:\n{out[-3000:]}") from None
    return proc, url


def stop(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        out = proc.communicate(timeout=30)[0]
    return proc.returncode, out.decode(errors="replace")


def write_config(tmp_path, cfg: dict):
    path = tmp_path / "hyperion.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


async def make_key(cfg: dict, name: str, **kw) -> str:
    gw = Gateway(cfg)
    try:
        key, _ = await gw.keys.create(name, **kw)
        return key
    finally:
        await gw.aclose()


@pytest.mark.redis
async def test_two_processes_of_four_workers_share_budgets_limits_keys_audit_and_metrics(mock, redis_url, tmp_path):
    dep = f"sp-{uuid.uuid4().hex[:6]}"
    prefix = f"srv{uuid.uuid4().hex[:6]}"
    limit = 0.0002
    cfg = {
        "providers": {"p": {"kind": "openai", "api_key": "sk-upstream", "base_url": mock.base_url(dep, "openai")}},
        "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini"}], "retry": {"attempts": 0}}},
        "state": {"backend": "redis", "redis_url": redis_url, "prefix": prefix, "path": str(tmp_path)},
        "governance": {"budgets": [{"scope": "team", "id": "t", "period": "daily", "limit_usd": limit}],
                       # burst 3, then one per 20 s: a burst of 30 at once admits exactly 3 across 8 workers
                       # (the burst would have to take 20 s for a fourth to pass)
                       "rate_limits": [{"scope": "team", "id": "r", "rpm": 3}]},
        "audit": {"sink": f"{redis_url}?stream={prefix}-audit"},
    }
    path = write_config(tmp_path, cfg)
    admin = await make_key(cfg, "admin", roles=["admin"])
    member = await make_key(cfg, "member", team="t")
    limited = await make_key(cfg, "limited", team="r")
    a, url_a = start(path, "--workers", "4")
    b, url_b = start(path, "--workers", "4")
    try:
        body = {"model": "chat", "max_tokens": 20, "messages": [{"role": "user", "content": "spend a little"}]}
        sent = {url_a: 0, url_b: 0}
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=32)) as http:
            async def one(i: int) -> httpx.Response:
                url = url_a if i % 2 else url_b
                sent[url] += 1
                return await http.post(url + "/v1/chat/completions", json=body,
                                       headers={"authorization": f"Bearer {member}"})

            replies = await asyncio.gather(*(one(i) for i in range(80)))
            ok = [r for r in replies if r.status_code == 200]
            refused = [r for r in replies if r.status_code == 429]
            assert len(ok) + len(refused) == 80, {r.status_code for r in replies}
            assert ok and refused
            assert all(r.json()["error"]["code"] == "insufficient_quota" for r in refused)
            paid = sum(float(r.headers["x-hyperion-cost"]) for r in ok)
            assert paid <= limit + 1e-12  # never overspent, across 8 workers in 2 processes
            h = {"authorization": f"Bearer {admin}"}
            (status,) = (await http.get(url_a + "/admin/v1/budgets", headers=h)).json()["data"]
            assert status["spent_usd"] == pytest.approx(paid, rel=1e-6, abs=1e-12)
            assert status["reserved_usd"] == pytest.approx(0.0, abs=1e-12)
            # revocation on one process is immediate on every worker of the other
            victim = await make_key(cfg, "victim")
            small = {**body, "max_tokens": 1}
            for _ in range(4):
                r = await http.post(url_b + "/v1/chat/completions", json=small,
                                    headers={"authorization": f"Bearer {victim}"})
                assert r.status_code == 200
            key_id = victim.split(".")[0][3:]
            r = await http.post(f"{url_a}/admin/v1/keys/{key_id}/revoke", headers=h)
            assert r.status_code == 200 and r.json()["revoked_at"]
            for _ in range(8):
                r = await http.post(url_b + "/v1/chat/completions", json=small,
                                    headers={"authorization": f"Bearer {victim}"})
                assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
            # one audit chain, written by eight workers, intact
            r = await http.get(url_b + "/admin/v1/audit/verify", headers=h)
            assert r.status_code == 200 and r.json()["ok"] and r.json()["checked"] >= 92
            # metrics: a scrape on any worker adds up every worker's samples
            text = (await http.get(url_a + "/metrics")).text
            total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                        if line.startswith("hyperion_requests_total{"))
            assert total == sent[url_a]
            assert 'hyperion_refusals_total{reason="budget",route="chat"}' in text
            # a rate limit is exact across both processes: the bucket's burst, not one more
            lim = {"authorization": f"Bearer {limited}"}
            burst = await asyncio.gather(*(http.post((url_a, url_b)[i % 2] + "/v1/chat/completions", json=small,
                                                     headers=lim) for i in range(30)))
            codes = sorted(r.status_code for r in burst)
            assert codes.count(200) == 3 and codes.count(429) == 27, codes
            assert all(r.headers.get("retry-after") for r in burst if r.status_code == 429)
    finally:
        code_a, out_a = stop(a)
        code_b, out_b = stop(b)
    assert code_a == 0 and code_b == 0, out_a[-2000:] + out_b[-2000:]
    assert "sk-upstream" not in out_a + out_b and member.split(".")[1] not in out_a + out_b


def test_graceful_shutdown_lets_a_stream_in_flight_finish(mock, tmp_path):
    dep = f"sg-{uuid.uuid4().hex[:6]}"
    cfg = {
        "providers": {"p": {"kind": "openai", "api_key": "sk-upstream", "base_url": mock.base_url(dep, "openai")}},
        "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini"}], "timeout": 120, "attempt_timeout": 120}},
        "state": {"path": str(tmp_path)},
        "audit": {"sink": f"sqlite:///{tmp_path}/audit.db"},
    }
    path = write_config(tmp_path, cfg)
    key = asyncio.run(make_key(cfg, "k"))
    mock.fault(dep, chunk_delay_ms=40)
    proc, url = start(path)
    body = {"model": "chat", "stream": True, "max_tokens": 60,
            "messages": [{"role": "user", "content": "a long answer please " * 3}]}
    frames = []
    try:
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120,
                          headers={"authorization": f"Bearer {key}"}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: "):
                    frames.append(line)
                    if len(frames) == 2:
                        proc.send_signal(signal.SIGTERM)  # shut down while the stream is in flight
    finally:
        code, out = stop(proc)
    assert frames[-1] == "data: [DONE]" and len(frames) > 4
    # uvicorn re-raises the signal it caught once it has shut down: "terminated by SIGTERM", cleanly
    assert code in (0, -signal.SIGTERM), out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    rows = sqlite3.connect(tmp_path / "audit.db").execute("select count(*) from audit_events").fetchone()
    assert rows == (1,)  # the stream's audit row was flushed on the way out
