"""Virtual keys and role-based access.

A virtual key looks like ``hk-<key_id>.<secret>``. It is shown once, at creation or rotation; the
store keeps only a per-key random salt and ``sha256(salt || secret)``, compared in constant time. The
key id (never the secret) is what budgets, spend and audit rows name.

Three stores behind one interface: :class:`MemoryKeyStore` (tests, demo), :class:`SqliteKeyStore`
(the embedded default, so ``hyperion keys create`` persists) and :class:`RedisKeyStore` (shared by
every process: a revoked or expired key is refused at once everywhere, since each authentication
reads the record).

Roles: ``admin`` manages keys and budgets and reads everything; ``member`` calls its allowed routes;
``viewer`` reads spend and audit of its own team.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from ..errors import (
    GovernanceStoreError,
    InvalidKeyError,
    InvalidRequestError,
    KeyExpiredError,
    KeyRevokedError,
    PermissionDeniedError,
)

KEY_PREFIX = "hk-"
ROLES: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {"call", "keys:manage", "budgets:manage", "spend:read:all", "audit:read:all", "spend:read:team", "audit:read:team",
         "deployments:pin"}
    ),
    "member": frozenset({"call", "spend:read:own"}),
    "viewer": frozenset({"spend:read:team", "audit:read:team"}),
}


@dataclass(slots=True, frozen=True)
class Principal:
    """Who a request runs as, after authentication."""

    key_id: str
    team: str | None = None
    user: str | None = None
    roles: tuple[str, ...] = ("member",)
    routes: tuple[str, ...] = ("*",)
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def permissions(self) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for r in self.roles:
            out |= ROLES.get(r, frozenset())
        return out

    def require(self, permission: str) -> None:
        if permission not in self.permissions:
            raise PermissionDeniedError(
                f"key '{self.key_id}' lacks permission '{permission}' (roles: {', '.join(self.roles) or 'none'})"
            )

    def require_route(self, route: str) -> None:
        self.require("call")
        if "*" not in self.routes and route not in self.routes:
            raise PermissionDeniedError(
                f"key '{self.key_id}' may not call route '{route}' (allowed: {', '.join(self.routes)})", route=route
            )


@dataclass(slots=True, frozen=True)
class KeyRecord:
    key_id: str
    name: str
    salt: str = field(repr=False)
    digest: str = field(repr=False)
    team: str | None = None
    user: str | None = None
    roles: tuple[str, ...] = ("member",)
    routes: tuple[str, ...] = ("*",)
    metadata: Mapping[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None
    rotated_to: str | None = None

    def principal(self) -> Principal:
        return Principal(self.key_id, self.team, self.user, self.roles, self.routes, dict(self.metadata))

    def public(self) -> dict[str, Any]:
        """Everything but the salt and digest (for listings and the admin API)."""
        d = asdict(self)
        del d["salt"], d["digest"]
        return d

    def dumps(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: bytes | str) -> KeyRecord:
        d = orjson.loads(raw)
        d["roles"] = tuple(d.get("roles") or ())
        d["routes"] = tuple(d.get("routes") or ())
        return cls(**d)


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def verify_secret(rec: KeyRecord, secret: str) -> bool:
    """Constant-time check of ``secret`` against the record's salted hash."""
    return hmac.compare_digest(rec.digest, _digest(rec.salt, secret))


def check_active(rec: KeyRecord, now: float) -> None:
    """Raise if the key is revoked or expired (the parts of a record that change after creation)."""
    if rec.revoked_at is not None:
        extra = f"; it was rotated to '{rec.rotated_to}'" if rec.rotated_to else ""
        raise KeyRevokedError(f"virtual key '{rec.key_id}' was revoked{extra}")
    if rec.expires_at is not None and now >= rec.expires_at:
        raise KeyExpiredError(
            f"virtual key '{rec.key_id}' expired at {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(rec.expires_at))}"
        )


def parse_key(key: str) -> tuple[str, str]:
    """``hk-<key_id>.<secret>`` -> (key_id, secret); raises :class:`InvalidKeyError` naming the problem."""
    if not isinstance(key, str) or not key.startswith(KEY_PREFIX):
        raise InvalidKeyError(f"not a Hyperion virtual key (expected '{KEY_PREFIX}<id>.<secret>')")
    key_id, dot, secret = key[len(KEY_PREFIX) :].partition(".")
    if not dot or not key_id or not secret:
        raise InvalidKeyError(f"malformed virtual key (expected '{KEY_PREFIX}<id>.<secret>')")
    return key_id, secret


