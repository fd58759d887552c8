"""Spend-rate anomalies per key and team: a burst against the subject's own baseline.

Every settled cost is added to its key's and team's current bucket (``bucket_s`` seconds, 60 by
default). From that:

* **rate** — spend over the last ``bucket_s`` seconds, sliding: the current bucket plus the share of
  the previous one that still lies in the window (``cur + prev * (1 - elapsed/bucket_s)``), in USD
  per minute;
* **baseline** — an EWMA of the subject's per-bucket spend over the buckets *before* that window
  (idle buckets count as zero), with ``baseline_half_life_s``. The window is excluded so a burst
  does not raise its own bar before it is judged.

A ``spike`` alert fires when ``rate >= multiplier * baseline`` and ``rate >= min_usd_per_min``, once
the subject has ``warmup_s`` seconds of history (a new key does not alert on its first requests);
a ``hard_limit`` alert fires when the rate reaches a configured USD per minute, warm or not. After an
alert the same subject and kind stay quiet for ``cooldown_s`` (shared by every process on Redis).

With the defaults (60 s buckets, 10x), a burst of 20x the baseline is alerted after about 30 s of
burst — wherever it starts within a bucket — and steady traffic, even ±50% noisy, never comes near
10x. The state is O(1) per subject: the current and previous bucket, the EWMA and a bucket count.
Memory keeps it per process; Redis keeps it in one hash per subject, updated by one script, so
every process sees the combined rate.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from .alerts import AnomalyAlert
from .config import EACH, AnomalyConfig, Subjects
from .ops import LOCAL, Op, Runner, ScriptOp


@dataclass(slots=True, frozen=True)
class RateSnapshot:
    """A subject's state right after an add. Amounts in USD per bucket."""

    cur: float  # spend in the current bucket
    prev: float  # spend in the previous bucket
    ewma: float  # baseline spend per bucket (meaningful when n >= 1)
    n: int  # buckets folded into the baseline
    frac: float  # how far into the current bucket, 0..1

    @property
    def window(self) -> float:
        """Spend over the last bucket length (sliding)."""
        return self.cur + self.prev * (1.0 - self.frac)


class RateState:
    """The per-subject bucket state. ``add`` is the algorithm; the Redis script mirrors it."""

    __slots__ = ("bucket", "cur", "prev", "ewma", "n", "first")

    def __init__(self) -> None:
        self.bucket: int | None = None
        self.cur = self.prev = self.ewma = 0.0
        self.n = 0
        self.first = 0

    def _fold(self, x: float, alpha: float) -> None:
        self.ewma = x if self.n == 0 else self.ewma + alpha * (x - self.ewma)
        self.n += 1

    def add(self, amount: float, t: float, bucket_s: float, alpha: float) -> RateSnapshot:
        b = math.floor(t / bucket_s)
        if self.bucket is None:
            self.bucket = self.first = b
        cb = self.bucket
        if b > cb:
            if cb - 1 >= self.first:
                self._fold(self.prev, alpha)
            if cb <= b - 2:
                self._fold(self.cur, alpha)
            z = b - cb - 2
            if z > 0:
                if self.n == 0:
                    self.ewma, self.n, z = 0.0, 1, z - 1
                self.ewma *= (1.0 - alpha) ** z
                self.n += z
            self.prev = self.cur if b - 1 == cb else 0.0
            self.cur = 0.0
            self.bucket = cb = b
        self.cur += amount
        frac = max((t - cb * bucket_s) / bucket_s, 0.0)
        return RateSnapshot(self.cur, self.prev, self.ewma, self.n, frac)


def alpha_for(bucket_s: float, half_life_s: float) -> float:
    """EWMA weight of the newest bucket so that a bucket counts half after ``half_life_s``."""
    return 1.0 - 0.5 ** (bucket_s / half_life_s)


def judge(
    snap: RateSnapshot, cfg: AnomalyConfig, hard_usd_per_min: float | None
) -> tuple[str, float, float, float] | None:
    """Pure decision: ``(kind, threshold, rate, baseline)`` in USD/min, or None. Hard limits first."""
    per_min = 60.0 / cfg.bucket_s
    rate = snap.window * per_min
    baseline = snap.ewma * per_min if snap.n else 0.0
    if hard_usd_per_min is not None and rate >= hard_usd_per_min:
        return "hard_limit", hard_usd_per_min, rate, baseline
    if (
        snap.n >= 1
        and snap.n * cfg.bucket_s >= cfg.warmup_s
        and rate > 0
        and rate >= cfg.min_usd_per_min
        and rate >= cfg.multiplier * baseline
    ):
        return "spike", cfg.multiplier, rate, baseline
    return None


