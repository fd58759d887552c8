"""``hyperion audit verify`` end to end: anchor and key from the config (the key through an
environment variable), exit codes 0 / 1 / 2, and the key never printed."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys

from hyperion_core.audit import AuditEvent, AuditLog, new_event_id, open_sink

KEY = "cli-audit-key-never-printed-7f3a"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyperion_core.cli", "audit", "verify", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_verify_with_anchor_and_key_from_the_config(tmp_path):
    db, anchor = tmp_path / "store" / "audit.db", tmp_path / "anchor" / "audit.anchor"

    async def write() -> None:
        log = AuditLog(open_sink(f"sqlite://{db}"), anchor_path=anchor, checkpoint_key=KEY, checkpoint_every=4)
        for i in range(10):
            log.emit(AuditEvent(id=new_event_id(), time=1.7e9 + i, outcome="ok", request_id=f"r{i}"))
        assert await log.aflush() is True
        await log.aclose()

    asyncio.run(write())
    cfg = tmp_path / "hyperion.yaml"
    cfg.write_text(
        ""
        "routes:\n  chat: {deployments: [{model: openai/m}]}\n"
        f"audit:\n  sink: sqlite://{db}\n  anchor_path: {anchor}\n  checkpoint_key: ${{HYPERION_AUDIT_KEY}}\n"
    )
    env = {"HYPERION_AUDIT_KEY": KEY}
    p = _cli("--config", str(cfg), env=env)
    assert p.returncode == 0 and "anchored at seq 10" in p.stdout, p.stderr
    p = _cli("--config", str(cfg), "--since-checkpoint", env=env)
    assert p.returncode == 0 and "checked from the checkpoint at seq 10" in p.stdout, p.stderr

    con = sqlite3.connect(db)  # cut the newest rows and move the head back with them
    con.execute("DELETE FROM audit_events WHERE seq > 6")
    con.execute("UPDATE audit_head SET seq = 6, hash = (SELECT hash FROM audit_events WHERE seq = 6)")
    con.commit()
    con.close()
    assert _cli("--sink", f"sqlite://{db}").returncode == 0  # without the anchor it looks fine
    p = _cli("--config", str(cfg), env=env)
    assert p.returncode == 1 and "ends at seq 6" in p.stderr and "cut from the end" in p.stderr
    p = _cli("--config", str(cfg), env={"HYPERION_AUDIT_KEY": "a-wrong-key"})
    assert p.returncode == 1 and "valid signature" in p.stderr
    assert KEY not in p.stdout + p.stderr
    p = _cli("--sink", f"sqlite://{db}", "--expect-head", "xyz")
    assert p.returncode == 2 and "sha256" in p.stderr
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    assert _cli("--sink", f"jsonl://{empty}").returncode == 1
    assert _cli("--sink", f"jsonl://{empty}", "--allow-empty").returncode == 0
