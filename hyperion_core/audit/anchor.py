"""Signed checkpoints of the chain's head, kept outside the store (an *anchor*).

A hash chain alone cannot tell a log whose newest rows were cut (and its head moved back with
them) from one that simply ended there, nor an empty log from a wiped one. The writer therefore
writes, every ``checkpoint_every`` events or ``checkpoint_interval_s`` seconds (at the next write)
and at close, a checkpoint ``{seq, hash, time}`` to an anchor file that lives *outside* the store,
signed with HMAC-SHA256 under a key that the store never sees (``checkpoint_key``, e.g.
``${HYPERION_AUDIT_KEY}``). ``hyperion audit verify --anchor PATH`` then requires the row at the
anchored ``seq`` to carry the anchored hash; a log cut below it, wiped or rewritten fails, naming
the anchor. Someone who can change the store but not the anchor (or lacks the key) cannot hide
that. The anchor only moves forward (several processes may share one); keep it on other storage
than the log (another host, a WORM bucket, a ticket).

Signing and checking are pure; :func:`read_anchor` / :func:`write_anchor` are the only I/O.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from .record import AuditError

_DOMAIN = b"hyperion-audit-checkpoint:v1"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The head ``(seq, hash)`` at ``time`` (epoch seconds); ``mac`` is the hex HMAC-SHA256 of
    :meth:`message`, or None when no key was configured."""

    seq: int
    hash: str
    time: float
    mac: str | None = None

    def message(self) -> bytes:
        return b"%s\n%d\n%s\n%s" % (_DOMAIN, self.seq, self.hash.encode("ascii"), repr(float(self.time)).encode())

    def signed(self, key: bytes) -> Checkpoint:
        return replace(self, mac=hmac.new(key, self.message(), hashlib.sha256).hexdigest())

    def signature_ok(self, key: bytes) -> bool:
        return self.mac is not None and hmac.compare_digest(self.signed(key).mac or "", self.mac)

    def to_json(self) -> bytes:
        return orjson.dumps({"seq": self.seq, "hash": self.hash, "time": self.time, "mac": self.mac})

    @classmethod
    def from_json(cls, data: bytes) -> Checkpoint:
        d = orjson.loads(data)
        seq, h, t, mac = d["seq"], d["hash"], d["time"], d.get("mac")
        if not (isinstance(seq, int) and seq >= 0 and isinstance(h, str) and len(h) == 64
                and isinstance(t, (int, float)) and (mac is None or isinstance(mac, str))):
            raise ValueError("fields have the wrong type")
        return cls(seq, h, float(t), mac)


def key_bytes(key: object) -> bytes | None:
    """A key given as str, bytes or a pydantic ``SecretStr``; None or empty means no key."""
    if key is None:
        return None
    if hasattr(key, "get_secret_value"):
        key = key.get_secret_value()
    raw = key.encode() if isinstance(key, str) else bytes(key)  # type: ignore[call-overload]
    return raw or None


def read_anchor(path: str | Path) -> Checkpoint | None:
    """The anchored checkpoint, or None if there is no anchor file yet. Raises :class:`AuditError`
    when the file exists but is not a checkpoint."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    try:
        return Checkpoint.from_json(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditError(f"audit anchor {path}: not a checkpoint ({exc}); it was edited or damaged") from None


def write_anchor(path: str | Path, cp: Checkpoint) -> bool:
    """Replace the anchor with ``cp`` unless it already anchors a later row (processes sharing one
    anchor never move it back). Atomic (write, fsync, rename) under ``<path>.lock``. True if written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            current = read_anchor(path)
        except AuditError:
            current = None  # unreadable: replace it
        if current is not None and current.seq >= cp.seq:
            return False
        tmp = Path(f"{path}.tmp")
        with open(tmp, "wb") as f:
            f.write(cp.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return True
    finally:
        os.close(fd)  # releases the lock


__all__ = ["Checkpoint", "key_bytes", "read_anchor", "write_anchor"]
