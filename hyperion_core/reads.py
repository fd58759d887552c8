"""What a gateway shows about itself: routes and their health, keys, governance, audit — and the
spend and audit reads a virtual key may make, each gated by one permission of its principal."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .errors import InvalidRequestError, PermissionDeniedError

if TYPE_CHECKING:
    from .pipeline import Pipeline
    from .routing import Router, RouteState
    from .services import Services
    from .stages import Parts


class Reads:
    """Mixed into :class:`~hyperion_core.gateway.Gateway` (its routes, services and router)."""

    _routes: dict[str, RouteState]
    parts: Parts
    services: Services
    router: Router
    pipeline: Pipeline

    @property
    def routes(self) -> list[str]:
        return list(self._routes)

    def route(self, name: str) -> RouteState:
        return self.parts.route(name)

    @property
    def keys(self) -> Any:
        """The virtual-key store (``await gw.keys.create("name", team=..., roles=[...])``)."""
        return self.services.keys

    @property
    def governance(self) -> Any:
        """Budgets, rate limits, spend and anomaly alerts (None when not configured)."""
        return self.services.governance

    @property
    def audit(self) -> Any:
        """The audit log (None when not configured): ``await gw.audit.query(key_id=...)``."""
        return self.services.audit

    def health(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Breaker state and observed latency of every deployment, by route."""
        now = self.router.clock.now()
        return {
            name: {
                d.name: {
                    **d.breaker.snapshot(now),
                    "ewma_latency_ms": None if d.ewma_latency is None else d.ewma_latency * 1000,
                    "ewma_ttft_ms": None if d.ewma_ttft is None else d.ewma_ttft * 1000,
                }
                for d in rs.deployments
            }
            for name, rs in self._routes.items()
        }

    async def spend_report(self, by: str = "key", since: Any = None, until: Any = None) -> list[Any]:
        """Spend rows grouped by ``key`` | ``team`` | ``user`` | ``route`` | ``day`` | ``deployment``."""
        if self.services.governance is None:
            raise InvalidRequestError("spend is recorded by governance: add a 'governance:' section to the config")
        return await self.services.governance.spend_report(by, since, until)

    async def _scope(self, virtual_key: Any, what: str) -> tuple[Any, str]:
        """The principal behind ``virtual_key`` and how much of ``what`` (spend | audit) it may read:
        ``all``, ``team`` or ``own`` — one permission each (``<what>:read:all`` / ``:team``).
        ``virtual_key`` may also be a :class:`~hyperion_core.governance.keys.Principal` a trusted door
        has already authenticated (the server's admin API: a key, or an OIDC token's claims)."""
        from .governance.keys import Principal

        p = virtual_key if isinstance(virtual_key, Principal) else await self.services.keys.authenticate(virtual_key)
        for scope in ("all", "team"):
            try:
                p.require(f"{what}:read:{scope}")
                return p, scope
            except PermissionDeniedError:
                continue
        return p, "own"

    async def spend_for(self, virtual_key: str, by: str = "key") -> list[Any]:
        """Spend rows as ``virtual_key`` may see them: an admin sees everything, a viewer its own
        team's keys, anyone else only its own key."""
        p, scope = await self._scope(virtual_key, "spend")
        rows = await self.spend_report(by if scope == "all" else "key")
        if scope == "all":
            return rows
        if scope == "team":
            team_keys = {r.key_id for r in await self.keys.list(team=p.team, include_revoked=True)} if p.team else set()
            return [r for r in rows if r.group in team_keys or r.group == p.key_id]
        return [r for r in rows if r.group == p.key_id]

    async def audit_for(self, virtual_key: str, **filters: Any) -> list[Any]:
        """Audit events as ``virtual_key`` may see them (admin: all; viewer: its team; others: its own
        key). Filters as ``AuditQuery`` (key_id, team, user, route, outcome, since, until, limit)."""
        if self.services.audit is None:
            raise InvalidRequestError("no audit log: add an 'audit:' section to the config")
        p, scope = await self._scope(virtual_key, "audit")
        if scope == "team":
            if not p.team:
                raise PermissionDeniedError(f"key '{p.key_id}' has no team to read the audit of")
            if filters.get("team") not in (None, p.team):
                raise PermissionDeniedError(f"key '{p.key_id}' may read team '{p.team}' only")
            filters["team"] = p.team
        elif scope == "own":
            if filters.get("key_id") not in (None, p.key_id):
                raise PermissionDeniedError(f"key '{p.key_id}' may read its own audit rows only")
            filters["key_id"] = p.key_id
        return await self.services.audit.query(**filters)

    async def audit_tail_for(self, virtual_key: Any, *, after: str | None = None, window: int = 1000,
                             wait: float = 0.0, poll: float = 0.2) -> tuple[list[Any], bool]:
        """The newest audit events in write order, as ``virtual_key`` may see them, after the event
        ``after`` (an event id the caller saw last): ``(events, gap)``. ``gap`` is True when ``after``
        is no longer among the newest ``window`` events (some may have been missed: query by time).
        ``wait`` seconds: hold the call until something new was written (long polling)."""
        if self.services.audit is None:
            raise InvalidRequestError("no audit log: add an 'audit:' section to the config")
        p, scope = await self._scope(virtual_key, "audit")
        if scope == "team" and not p.team:
            raise PermissionDeniedError(f"key '{p.key_id}' has no team to read the audit of")
        audit = self.services.audit
        deadline = asyncio.get_running_loop().time() + max(0.0, min(wait, 60.0))
        while True:
            rows = await audit.tail(window)
            ids = [e.id for e in rows]
            gap = after is not None and after not in ids
            new = rows if after is None or gap else rows[ids.index(after) + 1:]
            if scope == "team":
                new = [e for e in new if e.team == p.team]
            elif scope == "own":
                new = [e for e in new if e.key_id == p.key_id]
            if new or gap or asyncio.get_running_loop().time() >= deadline:
                return new, gap
            await asyncio.sleep(poll)


__all__ = ["Reads"]
