"""Prometheus metrics of the server (``GET /metrics``), safe with several workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``hyperion serve --workers N`` sets it to a fresh folder when it
is not set) every worker writes its samples to files there and a scrape, whichever worker answers it,
adds them up (``prometheus_client.multiprocess``). Without it, one process: an app's own registry.

==========================================  =========  ==============================================
metric                                      type       labels
==========================================  =========  ==============================================
hyperion_requests_total                     counter    endpoint, route, outcome (ok/error/cancelled)
hyperion_errors_total                       counter    endpoint, route, error_class, status
hyperion_request_duration_seconds           histogram  route, deployment (whole answers and streams)
hyperion_time_to_first_token_seconds        histogram  route, deployment (streams)
hyperion_tokens_total                       counter    route, deployment, kind (prompt/completion/
                                                       cached_prompt/reasoning)
hyperion_cost_usd_total                     counter    route, deployment
hyperion_cache_hits_total                   counter    route, tier (l1/l2/semantic/coalesced)
hyperion_refusals_total                     counter    route, reason (rate_limit/budget)
hyperion_breaker_state                      gauge      route, deployment: 0 closed, 1 half-open,
                                                       2 open (the highest any live worker sees)
==========================================  =========  ==============================================
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import BudgetExceededError, RateLimitedError
from ..types import ChatResponse, EmbeddingResponse

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BREAKER = {"closed": 0.0, "half_open": 1.0, "half-open": 1.0, "open": 2.0}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


class Metrics:
    """The server's counters and histograms (one instance per app)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = multiprocess_dir() is not None
        # multiprocess: samples go to files whatever the registry; scrapes read them (see render)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("hyperion_requests", "Requests by endpoint, route and outcome",
                                ("endpoint", "route", "outcome"), registry=r)
        self.errors = Counter("hyperion_errors", "Failed requests by error class and HTTP status",
                              ("endpoint", "route", "error_class", "status"), registry=r)
        self.latency = Histogram("hyperion_request_duration_seconds", "Time to the whole answer",
                                 ("route", "deployment"), buckets=_BUCKETS, registry=r)
        self.ttft = Histogram("hyperion_time_to_first_token_seconds", "Time to a stream's first chunk",
                              ("route", "deployment"), buckets=_BUCKETS, registry=r)
        self.tokens = Counter("hyperion_tokens", "Tokens by kind", ("route", "deployment", "kind"), registry=r)
        self.cost = Counter("hyperion_cost_usd", "Upstream cost in USD", ("route", "deployment"), registry=r)
        self.cache_hits = Counter("hyperion_cache_hits", "Answers served from the cache", ("route", "tier"),
                                  registry=r)
        self.refusals = Counter("hyperion_refusals", "Requests refused by a rate limit or a budget",
                                ("route", "reason"), registry=r)
        self.breaker = Gauge("hyperion_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open",
                             ("route", "deployment"), registry=r, multiprocess_mode="max")

    # -- recording -----------------------------------------------------------------------------------
    def answered(self, endpoint: str, resp: ChatResponse | EmbeddingResponse, route: str,
                 outcome: str = "ok") -> None:
        dep = resp.deployment or "-"
        self.requests.labels(endpoint, route, outcome).inc()
        self.latency.labels(route, dep).observe(max(resp.latency_ms, 0.0) / 1000.0)
        ttft = getattr(resp, "ttft_ms", None)
        if ttft is not None:
            self.ttft.labels(route, dep).observe(max(ttft, 0.0) / 1000.0)
        u = resp.usage
        for kind, n in (("prompt", u.prompt_tokens), ("completion", u.completion_tokens),
                        ("cached_prompt", u.cached_prompt_tokens), ("reasoning", u.reasoning_tokens)):
            if n:
                self.tokens.labels(route, dep, kind).inc(n)
        if resp.cost:
            self.cost.labels(route, dep).inc(resp.cost)
        cache = getattr(resp, "cache", None)
        if cache is not None:
            self.cache_hits.labels(route, cache.tier).inc()

    def failed(self, endpoint: str, route: str, exc: BaseException, status: int) -> None:
        self.requests.labels(endpoint, route, "error").inc()
        self.errors.labels(endpoint, route, type(exc).__name__, str(status)).inc()
        if isinstance(exc, RateLimitedError):
            self.refusals.labels(route, "rate_limit").inc()
        elif isinstance(exc, BudgetExceededError):
            self.refusals.labels(route, "budget").inc()

    def cancelled(self, endpoint: str, route: str) -> None:
        self.requests.labels(endpoint, route, "cancelled").inc()

    def breakers(self, health: dict[str, dict[str, dict[str, Any]]]) -> None:
        for route, deps in health.items():
            for dep, snap in deps.items():
                self.breaker.labels(route, dep).set(_BREAKER.get(str(snap.get("state")), 0.0))

    # -- exposition -----------------------------------------------------------------------------------
    def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)


__all__ = ["CONTENT_TYPE", "Metrics", "multiprocess_dir"]
