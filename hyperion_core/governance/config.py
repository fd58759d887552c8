"""Governance settings (pydantic, frozen, unknown keys refused) and the ``Subjects`` of a request.

Units are in the names: ``_usd`` is US dollars, ``_s`` seconds, ``rpm`` requests per minute, ``tpm``
tokens per minute. Every field says what its edge values do.

YAML shape (one ``governance:`` section)::

    governance:
      backend: redis                       # memory (default, per process) | redis (shared)
      redis_url: ${REDIS_URL}
      budgets:
        - {scope: team, id: ml, period: daily, limit_usd: 5}
        - {scope: key, id: "*", period: monthly, limit_usd: 20}   # each key its own $20
        - {scope: global, period: monthly, limit_usd: 1000, alert_thresholds: [0.8, 0.95]}
      rate_limits:
        - {scope: key, id: "*", rpm: 60, tpm: 100000}
        - {scope: route, id: chat, rpm: 600}
      anomaly: {multiplier: 10, min_usd_per_min: 0.1, hard: [{scope: team, usd_per_min: 5}]}
      alerts:
        - {type: log}
        - {type: webhook, url: "https://hooks.example.com/hyperion"}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import ConfigError
from .periods import Period

BudgetScope = Literal["key", "team", "user", "global"]
LimitScope = Literal["key", "team", "route"]
AnomalyScope = Literal["key", "team"]

#: ``id: "*"`` makes one budget / limit per subject (each key, team, user or route separately)
EACH = "*"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # .inf / .nan are never settings


def _check_id(v: str) -> str:
    if not v:
        raise ValueError("must not be empty (use '*' for each one separately)")
    return v


class BudgetConfig(_Strict):
    """A hard spending limit with soft alert thresholds. When a specific ``id`` and ``"*"`` both
    exist for the same scope and period, the specific one applies to that subject instead."""

    #: what the budget counts: one virtual key, team or user, or everything (``global``)
    scope: BudgetScope
    #: which key / team / user; ``"*"`` = each one separately; must be ``"*"`` for ``global``
    id: str = EACH
    #: when it resets: ``daily``, ``weekly`` (ISO, Monday), ``monthly``, or never (``total``)
    period: Period
    #: USD per period; > 0. Admission refuses a request whose worst-case cost would pass it.
    limit_usd: float = Field(gt=0)
    #: fractions of ``limit_usd`` in (0, 1]; each fires one alert per period when settled spend
    #: reaches it. ``[]`` = no threshold alerts (a refusal still fires one "exhausted" alert).
    alert_thresholds: tuple[float, ...] = (0.5, 0.8, 1.0)
    #: label in errors and alerts; default e.g. ``team 'ml' daily budget``
    name: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return _check_id(v)

    @field_validator("alert_thresholds")
    @classmethod
    def _thresholds(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        for t in v:
            if not 0 < t <= 1:
                raise ValueError(f"each threshold is a fraction of the limit in (0, 1], got {t}")
        return tuple(sorted(set(v)))

    @model_validator(mode="after")
    def _global_id(self) -> BudgetConfig:
        if self.scope == "global" and self.id != EACH:
            raise ValueError(f"a global budget has no id (got id: {self.id!r}; remove it)")
        return self


class RateLimitConfig(_Strict):
    """Requests and tokens per minute for a key, team or route (GCRA; see ``ratelimit``)."""

    #: what the limit counts: one virtual key, team, or route
    scope: LimitScope
    #: which key / team / route; ``"*"`` = each one separately
    id: str = EACH
    #: requests per minute, >= 1; also the burst a full bucket admits at once. None = no RPM limit.
    rpm: int | None = Field(default=None, ge=1)
    #: tokens per minute (prompt + max output at admission, corrected at settle), >= 1; None = none
    tpm: int | None = Field(default=None, ge=1)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return _check_id(v)

    @model_validator(mode="after")
    def _one_of(self) -> RateLimitConfig:
        if self.rpm is None and self.tpm is None:
            raise ValueError("set rpm, tpm or both")
        return self


class AnomalyHardLimit(_Strict):
    """Alert whenever a subject's spend rate reaches ``usd_per_min``, whatever its baseline."""

    #: what the hard limit watches: one virtual key or team
    scope: AnomalyScope
    #: which key / team; ``"*"`` = each one separately
    id: str = EACH
    #: USD per minute over the last minute; > 0
    usd_per_min: float = Field(gt=0)


