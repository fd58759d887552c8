"""The main job (`hyperion demo`), the CLI, and the project's own Redis fixture."""

from __future__ import annotations

import subprocess
import sys
import time

import redis


def test_demo_runs_clean_and_fast():
    # (how long it takes is bench material, not a test: a loaded CI machine must not fail it)
    p = subprocess.run([sys.executable, "-m", "hyperion_core.cli", "demo"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert "0 failed" in out
    assert "primary breaker: open" in out and "primary breaker: closed" in out
    assert "resumed by anthropic-backup" in out
    assert "openai:503 > anthropic:ok" in out
    assert "cache l1 hit" in out and "cache semantic hit" in out
    assert out.count("cache ") == 2  # the 15%-of-90 question is not served 15%-of-80's answer
    assert "refused after" in out and "daily budget $0.0004" in out
    assert "hash chain intact" in out and "'budget_exceeded': 1" in out


def test_check_command_reports_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes:\n  chat:\n    deployments:\n      - model: opnai/gpt-4o\n")
    p = subprocess.run([sys.executable, "-m", "hyperion_core.cli", "check", str(bad)], capture_output=True, text=True)
    assert p.returncode == 2
    assert "routes.chat.deployments[0].model: unknown provider 'opnai' (did you mean 'openai'?)" in p.stderr
    assert "Traceback" not in p.stderr


def test_redis_fixture_has_search_and_json(redis_url):
    r = redis.Redis.from_url(redis_url)
    assert r.ping()
    modules = {m[b"name"].decode().lower() for m in r.execute_command("MODULE", "LIST")}
    assert {"search", "rejson"} <= modules
    r.execute_command(
        "FT.CREATE", "t_idx", "ON", "HASH", "PREFIX", "1", "t:", "SCHEMA",
        "tenant", "TAG", "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "2", "DISTANCE_METRIC", "COSINE",
    )
    import struct

    r.hset("t:1", mapping={"tenant": "a", "v": struct.pack("2f", 1.0, 0.0)})
    r.hset("t:2", mapping={"tenant": "b", "v": struct.pack("2f", 0.0, 1.0)})
    res = r.execute_command(
        "FT.SEARCH", "t_idx", "(@tenant:{a})=>[KNN 2 @v $q]", "PARAMS", "2", "q", struct.pack("2f", 1.0, 0.1),
        "DIALECT", "2", "RETURN", "0",
    )
    ids = [row[b"id"] for row in res[b"results"]] if isinstance(res, dict) else res[1::2]  # RESP3 / RESP2
    assert ids == [b"t:1"]  # the tag filter keeps tenant b out
    r.execute_command("JSON.SET", "j", "$", '{"a": 1}')
    assert r.execute_command("JSON.GET", "j", "$.a") == b"[1]"


def test_mock_provider_command_serves_and_takes_faults():
    import json
    import urllib.request

    from hyperion_core.mock_provider import MockProviderClient
    from hyperion_core.redis_server import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hyperion_core.cli", "mock-provider", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                client = MockProviderClient(url)
                client.health()
                break
            except OSError:
                assert time.monotonic() < deadline, "mock provider did not start"
                time.sleep(0.05)
        client.fault("ext", kind="rate_limit", retry_after=3)
        req = urllib.request.Request(f"{url}/ext/v1/chat/completions", method="POST",
                                     data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode(),
                                     headers={"authorization": "Bearer sk-x", "content-type": "application/json"})
        try:
            urllib.request.urlopen(req)
            raise AssertionError("expected a 429")
        except urllib.error.HTTPError as e:
            assert e.code == 429 and e.headers["retry-after"] == "3"
        assert client.stats()["ext"]["requests"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=5)