class AnomalyStore(Protocol):
    async def add_many(
        self, items: Sequence[tuple[str, float]], bucket_s: float, alpha: float
    ) -> list[RateSnapshot]:
        """Add ``(subject, usd)`` amounts; the snapshot of each subject after its add."""

    async def claim(self, subject: str, kind: str, cooldown_s: float) -> bool:
        """True (once per cooldown) if this caller may alert for ``subject`` and ``kind``."""

    runner: Runner

    def add_ops(self, items: Sequence[tuple[str, float]], bucket_s: float, alpha: float) -> list[Op[RateSnapshot]]:
        """``add_many`` as ops, one per item (``Governance`` batches them with the settle)."""

    async def aclose(self) -> None: ...


class MemoryAnomalyStore:
    """Per-process state (thread-safe). ``now``: wall clock, Unix seconds, injectable."""

    def __init__(self, *, now: Callable[[], float] = time.time) -> None:
        self.now = now
        self._states: dict[str, RateState] = {}
        self._quiet_until: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    runner = LOCAL

    def add_ops(self, items: Sequence[tuple[str, float]], bucket_s: float, alpha: float) -> list[Op[RateSnapshot]]:
        return [partial(self.add_now, subject, amount, bucket_s, alpha) for subject, amount in items]

    async def add_many(
        self, items: Sequence[tuple[str, float]], bucket_s: float, alpha: float
    ) -> list[RateSnapshot]:
        return self.add_many_now(items, bucket_s, alpha)

    def add_now(self, subject: str, amount: float, bucket_s: float, alpha: float) -> RateSnapshot:
        with self._lock:
            st = self._states.get(subject)
            if st is None:
                st = self._states[subject] = RateState()
            return st.add(amount, self.now(), bucket_s, alpha)

    def add_many_now(
        self, items: Sequence[tuple[str, float]], bucket_s: float, alpha: float
    ) -> list[RateSnapshot]:
        with self._lock:
            t = self.now()
            out = []
            for subject, amount in items:
                st = self._states.get(subject)
                if st is None:
                    st = self._states[subject] = RateState()
                out.append(st.add(amount, t, bucket_s, alpha))
            return out

    async def claim(self, subject: str, kind: str, cooldown_s: float) -> bool:
        with self._lock:
            t = self.now()
            if self._quiet_until.get((subject, kind), -math.inf) > t:
                return False
            self._quiet_until[(subject, kind)] = t + cooldown_s
            return True

    async def aclose(self) -> None:
        return None


class RedisAnomalyStore:
    """State in ``P:anom:<scope>:<id>`` hashes (one per subject, expiring after ``idle_ttl_s``), so all
    processes see the combined rate. Redis ``TIME`` unless ``clock`` (Unix seconds; tests)."""

    def __init__(
        self,
        scripts: Any,
        *,
        prefix: str = "hyperion",
        clock: Callable[[], float] | None = None,
        idle_ttl_s: float = 7 * 86_400,
    ) -> None:
        from ._lua import Scripts
        from .ops import ScriptRunner

        self.scripts = scripts if isinstance(scripts, Scripts) else Scripts(scripts)
        self.runner = ScriptRunner(self.scripts)
        self.base = f"{prefix}:anom:"
        self.clock = clock
        self.idle_ms = int(idle_ttl_s * 1000)

    def _now(self) -> str:
        return "" if self.clock is None else str(int(self.clock() * 1000))

    def add_calls(self, items: Sequence[tuple[str, float]], bucket_s: float, alpha: float):
        now = self._now()
        return [
            (
                "anomaly_add",
                [self.base + subject],
                [now, repr(float(amount)), int(bucket_s * 1000), repr(alpha), self.idle_ms],
            )
            for subject, amount in items
        ]

    def add_ops(self, items: Sequence[tuple[str, float]], bucket_s: float, alpha: float) -> list[Op[RateSnapshot]]:
        return [ScriptOp(c, self.parse) for c in self.add_calls(items, bucket_s, alpha)]

    @staticmethod
    def parse(raw: list[Any]) -> RateSnapshot:
        from ._lua import s

        cur, prev, ewma, n, frac = (s(x) for x in raw)
        return RateSnapshot(float(cur), float(prev), float(ewma), int(float(n)), float(frac))

    async def add_many(
        self, items: Sequence[tuple[str, float]], bucket_s: float, alpha: float
    ) -> list[RateSnapshot]:
        if not items:
            return []
        raw = await self.scripts.run_many(self.add_calls(items, bucket_s, alpha))
        return [self.parse(r) for r in raw]

    async def claim(self, subject: str, kind: str, cooldown_s: float) -> bool:
        if cooldown_s <= 0:
            return True
        from redis.exceptions import RedisError

        from ..errors import GovernanceStoreError

        try:
            ok = await self.scripts.client.set(
                f"{self.base}{subject}:cool:{kind}", b"1", px=max(int(cooldown_s * 1000), 1), nx=True
            )
        except RedisError as exc:
            raise GovernanceStoreError(f"governance store: alert cooldown failed: {exc}") from exc
        return bool(ok)

    async def aclose(self) -> None:
        return None


