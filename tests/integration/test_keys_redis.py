"""Redis key store: shared by processes; a revocation in one process is refused at once in another."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import redis.asyncio as aredis

from hyperion_core.errors import KeyRevokedError
from hyperion_core.governance.keys import RedisKeyStore

SCRIPT = """
import asyncio, sys
import redis.asyncio as aredis
from hyperion_core.governance.keys import RedisKeyStore
from hyperion_core.errors import AccessError
async def main(url, prefix, key):
    store = RedisKeyStore(aredis.Redis.from_url(url), prefix=prefix)
    try:
        p = await store.authenticate(key)
        print("OK", p.key_id, p.team)
    except AccessError as e:
        print("DENIED", type(e).__name__)
asyncio.run(main(*sys.argv[1:]))
"""


def _other_process(url: str, prefix: str, key: str) -> str:
    return subprocess.run([sys.executable, "-c", SCRIPT, url, prefix, key], capture_output=True, text=True,
                          check=True).stdout.strip()


async def test_keys_shared_and_revoked_across_processes(redis_url):
    prefix = f"t{uuid.uuid4().hex[:6]}"
    client = aredis.Redis.from_url(redis_url)
    store = RedisKeyStore(client, prefix=prefix)
    key, rec = await store.create("shared", team="ml")
    assert _other_process(redis_url, prefix, key) == f"OK {rec.key_id} ml"
    await store.revoke(rec.key_id)
    assert _other_process(redis_url, prefix, key) == "DENIED KeyRevokedError"
    with pytest.raises(KeyRevokedError):
        await store.authenticate(key)
    raw = await client.get(f"{prefix}:key:{{{rec.key_id}}}")
    assert key.split(".", 1)[1].encode() not in raw  # only the salted hash is stored
    assert [r.key_id for r in await store.list(include_revoked=True)] == [rec.key_id]
    await client.aclose()
