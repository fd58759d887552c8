"""The :class:`Governance` facade: rate limits and budgets at admission; settle, spend and anomaly watch after."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..clock import SYSTEM, Clocks
from ..errors import ConfigError
from .alerts import (
    AlertDispatcher,
    AlertSink,
)
from .anomaly import AnomalyDetector, MemoryAnomalyStore, RedisAnomalyStore
from .budgets import (
    AlreadyHeld,
    BudgetLedger,
    BudgetStatus,
    MemoryBudgetStore,
    RedisBudgetStore,
    Refused,
    Reservation,
    Settlement,
)
from .clock import RedisClock
from .config import (
    GovernanceConfig,
    Subjects,
)
from .ops import Op, Runner
from .ratelimit import MemoryRateStore, RateLimiter, RedisRateStore
from .spend import SpendRow


@dataclass(slots=True)
class Admission:
    """A request let in by :meth:`Governance.admit`; hand it to ``settle`` or ``release`` once."""

    request_id: str
    subjects: Subjects
    tokens_estimate: int
    reservation: Reservation
    done: bool = False
    #: values of the keys passed as ``reads=`` to :meth:`Governance.admit`, read in its round trip
    reads: tuple[Any, ...] = ()


class Governance:
    """Rate limits + budgets at admission; budgets, spend, TPM correction and anomaly watch at settle.

    One wall clock rules a governance (Unix seconds: budget periods, spend days, reservation expiry
    and anomaly buckets). With the memory backend it is ``now`` (default ``time.time``). With the
    Redis backend it is the Redis server's ``TIME``: scripts read it, and periods and spend days are
    computed from :class:`~.clock.RedisClock` (``self.clock``), the host clock corrected by its
    measured offset to the server, so skewed hosts still agree. An explicit ``now`` (tests, replays)
    replaces it in the scripts too; ``redis_clock`` replaces it in every script, rate limits included
    (tests only). ``monotonic`` is the memory rate limiter's clock. ``clock`` (a
    :class:`~hyperion_core.clock.ManualClock` in tests) supplies both host readings — ``time()`` for
    ``now`` (the Redis backend's host clock, corrected to Redis), ``now()`` for ``monotonic`` —
    unless those are given; default: the system clock. ``redis`` is a ``redis.asyncio``
    client to share (otherwise one is built from ``redis_url``: one pool). ``sinks`` replaces the
    configured alert sinks.
    """

    def __init__(
        self,
        config: GovernanceConfig | Mapping[str, Any] | None = None,
        *,
        redis: Any = None,
        now: Callable[[], float] | None = None,
        monotonic: Callable[[], float] | None = None,
        sinks: Iterable[AlertSink] | None = None,
        redis_clock: Callable[[], float] | None = None,
        clock: Clocks | None = None,
    ) -> None:
        host = clock if clock is not None else SYSTEM
        if monotonic is None:
            monotonic = host.now
        cfg = (
            config if isinstance(config, GovernanceConfig) else GovernanceConfig.model_validate(config or {})
        )
        self.config = cfg
        self.alerts = AlertDispatcher(sinks) if sinks is not None else AlertDispatcher.from_config(cfg.alerts)
        self._client = None
        self._owns_client = False
        self._scripts = None
        #: the Redis backend's clock synchronised to the server (None: memory backend or injected ``now``)
        self.clock: RedisClock | None = None
        if cfg.backend == "redis":
            from ._lua import Scripts

            if redis is None:
                if not cfg.redis_url:
                    raise ConfigError("governance.redis_url: required for backend 'redis' (or pass a client)")
                from ..redis_client import state_client

                redis = state_client(cfg.redis_url, max_connections=cfg.max_connections, pool_timeout=cfg.pool_timeout,
                                     socket_timeout=cfg.socket_timeout)
                self._owns_client = True
            self._client = redis
            self._scripts = Scripts(redis)
            wall = redis_clock if redis_clock is not None else now  # None: Redis TIME
            if now is None:
                now = self.clock = RedisClock(redis, local=host.time, monotonic=host.now)
            kw = {"prefix": cfg.key_prefix, "clock": wall}
            budget_store: Any = RedisBudgetStore(self._scripts, retention_days=cfg.spend_retention_days, **kw)
            rate_store: Any = RedisRateStore(self._scripts, prefix=cfg.key_prefix, clock=redis_clock)
            anomaly_store: Any = RedisAnomalyStore(self._scripts, **kw)
        else:
            if now is None:
                now = host.time
            budget_store = MemoryBudgetStore(now=now, retention_days=cfg.spend_retention_days)
            rate_store = MemoryRateStore(now=monotonic)
            anomaly_store = MemoryAnomalyStore(now=now)
        self.ledger = BudgetLedger(
            cfg.budgets,
            store=budget_store,
            now=now,
            tz=cfg.timezone,
            reservation_ttl_s=cfg.reservation_ttl_s,
            on_alert=self.alerts.emit,
            spend_retention_days=cfg.spend_retention_days,
        )
        #: runs every store's ops: in process (memory), pipelined in one round trip (Redis)
        self.runner: Runner = budget_store.runner
        self.limiter = RateLimiter(cfg.rate_limits, store=rate_store)
        self.anomaly = AnomalyDetector(cfg.anomaly, store=anomaly_store, now=now, on_alert=self.alerts.emit)

    # -- the request path ----------------------------------------------------------------------------
    async def admit(
        self,
        request_id: str,
        subjects: Subjects | Mapping[str, Any],
        *,
        tokens_estimate: int = 0,
        cost_estimate_usd: float = 0.0,
        reads: Sequence[str] = (),
        hold_s: float | None = None,
    ) -> Admission:
        """Rate limits (``tokens_estimate`` = prompt + max output tokens) and a budget reservation of
        ``cost_estimate_usd`` (the worst case), held for ``hold_s`` seconds (at least
        ``reservation_ttl_s``: give the request's whole lifetime, so a long stream never loses its hold
        while it runs). Raises :class:`RateLimitedError` or :class:`BudgetExceededError` having taken
        nothing."""
        subj = Subjects.of(subjects)
        if self.clock is not None:
            await self.clock.refresh()
        limits, costs = self.limiter.prepare(subj, tokens_estimate)
        res = self.ledger.prepare(request_id, subj, cost_estimate_usd)
        rl, bs = self.limiter.store, self.ledger.store
        # both halves in one batch (Redis: one round trip)
        ops: list[Op[Any]] = [rl.acquire_op(limits, costs)] if limits else []
        ttl = self.ledger.ttl_s if hold_s is None else max(self.ledger.ttl_s, hold_s)
        ops.append(bs.reserve_op(request_id, res.amount_n, res.budgets, ttl))
        out = await self.runner.run(ops, reads=reads) if reads else await self.runner.run(ops)
        budget = out[-1]
        # all or nothing: undo whichever half succeeded if the other refused
        if limits:
            rate = out[len(reads)]
            if rate is not None:
                if isinstance(budget, Refused):
                    self.ledger.refuse(res, budget)  # a budget refusal outlasts a rate limit
                if not isinstance(budget, AlreadyHeld):
                    await bs.release(request_id, res.budgets)
                self.limiter.finish(limits, rate, tokens_estimate, request_id=request_id, route=subj.route)
            elif isinstance(budget, Refused):
                await rl.adjust(limits, [-c for c in costs])
        res = self.ledger.finish(res, budget)
        return Admission(request_id, subj, tokens_estimate, res, reads=tuple(out[: len(reads)]) if reads else ())

    async def settle(
        self,
        admission: Admission,
        actual_usd: float,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        deployment: str | None = None,
        model: str | None = None,
        saved_usd: float = 0.0,
    ) -> Settlement:
        """Commit the actual cost (exactly once), record spend, correct TPM by actual - estimated
        tokens, and feed the anomaly watch. Alerts go to the sinks and are returned."""
        if admission.done:
            return Settlement(False, "already_settled")
        admission.done = True
        res, subj = admission.reservation, admission.subjects
        if self.clock is not None:
            await self.clock.refresh()
        actual_n, w = self.ledger.settle_parts(
            res,
            actual_usd,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            deployment=deployment,
            model=model,
            saved_usd=saved_usd,
        )
        delta = prompt_tokens + completion_tokens - admission.tokens_estimate
        tpm = [lim for lim in self.limiter.book.applied(subj) if lim.kind == "tpm"] if delta else []
        items = self.anomaly.items(subj, actual_usd)
        # budget + spend, the TPM correction and the anomaly buckets in one batch (Redis: one round trip)
        ops: list[Op[Any]] = [self.ledger.store.settle_op(res.request_id, res.budgets, actual_n, w)]
        if tpm:
            ops.append(self.limiter.store.adjust_op(tpm, [float(delta)] * len(tpm)))
        ops += self.anomaly.store.add_ops(
            [(k, usd) for k, _, _, usd in items], self.anomaly.config.bucket_s, self.anomaly.alpha
        )
        out = await self.runner.run(ops)
        settlement = self.ledger.settled(res, out[0])
        snaps = out[len(out) - len(items) :] if items else []
        if items:
            await self.anomaly.evaluate(items, snaps)
        return settlement

    async def release(self, admission: Admission) -> bool:
        """The request failed before anything was billed: give the budget hold and the estimated
        tokens back (its RPM slot stays used — it was sent). Once per admission."""
        if admission.done:
            return False
        admission.done = True
        released = await self.ledger.release(admission.reservation)
        await self.limiter.adjust(admission.subjects, -admission.tokens_estimate)
        return released

    # -- reads and admin -------------------------------------------------------------------------------
    async def status(self, subjects: Subjects | Mapping[str, Any] | None = None) -> list[BudgetStatus]:
        return await self.ledger.status(subjects)

    async def reset(self, scope: str, subject: str | None = None, period: str | None = None) -> list[BudgetStatus]:
        """See :meth:`BudgetLedger.reset` (the admin API's ``POST /admin/v1/budgets/reset``)."""
        return await self.ledger.reset(scope, subject, period)

    async def spend_report(self, by: str = "key", since: Any = None, until: Any = None) -> list[SpendRow]:
        return await self.ledger.spend_report(by, since, until)

    async def record_saving(
        self, subjects: Subjects | Mapping[str, Any], saved_usd: float, **kw: Any
    ) -> None:
        await self.ledger.record_saving(subjects, saved_usd, **kw)

    async def aclose(self) -> None:
        await self.ledger.store.aclose()
        await self.alerts.aclose()
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None


__all__ = ["Governance", "Admission"]