class AnomalyConfig(_Strict):
    """Spend-rate anomalies per key and team: the last minute's spend against the subject's own
    baseline (an EWMA of its past per-minute spend)."""

    #: watch each subject's spend rate against its own baseline and alert on spikes
    enabled: bool = True
    #: whose spend rate is watched
    scopes: tuple[AnomalyScope, ...] = ("key", "team")
    #: seconds per bucket (the rate is the last ``bucket_s`` seconds, sliding); > 0, <= 3600
    bucket_s: float = Field(default=60.0, gt=0, le=3600)
    #: seconds for an old bucket to count half as much in the baseline; > 0
    baseline_half_life_s: float = Field(default=1800.0, gt=0)
    #: seconds of history a subject needs before ratio alerts (warm-up); 0 = alert from its
    #: second bucket on (hard limits never wait)
    warmup_s: float = Field(default=900.0, ge=0)
    #: alert when rate >= multiplier x baseline; > 1
    multiplier: float = Field(default=10.0, gt=1)
    #: ratio alerts also need rate >= this many USD per minute (ignores cents-level noise); >= 0
    min_usd_per_min: float = Field(default=0.10, ge=0)
    #: absolute spend rates that alert at once, whatever the baseline
    hard: tuple[AnomalyHardLimit, ...] = ()
    #: seconds after an alert during which the same subject and kind stays quiet; >= 0
    cooldown_s: float = Field(default=600.0, ge=0)


class AlertSinkConfig(_Strict):
    """Where alerts go: ``log`` (logger ``hyperion.alerts``), ``webhook`` (JSON POST to ``url``, retried
    with backoff off the request path) or ``callback`` (``"package.module:function"`` or a callable)."""

    #: where alerts go: the ``hyperion.alerts`` logger, an HTTP ``webhook`` (JSON POST), or a Python
    #: ``callback``
    type: Literal["log", "webhook", "callback"]
    #: webhook: the URL to POST each alert to (required for ``webhook``)
    url: str | None = None
    #: callback: a callable taking one alert (required for ``callback``; Python config only)
    callback: Any = None
    #: webhook: extra attempts after the first, >= 0
    retries: int = Field(default=3, ge=0, le=10)
    #: webhook: seconds before the first retry, doubled each retry up to ``backoff_max_s``
    backoff_s: float = Field(default=0.5, ge=0)
    #: webhook: the longest wait between retries, seconds
    backoff_max_s: float = Field(default=10.0, ge=0)
    #: webhook: seconds per POST attempt, > 0
    timeout_s: float = Field(default=5.0, gt=0)
    #: webhook: alerts queued while the endpoint is slow or down; when full the oldest is dropped
    queue_size: int = Field(default=1000, ge=1)
    #: webhook: extra HTTP headers (e.g. an auth token as ``${ENV_VAR}``)
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _target(self) -> AlertSinkConfig:
        if self.type == "webhook" and not self.url:
            raise ValueError("a webhook sink needs url")
        if self.type == "callback" and not (
            callable(self.callback) or isinstance(self.callback, str) and ":" in self.callback
        ):
            raise ValueError("a callback sink needs callback: 'package.module:function' or a callable")
        return self


