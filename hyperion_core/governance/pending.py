"""Settlements that could not be written yet: kept, and written once the store answers again.

When a request was answered (and paid upstream) but its settle failed — Redis went away mid-request —
the answer still goes to the caller (the pipeline's Settle stage) and the settlement is queued here:
in memory, and, with a ``folder``, appended to this process's JSONL file there (locked while the
process lives) so a crash does not lose it: the next process to start adopts the files of dead ones. Every later
successful settle first replays what is queued (:meth:`PendingSettlements.replay`), in order, so spend
is recorded exactly once: the ledger's settle is idempotent per reservation id.

A reservation that Redis no longer has (it restarted empty, or the hold expired and was forgotten)
cannot be settled against its budgets; its spend still goes to the spend report (``add_spend``) and a
warning says so — the budget counters it would have updated were lost with the reservation.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from ..errors import GovernanceStoreError
from .budgets import Reservation
from .config import Subjects
from .spend import NANO, spend_write

log = logging.getLogger("hyperion.governance")

PREFIX = "pending-settlements-"


@dataclass(slots=True)
class PendingSettlement:
    """Everything needed to settle a reservation later (JSON-serialisable)."""

    request_id: str  # the reservation id
    amount_usd: float
    subjects: dict[str, Any]
    created_at: float
    actual_usd: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    deployment: str | None = None
    model: str | None = None
    saved_usd: float = 0.0
    release: bool = False  # give the hold back instead (the request failed and cost nothing)


class PendingSettlements:
    """The queue of one :class:`~hyperion_core.governance.Governance` (see the module docstring)."""

    def __init__(self, governance: Any, folder: str | os.PathLike[str] | None = None, *, ledger_id: str = "") -> None:
        self.governance = governance
        self.queue: deque[PendingSettlement] = deque()
        self.replayed = 0  # settlements written late
        self.lost_holds = 0  # late settlements whose reservation was gone (spend recorded, budgets not)
        self.poisoned = 0  # settlements that could never be written (logged and dropped)
        self._lock = asyncio.Lock()
        self.path: Path | None = None
        self._fd: int | None = None
        if folder is not None:
            d = Path(folder)
            try:
                d.mkdir(parents=True, exist_ok=True)
                # queue files name the ledger they belong to: a process adopts only its own ledger's
                # queues (a folder may be shared by gateways on other Redis servers or key prefixes)
                self._ledger = hashlib.blake2b(ledger_id.encode(), digest_size=6).hexdigest()
                self.path = d / f"{PREFIX}{self._ledger}-{os.getpid()}-{os.urandom(3).hex()}.jsonl"
                self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while this process lives
                self._adopt(d)
            except OSError as exc:
                log.error("pending settlements: cannot use %s (%s); kept in memory only", d, exc)
                self.path = None

    def _adopt(self, folder: Path) -> None:
        """Take over the queues of processes that died (their file lock is free): their settlements
        are replayed by this one. Two processes starting together adopt each file once."""
        for other in sorted(folder.glob(f"{PREFIX}{self._ledger}-*.jsonl")):
            if other == self.path:
                continue
            try:
                fd = os.open(other, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive
                if not other.exists():
                    continue  # adopted (and removed) by another process meanwhile
                self.queue.extend(_parse(other.read_bytes(), other))
                self._persist_all()
                other.unlink()
            finally:
                os.close(fd)

    def close(self) -> None:
        """Release this process's queue file (removed when nothing is left in it)."""
        if self._fd is not None:
            if not self.queue and self.path is not None:
                self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    def __len__(self) -> int:
        return len(self.queue)

    def add(self, admission: Any, actual_usd: float, **kw: Any) -> PendingSettlement:
        """Queue the settlement of ``admission`` (a ``governance.Admission``) at ``actual_usd``."""
        res = admission.reservation
        s = res.subjects
        item = PendingSettlement(
            res.request_id, res.amount_usd, {"key": s.key, "team": s.team, "user": s.user, "route": s.route},
            res.created_at, actual_usd, **kw,
        )
        self.queue.append(item)
        self._persist_append(item)
        return item

    async def replay(self, limit: int = 100) -> int:
        """Write up to ``limit`` queued settlements, oldest first; stop at the first store failure
        (the store is still away). Returns how many were written."""
        if not self.queue:
            return 0
        done = 0
        async with self._lock:
            while self.queue and done < limit:
                item = self.queue[0]
                try:
                    await self._settle(item)
                except GovernanceStoreError:
                    break
                except Exception as exc:  # noqa: BLE001 - one bad item must not block the queue forever
                    self.poisoned += 1
                    log.error("pending settlement %s dropped: it cannot be written (%s: %s)",
                              item.request_id, type(exc).__name__, exc)
                self.queue.popleft()
                done += 1
            if done:
                self.replayed += done
                self._persist_all()
        return done

    async def _settle(self, item: PendingSettlement) -> None:
        ledger = self.governance.ledger
        subj = Subjects.of(item.subjects)
        res = Reservation(item.request_id, item.amount_usd, subj, ledger.book.applied(subj, item.created_at),
                          item.created_at)
        if item.release:
            await ledger.release(res)
            return
        result = await ledger.settle(
            res, item.actual_usd, prompt_tokens=item.prompt_tokens, completion_tokens=item.completion_tokens,
            deployment=item.deployment, model=item.model, saved_usd=item.saved_usd,
        )
        if not result and result.state == "unknown":  # the reservation is gone: keep the spend at least
            self.lost_holds += 1
            log.warning("late settle of %s: its reservation is gone (store restarted?); spend recorded, "
                        "budget counters not", item.request_id)
            await ledger.store.add_spend(spend_write(
                ledger.periods.day(item.created_at), subj, deployment=item.deployment, model=item.model,
                prompt_tokens=item.prompt_tokens, completion_tokens=item.completion_tokens,
                cost_n=round(item.actual_usd * NANO), saved_n=round(item.saved_usd * NANO),
            ))

    def _persist_append(self, item: PendingSettlement) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as f:
                f.write(orjson.dumps(asdict(item)) + b"\n")
        except OSError as exc:
            log.error("pending settlements: cannot write %s (%s); the settlement is kept in memory only",
                      self.path, exc)

    def _persist_all(self) -> None:
        if self.path is None:
            return
        try:
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            tmp.write_bytes(b"".join(orjson.dumps(asdict(i)) + b"\n" for i in self.queue))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("pending settlements: cannot rewrite %s (%s)", self.path, exc)


def _parse(raw: bytes, where: Path) -> list[PendingSettlement]:
    out = []
    for line in raw.splitlines():
        if line.strip():
            try:
                out.append(PendingSettlement(**orjson.loads(line)))
            except (ValueError, TypeError) as exc:
                log.error("pending settlements: unreadable line in %s skipped: %s", where, exc)
    return out


__all__ = ["PendingSettlement", "PendingSettlements"]
