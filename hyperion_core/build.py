"""Config -> the gateway's parts: route states with their deployments' adapters, and the response cache.

Pure construction (no I/O): adapters share the one pooled HTTP client; nothing connects until the
first request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from .config import NATIVE_KINDS, GatewayConfig, ProviderConfig, RouteConfig, provider_kind
from .http import HttpClient
from .pricing import lookup
from .providers import Target, adapter_class
from .routing import CircuitBreaker, DeploymentState, RouteState


def build_route(cfg: GatewayConfig, name: str, rc: RouteConfig, http: HttpClient, env: Mapping[str, str]) -> RouteState:
    rs = RouteState(name, rc)
    for dep in rc.deployments:
        kind = provider_kind(cfg, dep.provider)
        assert kind is not None  # config validation guarantees it
        prov = cfg.providers.get(dep.provider) or ProviderConfig(kind=kind)
        native = NATIVE_KINDS.get(kind)
        wire = native["wire"] if native and dep.adapter != "litellm" else "litellm"
        api_key = prov.api_key.get_secret_value() if prov.api_key else None
        if api_key is None and native and native["key_env"]:
            api_key = env.get(native["key_env"]) or (env.get("GOOGLE_API_KEY") if kind == "gemini" else None)
        price = lookup(kind, dep.upstream_model, dep.pricing)
        if dep.max_input_tokens or dep.max_output_tokens:
            price = replace(
                price,
                max_input_tokens=dep.max_input_tokens or price.max_input_tokens,
                max_output_tokens=dep.max_output_tokens or price.max_output_tokens,
            )
        target = Target(
            name=dep.id,
            route=name,
            kind=kind,
            wire=wire,
            model=dep.upstream_model,
            base_url=prov.base_url or (native["base_url"] if native else None),
            api_key=api_key,
            headers=dict(prov.headers),
            params=dict(dep.params),
            litellm_params=dict(prov.litellm_params),
            price=price,
            timeout=dep.timeout,
        )
        rs.deployments.append(
            DeploymentState(
                name=dep.id,
                adapter=adapter_class(wire)(target, http),
                breaker=CircuitBreaker(rc.breaker),
                weight=dep.weight,
                timeout=dep.timeout,
                unit_price=price.input + price.output,
            )
        )
    return rs


def build_routes(cfg: GatewayConfig, http: HttpClient, env: Mapping[str, str]) -> dict[str, RouteState]:
    return {name: build_route(cfg, name, rc, http, env) for name, rc in cfg.routes.items()}


def attach_planners(cfg: GatewayConfig, routes: dict[str, RouteState], *, clock: Any, rng: Any, services: Any) -> Any:
    """Give the routes whose strategy reads the request (``policy``, ``quality``) their per-request
    planner. Returns the runtime quality scores (a Redis hash when state is Redis: shared)."""
    from .policy.planner import Planners
    from .policy.quality import QualityScores

    st = cfg.state
    redis = services.client if st.backend == "redis" and st.redis_url else None
    scores = QualityScores(redis=redis, prefix=st.prefix, now=clock.now)
    planners = Planners(clock=clock, rng=rng, scores=scores, governance=services.governance)
    for rs in routes.values():
        planners.attach(rs)
    return scores


def build_cache(
    cfg: GatewayConfig,
    routes: dict[str, RouteState],
    *,
    gateway: Any,
    verifier: Callable[[str, str, str], Awaitable[bool]],
) -> Any:
    """The response cache, or None when no route caches. Keys carry each route's fingerprint."""
    if not any(rc.cache for rc in cfg.routes.values()):
        return None
    from .cache import CacheBackendConfig, ResponseCache
    from .cache.embedders import make_embedder
    from .cache.keys import route_fingerprint

    st = cfg.state
    tuning = cfg.cache.model_dump(exclude={"embedder"})
    backend = CacheBackendConfig(backend=st.backend, redis_url=st.redis_url, key_prefix=st.prefix, **tuning)
    embedder = None
    if any(rc.cache and rc.cache.enabled and rc.cache.semantic.enabled for rc in cfg.routes.values()):
        embedder = make_embedder(cfg.cache.embedder, gateway)
    route_ids = {
        name: f"{name}#"
        + route_fingerprint(
            {"kind": t.kind, "model": t.model, "base_url": t.base_url, "params": t.params}
            for t in (d.adapter.target for d in rs.deployments)
        )
        for name, rs in routes.items()
    }
    return ResponseCache(backend, embedder=embedder, verifier=verifier, route_ids=route_ids)


__all__ = ["build_route", "build_routes", "build_cache", "attach_planners"]
