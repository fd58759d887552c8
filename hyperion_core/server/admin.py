"""The admin API, ``/admin/v1/...``: keys, spend, audit, routes and their health, budgets.

Callers authenticate with a virtual key (``Authorization: Bearer hk-...``) or, when the server has
``ServerSettings.oidc``, an OIDC token of the configured issuer (``server/oidc.py``: claims mapped to
role and team). What they may do is the library's RBAC (``governance.keys.ROLES``), scoped to their
team when they have one:

=================================  =====================================================================
``POST /admin/v1/keys``            create (``keys:manage``); a team admin creates keys of its own team
``GET  /admin/v1/keys``            list (``keys:manage``, or a viewer: its team's keys)
``POST /admin/v1/keys/{id}/revoke``  revoke (``keys:manage``; a team admin: its team's keys)
``POST /admin/v1/keys/{id}/rotate``  rotate: a new key, the old one revoked (same scope)
``GET  /admin/v1/spend?by=key``    spend rows as the key may see them (admin: all; viewer: its team;
                                   member: its own key)
``GET  /admin/v1/audit?...``       audit events (same scopes; filters key_id, team, user, route,
                                   outcome, request_id, since, until, limit)
``GET  /admin/v1/audit/tail``      events written after ``?after=<event id>`` in write order (same scopes),
                                   long-polled with ``&wait=<s>``; ``next`` is the following cursor
``GET  /admin/v1/audit/verify``    the audit hash chain checked (``audit:read:all``)
``GET  /admin/v1/routes``          routes, their deployments and health (breaker, latency EWMA) — the
                                   routes the key may call (admin and viewer: all)
``GET  /admin/v1/budgets``         budget status (admin: all; others: the budgets that apply to them)
``POST /admin/v1/budgets/reset``   ``{"scope", "id", "period"?}``: spent back to 0 in the current period,
                                   alerts re-armed, reservations in flight kept (``budgets:manage``; a
                                   team's admin: its team or its keys). Logged with who and how much
``GET  /admin/v1/cache``           the response cache's counters in this worker, L1 sizes per route
``POST /admin/v1/cache/invalidate``  ``{"namespace": ...}``: that namespace's entries unreachable in every
                                   process (``keys:manage`` without a team)
=================================  =====================================================================

Errors are OpenAI-style JSON (``{"error": {...}}``) with the statuses of the model endpoints (401,
403, 400, 404). Keys are returned once, on create and rotate; listings never carry a secret or hash.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import InvalidKeyError, InvalidRequestError, PermissionDeniedError
from ..governance.keys import Principal
from ..types import new_request_id
from ..wire import JSON_CONTENT_TYPE
from ..wire import openai as openai_wire
from .app import credential
from .oidc import looks_like_jwt

if TYPE_CHECKING:
    from .app import Door

log = logging.getLogger("hyperion.server")

_AUDIT_FILTERS = ("key_id", "team", "user", "route", "outcome", "request_id")


class AdminNotFoundError(InvalidRequestError):
    """The admin API has no such object in the caller's scope (answered 404)."""


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data, default=_default), status, media_type=JSON_CONTENT_TYPE)


