"""Virtual keys: lifecycle, hashing, RBAC — memory and SQLite stores."""

from __future__ import annotations

import pytest

from hyperion_core.errors import (
    AccessError,
    GovernanceStoreError,
    InvalidKeyError,
    InvalidRequestError,
    KeyExpiredError,
    KeyRevokedError,
    PermissionDeniedError,
)
from hyperion_core.governance.keys import MemoryKeyStore, SqliteKeyStore, parse_key


class Clock:
    def __init__(self):
        self.t = 1_700_000_000.0

    def __call__(self):
        return self.t


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    clock = Clock()
    s = MemoryKeyStore(now=clock) if request.param == "memory" else SqliteKeyStore(tmp_path / "keys.db", now=clock)
    s.clock = clock
    return s


async def test_create_returns_the_secret_once_and_stores_only_a_salted_hash(store, tmp_path):
    key, rec = await store.create("ci bot", team="ml", user="ana", roles=["member"], routes=["chat"])
    key_id, secret = parse_key(key)
    assert key_id == rec.key_id and secret not in repr(rec) and secret not in str(rec.public())
    stored = await store.get(rec.key_id)
    assert stored.digest != secret and len(stored.salt) == 32
    assert secret not in stored.dumps().decode()
    # the same secret under two keys hashes differently (per-key salt)
    _, rec2 = await store.create("other")
    assert rec2.salt != rec.salt
    p = await store.authenticate(key)
    assert (p.key_id, p.team, p.user, p.roles, p.routes) == (rec.key_id, "ml", "ana", ("member",), ("chat",))


async def test_wrong_secret_and_garbage_are_refused(store):
    key, rec = await store.create("k")
    with pytest.raises(InvalidKeyError, match="unknown virtual key"):
        await store.authenticate(key[:-2] + "xx")
    with pytest.raises(InvalidKeyError, match="not a Hyperion virtual key"):
        await store.authenticate("sk-openai-style")
    with pytest.raises(InvalidKeyError, match="malformed"):
        await store.authenticate("hk-abc")
    with pytest.raises(InvalidKeyError):
        await store.authenticate("hk-000000000000.nope")


async def test_revoke_is_immediate(store):
    key, rec = await store.create("k")
    await store.revoke(rec.key_id)
    with pytest.raises(KeyRevokedError, match="revoked"):
        await store.authenticate(key)
    assert [r.key_id for r in await store.list()] == []
    assert [r.key_id for r in await store.list(include_revoked=True)] == [rec.key_id]


async def test_expiry(store):
    key, rec = await store.create("temp", expires_in=60)
    await store.authenticate(key)
    store.clock.t += 60
    with pytest.raises(KeyExpiredError, match="expired at"):
        await store.authenticate(key)
    await store.set_expiry(rec.key_id, None)
    assert (await store.authenticate(key)).key_id == rec.key_id
    with pytest.raises(InvalidRequestError, match="expires_in"):
        await store.create("bad", expires_in=0)


async def test_rotate_keeps_attributes_and_revokes_the_old_key(store):
    key, rec = await store.create("svc", team="t", roles=["member", "viewer"], routes=["a", "b"], metadata={"env": "prod"})
    new_key, new = await store.rotate(rec.key_id)
    assert new.key_id != rec.key_id and (new.team, new.roles, new.routes, dict(new.metadata)) == (
        "t", ("member", "viewer"), ("a", "b"), {"env": "prod"})
    with pytest.raises(KeyRevokedError, match=f"rotated to '{new.key_id}'"):
        await store.authenticate(key)
    assert (await store.authenticate(new_key)).key_id == new.key_id
    with pytest.raises(KeyRevokedError):
        await store.rotate(rec.key_id)


async def test_list_filters_by_team(store):
    await store.create("a", team="x")
    await store.create("b", team="y")
    assert [r.name for r in await store.list(team="x")] == ["a"]