class AnomalyDetector:
    """Watches settled spend per key and team; returns (and hands ``on_alert``) anomaly alerts.
    ``now`` is the wall clock used to time-stamp alerts (and the memory store's buckets)."""

    def __init__(
        self,
        config: AnomalyConfig | None = None,
        *,
        store: AnomalyStore | None = None,
        now: Callable[[], float] = time.time,
        on_alert: Callable[[AnomalyAlert], None] | None = None,
    ) -> None:
        self.config = config or AnomalyConfig()
        self.now = now
        self.store: AnomalyStore = store if store is not None else MemoryAnomalyStore(now=now)
        self.on_alert = on_alert
        self.alpha = alpha_for(self.config.bucket_s, self.config.baseline_half_life_s)
        self._hard = {(h.scope, h.id): h.usd_per_min for h in self.config.hard}

    def items(
        self, subjects: Subjects | Mapping[str, Any], cost_usd: float
    ) -> list[tuple[str, str, str, float]]:
        """``(subject key, scope, id, usd)`` for each watched scope the request has."""
        if not self.config.enabled or not cost_usd > 0:
            return []
        subj = Subjects.of(subjects)
        out = []
        for scope in self.config.scopes:
            sid = getattr(subj, scope)
            if sid is not None:
                out.append((f"{scope}:{sid}", scope, sid, cost_usd))
        return out

    def hard_limit(self, scope: str, sid: str) -> float | None:
        h = self._hard.get((scope, sid))
        return h if h is not None else self._hard.get((scope, EACH))

    async def observe(self, subjects: Subjects | Mapping[str, Any], cost_usd: float) -> list[AnomalyAlert]:
        """Record ``cost_usd`` for the request's key and team; alerts that fired (usually none)."""
        items = self.items(subjects, cost_usd)
        if not items:
            return []
        snaps = await self.store.add_many(
            [(k, usd) for k, _, _, usd in items], self.config.bucket_s, self.alpha
        )
        return await self.evaluate(items, snaps)

    async def evaluate(
        self, items: Sequence[tuple[str, str, str, float]], snaps: Sequence[RateSnapshot]
    ) -> list[AnomalyAlert]:
        alerts: list[AnomalyAlert] = []
        for (key, scope, sid, _), snap in zip(items, snaps):
            verdict = judge(snap, self.config, self.hard_limit(scope, sid))
            if verdict is None:
                continue
            kind, threshold, rate, baseline = verdict
            if not await self.store.claim(key, kind, self.config.cooldown_s):
                continue
            ratio = rate / baseline if baseline > 0 else math.inf
            alert = AnomalyAlert(key, scope, sid, kind, rate, baseline, ratio, threshold, self.now())  # type: ignore[arg-type]
            alerts.append(alert)
            if self.on_alert is not None:
                try:
                    self.on_alert(alert)
                except Exception:
                    import logging

                    logging.getLogger("hyperion.alerts").exception("anomaly alert hook failed")
        return alerts

    async def aclose(self) -> None:
        await self.store.aclose()


__all__ = [
    "AnomalyDetector",
    "AnomalyStore",
    "MemoryAnomalyStore",
    "RedisAnomalyStore",
    "RateState",
    "RateSnapshot",
    "judge",
    "alpha_for",
]
