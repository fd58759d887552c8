"""Alert records and the sinks they go to.

Two frozen records — :class:`BudgetAlert` (a soft threshold reached, or a budget refusing requests)
and :class:`AnomalyAlert` (a spend-rate spike or hard rate limit) — go through one
:class:`AlertDispatcher` to any number of sinks implementing :class:`AlertSink`:

* :class:`LogSink` — a ``WARNING`` on the ``hyperion.alerts`` logger;
* :class:`WebhookSink` — a JSON ``POST`` per alert from a background thread, retried with backoff;
* :class:`CallbackSink` — your function (sync, or async: scheduled on the running loop).

``emit`` never blocks and never raises: an alert is a side effect of a request and must not fail
it. A sink that fails is logged; a webhook that is down drops the oldest alerts once its bounded
queue is full (counted in ``stats``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, runtime_checkable

log = logging.getLogger("hyperion.alerts")


def fmt_usd(x: float) -> str:
    """``$4.98``; amounts under a cent keep two significant digits (``$0.00042``)."""
    if x == 0 or abs(x) >= 0.01:
        return f"${x:,.2f}"
    return f"${x:.2g}" if abs(x) >= 1e-4 else f"${x:.2e}"


@dataclass(slots=True, frozen=True)
class BudgetAlert:
    """A budget reached a soft threshold (``kind="threshold"``, once per threshold per period) or
    refused its first request of the period (``kind="exhausted"``, once per period)."""

    budget: str  # e.g. "team 'ml' daily budget"
    scope: str
    id: str | None
    period: str
    period_id: str
    kind: Literal["threshold", "exhausted"]
    threshold: float | None  # the fraction reached (threshold); None for exhausted
    spent_usd: float
    limit_usd: float
    time: float  # Unix seconds

    @property
    def message(self) -> str:
        if self.kind == "exhausted":
            return (
                f"{self.budget} ({self.period_id}) is refusing requests: spent {fmt_usd(self.spent_usd)} "
                f"of {fmt_usd(self.limit_usd)}"
            )
        return (
            f"{self.budget} ({self.period_id}) reached {self.threshold:.0%}: spent {fmt_usd(self.spent_usd)} "
            f"of {fmt_usd(self.limit_usd)}"
        )


@dataclass(slots=True, frozen=True)
class AnomalyAlert:
    """A subject's spend rate is ``ratio`` times its own baseline (``kind="spike"``) or above a hard
    limit (``kind="hard_limit"``). Rates are USD per minute over the last minute."""

    subject: str  # e.g. "key:k_abc"
    scope: str
    id: str
    kind: Literal["spike", "hard_limit"]
    rate_usd_per_min: float
    baseline_usd_per_min: float
    ratio: float  # rate / baseline; inf when the baseline is 0
    threshold: float  # the multiplier (spike) or USD per minute (hard_limit) that was reached
    time: float  # Unix seconds

    @property
    def message(self) -> str:
        ratio = "inf" if math.isinf(self.ratio) else f"{self.ratio:.1f}"
        if self.kind == "hard_limit":
            return (
                f"{self.scope} '{self.id}' spends {fmt_usd(self.rate_usd_per_min)}/min, above the hard limit "
                f"{fmt_usd(self.threshold)}/min (baseline {fmt_usd(self.baseline_usd_per_min)}/min)"
            )
        return (
            f"{self.scope} '{self.id}' spends {fmt_usd(self.rate_usd_per_min)}/min, {ratio}x its baseline "
            f"{fmt_usd(self.baseline_usd_per_min)}/min (alerting at {self.threshold:g}x)"
        )


Alert = BudgetAlert | AnomalyAlert


def alert_dict(alert: Alert) -> dict[str, Any]:
    """JSON-ready: the record's fields plus ``type`` (``budget`` | ``anomaly``) and ``message``."""
    d = asdict(alert)
    for k, v in d.items():
        if isinstance(v, float) and math.isinf(v):
            d[k] = None
    d["type"] = "budget" if isinstance(alert, BudgetAlert) else "anomaly"
    d["message"] = alert.message
    return d


@runtime_checkable
class AlertSink(Protocol):
    def emit(self, alert: Alert) -> None:
        """Hand the alert over without blocking; never raise."""

    async def aclose(self) -> None: ...


class LogSink:
    def __init__(self, logger: logging.Logger | None = None, level: int = logging.WARNING) -> None:
        self.logger = logger or log
        self.level = level

    def emit(self, alert: Alert) -> None:
        self.logger.log(self.level, "%s", alert.message, extra={"alert": alert_dict(alert)})

    async def aclose(self) -> None:
        return None


