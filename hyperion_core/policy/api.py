"""``Gateway`` methods for runtime quality scores (the ``quality`` strategy and ``then: quality``)."""

from __future__ import annotations

import math
from typing import Any

from .._text import suggest
from ..errors import InvalidRequestError, RouteNotFoundError
from .quality import score_of


class QualityControls:
    """Set and read the quality scores routes choose by; runtime scores override config ones."""

    quality_scores: Any
    _routes: dict[str, Any]
    _portal: Any

    def _quality_route(self, route: str, deployment: str | None = None) -> Any:
        rs = self._routes.get(route)
        if rs is None:
            raise RouteNotFoundError(f"unknown route '{route}'" + suggest(route, set(self._routes)), route=route)
        names = [d.name for d in rs.deployments]
        if deployment is not None and deployment not in names:
            raise RouteNotFoundError(
                f"route '{route}' has no deployment '{deployment}'" + (suggest(deployment, names) or f" (deployments: {', '.join(names)})"),
                route=route,
            )
        return rs

    async def aset_quality(self, route: str, deployment: str, task: str, score: float | None) -> None:
        """Set the quality score (0..1) of ``deployment`` on ``route`` for ``task`` (``default``: any
        task without its own), e.g. from an experiment's agreement or judge scores; ``None`` removes it
        (the config's score applies again). With Redis state every process sees it within seconds."""
        self._quality_route(route, deployment)
        if not isinstance(task, str) or not task:
            raise InvalidRequestError(f"task: must be a non-empty string, got {task!r}", route=route)
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                                  or not math.isfinite(score) or not 0 <= score <= 1):
            raise InvalidRequestError(f"score: must be a number from 0 to 1 (or None to remove), got {score!r}", route=route)
        await self.quality_scores.set(route, deployment, task, score)

    def set_quality(self, route: str, deployment: str, task: str, score: float | None) -> None:
        self._portal.call(self.aset_quality(route, deployment, task, score))

    async def aquality(self, route: str, task: str = "default") -> dict[str, float | None]:
        """Each deployment's effective score for ``task`` on ``route`` (runtime over config, the
        task's own over ``default``; None: unscored)."""
        rs = self._quality_route(route)
        runtime = await self.quality_scores.get(route)
        conf = {d.id: d.quality for d in rs.cfg.deployments}
        return {d.name: score_of(conf.get(d.name), runtime.get(d.name), task) for d in rs.deployments}

    def quality(self, route: str, task: str = "default") -> dict[str, float | None]:
        return self._portal.call(self.aquality(route, task))  # type: ignore[no-any-return]


__all__ = ["QualityControls"]
