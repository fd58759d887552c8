"""HTTP control API under ``/_mock`` (what ``MockProviderClient`` talks to).

=========================  ===================================================
``POST   /_mock/faults``   body: a fault spec (see ``faults``) -> ``{"id"}``
``GET    /_mock/faults``   active faults
``DELETE /_mock/faults``   remove all, or ``?deployment=x`` -> ``{"removed"}``
``POST   /_mock/rules``    body: a rule spec (see ``rules``) -> ``{"id"}``
``GET    /_mock/rules``    active rules
``DELETE /_mock/rules``    remove all -> ``{"removed"}``
``GET    /_mock/stats``    per-deployment counters (see ``stats``)
``GET    /_mock/strict``   ``{"strict": bool}``: are bodies validated (see ``strict``)
``POST   /_mock/strict``   body ``{"strict": bool}`` switches it -> ``{"strict"}``
``POST   /_mock/reset``    clear faults, rules and stats
``GET    /_mock/health``   ``{"status": "ok"}``
=========================  ===================================================

Invalid specs are answered with 400 ``{"error": "<reason>"}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from .delivery import json_response
from .faults import Fault
from .rules import Rule
from .state import MockState

PREFIX = "/_mock"


async def _spec(request: web.Request) -> dict[str, Any]:
    try:
        spec = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise ValueError("body must be a JSON object")
    return spec


def _guard(handler: Callable[[web.Request], Awaitable[web.Response]]):
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)

    return wrapped


def add_admin_routes(app: web.Application, state: MockState) -> None:
    async def add_fault(request: web.Request) -> web.Response:
        return json_response({"id": state.faults.add(Fault.from_dict(await _spec(request)))})

    async def list_faults(request: web.Request) -> web.Response:
        return json_response(state.faults.list())

    async def clear_faults(request: web.Request) -> web.Response:
        return json_response({"removed": state.faults.clear(request.query.get("deployment"))})

    async def add_rule(request: web.Request) -> web.Response:
        return json_response({"id": state.rules.add(Rule.from_dict(await _spec(request)))})

    async def list_rules(request: web.Request) -> web.Response:
        return json_response(state.rules.list())

    async def clear_rules(request: web.Request) -> web.Response:
        return json_response({"removed": state.rules.clear()})

    async def stats(request: web.Request) -> web.Response:
        return json_response(state.stats.snapshot())

    async def get_strict(request: web.Request) -> web.Response:
        return json_response({"strict": state.strict})

    async def set_strict(request: web.Request) -> web.Response:
        value = (await _spec(request)).get("strict")
        if not isinstance(value, bool):
            raise ValueError('body must be {"strict": true|false}')
        state.strict = value
        return json_response({"strict": state.strict})

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return json_response({"status": "reset"})

    async def health(request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    router = app.router
    router.add_post(f"{PREFIX}/faults", _guard(add_fault))
    router.add_get(f"{PREFIX}/faults", list_faults)
    router.add_delete(f"{PREFIX}/faults", clear_faults)
    router.add_post(f"{PREFIX}/rules", _guard(add_rule))
    router.add_get(f"{PREFIX}/rules", list_rules)
    router.add_delete(f"{PREFIX}/rules", clear_rules)
    router.add_get(f"{PREFIX}/stats", stats)
    router.add_get(f"{PREFIX}/strict", get_strict)
    router.add_post(f"{PREFIX}/strict", _guard(set_strict))
    router.add_post(f"{PREFIX}/reset", reset)
    router.add_get(f"{PREFIX}/health", health)
