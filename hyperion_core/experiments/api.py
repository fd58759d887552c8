"""``gateway.experiments``: records, the kill switch, shadow calls, reports and promotion."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from .._text import suggest
from ..errors import InvalidRequestError
from .report import ExperimentReport, build_report
from .stage import run_shadow, shadow_name, split_name
from .store import MemoryStore, Record, RedisStore, Writer

if TYPE_CHECKING:
    from ..pipeline import RequestContext

log = logging.getLogger("hyperion.experiments")
#: seconds a process trusts its copy of the shared kill switches (Redis state)
OFF_REFRESH_S = 2.0


class Experiments:
    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        cfg = gateway.config
        redis = cfg.state.backend == "redis"
        self.store: MemoryStore | RedisStore = (RedisStore(gateway.services.client(), cfg.state.prefix) if redis
                                                else MemoryStore())
        self.writer = Writer(self.store)
        #: deployment name -> "direct" for deployments marked ``direct: true``
        self.labels = {d.id: "direct" for r in cfg.routes.values() for d in r.deployments if d.direct}
        self.names: dict[str, tuple[str, str, Any]] = {}  # experiment -> (kind, route, settings)
        for rname, r in cfg.routes.items():
            if r.split is not None:
                self.names[split_name(rname, r.split)] = ("split", rname, r.split)
            if r.shadow is not None:
                self.names[shadow_name(rname, r.shadow)] = ("shadow", rname, r.shadow)
        #: the wall clock records are stamped with (epoch seconds); replace it to replay history (a
        #: notebook's simulated week) — cost per day in reports follows it
        self.now: Any = time.time
        self.pending = 0
        self.dropped = 0
        self._shadows: set[asyncio.Task[None]] = set()
        self._off: set[str] = set()
        self._off_read = 0.0
        self._refresh: asyncio.Task[None] | None = None

    # -- the request path ---------------------------------------------------------------------------
    def record(self, rec: Record) -> None:
        self.writer.add(rec)

    def mirror(self, name: str, cfg: Any, ctx: RequestContext) -> None:
        """Start a shadow call in the background, or drop it (counted) when ``max_pending`` are in flight."""
        if self.pending >= cfg.max_pending:
            self.dropped += 1
            return
        self.pending += 1
        task = asyncio.ensure_future(run_shadow(self, name, cfg, ctx))
        self._shadows.add(task)
        task.add_done_callback(self._shadow_done)

    def _shadow_done(self, task: asyncio.Task[None]) -> None:
        self.pending -= 1
        self._shadows.discard(task)

    def stopped(self, name: str) -> bool:
        if isinstance(self.store, RedisStore) and time.monotonic() - self._off_read > OFF_REFRESH_S:
            self._off_read = time.monotonic()
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.ensure_future(self._read_off())
        return name in self._off

    async def refresh(self) -> None:
        """Read the shared kill switches now (otherwise every ``OFF_REFRESH_S``)."""
        self._off_read = time.monotonic()
        await self._read_off()

    async def _read_off(self) -> None:
        try:
            self._off = {n for n in self.names if await self.store.is_off(n)}
        except Exception as exc:  # noqa: BLE001 - the last known switches stay in force
            log.warning("experiment switches not refreshed: %s: %s", type(exc).__name__, exc)

    # -- operations -------------------------------------------------------------------------------------
    def _known(self, name: str) -> tuple[str, str, Any]:
        if name not in self.names:
            raise InvalidRequestError(f"unknown experiment '{name}'" + (suggest(name, self.names) or
                                      f" (experiments: {', '.join(self.names) or 'none configured'})"))
        return self.names[name]

    async def stop(self, name: str) -> None:
        """The kill switch: every request of split ``name`` goes to variant A (all processes when state
        is in Redis, within ``OFF_REFRESH_S``)."""
        self._known(name)
        self._off.add(name)
        await self.store.set_off(name, True)

    async def start(self, name: str) -> None:
        self._known(name)
        self._off.discard(name)
        await self.store.set_off(name, False)

    async def flush(self) -> None:
        """Wait for shadow calls in flight and records being written."""
        while self._shadows:
            await asyncio.gather(*list(self._shadows), return_exceptions=True)
        await self.writer.flush()

    async def records(self, name: str) -> list[Record]:
        self._known(name)
        return await self.store.records(name)

    async def report(self, name: str, *, seed: int = 0, resamples: int = 1000) -> ExperimentReport:
        """The side-by-side report of ``name`` (see :func:`~.report.build_report`)."""
        kind, route, _ = self._known(name)
        return build_report(name, kind, route, await self.store.records(name), seed=seed, resamples=resamples)


__all__ = ["Experiments", "OFF_REFRESH_S"]
