"""Per-request planners of the ``policy`` and ``quality`` strategies (``RouteState.planner``).

The Call stage asks a route's planner once per request for the deployments to try, in order, and the
:class:`~hyperion_core.types.RouteDecision` that explains the pick; the router then tries them with the
usual retries, breakers and failover. The decision's reason also goes on the audit event
(``route_rule`` / ``route_reason`` in its metadata).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..routing import DeploymentState, RouteState, arrange
from ..types import RouteDecision
from .config import PolicyRule
from .features import Features, match
from .quality import QualityScores, pick, score_of, task_of

log = logging.getLogger("hyperion.policy")

#: seconds a team's budget utilisation is reused before governance is asked again
BUDGET_TTL_S = 5.0


class BudgetUse:
    """A team's budget utilisation (settled spend / limit, the highest of its team budgets), read
    from governance at most every :data:`BUDGET_TTL_S` seconds per team."""

    def __init__(self, governance: Any, now: Callable[[], float], ttl: float = BUDGET_TTL_S) -> None:
        self.governance = governance
        self.now = now
        self.ttl = ttl
        self._cache: dict[str, tuple[float, float | None]] = {}
        #: governance reads made (a cached answer makes none)
        self.reads = 0

    async def used(self, team: str | None) -> float | None:
        if team is None or self.governance is None:
            return None
        now = self.now()
        hit = self._cache.get(team)
        if hit is not None and now < hit[0]:
            return hit[1]
        self.reads += 1
        try:
            statuses = await self.governance.status({"team": team})
        except Exception as exc:  # noqa: BLE001 - routing never fails on a budget read; the rule does not match
            log.warning("budget of team %r could not be read for policy routing (%s: %s)", team, type(exc).__name__, exc)
            return hit[1] if hit is not None else None
        fractions = [s.spent_usd / s.limit_usd for s in statuses if s.scope == "team" and s.limit_usd > 0]
        value = max(fractions) if fractions else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[team] = (now + self.ttl, value)
        return value


class Planners:
    """What the planners share: the clock, the rng, the runtime quality scores, budget reads."""

    def __init__(self, *, clock: Any, rng: random.Random, scores: QualityScores, governance: Any) -> None:
        self.clock = clock
        self.wall: Callable[[], float] = getattr(clock, "time", time.time)
        self.rng = rng
        self.scores = scores
        self.budgets = BudgetUse(governance, clock.now)
        self._conf: dict[str, dict[str, Mapping[str, float] | None]] = {}  # route -> deployment -> config scores
        #: (route, deployment set, task) -> (scores version, ranking, reason, scores compared): a ranking
        #: is recomputed only when the task is new or the route's runtime scores changed
        self._ranks: dict[tuple[str, str, str], tuple[int, list[DeploymentState], str, dict[str, float]]] = {}

    def attach(self, rs: RouteState) -> None:
        """Give ``rs`` its planner when its strategy reads the request."""
        self._conf[rs.name] = {d.id: d.quality for d in rs.cfg.deployments}
        if rs.cfg.strategy == "policy":
            rs.planner = self._policy(rs)
        elif rs.cfg.strategy == "quality":
            rs.planner = self._quality(rs)

    async def _ranked(
        self, rs: RouteState, deps: Sequence[DeploymentState], req: Any, group: str = ""
    ) -> tuple[list[DeploymentState], str, dict[str, float]]:
        """``deps`` in quality order for the request's task, the reason and the scores compared
        (``group`` names ``deps``: "" for the route's deployments, else the policy rule's name)."""
        task = task_of(req, rs.cfg.quality_tag_prefix)
        runtime = await self.scores.get(rs.name)
        version = self.scores.version(rs.name)
        key = (rs.name, group, task)
        hit = self._ranks.get(key)
        if hit is not None and hit[0] == version:
            return list(hit[1]), hit[2], dict(hit[3])
        conf = self._conf[rs.name]
        scores = {d.name: score_of(conf.get(d.name), runtime.get(d.name), task) for d in deps}
        margin = rs.cfg.quality_margin
        ordered, chosen, best = pick(deps, scores, margin)
        compared = {k: v for k, v in scores.items() if v is not None}
        if chosen is None:
            reason = f"task {task}: no quality scores, failover order"
        else:
            s = scores[chosen.name]
            reason = (f"task {task}: {chosen.name} scores {s:.3g}, within {margin:g} of the best {best:.3g}, "
                      f"cheapest at ${chosen.unit_price * 1e6:.4g}/Mtok")
        if len(self._ranks) >= 4096:  # tasks come from callers: bounded
            self._ranks.clear()
        self._ranks[key] = (version, ordered, reason, compared)
        return list(ordered), reason, dict(compared)

    def _quality(self, rs: RouteState) -> Any:
        async def plan(ctx: Any) -> tuple[list[DeploymentState], RouteDecision]:
            ordered, reason, scores = await self._ranked(rs, rs.deployments, ctx.req)
            ctx.note("route_reason", reason)
            return ordered, RouteDecision(strategy="quality", reason=reason, scores=scores)

        return plan

    def _policy(self, rs: RouteState) -> Any:
        rules: Sequence[PolicyRule] = rs.cfg.policy or ()
        by_name = {d.name: d for d in rs.deployments}
        sets = {r.name: [by_name[n] for n in r.use] for r in rules}
        rests = {r.name: [d for d in rs.deployments if d.name not in r.use] if r.fallback == "rest" else []
                 for r in rules}
        budget = [r.when is not None and r.when.team_budget_used_gte is not None for r in rules]

        async def plan(ctx: Any) -> tuple[list[DeploymentState], RouteDecision]:
            req = ctx.req
            feats = Features(req, self.wall())
            found: tuple[PolicyRule, list[str]] | None = None
            read = False
            for i, rule in enumerate(rules):
                if budget[i] and not read:  # read (cached per team) only when a budget rule is reached
                    read = True
                    feats.budget_used = await self.budgets.used(req.caller.team if req.caller is not None else None)
                why = match(rule.when, feats)
                if why is not None:
                    found = rule, why
                    break
            if found is None:
                reason = "no rule matched: every deployment in failover order"
                ctx.note("route_reason", reason)
                return list(rs.deployments), RouteDecision(strategy="policy", reason=reason)
            rule, why = found
            chosen = sets[rule.name]
            scores = None
            if rule.then == "quality":
                chosen, how, scores = await self._ranked(rs, chosen, req, rule.name)
            else:
                chosen = arrange(rule.then, chosen, self.rng, stream=ctx.stream_mode)
                how = rule.then
            reason = f"rule {rule.name}: " + (", ".join(why) if why else "default") + f" -> {chosen[0].name} ({how})"
            ctx.note("route_rule", rule.name)
            ctx.note("route_reason", reason)
            return [*chosen, *rests[rule.name]], RouteDecision(strategy="policy", reason=reason, rule=rule.name,
                                                               scores=scores)

        return plan


__all__ = ["Planners", "BudgetUse", "BUDGET_TTL_S"]
