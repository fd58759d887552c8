"""`hyperion keys|spend|audit` on the embedded default (SQLite files), end to end with a gateway."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys

import yaml

from hyperion_core import Gateway, KeyRevokedError


def cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyperion_core.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


def test_keys_spend_and_audit_commands(mock, tmp_path):
    cfg = {
        "providers": {"p": {"kind": "openai", "api_key": "sk-x", "base_url": mock.base_url("cli-gov", "openai")}},
        "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini"}]}},
        "state": {"path": str(tmp_path / "state")},
        "keys": {"required": True},
        "audit": {"sink": f"sqlite:///{tmp_path}/audit.db"},
    }
    path = tmp_path / "hyperion.yaml"
    path.write_text(yaml.safe_dump(cfg))
    created = cli("keys", "create", "svc", "--team", "ml", "--route", "chat", "--config", str(path), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = next(line.split(": ", 1)[1] for line in created.stdout.splitlines() if line.startswith("key: "))
    key_id = created.stdout.split()[0]
    assert key_id in cli("keys", "list", "--config", str(path), cwd=tmp_path).stdout

    async def traffic() -> float:
        gw = Gateway.from_file(path)
        total = 0.0
        for i in range(3):
            total += (await gw.acomplete("chat", [{"role": "user", "content": f"cli {i}"}], virtual_key=key)).cost
        await gw.aclose()
        return total

    total = asyncio.run(traffic())
    spend = cli("spend", "--by", "key", "--config", str(path), cwd=tmp_path)
    assert spend.returncode == 0, spend.stderr
    line = next(x for x in spend.stdout.splitlines() if key_id in x)
    assert " 3 " in f" {line} " and f"{total:.6f}"[:6] in line
    assert cli("spend", "--by", "team", "--config", str(path), cwd=tmp_path).stdout.count("ml") == 1

    tail = cli("audit", "tail", "-n", "5", "--config", str(path), cwd=tmp_path)
    assert tail.returncode == 0 and tail.stdout.count(key_id) == 3 and key.split(".")[1] not in tail.stdout
    assert cli("audit", "verify", "--config", str(path), cwd=tmp_path).returncode == 0

    revoked = cli("keys", "revoke", key_id, "--config", str(path), cwd=tmp_path)
    assert "revoked" in revoked.stdout

    async def refused() -> str:
        gw = Gateway.from_file(path)
        try:
            await gw.acomplete("chat", [{"role": "user", "content": "after revoke"}], virtual_key=key)
        except KeyRevokedError as exc:
            return type(exc).__name__
        finally:
            await gw.aclose()
        return "answered"

    assert asyncio.run(refused()) == "KeyRevokedError"

    db = sqlite3.connect(tmp_path / "audit.db")  # someone lowers a recorded cost by hand
    db.execute("update audit_events set body = replace(body, '\"cost\":', '\"cost\":0.0,\"was\":') where seq = 2")
    assert db.total_changes == 1
    db.commit()
    db.close()
    bad = cli("audit", "verify", "--config", str(path), cwd=tmp_path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    bad_key = cli("keys", "revoke", "nope", "--config", str(path), cwd=tmp_path)
    assert bad_key.returncode == 2 and "no key with id 'nope'" in bad_key.stderr and "Traceback" not in bad_key.stderr