def _default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        to_dict = getattr(obj, "to_dict", None)
        return to_dict() if to_dict else dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class Admin:
    def __init__(self, door: Door) -> None:
        self.door = door
        self.gw = door.gw
        self.oidc = door.oidc

    async def principal(self, request: Request) -> tuple[Principal, Principal]:
        """Who calls: a virtual key's principal, or an OIDC token's (when the server accepts them).
        (Returned twice for the call sites that pass "who" to the gateway's scoped reads.)"""
        token = credential(request)
        if token is None:
            raise InvalidKeyError("the admin API needs a virtual key ('Authorization: Bearer hk-...')"
                                  + (" or an OIDC token" if self.oidc is not None else ""))
        if self.oidc is not None and looks_like_jwt(token):
            p = await self.oidc.principal(token)
        else:
            p = await self.gw.keys.authenticate(token)
        return p, p

    async def body(self, request: Request) -> dict[str, Any]:
        raw = await self.door.body(request)
        if not raw:
            return {}
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequestError("the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidRequestError("the request body must be a JSON object")
        return data

    def fail(self, exc: BaseException) -> Response:
        resp = self.door.error(openai_wire, "admin", exc, new_request_id(), "")
        if isinstance(exc, AdminNotFoundError):
            resp.status_code = 404
        return resp

    @staticmethod
    def team_scope(p: Principal, permission: str = "keys:manage") -> str | None:
        """None: every team; else the one team ``p`` may act on."""
        p.require(permission)
        if p.team is None:
            return None
        return p.team

    async def _managed(self, p: Principal, key_id: str) -> Any:
        team = self.team_scope(p)
        rec = await self.gw.keys.get(key_id)
        if rec is None or (team is not None and rec.team != team):
            raise AdminNotFoundError(f"no key with id '{key_id}'" + (f" in team '{team}'" if team else ""))
        return rec

    # -- keys ----------------------------------------------------------------------------------------
    async def create_key(self, request: Request) -> Response:
        try:
            _, p = await self.principal(request)
            team_only = self.team_scope(p)
            data = await self.body(request)
            name = data.get("name")
            if not isinstance(name, str) or not name:
                raise InvalidRequestError("name: required (a string naming the key)")
            team = data.get("team", team_only)
            if team_only is not None and team != team_only:
                raise PermissionDeniedError(f"key '{p.key_id}' may create keys of team '{team_only}' only")
            roles = data.get("roles") or ["member"]
            routes = data.get("routes") or ["*"]
            for field, value in (("roles", roles), ("routes", routes)):
                if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                    raise InvalidRequestError(f"{field}: must be a list of strings")
            expires_in = data.get("expires_in")
            if expires_in is not None and type(expires_in) not in (int, float):
                raise InvalidRequestError("expires_in: must be a number of seconds")
            metadata = data.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise InvalidRequestError("metadata: must be an object")
            key, rec = await self.gw.keys.create(
                name, team=team, user=data.get("user"), roles=roles, routes=routes,
                metadata={str(k): str(v) for k, v in metadata.items()}, expires_in=expires_in,
            )
            return _json({"key": key, **rec.public()}, 201)
        except Exception as exc:  # noqa: BLE001 - every failure is an answer in the API's error format
            return self.fail(exc)

    async def list_keys(self, request: Request) -> Response:
        try:
            _, p = await self.principal(request)
            try:
                team = self.team_scope(p)
            except PermissionDeniedError:
                team = self.team_scope(p, "audit:read:team")  # a viewer lists its team's keys
                if team is None:
                    raise
            include = request.query_params.get("include_revoked", "").lower() in ("1", "true", "yes")
            want = request.query_params.get("team")
            if team is not None and want not in (None, team):
                raise PermissionDeniedError(f"key '{p.key_id}' may list team '{team}' only")
            rows = await self.gw.keys.list(team=team or want, include_revoked=include)
            return _json({"data": [r.public() for r in rows]})
        except Exception as exc:  # noqa: BLE001 - every failure is an answer in the API's error format
            return self.fail(exc)

    async def revoke_key(self, request: Request) -> Response:
        try:
            _, p = await self.principal(request)
            rec = await self._managed(p, request.path_params["key_id"])
            rec = await self.gw.keys.revoke(rec.key_id)
            self.gw.services.records.pop(rec.key_id, None)
            return _json(rec.public())
        except Exception as exc:  # noqa: BLE001 - every failure is an answer in the API's error format
            return self.fail(exc)

    async def rotate_key(self, request: Request) -> Response:
        try:
            _, p = await self.principal(request)
            rec = await self._managed(p, request.path_params["key_id"])
            key, new = await self.gw.keys.rotate(rec.key_id)
            self.gw.services.records.pop(rec.key_id, None)
            return _json({"key": key, **new.public(), "replaces": rec.key_id}, 201)
        except Exception as exc:  # noqa: BLE001 - every failure is an answer in the API's error format
            return self.fail(exc)

    # -- reads ----------------------------------------------------------------------------------------
    async def spend(self, request: Request) -> Response:
        try:
            key, _ = await self.principal(request)
            rows = await self.gw.spend_for(key, request.query_params.get("by", "key"))
            return _json({"data": rows})
        except Exception as exc:  # noqa: BLE001 - every failure is an answer in the API's error format
            return self.fail(exc)

    async def audit(self, request: Request) -> Response:
        try:
            key, _ = await self.principal(request)
            q = request.query_params
            filters: dict[str, Any] = {k: q[k] for k in _AUDIT_FILTERS if q.get(k)}
            for name in ("since", "until"):
                if q.get(name):
                    filters[name] = _number(name, q[name], float)
            filters["limit"] = _number("limit", q.get("limit", "100"), int)
            events = await self.gw.audit_for(key, **filters)
            return _json({"data": [e.to_dict() for e in events]})
        except Exception as exc:  # noqa: BLE001 - every failure is an answer in the API's error format
            return self.fail(exc)

    async def audit_tail(self, request: Request) -> Response:
        """``GET /admin/v1/audit/tail?after=<event id>&wait=<s>&n=<window>``: events written after
        ``after`` (in write order, scoped like ``/audit``); ``next`` is the cursor for the next call."""
        try:
            key, _ = await self.principal(request)
            q = request.query_params
            window = _number("n", q.get("n", "1000"), int)
            if not 1 <= window <= 10_000:
                raise InvalidRequestError("n: the window must be between 1 and 10000 events")
            events, gap = await self.gw.audit_tail_for(key, after=q.get("after") or None, window=window,
                                                       wait=_number("wait", q.get("wait", "0"), float))
            cursor = events[-1].id if events else q.get("after")
            return _json({"data": [e.to_dict() for e in events], "next": cursor, "gap": gap})
        except Exception as exc:  # noqa: BLE001 - every failure is an answer in the API's error format
            return self.fail(exc)

    async def audit_verify(self, request: Request) -> Response:
        try:
            _, p = await self.principal(request)
            p.require("audit:read:all")
            if self.gw.audit is None:
                raise InvalidRequestError("no audit log: add an 'audit:' section to the config")
            await self.gw.audit.aflush()
            report = await self.gw.audit.verify()
            return _json({"ok": report.ok, "checked": report.checked, "first_bad_index": report.first_bad_index,
                          "reason": report.reason}, 200 if report.ok else 409)
        except Exception as exc:  # noqa: BLE001 - every failure is an answer in the API's error format
            return self.fail(exc)

    async def routes(self, request: Request) -> Response:
        try:
            _, p = await self.principal(request)
            see_all = bool({"spend:read:team", "keys:manage"} & p.permissions)
            health = self.gw.health()
            out = []
            for name in self.gw.routes:
                if not (see_all or "*" in p.routes or name in p.routes):
                    continue
                rs = self.gw.route(name)
                out.append({"route": name, "kind": rs.cfg.kind, "strategy": rs.cfg.strategy,
                            "deployments": [{"name": d, **snap} for d, snap in health.get(name, {}).items()]})
            return _json({"data": out})
        except Exception as exc:  # noqa: BLE001 - every failure is an answer in the API's error format
            return self.fail(exc)

    async def budgets(self, request: Request) -> Response:
        try:
            _, p = await self.principal(request)
            gov = self.gw.governance
            if gov is None:
                raise InvalidRequestError("no budgets: add a 'governance:' section to the config")
            if "spend:read:all" in p.permissions and p.team is None:
                rows = await gov.status(None)
            else:
                rows = await gov.status({"key": p.key_id, "team": p.team, "user": p.user})
            return _json({"data": [{**dataclasses.asdict(r), "remaining_usd": r.remaining_usd} for r in rows]})
        except Exception as exc:  # noqa: BLE001 - every failure is an answer in the API's error format
            return self.fail(exc)

    async def reset_budget(self, request: Request) -> Response:
        """``POST /admin/v1/budgets/reset`` ``{"scope": "team", "id": "ml", "period": "daily"}``
        (``budgets:manage``; a team's admin: its own team, or a key of its team)."""
        try:
            _, p = await self.principal(request)
            p.require("budgets:manage")
            gov = self.gw.governance
            if gov is None:
                raise InvalidRequestError("no budgets: add a 'governance:' section to the config")
            data = await self.body(request)
            scope, subject, period = data.get("scope"), data.get("id"), data.get("period")
            for name, value in (("scope", scope), ("id", subject), ("period", period)):
                if value is not None and not isinstance(value, str):
                    raise InvalidRequestError(f"{name}: must be a string")
            if not isinstance(scope, str):
                raise InvalidRequestError("scope: required (key, team, user or global)")
            if p.team is not None:
                own = (scope == "team" and subject == p.team) or (
                    scope == "key" and isinstance(subject, str) and (await self._managed(p, subject)) is not None)
                if not own:
                    raise PermissionDeniedError(f"key '{p.key_id}' may reset the budgets of team '{p.team}' only")
            before = await gov.reset(scope, subject, period)
            log.warning("budget reset by %s: %s", p.key_id, ", ".join(f"{b.budget} (spent {b.spent_usd:.6g} USD)"
                                                                       for b in before))
            return _json({"data": [{**dataclasses.asdict(b), "spent_before_usd": b.spent_usd} for b in before]})
        except Exception as exc:  # noqa: BLE001 - every failure is an answer in the API's error format
            return self.fail(exc)

    async def cache(self, request: Request) -> Response:
        """``GET /admin/v1/cache``: the response cache's counters (this worker) and per-route L1 sizes
        (``spend:read:team`` or ``keys:manage``)."""
        try:
            _, p = await self.principal(request)
            if not {"spend:read:team", "keys:manage"} & p.permissions:
                raise PermissionDeniedError(f"key '{p.key_id}' may not read cache statistics")
            cache = self.gw.cache
            if cache is None:
                return _json({"enabled": False, "routes": {}})
            routes = {}
            for name in self.gw.routes:
                l1 = cache.l1(name)
                if l1 is not None:
                    routes[name] = {"l1_entries": len(l1)}
            return _json({"enabled": True, **cache.metrics.as_dict(), "routes": routes})
        except Exception as exc:  # noqa: BLE001 - every failure is an answer in the API's error format
            return self.fail(exc)

    async def cache_invalidate(self, request: Request) -> Response:
        """``POST /admin/v1/cache/invalidate`` ``{"namespace": "faq"}`` (``""``: requests without a
        namespace): its entries become unreachable in every process (``keys:manage``, no team)."""
        try:
            _, p = await self.principal(request)
            if self.team_scope(p) is not None:
                raise PermissionDeniedError(f"key '{p.key_id}' is scoped to team '{p.team}': cache namespaces "
                                            "are shared by every team")
            ns = (await self.body(request)).get("namespace")
            if not isinstance(ns, str):
                raise InvalidRequestError("namespace: required, a string ('' for requests that set none)")
            if self.gw.cache is None:
                raise InvalidRequestError("no response cache: no route has a 'cache:' section")
            gen = await self.gw.cache.generations.invalidate(ns)
            log.warning("cache namespace %r invalidated by %s (generation %d)", ns, p.key_id, gen)
            return _json({"namespace": ns, "generation": gen})
        except Exception as exc:  # noqa: BLE001 - every failure is an answer in the API's error format
            return self.fail(exc)


def _number(name: str, raw: str, kind: type) -> Any:
    try:
        return kind(raw)
    except ValueError:
        raise InvalidRequestError(f"{name}: not a number: {raw!r}") from None


def admin_routes(door: Door) -> list[Route]:
    a = Admin(door)
    base = "/admin/v1"
    return [
        Route(f"{base}/keys", a.create_key, methods=["POST"]),
        Route(f"{base}/keys", a.list_keys, methods=["GET"]),
        Route(f"{base}/keys/{{key_id}}/revoke", a.revoke_key, methods=["POST"]),
        Route(f"{base}/keys/{{key_id}}/rotate", a.rotate_key, methods=["POST"]),
        Route(f"{base}/spend", a.spend, methods=["GET"]),
        Route(f"{base}/audit", a.audit, methods=["GET"]),
        Route(f"{base}/audit/tail", a.audit_tail, methods=["GET"]),
        Route(f"{base}/audit/verify", a.audit_verify, methods=["GET"]),
        Route(f"{base}/routes", a.routes, methods=["GET"]),
        Route(f"{base}/budgets", a.budgets, methods=["GET"]),
        Route(f"{base}/budgets/reset", a.reset_budget, methods=["POST"]),
        Route(f"{base}/cache", a.cache, methods=["GET"]),
        Route(f"{base}/cache/invalidate", a.cache_invalidate, methods=["POST"]),
    ]


__all__ = ["Admin", "admin_routes"]
