"""Governance: budgets and spend, rate limits, anomaly alerts (virtual keys and RBAC: ``keys``).

:class:`Governance` wires the parts for the gateway's pipeline — three calls per request::

    gov = Governance(GovernanceConfig(...))                       # memory; or backend: redis
    adm = await gov.admit(req.request_id, {"key": ..., "team": ..., "user": ..., "route": ...},
                          tokens_estimate=prompt + max_out, cost_estimate_usd=price.estimate(...))
    ...                                                           # RateLimitedError / BudgetExceededError
    await gov.settle(adm, cost, prompt_tokens=..., completion_tokens=..., deployment=..., model=...)
    # or, when the call failed before anything was billed:
    await gov.release(adm)

On Redis, ``admit`` is one round trip (the rate-limit and budget scripts pipelined) and so is
``settle`` (budget settle + spend counters, the TPM correction and the key's and team's anomaly
buckets); refusals cost one more to undo the half that succeeded. The parts are usable alone:
:class:`BudgetLedger`, :class:`RateLimiter`, :class:`AnomalyDetector`, :class:`AlertDispatcher`.
"""

from __future__ import annotations

from .._lazy import lazy_exports
from ..errors import GovernanceStoreError

# Submodules load on first use: importing the config models must not pay for the whole package.
_WHERE = {
    "Governance": "facade",
    "Admission": "facade",
    "GovernanceConfig": "config",
    "BudgetConfig": "config",
    "RateLimitConfig": "config",
    "AnomalyConfig": "config",
    "AnomalyHardLimit": "config",
    "AlertSinkConfig": "config",
    "Subjects": "config",
    "BudgetLedger": "budgets",
    "MemoryBudgetStore": "budgets",
    "RedisBudgetStore": "budgets",
    "Reservation": "budgets",
    "Settlement": "budgets",
    "BudgetStatus": "budgets",
    "RateLimiter": "ratelimit",
    "MemoryRateStore": "ratelimit",
    "RedisRateStore": "ratelimit",
    "AnomalyDetector": "anomaly",
    "MemoryAnomalyStore": "anomaly",
    "RedisAnomalyStore": "anomaly",
    "Alert": "alerts",
    "BudgetAlert": "alerts",
    "AnomalyAlert": "alerts",
    "AlertSink": "alerts",
    "AlertDispatcher": "alerts",
    "LogSink": "alerts",
    "WebhookSink": "alerts",
    "CallbackSink": "alerts",
    "alert_dict": "alerts",
    "SpendRow": "spend",
    "format_table": "spend",
    "PeriodClock": "periods",
    "PeriodWindow": "periods",
    "window": "periods",
    "period_id": "periods",
    "resets_at": "periods",
}


__getattr__ = lazy_exports(__name__, _WHERE)


__all__ = [
    "Governance",
    "Admission",
    "GovernanceConfig",
    "BudgetConfig",
    "RateLimitConfig",
    "AnomalyConfig",
    "AnomalyHardLimit",
    "AlertSinkConfig",
    "Subjects",
    "BudgetLedger",
    "MemoryBudgetStore",
    "RedisBudgetStore",
    "Reservation",
    "Settlement",
    "BudgetStatus",
    "RateLimiter",
    "MemoryRateStore",
    "RedisRateStore",
    "AnomalyDetector",
    "MemoryAnomalyStore",
    "RedisAnomalyStore",
    "Alert",
    "BudgetAlert",
    "AnomalyAlert",
    "AlertSink",
    "AlertDispatcher",
    "LogSink",
    "WebhookSink",
    "CallbackSink",
    "alert_dict",
    "SpendRow",
    "format_table",
    "PeriodClock",
    "PeriodWindow",
    "window",
    "period_id",
    "resets_at",
    "GovernanceStoreError",
]