class KeyStore:
    """Key lifecycle and authentication over a small storage interface (``_load``/``_save``/``_all``)."""

    def __init__(self, *, now: Callable[[], float] = time.time) -> None:
        self.now = now

    # -- storage (per backend) --------------------------------------------------------------------
    async def _load(self, key_id: str) -> KeyRecord | None:
        raise NotImplementedError

    async def _save(self, record: KeyRecord) -> None:
        raise NotImplementedError

    async def _all(self) -> list[KeyRecord]:
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------------------------
    async def create(
        self,
        name: str,
        *,
        team: str | None = None,
        user: str | None = None,
        roles: Iterable[str] = ("member",),
        routes: Iterable[str] = ("*",),
        metadata: Mapping[str, str] | None = None,
        expires_in: float | None = None,
        expires_at: float | None = None,
    ) -> tuple[str, KeyRecord]:
        """Create a key. Returns ``(key, record)``: the key is shown this once and never stored."""
        roles = tuple(roles)
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            raise InvalidRequestError(f"roles: unknown role '{unknown[0]}' (known: {', '.join(ROLES)})")
        if not roles:
            raise InvalidRequestError("roles: a key needs at least one role")
        if expires_in is not None:
            if expires_in <= 0:
                raise InvalidRequestError(f"expires_in: must be > 0 seconds, got {expires_in}")
            expires_at = self.now() + expires_in
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = os.urandom(16).hex()
        record = KeyRecord(
            key_id=key_id,
            name=name,
            salt=salt,
            digest=_digest(salt, secret),
            team=team,
            user=user,
            roles=roles,
            routes=tuple(routes) or ("*",),
            metadata=dict(metadata or {}),
            created_at=self.now(),
            expires_at=expires_at,
        )
        await self._save(record)
        return f"{KEY_PREFIX}{key_id}.{secret}", record

    async def get(self, key_id: str) -> KeyRecord | None:
        return await self._load(key_id)

    async def list(self, *, team: str | None = None, include_revoked: bool = False) -> list[KeyRecord]:
        rows = [r for r in await self._all() if (team is None or r.team == team)]
        if not include_revoked:
            rows = [r for r in rows if r.revoked_at is None]
        return sorted(rows, key=lambda r: r.created_at)

    async def _require(self, key_id: str) -> KeyRecord:
        rec = await self._load(key_id)
        if rec is None:
            raise InvalidKeyError(f"no key with id '{key_id}'")
        return rec

    async def revoke(self, key_id: str) -> KeyRecord:
        rec = await self._require(key_id)
        if rec.revoked_at is None:
            rec = replace(rec, revoked_at=self.now())
            await self._save(rec)
        return rec

    async def set_expiry(self, key_id: str, expires_at: float | None) -> KeyRecord:
        rec = replace(await self._require(key_id), expires_at=expires_at)
        await self._save(rec)
        return rec

    async def rotate(self, key_id: str) -> tuple[str, KeyRecord]:
        """Issue a new key with the same team, user, roles, routes and metadata; revoke the old one."""
        old = await self._require(key_id)
        if old.revoked_at is not None:
            raise KeyRevokedError(f"key '{key_id}' is revoked; create a new key instead of rotating it")
        key, new = await self.create(
            old.name,
            team=old.team,
            user=old.user,
            roles=old.roles,
            routes=old.routes,
            metadata=old.metadata,
            expires_at=old.expires_at,
        )
        await self._save(replace(old, revoked_at=self.now(), rotated_to=new.key_id))
        return key, new

    # -- authentication ----------------------------------------------------------------------------
    async def authenticate(self, key: str) -> Principal:
        """The principal behind ``key``; raises an :class:`AccessError` subclass naming the problem."""
        return (await self.authenticate_record(key)).principal()

    async def authenticate_record(self, key: str) -> KeyRecord:
        key_id, secret = parse_key(key)
        rec = await self._load(key_id)
        if rec is None or not verify_secret(rec, secret):
            raise InvalidKeyError(f"unknown virtual key '{KEY_PREFIX}{key_id}.…'")
        check_active(rec, self.now())
        return rec

    async def aclose(self) -> None:
        return None


class MemoryKeyStore(KeyStore):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._rows: dict[str, KeyRecord] = {}

    async def _load(self, key_id: str) -> KeyRecord | None:
        return self._rows.get(key_id)

    async def _save(self, record: KeyRecord) -> None:
        self._rows[record.key_id] = record

    async def _all(self) -> list[KeyRecord]:
        return list(self._rows.values())


