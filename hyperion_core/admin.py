"""Admin operations behind ``hyperion keys|spend|audit`` (and, later, the server's admin API).

Everything is read from the gateway config: keys from its key store (SQLite in ``state.path`` on the
embedded default, Redis when state is shared), spend from the governance ledger when it lives in Redis,
else from the audit log — the embedded default's durable record of every request and its cost.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from .config import GatewayConfig
from .errors import ConfigError, InvalidRequestError

SPEND_BY = ("key", "team", "user", "route", "day", "deployment")


def load_config(path: str | None) -> GatewayConfig:
    """The config at ``path``; with no path, the embedded default (a route-less shell is not valid,
    so a minimal placeholder route is used: admin commands never call providers)."""
    if path:
        return GatewayConfig.from_file(path)
    return GatewayConfig.load({"routes": {"_admin": {"deployments": [{"model": "openai/none"}]}}})


def key_store(cfg: GatewayConfig) -> Any:
    from .services import Services

    return Services(cfg).keys


def spend_rows_from_events(events: Iterable[Any], by: str) -> list[Any]:
    """Spend rows (like the governance ledger's) aggregated from audit events."""
    from .governance.spend import SpendRow

    if by not in SPEND_BY:
        raise InvalidRequestError(f"--by: must be one of {', '.join(SPEND_BY)}, got '{by}'")
    acc: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0, 0.0])
    for e in events:
        if e.outcome != "ok" and not e.cost:
            continue
        if by == "day":
            group = datetime.fromtimestamp(e.time, tz=timezone.utc).strftime("%Y-%m-%d")
        else:
            group = {"key": e.key_id, "team": e.team, "user": e.user, "route": e.route, "deployment": e.deployment}[by]
        row = acc[group or "-"]
        row[0] += 1
        row[1] += e.prompt_tokens or 0
        row[2] += e.completion_tokens or 0
        row[3] += e.cost or 0.0
        row[4] += e.cost_saved or 0.0
    return [
        SpendRow(group=g, requests=int(r[0]), prompt_tokens=int(r[1]), completion_tokens=int(r[2]),
                 cost_usd=r[3], saved_usd=r[4])
        for g, r in sorted(acc.items(), key=lambda kv: -kv[1][3])
    ]


async def spend_report(cfg: GatewayConfig, by: str, *, sink: str | None = None) -> list[Any]:
    if by not in SPEND_BY:
        raise InvalidRequestError(f"--by: must be one of {', '.join(SPEND_BY)}, got '{by}'")
    gov = cfg.governance
    if gov is not None and (gov.backend == "redis" or cfg.state.backend == "redis") and sink is None:
        from .services import Services

        st = Services(cfg)
        try:
            return await st.governance.spend_report(by)
        finally:
            await st.aclose()
    spec = sink or (cfg.audit.sink if cfg.audit else None)
    if spec is None:
        raise ConfigError(
            "spend: nothing records spend here — configure 'audit:' (embedded) or 'governance:' on Redis, "
            "or pass --sink"
        )
    from .audit import open_sink
    from .audit.query import AuditQuery

    s = open_sink(spec)
    try:
        return spend_rows_from_events(await s.query(AuditQuery(limit=None)), by)
    finally:
        await s.aclose()


def format_key(rec: Any) -> str:
    exp = "never" if rec.expires_at is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(rec.expires_at))
    state = "revoked" if rec.revoked_at else "active"
    return (f"{rec.key_id}  {rec.name:<16} team={rec.team or '-':<10} user={rec.user or '-':<10} "
            f"roles={','.join(rec.roles)} routes={','.join(rec.routes)} expires={exp} {state}")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


__all__ = ["load_config", "key_store", "spend_report", "spend_rows_from_events", "format_key", "SPEND_BY"]