class GovernanceConfig(_Strict):
    #: ``memory`` (one process) or ``redis`` (shared); follows ``state`` when unset in a gateway
    backend: Literal["memory", "redis"] = "memory"
    #: required for ``backend: redis`` unless a client is passed to ``Governance``
    redis_url: str | None = None
    #: first part of every Redis key; no ``{`` or ``}`` (hash tags are added per structure)
    key_prefix: str = "hyperion"
    #: connections in the Redis pool (>= 1); more concurrent requests wait for a free one
    max_connections: int = Field(default=64, ge=1)
    #: seconds a request waits for a free pooled connection before it fails (> 0)
    pool_timeout: float = Field(default=10.0, gt=0)
    #: seconds a Redis command may go unanswered before it fails (> 0)
    socket_timeout: float = Field(default=5.0, gt=0)
    #: IANA zone for budget periods and spend days (``UTC`` default)
    timezone: str = "UTC"
    #: seconds a reservation holds budget before a crashed process's hold is released; > 0.
    #: Keep it above the longest request deadline: a request that outlives its reservation still
    #: settles (its spend is recorded) but no longer held its budget while running.
    reservation_ttl_s: float = Field(default=120.0, gt=0)
    #: days spend-report counters are kept; >= 1
    spend_retention_days: int = Field(default=400, ge=1)
    #: hard spending limits; a request is refused if its worst case would pass any that applies
    budgets: tuple[BudgetConfig, ...] = ()
    #: requests and tokens per minute (GCRA: exact, burst = the per-minute count)
    rate_limits: tuple[RateLimitConfig, ...] = ()
    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig)
    #: where budget, threshold and anomaly alerts go (default: the log)
    alerts: tuple[AlertSinkConfig, ...] = (AlertSinkConfig(type="log"),)

    @field_validator("key_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or "{" in v or "}" in v:
            raise ValueError("must be non-empty and contain no '{' or '}'")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from .periods import get_tz

        try:
            get_tz(v)
        except Exception:
            raise ValueError(f"unknown time zone {v!r} (an IANA name such as 'Europe/Berlin')") from None
        return v

    @model_validator(mode="after")
    def _unique(self) -> GovernanceConfig:
        seen: set[tuple[str, str, str]] = set()
        for i, b in enumerate(self.budgets):
            k = (b.scope, b.id, b.period)
            if k in seen:
                raise ValueError(f"budgets[{i}]: a second {b.period} budget for {b.scope} {b.id!r}")
            seen.add(k)
        lim: set[tuple[str, str]] = set()
        for i, r in enumerate(self.rate_limits):
            if (r.scope, r.id) in lim:
                raise ValueError(
                    f"rate_limits[{i}]: a second limit for {r.scope} {r.id!r} (merge rpm and tpm)"
                )
            lim.add((r.scope, r.id))
        return self


@dataclass(slots=True, frozen=True)
class Subjects:
    """Who a request is charged to and limited as. Any may be None (then no budget or limit of that
    scope applies). Hashable: per-subject lookups are cached."""

    key: str | None = None
    team: str | None = None
    user: str | None = None
    route: str | None = None

    @classmethod
    def of(cls, value: Subjects | Mapping[str, Any] | None) -> Subjects:
        """From a ``Subjects`` or a mapping ``{"key": ..., "team": ..., "user": ..., "route": ...}``."""
        if isinstance(value, Subjects):
            return value
        if value is None:
            return _NOBODY
        return cls(value.get("key"), value.get("team"), value.get("user"), value.get("route"))

    def get(self, scope: str) -> str | None:
        return None if scope == "global" else getattr(self, scope)


_NOBODY = Subjects()


def resolve_callback(spec: Any) -> Callable[..., Any]:
    """A callable, or ``"package.module:function"`` imported."""
    if callable(spec):
        return spec
    import importlib

    mod, _, attr = str(spec).partition(":")
    try:
        fn = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"alerts: cannot import callback {spec!r} ({exc})") from None
    if not callable(fn):
        raise ConfigError(f"alerts: callback {spec!r} is not callable")
    return fn


__all__ = [
    "BudgetScope",
    "LimitScope",
    "AnomalyScope",
    "EACH",
    "BudgetConfig",
    "RateLimitConfig",
    "AnomalyHardLimit",
    "AnomalyConfig",
    "AlertSinkConfig",
    "GovernanceConfig",
    "Subjects",
    "resolve_callback",
]
