"""The ``quality`` strategy: pick the cheapest deployment whose score for the request's task is within
``quality_margin`` of the best, then the others in failover order. Scores per deployment and task
come from config (``deployments[].quality``) and, overriding them, from :class:`QualityScores` (set
at run time, e.g. from experiments; a Redis hash when state is Redis, so every process shares them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..routing import DeploymentState

log = logging.getLogger("hyperion.policy")

#: seconds a process keeps its copy of the shared (Redis) runtime scores before reading them again
REFRESH_S = 2.0
_SEP = "\t"


def task_of(req: Any, tag_prefix: str) -> str:
    """The request's task: metadata ``task`` (the request's, then its caller's), else the first caller
    tag starting with ``tag_prefix`` (``task:code`` -> ``code``), else ``default``."""
    caller = req.caller
    task = req.metadata.get("task") if req.metadata else None
    if task is None and caller is not None and caller.metadata:
        task = caller.metadata.get("task")
    if task is None and caller is not None:
        for t in caller.tags:
            if t.startswith(tag_prefix) and len(t) > len(tag_prefix):
                return t[len(tag_prefix):]
    return str(task) if task is not None else "default"


def score_of(config: Mapping[str, float] | None, runtime: Mapping[str, float] | None, task: str) -> float | None:
    """A deployment's score for ``task``: runtime over config, the task's own over ``default``."""
    for table, key in ((runtime, task), (config, task), (runtime, "default"), (config, "default")):
        if table and key in table:
            return table[key]
    return None


def pick(
    deps: Sequence[DeploymentState], scores: Mapping[str, float | None], margin: float
) -> tuple[list[DeploymentState], DeploymentState | None, float | None]:
    """``deps`` (failover order) reordered: the cheapest (``unit_price``; the earlier on a tie) of the
    scored deployments within ``margin`` of the best score first, then the others in failover order.
    Returns (order, the pick or None when nothing is scored, the best score)."""
    scored = [(d, s) for d in deps if (s := scores.get(d.name)) is not None]
    if not scored:
        return list(deps), None, None
    best = max(s for _, s in scored)
    floor = best - margin - 1e-9
    chosen = min((d for d, s in scored if s >= floor), key=lambda d: d.unit_price)
    return [chosen, *(d for d in deps if d is not chosen)], chosen, best


class QualityScores:
    """Runtime quality scores ``(route, deployment, task) -> score``: in memory, or a Redis hash per
    route (``<prefix>:quality:<route>``, field ``<deployment>\\t<task>``) shared by every process. A
    process re-reads a route's hash at most every :data:`REFRESH_S` seconds (its own writes are seen
    at once); a failed read keeps the last copy."""

    def __init__(self, *, redis: Callable[[], Any] | None = None, prefix: str = "hyperion",
                 now: Callable[[], float] | None = None) -> None:
        self._redis = redis  # builds (or returns) the shared client, on first use
        self._prefix = prefix
        self._now = now or time.monotonic
        self._local: dict[str, dict[str, dict[str, float]]] = {}  # route -> deployment -> task -> score
        self._expires: dict[str, float] = {}
        self._versions: dict[str, int] = {}  # route -> bumped on every change of its runtime scores

    def version(self, route: str) -> int:
        """A number that changes whenever the route's runtime scores (as :meth:`get` returns them) may
        have changed: a planner reuses a ranking computed at the same version."""
        return self._versions.get(route, 0)

    @property
    def shared(self) -> bool:
        return self._redis is not None

    def _key(self, route: str) -> str:
        return f"{self._prefix}:quality:{route}"

    async def set(self, route: str, deployment: str, task: str, score: float | None) -> None:
        """Set (``None``: remove) a runtime score."""
        if self._redis is not None:
            client, field = self._redis(), f"{deployment}{_SEP}{task}"
            if score is None:
                await client.hdel(self._key(route), field)
            else:
                await client.hset(self._key(route), field, repr(float(score)))
        table = self._local.setdefault(route, {}).setdefault(deployment, {})
        self._versions[route] = self._versions.get(route, 0) + 1
        if score is None:
            table.pop(task, None)
        else:
            table[task] = float(score)

    async def get(self, route: str) -> Mapping[str, Mapping[str, float]]:
        """The runtime scores of a route: deployment -> task -> score."""
        if self._redis is not None:
            now = self._now()
            if now >= self._expires.get(route, 0.0):
                self._expires[route] = now + REFRESH_S  # others use the current copy meanwhile
                await self._refresh(route)
        return self._local.get(route) or {}

    async def _refresh(self, route: str) -> None:
        assert self._redis is not None
        try:
            raw = await self._redis().hgetall(self._key(route))
        except Exception as exc:  # noqa: BLE001 - a failed read keeps the last scores; routing goes on
            log.warning("quality scores of route %r could not be read (%s: %s); using the last ones", route,
                        type(exc).__name__, exc)
            return
        table: dict[str, dict[str, float]] = {}
        for k, v in raw.items():
            dep, _, task = (k.decode() if isinstance(k, bytes) else k).partition(_SEP)
            try:
                table.setdefault(dep, {})[task] = float(v)
            except ValueError:
                continue
        if table != self._local.get(route):
            self._local[route] = table
            self._versions[route] = self._versions.get(route, 0) + 1


__all__ = ["QualityScores", "task_of", "score_of", "pick", "REFRESH_S"]