class SqliteKeyStore(KeyStore):
    """Keys in a local SQLite file: the embedded default that outlives a process (CLI, single host)."""

    def __init__(self, path: str | os.PathLike[str], **kw: Any) -> None:
        super().__init__(**kw)
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GovernanceStoreError(f"key store {self.path}: cannot create its folder ({exc.strerror})") from None
        self._readers = threading.local()  # one open read connection per thread (event loop)
        self._run("PRAGMA journal_mode=WAL")  # persistent in the file: readers never wait for a writer
        self._run("CREATE TABLE IF NOT EXISTS keys (key_id TEXT PRIMARY KEY, record BLOB NOT NULL)")

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with contextlib.closing(sqlite3.connect(self.path, timeout=10)) as db, db:
                return db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:  # a read-only or full disk, a locked or damaged file
            raise GovernanceStoreError(f"key store {self.path}: {exc}") from None

    async def _load(self, key_id: str) -> KeyRecord | None:
        # Every request asks the file whether it changed (``PRAGMA data_version``: it moves when any
        # other connection commits, so a revocation by another process or worker holds at once), on a
        # connection this thread keeps open; while it has not changed, the records this thread already
        # read are served from memory (records are immutable).
        readers = self._readers
        db = getattr(readers, "db", None)
        try:
            if db is None:
                db = readers.db = sqlite3.connect(self.path, timeout=10)
                readers.version, readers.cache = None, {}
            version = db.execute("PRAGMA data_version").fetchone()[0]
            if version != readers.version:
                readers.version, readers.cache = version, {}
            cache: dict[str, KeyRecord | None] = readers.cache
            if key_id in cache:
                return cache[key_id]
            rows = db.execute("SELECT record FROM keys WHERE key_id = ?", (key_id,)).fetchall()
        except sqlite3.Error as exc:
            readers.db = None
            raise GovernanceStoreError(f"key store {self.path}: {exc}") from None
        rec = KeyRecord.loads(rows[0][0]) if rows else None
        if rec is not None or len(cache) < 10_000:  # unknown ids too, within a bound (a key-guessing client)
            cache[key_id] = rec
        return rec

    async def _save(self, record: KeyRecord) -> None:
        await asyncio.to_thread(
            self._run, "INSERT OR REPLACE INTO keys (key_id, record) VALUES (?, ?)", (record.key_id, record.dumps())
        )

    async def _all(self) -> list[KeyRecord]:
        return [KeyRecord.loads(r[0]) for r in await asyncio.to_thread(self._run, "SELECT record FROM keys")]


class RedisKeyStore(KeyStore):
    """Keys in Redis, shared by every process. Layout: ``{prefix}:key:{<key_id>}`` holds the record
    (JSON), ``{prefix}:keys`` the set of ids."""

    def __init__(self, client: Any, *, prefix: str = "hyperion", **kw: Any) -> None:
        super().__init__(**kw)
        from redis.exceptions import RedisError

        self.r = client
        self.prefix = prefix
        self._errors = (RedisError, OSError)  # a store that is down, hung or refusing: GovernanceStoreError

    def record_key(self, key_id: str) -> str:
        """The Redis key holding ``key_id``'s record (read in the admission pipeline)."""
        return f"{self.prefix}:key:{{{key_id}}}"

    _k = record_key

    async def _load(self, key_id: str) -> KeyRecord | None:
        try:
            raw = await self.r.get(self._k(key_id))
        except self._errors as exc:
            raise GovernanceStoreError(f"key store (Redis): reading key '{key_id}' failed: {exc}") from exc
        return KeyRecord.loads(raw) if raw else None

    async def _save(self, record: KeyRecord) -> None:
        try:
            await self.r.set(self._k(record.key_id), record.dumps())
            await self.r.sadd(f"{self.prefix}:keys", record.key_id)
        except self._errors as exc:
            raise GovernanceStoreError(f"key store (Redis): saving key '{record.key_id}' failed: {exc}") from exc

    async def _all(self) -> list[KeyRecord]:
        try:
            members = await self.r.smembers(f"{self.prefix}:keys")
        except self._errors as exc:
            raise GovernanceStoreError(f"key store (Redis): listing keys failed: {exc}") from exc
        out = []
        for key_id in sorted(x.decode() if isinstance(x, bytes) else x for x in members):
            rec = await self._load(key_id)
            if rec is not None:
                out.append(rec)
        return out


__all__ = [
    "KEY_PREFIX",
    "ROLES",
    "Principal",
    "KeyRecord",
    "KeyStore",
    "MemoryKeyStore",
    "SqliteKeyStore",
    "RedisKeyStore",
    "parse_key",
    "verify_secret",
    "check_active",
]