class CallbackSink:
    """Calls ``fn(alert)``. A coroutine function is scheduled on the running event loop (or, with
    none running, run to completion in a fresh one)."""

    def __init__(self, fn: Callable[[Alert], Any]) -> None:
        self.fn = fn
        self._tasks: set[asyncio.Task[Any]] = set()

    def emit(self, alert: Alert) -> None:
        result = self.fn(alert)
        if asyncio.iscoroutine(result):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                asyncio.run(result)
                return
            task = loop.create_task(result)
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("alert callback %r failed: %r", self.fn, task.exception())

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class WebhookSink:
    """POSTs each alert as JSON to ``url`` from its own background thread and event loop, so a slow
    or dead endpoint never holds up a request. Failed posts (connection errors, timeouts, 429, 5xx)
    are retried ``retries`` times after ``backoff_s``, doubling up to ``backoff_max_s`` (test mode:
    no sleeps); other 4xx answers are not retried. ``stats``: ``sent``, ``failed``, ``dropped``.

    Units: seconds for ``backoff_s``, ``backoff_max_s`` and ``timeout_s`` (per attempt, > 0);
    ``queue_size`` alerts (>= 1; when full the oldest is dropped).
    """

    def __init__(
        self,
        url: str,
        *,
        retries: int = 3,
        backoff_s: float = 0.5,
        backoff_max_s: float = 10.0,
        timeout_s: float = 5.0,
        headers: dict[str, str] | None = None,
        queue_size: int = 1000,
    ) -> None:
        self.url = url
        self.retries = retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.headers = {"content-type": "application/json", **(headers or {})}
        self._queue: collections.deque[Alert] = collections.deque(maxlen=queue_size)
        self.stats = {"sent": 0, "failed": 0, "dropped": 0}
        self._portal: Any = None
        self._wake: asyncio.Event | None = None
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._session: Any = None

    def emit(self, alert: Alert) -> None:
        try:
            if len(self._queue) == self._queue.maxlen:
                self.stats["dropped"] += 1
                log.warning("alert webhook %s: queue full, dropping the oldest alert", self.url)
            self._queue.append(alert)
            self._start().call_soon_threadsafe(self._wake_up)
        except Exception:  # pragma: no cover - never fail a request for an alert
            log.exception("alert webhook %s: could not queue an alert", self.url)

    def _start(self) -> asyncio.AbstractEventLoop:
        if self._portal is None:
            from .._portal import Portal

            self._portal = Portal("hyperion-alert-webhook")
            asyncio.run_coroutine_threadsafe(self._run(), self._portal.loop)
        return self._portal.loop

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        import aiohttp

        self._task = asyncio.current_task()
        self._wake = asyncio.Event()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        try:
            while True:
                while self._queue:
                    self._busy = True
                    try:
                        await self._post(self._queue.popleft())
                    finally:
                        self._busy = False
                self._wake.clear()
                if not self._queue:
                    await self._wake.wait()
        finally:
            await self._session.close()

    async def _post(self, alert: Alert) -> None:
        import aiohttp
        import orjson

        from ..clock import SystemClock

        body = orjson.dumps(alert_dict(alert))
        clock = SystemClock()
        for attempt in range(self.retries + 1):
            try:
                async with self._session.post(self.url, data=body, headers=self.headers) as resp:
                    if resp.status < 300:
                        self.stats["sent"] += 1
                        return
                    problem = f"HTTP {resp.status}"
                    if resp.status < 500 and resp.status != 429:
                        break
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                await clock.sleep(min(self.backoff_max_s, self.backoff_s * 2**attempt))
        self.stats["failed"] += 1
        log.warning(
            "alert webhook %s: giving up on an alert after %d attempt(s): %s", self.url, attempt + 1, problem
        )

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait (from any event loop) until every queued alert was sent or given up on."""
        deadline = time.monotonic() + timeout
        while (self._queue or self._busy) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    def close(self) -> None:
        """Stop the worker (alerts still queued are dropped; ``flush`` first to send them)."""
        portal = self._portal
        if portal is None:
            return
        self._portal = None

        async def stop() -> None:
            task = self._task
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        try:
            portal.close(stop())
        except Exception:  # pragma: no cover
            log.exception("alert webhook %s: error while closing", self.url)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)


class AlertDispatcher:
    """Fans each alert out to every sink; one failing sink neither raises nor stops the others."""

    def __init__(self, sinks: Iterable[AlertSink] = ()) -> None:
        self.sinks: list[AlertSink] = list(sinks)

    @classmethod
    def from_config(cls, configs: Iterable[Any]) -> AlertDispatcher:
        from .config import resolve_callback

        sinks: list[AlertSink] = []
        for c in configs:
            if c.type == "log":
                sinks.append(LogSink())
            elif c.type == "webhook":
                sinks.append(
                    WebhookSink(
                        c.url,
                        retries=c.retries,
                        backoff_s=c.backoff_s,
                        backoff_max_s=c.backoff_max_s,
                        timeout_s=c.timeout_s,
                        headers=dict(c.headers),
                        queue_size=c.queue_size,
                    )
                )
            else:
                sinks.append(CallbackSink(resolve_callback(c.callback)))
        return cls(sinks)

    def emit(self, alert: Alert) -> None:
        for sink in self.sinks:
            try:
                sink.emit(alert)
            except Exception:
                log.exception("alert sink %r failed", sink)

    def emit_all(self, alerts: Iterable[Alert]) -> None:
        for a in alerts:
            self.emit(a)

    async def aclose(self) -> None:
        for sink in self.sinks:
            try:
                await sink.aclose()
            except Exception:  # pragma: no cover
                log.exception("alert sink %r failed to close", sink)


__all__ = [
    "Alert",
    "BudgetAlert",
    "AnomalyAlert",
    "AlertSink",
    "LogSink",
    "CallbackSink",
    "WebhookSink",
    "AlertDispatcher",
    "alert_dict",
    "fmt_usd",
]