async def test_rbac(store):
    member_key, _ = await store.create("m", roles=["member"], routes=["chat"])
    viewer_key, _ = await store.create("v", roles=["viewer"], team="ml")
    admin_key, _ = await store.create("a", roles=["admin"])
    m = await store.authenticate(member_key)
    m.require_route("chat")
    with pytest.raises(PermissionDeniedError, match="may not call route 'embeddings' \\(allowed: chat\\)"):
        m.require_route("embeddings")
    with pytest.raises(PermissionDeniedError, match="lacks permission 'keys:manage'"):
        m.require("keys:manage")
    v = await store.authenticate(viewer_key)
    v.require("audit:read:team")
    with pytest.raises(PermissionDeniedError, match="lacks permission 'call'"):
        v.require_route("chat")
    a = await store.authenticate(admin_key)
    a.require("keys:manage")
    a.require_route("anything")
    with pytest.raises(InvalidRequestError, match="unknown role 'root'"):
        await store.create("x", roles=["root"])
    assert issubclass(PermissionDeniedError, AccessError)
    assert not PermissionDeniedError.retryable and not PermissionDeniedError.failover


async def test_sqlite_store_persists_across_instances(tmp_path):
    s1 = SqliteKeyStore(tmp_path / "k.db")
    key, rec = await s1.create("persist", team="t")
    s2 = SqliteKeyStore(tmp_path / "k.db")
    assert (await s2.authenticate(key)).team == "t"
    await s2.revoke(rec.key_id)
    with pytest.raises(KeyRevokedError):
        await s1.authenticate(key)


async def test_sqlite_reads_on_a_kept_connection_still_see_other_writers_at_once(tmp_path):
    """The read connection each thread keeps open (no hop, no connect per request) never serves a
    stale record: a revocation or rotation written through another store (process) holds on the very
    next authentication, and a damaged file is a clear store error, not a stack trace."""
    reader = SqliteKeyStore(tmp_path / "k.db")
    writer = SqliteKeyStore(tmp_path / "k.db")
    key, rec = await writer.create("warm", team="t")
    for _ in range(3):
        assert (await reader.authenticate(key)).team == "t"  # warm: the kept connection is in use
    new_key, _ = await writer.rotate(rec.key_id)
    with pytest.raises(KeyRevokedError):
        await reader.authenticate(key)
    assert (await reader.authenticate(new_key)).team == "t"
    (tmp_path / "bad.db").write_bytes(b"not a database" * 100)
    with pytest.raises(GovernanceStoreError, match="bad.db"):
        SqliteKeyStore(tmp_path / "bad.db")


async def test_sqlite_cached_records_follow_writes_from_another_process(tmp_path):
    """Records this thread read are kept while the file is unchanged (``PRAGMA data_version``); a write
    by another process — a revocation, a key created after an unknown-key attempt — is seen at once."""
    import subprocess
    import sys

    reader = SqliteKeyStore(tmp_path / "k.db")
    key, rec = await reader.create("cached", team="t")
    for _ in range(3):
        assert (await reader.authenticate(key)).team == "t"
    with pytest.raises(InvalidKeyError):
        await reader.authenticate("hk-nosuchkey.secret")
    script = (
        "import sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1])\n"
        "db.execute('UPDATE keys SET record = ? WHERE key_id = ?', (sys.argv[3].encode(), sys.argv[2]))\n"
        "db.commit()\n"
    )
    from dataclasses import replace

    revoked = replace(rec, revoked_at=123.0).dumps()
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "k.db"), rec.key_id,
                    revoked.decode() if isinstance(revoked, bytes) else revoked], check=True)
    with pytest.raises(KeyRevokedError):
        await reader.authenticate(key)
    later = SqliteKeyStore(tmp_path / "k.db")
    new_key, _ = await later.create("later", team="u")
    assert (await reader.authenticate(new_key)).team == "u"
